"""スモークテストの検証関数: 応答の形が崩れたときに、何が違うかを 1 行で示すこと。"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from mii_cli.probe import smoke_test as smoke
from mii_cli.probe.smoke_test import Facts, Mismatch

SAMPLE_P = [0.97, 0.02, 0.01]
LABELS = {"0": "setosa", "1": "versicolor", "2": "virginica"}
GOOD_METADATA: dict[str, Any] = {
    "data_type": "float32",
    "data_structure": "(1,4)",
    "data_sample": [[5.1, 3.5, 1.4, 0.2]],
    "prediction_type": "float32",
    "prediction_structure": "(1,3)",
    "prediction_sample": SAMPLE_P,
    "model": {"sha256": "0" * 64, "num_classes": 3, "task": "classification"},
}


def _facts() -> Facts:
    """/metadata から /predict/test までが通った後の事実。"""
    return Facts(
        num_classes=3,
        prediction_sample=SAMPLE_P,
        labels=LABELS,
        predict_test=SAMPLE_P,
        one_row=SAMPLE_P,
        batch=[SAMPLE_P, [0.1, 0.8, 0.1], [0.05, 0.05, 0.9]],
    )


def _verify(name: str, response: httpx.Response, facts: Facts | None = None) -> str:
    return smoke.VERIFIERS[name](response, facts or _facts())


def _json(body: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=body)


@pytest.mark.parametrize(
    ("name", "body", "message"),
    [
        ("predict-test", {"prediction": SAMPLE_P, "extra": 1}, 'expected {"prediction": ...}'),
        ("predict-test", {"prediction": "setosa"}, "prediction is not a list of numbers"),
        ("predict-test", {"prediction": [True, 0.0, 0.0]}, "prediction is not a list of numbers"),
        ("predict-test", {"prediction": [0.5, 0.5]}, "has 2 probabilities; the model has 3 classes"),
        ("predict-test", {"prediction": [1.5, -0.25, -0.25]}, "has values outside 0..1"),
        ("predict-test", {"prediction": [0.5, 0.3, 0.3]}, "sums to 1.100000, not 1"),
        ("metadata", [1, 2], "expected a JSON object"),
        ("metadata", {**GOOD_METADATA, "model": {"sha256": "XYZ", "num_classes": 3}}, "model.sha256 is not"),
        ("metadata", {**GOOD_METADATA, "model": {"sha256": "0" * 64}}, "model.num_classes is not a positive"),
        (
            "metadata",
            {**GOOD_METADATA, "model": {"sha256": "0" * 64, "num_classes": True}},
            "model.num_classes is not a positive",
        ),
        ("metadata", {**GOOD_METADATA, "data_sample": [[1, 2, 3, 4]]}, "data_sample is [[1, 2, 3, 4]]"),
        ("label", {"0": "a", "1": "b", "3": "c"}, "expected keys 0, 1, 2 (one per class)"),
        ("label", {"0": "a", "1": "", "2": "c"}, "every label must be a non-empty string"),
        ("predict", {"prediction": [0.5, 0.3, 0.2]}, "differs from /metadata prediction_sample"),
        ("predict-label", {"prediction": "virginica"}, "got 'virginica', expected 'setosa'"),
        ("predict-batch", {"prediction": [SAMPLE_P, SAMPLE_P]}, "expected 3 rows"),
        (
            "predict-batch",
            {"prediction": [[0.1, 0.8, 0.1], SAMPLE_P, SAMPLE_P]},
            "row 0 [0.1000, 0.8000, 0.1000] differs from the one-row answer",
        ),
        ("predict-label-batch", {"prediction": ["setosa", "setosa", "setosa"]}, "expected ['setosa', 'vers"),
    ],
)
def test_shape_errors_are_named(name: str, body: Any, message: str) -> None:
    with pytest.raises(Mismatch) as raised:
        _verify(name, _json(body))
    assert message in str(raised.value)


def test_predict_that_disagrees_with_predict_test_only() -> None:
    facts = _facts()
    facts.predict_test = [0.5, 0.3, 0.2]
    with pytest.raises(Mismatch, match=r"differs from /predict/test \[0.5000, 0.3000, 0.2000\]"):
        _verify("predict", _json({"prediction": SAMPLE_P}), facts)
    # 形が正しい答えは、一致しなくても後の確認のために記録される
    assert facts.one_row == SAMPLE_P


def test_good_answers_pass_and_record_facts() -> None:
    facts = Facts()
    assert "3 classes" in _verify("metadata", _json(GOOD_METADATA), facts)
    assert facts.num_classes == 3
    assert facts.model_sha256 == "0" * 64
    assert _verify("label", _json(LABELS), facts) == "setosa, versicolor, virginica"
    assert _verify("predict-test", _json({"prediction": SAMPLE_P}), facts) == "[0.9700, 0.0200, 0.0100]"
    assert _verify("predict-test-label", _json({"prediction": "setosa"}), facts) == "setosa"
    assert _verify("predict", _json({"prediction": SAMPLE_P}), facts).startswith("[0.9700")


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(400, text="nope"), "error body is not {'detail': ...}"),
        (httpx.Response(400, json=["x"]), "error body is not {'detail': ...}"),
        (httpx.Response(400, json={"error": "x"}), "error body has no detail"),
        (httpx.Response(422, json={"detail": "x"}), "HTTP 422, expected 400"),
    ],
)
def test_rejections_need_the_status_and_a_detail(response: httpx.Response, message: str) -> None:
    with pytest.raises(Mismatch) as raised:
        _verify("reject-empty-data", response)
    assert message in str(raised.value)


def test_long_bodies_are_shortened_in_the_detail() -> None:
    with pytest.raises(Mismatch) as raised:
        _verify("health", httpx.Response(500, text="x" * 1000))
    assert str(raised.value) == "HTTP 500, expected 200: " + "x" * 120 + "…"


def test_missing_label_index_is_shown() -> None:
    assert smoke.argmax_label([0.1, 0.9], {"0": "a"}) == "<no label 1>"


def test_predict_is_compared_with_the_local_copy_of_the_reported_model() -> None:
    facts = _facts()
    facts.model_sha256 = "a" * 64
    facts.reference = {"a" * 64: lambda row: [0.5, 0.3, 0.2]}
    # サービスの答えが自分自身とは一致していても、手元で同じモデルを動かした答えと違えば失敗
    expected = r"differs from the local model aaaaaaaaaaaa… \[0.5000, 0.3000, 0.2000\]"
    with pytest.raises(Mismatch, match=expected):
        _verify("predict", _json({"prediction": SAMPLE_P}), facts)
    facts.reference = {"a" * 64: lambda row: SAMPLE_P}
    assert _verify("predict", _json({"prediction": SAMPLE_P}), facts).endswith("= local model aaaaaaaaaaaa")


def test_unknown_model_is_said_in_the_detail() -> None:
    facts = _facts()
    facts.model_sha256 = "b" * 64
    assert "no local copy of model bbbbbbbbbbbb" in _verify("predict", _json({"prediction": SAMPLE_P}), facts)


def test_local_reference_reads_the_bundled_model(model_path: Path, label_path: Path, tmp_path: Path) -> None:
    from service.ml.loading import load_model

    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"nope")
    reference = smoke.local_reference([(model_path, label_path), (broken, label_path)])
    model = load_model(model_path, label_path)
    assert list(reference) == [model.info.sha256]
    row = [6.7, 3.0, 5.2, 2.3]
    assert reference[model.info.sha256](row) == model.predict([row])[0]
    assert model.info.sha256 in smoke.local_reference()  # 既定は同梱の models/
