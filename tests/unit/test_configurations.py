"""サービス設定のテスト。"""

from __future__ import annotations

from pathlib import Path

import pytest

from service import constants
from service.configurations import ConfigurationError, get_settings, load_settings


def test_defaults_follow_the_specification(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.model_filepath == Path("/model_in_image_pattern/models/iris_svc.onnx")
    assert settings.labels_path == Path("/model_in_image_pattern/models/label.json")
    assert settings.log_level == "DEBUG"
    assert settings.log_format == "TEXT"
    assert settings.port == 8000
    assert settings.max_batch_rows == constants.DEFAULT_MAX_BATCH_ROWS == 1000
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.ort_intra_op_threads == 1
    assert settings.access_log is False


def test_environment_overrides(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("MODEL_FILEPATH", "/tmp/m.onnx")
    clean_env.setenv("LOG_FORMAT", "json")
    clean_env.setenv("LOG_LEVEL", "info")
    clean_env.setenv("MAX_BATCH_ROWS", "10")
    settings = load_settings()
    assert settings.model_filepath == Path("/tmp/m.onnx")
    assert settings.log_format == "JSON"
    assert settings.log_level == "INFO"
    assert settings.max_batch_rows == 10


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "70000"),
        ("LOG_LEVEL", "LOUD"),
        ("LOG_FORMAT", "XML"),
        ("MAX_BATCH_ROWS", "0"),
        ("ORT_INTRA_OP_THREADS", "zero"),
    ],
)
def test_bad_values_fail_fast_naming_the_variable(
    clean_env: pytest.MonkeyPatch, name: str, value: str
) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    message = str(error.value)
    assert name in message
    assert "\n" not in message


def test_get_settings_is_cached(clean_env: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    try:
        assert get_settings() is get_settings()
    finally:
        get_settings.cache_clear()


def test_another_model_gets_no_label_file_unless_one_is_given(clean_env: pytest.MonkeyPatch) -> None:
    assert load_settings(model_filepath="/tmp/house.onnx").labels_path is None
    assert load_settings(model_filepath="/tmp/house.onnx", label_filepath="/tmp/l.json").labels_path == Path(
        "/tmp/l.json"
    )
    clean_env.setenv("LABEL_FILEPATH", "")
    assert load_settings().labels_path is None  # 空文字は「ラベル無し」（イメージの LABEL_FILEPATH）


def test_sample_row_and_model_name_from_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SAMPLE_ROW", "[1, 2.5, 3]")
    clean_env.setenv("MODEL_NAME", "flowers")
    settings = load_settings()
    assert settings.sample == [1.0, 2.5, 3.0]
    assert settings.model_name == "flowers"
    assert load_settings(sample_row=[4, 5]).sample == [4.0, 5.0]
    clean_env.setenv("SAMPLE_ROW", "")
    assert load_settings().sample is None


@pytest.mark.parametrize("value", ["[1, NaN]", "not json", "[]", '["a"]', "[true]", "{}"])
def test_a_bad_sample_row_fails_fast(clean_env: pytest.MonkeyPatch, value: str) -> None:
    clean_env.setenv("SAMPLE_ROW", value)
    with pytest.raises(ConfigurationError, match="SAMPLE_ROW"):
        load_settings()
