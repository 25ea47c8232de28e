"""`mii serve` の要求: モデルとラベルの既定の選び方と、サービス設定の上書き。"""

from __future__ import annotations

from pathlib import Path

from mii_cli.commands.requests import serve_request
from tests.support import LABELS, MODEL

HOUSE = Path("/models/house.onnx")


def overrides(environ: dict[str, str] | None = None, **options: object) -> dict[str, object]:
    request = serve_request(host="127.0.0.1", port=1, environ=environ or {}, **options)  # type: ignore[arg-type]
    return request.overrides()


def test_without_options_or_environment_the_bundled_model_and_labels_are_served() -> None:
    chosen = overrides()
    assert (chosen["model_filepath"], chosen["label_filepath"]) == (MODEL, LABELS)


def test_another_model_gets_no_bundled_labels() -> None:
    assert overrides(model=HOUSE)["label_filepath"] == ""


def test_the_sample_and_log_settings_are_passed_on() -> None:
    chosen = overrides(sample=[1.0], log_level="info", log_format="json")
    assert (chosen["sample_row"], chosen["log_level"], chosen["log_format"]) == ([1.0], "INFO", "JSON")


def test_a_model_from_the_environment_is_served_without_labels() -> None:
    assert overrides({"MODEL_FILEPATH": str(HOUSE)}) == {"host": "127.0.0.1", "port": 1, "label_filepath": ""}


def test_labels_from_the_environment_go_with_the_model_from_the_environment() -> None:
    environ = {"MODEL_FILEPATH": str(HOUSE), "LABEL_FILEPATH": "/x/labels.json"}
    assert "label_filepath" not in overrides(environ)


def test_the_labels_option_goes_with_the_model_from_the_environment() -> None:
    chosen = overrides({"MODEL_FILEPATH": str(HOUSE)}, labels=Path("/x/names.json"))
    assert chosen["label_filepath"] == Path("/x/names.json")
