"""Classifier（モデル・ラベルの読み込み、推論、入力検証）のテスト。"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from service.ml.prediction import Classifier, InvalidInputError, ModelLoadError, load_labels

SAMPLE = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [6.7, 3.0, 5.2, 2.3]


@pytest.fixture(scope="module")
def classifier(model_path: Path, label_path: Path) -> Classifier:
    return Classifier(model_path, label_path, max_batch_rows=5)


def test_reads_signature_from_the_session(classifier: Classifier) -> None:
    assert classifier.input_name == "float_input"
    assert classifier.num_features == 4
    assert classifier.num_classes == 3
    assert classifier.labels == {"0": "setosa", "1": "versicolor", "2": "virginica"}
    assert classifier.info.output_format == "zipmap"
    assert set(classifier.info.opset) == {"ai.onnx", "ai.onnx.ml"}
    assert classifier.info.producer == "skl2onnx"


def test_one_row_gives_probabilities_in_class_order(classifier: Classifier) -> None:
    (probabilities,) = classifier.predict_proba([SAMPLE])
    assert len(probabilities) == 3
    assert all(isinstance(p, float) for p in probabilities)
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
    assert probabilities[0] > 0.9
    assert classifier.predict_label([SAMPLE]) == ["setosa"]


def test_batch_keeps_row_order(classifier: Classifier) -> None:
    rows = [SAMPLE, VIRGINICA, SAMPLE]
    batch = classifier.predict_proba(rows)
    assert len(batch) == 3
    assert batch[0] == batch[2]
    assert batch[0] == classifier.predict_proba([SAMPLE])[0]
    assert classifier.predict_label(rows) == ["setosa", "virginica", "setosa"]


def test_tensor_output_model_gives_the_same_answers(
    tensor_model: Path, label_path: Path, classifier: Classifier
) -> None:
    plain = Classifier(tensor_model, label_path)
    assert plain.info.output_format == "tensor"
    rows = [SAMPLE, VIRGINICA]
    np.testing.assert_allclose(plain.predict_proba(rows), classifier.predict_proba(rows), rtol=1e-6)
    assert plain.predict_label(rows) == ["setosa", "virginica"]


def test_warm_up_returns_the_sample_probabilities(classifier: Classifier) -> None:
    assert classifier.warm_up() == classifier.predict_proba([SAMPLE])[0]


def test_model_info_carries_hashes_and_training_facts(classifier: Classifier, model_path: Path) -> None:
    import hashlib

    assert classifier.info.sha256 == hashlib.sha256(model_path.read_bytes()).hexdigest()
    assert classifier.info.training is not None
    assert classifier.info.training["model_sha256"] == classifier.info.sha256


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "at least one row"),
        ([SAMPLE] * 6, "6 rows; at most 5"),
        ([SAMPLE, [1.0, 2.0, 3.0]], "row 1 has 3 values; the model expects 4"),
        ([[1.0, 2.0, 3.0, 4.0, 5.0]], "row 0 has 5 values"),
        ([SAMPLE, [1.0, float("nan"), 3.0, 4.0]], "row 1, column 1: value nan is not finite"),
        ([[float("inf"), 1.0, 1.0, 1.0]], "row 0, column 0: value inf is not finite"),
        ([[1e300, 1.0, 1.0, 1.0]], "out of float32 range"),
    ],
)
def test_invalid_rows_are_rejected_with_a_reason(
    classifier: Classifier, rows: list[list[float]], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(")):
        classifier.predict_proba(rows)


# --- 壊れた・食い違うファイル ---------------------------------------------------------


def _write(tmp_path: Path, name: str, content: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def test_missing_model_names_the_file(tmp_path: Path, label_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="model file not found") as error:
        Classifier(tmp_path / "nope.onnx", label_path)
    assert error.value.path.endswith("nope.onnx")


def test_missing_labels_names_the_file(tmp_path: Path, model_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="label file not found"):
        Classifier(model_path, tmp_path / "nope.json")


def test_directory_is_not_a_model(tmp_path: Path, label_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not a regular file"):
        Classifier(tmp_path, label_path)


@pytest.mark.parametrize("content", [b"this is not onnx", b"\x08\x07" + bytes(range(256)), b""])
def test_corrupt_model_is_reported(tmp_path: Path, label_path: Path, content: bytes) -> None:
    model = _write(tmp_path, "broken.onnx", content)
    with pytest.raises(ModelLoadError, match="not a valid ONNX model"):
        Classifier(model, label_path)


def test_truncated_model_is_reported(tmp_path: Path, model_path: Path, label_path: Path) -> None:
    model = _write(tmp_path, "cut.onnx", model_path.read_bytes()[:700])
    with pytest.raises(ModelLoadError, match="not a valid ONNX model"):
        Classifier(model, label_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2, 3]", "non-empty JSON object"),
        ("{}", "non-empty JSON object"),
        ('{"a": "setosa"}', "not a class index"),
        ('{"0": ""}', "non-empty string"),
        ('{"0": "a", "2": "b"}', "without gaps"),
        ('{"00": "a"}', "not a class index"),
        ('{"\u00b2": "a"}', "not a class index"),
    ],
)
def test_bad_label_file_is_reported(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        load_labels(_write(tmp_path, "label.json", content))


def test_label_count_must_match_the_model(tmp_path: Path, model_path: Path) -> None:
    labels = _write(tmp_path, "label.json", json.dumps({"0": "setosa", "1": "versicolor"}))
    with pytest.raises(ModelLoadError, match="2 entries but the model has 3 classes") as error:
        Classifier(model_path, labels)
    assert error.value.path == str(labels)


def _tiny_model(tmp_path: Path, input_type: int, outputs: str = "prob", features: int = 4) -> Path:
    """onnx.helper で小さなモデル（入力の先頭 3 列をそのまま返す Slice）を作る。"""
    import onnx
    from onnx import TensorProto, helper

    starts = helper.make_tensor("starts", TensorProto.INT64, [1], [0])
    ends = helper.make_tensor("ends", TensorProto.INT64, [1], [3])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(
        [helper.make_node("Slice", ["x", "starts", "ends", "axes"], [outputs])],
        "tiny",
        [helper.make_tensor_value_info("x", input_type, [None, features])],
        [helper.make_tensor_value_info(outputs, input_type, [None, 3])],
        initializer=[starts, ends, axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "tiny.onnx"
    onnx.save(model, path)
    return path


def test_unsupported_input_type_is_reported(tmp_path: Path, label_path: Path) -> None:
    from onnx import TensorProto

    with pytest.raises(ModelLoadError, match=r"unsupported input type tensor\(int64\)"):
        Classifier(_tiny_model(tmp_path, TensorProto.INT64), label_path)


def test_plain_float_model_without_prob_name_is_used(tmp_path: Path, label_path: Path) -> None:
    from onnx import TensorProto

    model = Classifier(_tiny_model(tmp_path, TensorProto.DOUBLE, "scores"), label_path)
    assert model.num_features == 4
    assert model.predict_proba([[0.1, 0.7, 0.2, 9.0]])[0] == pytest.approx([0.1, 0.7, 0.2])
    assert model.predict_label([[0.1, 0.7, 0.2, 9.0]]) == ["versicolor"]


def test_model_with_another_feature_count_is_refused(tmp_path: Path, label_path: Path) -> None:
    from onnx import TensorProto

    with pytest.raises(ModelLoadError, match="model expects 5 features; this service serves Iris models"):
        Classifier(_tiny_model(tmp_path, TensorProto.FLOAT, features=5), label_path)


def test_model_without_probability_output_is_rejected(tmp_path: Path, label_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ArgMax", ["x"], ["y"], axis=1)],
        "argmax",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [None, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "argmax.onnx"
    onnx.save(model, path)
    with pytest.raises(ModelLoadError, match="no probability output"):
        Classifier(path, label_path)
