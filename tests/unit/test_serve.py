"""`mii serve` のオプションからサービス設定の上書きを作る: モデルとラベルの既定の選び方。"""

from __future__ import annotations

from pathlib import Path

from mii_cli.serve import ServeRequest
from tests.support import LABELS, MODEL

HOUSE = Path("/models/house.onnx")


def request(**options: object) -> ServeRequest:
    return ServeRequest(host="127.0.0.1", port=1, **options)  # type: ignore[arg-type]


def test_without_options_or_environment_the_bundled_model_and_labels_are_served() -> None:
    overrides = request().overrides(environ={})
    assert overrides["model_filepath"] == MODEL
    assert overrides["label_filepath"] == LABELS


def test_another_model_gets_no_bundled_labels() -> None:
    assert request(model=HOUSE).overrides(environ={})["label_filepath"] == ""


def test_the_sample_and_log_settings_are_passed_on() -> None:
    overrides = request(sample=[1.0], log_level="info", log_format="json").overrides(environ={})
    chosen = (overrides["sample_row"], overrides["log_level"], overrides["log_format"])
    assert chosen == ([1.0], "INFO", "JSON")


def test_a_model_from_the_environment_is_served_without_labels() -> None:
    overrides = request().overrides(environ={"MODEL_FILEPATH": str(HOUSE)})
    assert overrides == {"host": "127.0.0.1", "port": 1, "label_filepath": ""}


def test_labels_from_the_environment_go_with_the_model_from_the_environment() -> None:
    environ = {"MODEL_FILEPATH": str(HOUSE), "LABEL_FILEPATH": "/x/labels.json"}
    assert "label_filepath" not in request().overrides(environ=environ)


def test_the_labels_option_goes_with_the_model_from_the_environment() -> None:
    overrides = request(labels=Path("/x/names.json")).overrides(environ={"MODEL_FILEPATH": str(HOUSE)})
    assert overrides["label_filepath"] == Path("/x/names.json")
