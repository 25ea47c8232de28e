"""モデルの読み込み（load_model）と推論・入力検証（TabularModel）のテスト。"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from service.ml.loading import load_labels, load_model
from service.ml.prediction import InvalidInputError, ModelLoadError, TabularModel
from tests.zoo import ZOO_NAMES, ZooModel, onnxruntime_answers, slice_model

SAMPLE = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [6.7, 3.0, 5.2, 2.3]


@pytest.fixture(scope="module")
def classifier(model_path: Path, label_path: Path) -> TabularModel:
    return load_model(model_path, label_path, max_batch_rows=5)


def test_reads_signature_from_the_session(classifier: TabularModel) -> None:
    assert classifier.info.input_name == "float_input"
    assert classifier.width == 4
    assert classifier.info.num_classes == 3
    assert classifier.info.task == "classification"
    assert classifier.info.classes == [0, 1, 2]
    assert classifier.labels == {"0": "setosa", "1": "versicolor", "2": "virginica"}
    assert classifier.info.output_format == "zipmap"
    assert set(classifier.info.opset) == {"ai.onnx", "ai.onnx.ml"}
    assert classifier.info.producer == "skl2onnx"


def test_one_row_gives_probabilities_in_class_order(classifier: TabularModel) -> None:
    (probabilities,) = classifier.predict([SAMPLE])
    assert len(probabilities) == 3
    assert all(isinstance(p, float) for p in probabilities)
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
    assert probabilities[0] > 0.9
    assert classifier.predict_label([SAMPLE]) == ["setosa"]


def test_batch_keeps_row_order(classifier: TabularModel) -> None:
    rows = [SAMPLE, VIRGINICA, SAMPLE]
    batch = classifier.predict(rows)
    assert len(batch) == 3
    assert batch[0] == batch[2]
    assert batch[0] == classifier.predict([SAMPLE])[0]
    assert classifier.predict_label(rows) == ["setosa", "virginica", "setosa"]


def test_tensor_output_model_gives_the_same_answers(
    tensor_model: Path, label_path: Path, classifier: TabularModel
) -> None:
    plain = load_model(tensor_model, label_path)
    assert plain.info.output_format == "tensor"
    rows = [SAMPLE, VIRGINICA]
    np.testing.assert_allclose(plain.predict(rows), classifier.predict(rows), rtol=1e-6)
    assert plain.predict_label(rows) == ["setosa", "virginica"]


def test_the_sample_comes_from_the_training_facts(classifier: TabularModel) -> None:
    assert classifier.sample == [SAMPLE]
    assert classifier.info.sample_source == "facts"
    assert classifier.info.version == "1"
    assert classifier.info.name == "iris_svc"


def test_model_info_carries_hashes_and_training_facts(classifier: TabularModel, model_path: Path) -> None:
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
    classifier: TabularModel, rows: list[list[float]], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(")):
        classifier.predict(rows)


# --- 壊れた・食い違うファイル ---------------------------------------------------------


def _write(tmp_path: Path, name: str, content: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def test_missing_model_names_the_file(tmp_path: Path, label_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="model file not found") as error:
        load_model(tmp_path / "nope.onnx", label_path)
    assert error.value.path.endswith("nope.onnx")


def test_missing_labels_names_the_file(tmp_path: Path, model_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="label file not found"):
        load_model(model_path, tmp_path / "nope.json")


def test_directory_is_not_a_model(tmp_path: Path, label_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not a regular file"):
        load_model(tmp_path, label_path)


@pytest.mark.parametrize("content", [b"this is not onnx", b"\x08\x07" + bytes(range(256)), b""])
def test_corrupt_model_is_reported(tmp_path: Path, label_path: Path, content: bytes) -> None:
    model = _write(tmp_path, "broken.onnx", content)
    with pytest.raises(ModelLoadError, match="not a valid ONNX model"):
        load_model(model, label_path)


def test_truncated_model_is_reported(tmp_path: Path, model_path: Path, label_path: Path) -> None:
    model = _write(tmp_path, "cut.onnx", model_path.read_bytes()[:700])
    with pytest.raises(ModelLoadError, match="not a valid ONNX model"):
        load_model(model, label_path)


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
        ('{"' + "1" * 5000 + '": "a"}', "not a class index"),
        ('{"0": "' + "x" * 257 + '"}', "label '0' is 257 characters; the limit is 256"),
    ],
)
def test_bad_label_file_is_reported(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        load_labels(_write(tmp_path, "label.json", content))


def test_a_label_file_over_a_mebibyte_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """10 MB の label.json は、読む前に（大きさで）断る: 応答に載るラベルを小さく保つ。"""
    big = tmp_path / "label.json"
    big.write_text(json.dumps({"0": "a" * 200, "pad": "x" * (1024 * 1024)}))
    with pytest.raises(ModelLoadError, match=r"label file is \d+ bytes; the limit is 1048576 bytes"):
        load_labels(big)


def test_label_count_must_match_the_model(tmp_path: Path, model_path: Path) -> None:
    labels = _write(tmp_path, "label.json", json.dumps({"0": "setosa", "1": "versicolor"}))
    with pytest.raises(ModelLoadError, match="2 entries but the model has 3 classes") as error:
        load_model(model_path, labels)
    assert error.value.path == str(labels)


def test_unsupported_input_type_is_reported(tmp_path: Path, label_path: Path) -> None:
    from onnx import TensorProto

    with pytest.raises(ModelLoadError, match=r"unsupported input type tensor\(int64\)"):
        load_model(slice_model(tmp_path, TensorProto.INT64), label_path)


def test_plain_float_model_without_prob_name_is_used(tmp_path: Path, label_path: Path) -> None:
    from onnx import TensorProto

    model = load_model(slice_model(tmp_path, TensorProto.DOUBLE, "scores"), label_path)
    assert model.width == 4
    assert model.predict([[0.1, 0.7, 0.2, 9.0]])[0] == pytest.approx([0.1, 0.7, 0.2])
    assert model.predict_label([[0.1, 0.7, 0.2, 9.0]]) == ["versicolor"]


def test_a_model_of_another_width_is_served_with_a_zero_sample(tmp_path: Path, label_path: Path) -> None:
    from onnx import TensorProto

    model = load_model(slice_model(tmp_path, TensorProto.FLOAT, features=5), label_path)
    assert model.width == 5
    assert model.sample == [[0.0] * 5]
    assert model.info.sample_source == "zeros"
    with pytest.raises(InvalidInputError, match="row 0 has 4 values; the model expects 5 features"):
        model.predict([SAMPLE])


def test_a_model_without_a_fixed_width_is_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "any-width",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, "F"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, "F"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "any.onnx")
    with pytest.raises(ModelLoadError, match=r"expected \[N, F\] with a fixed number of features F"):
        load_model(tmp_path / "any.onnx")


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
        load_model(path, label_path)


# --- 任意の表形式モデル（テストの中で学習したもの）: ONNX Runtime をそのまま動かした答えと比べる --------


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_any_tabular_model_answers_like_onnxruntime(zoo: dict[str, ZooModel], name: str) -> None:
    case = zoo[name]
    model = load_model(case.path)
    expected, labels = onnxruntime_answers(case, case.rows)
    np.testing.assert_allclose(model.predict(case.rows), expected, rtol=1e-6, atol=1e-7)
    assert model.width == case.width
    assert model.task == case.task
    if labels is not None:
        assert model.predict_label(case.rows) == [str(label) for label in labels]


@pytest.mark.parametrize("name", ["wide_int_zipmap", "narrow_str_tensor", "str_zipmap", "fixed_batch"])
def test_a_classifier_without_a_label_file_uses_its_own_class_labels(
    zoo: dict[str, ZooModel], name: str
) -> None:
    case = zoo[name]
    model = load_model(case.path)
    assert case.classes is not None
    assert model.info.classes == case.classes
    assert model.labels == {str(i): str(label) for i, label in enumerate(case.classes)}
    assert model.info.label_file_name is None


def test_a_regressor_has_no_labels_and_answers_its_output_values(zoo: dict[str, ZooModel]) -> None:
    model = load_model(zoo["regressor_multi"].path)
    assert model.labels is None
    assert model.info.num_classes is None
    assert model.info.num_outputs == 2
    assert model.info.probability_output is None
    assert [len(row) for row in model.predict(zoo["regressor_multi"].rows)] == [2] * 5
    with pytest.raises(RuntimeError, match="regression model has no labels"):
        model.predict_label(zoo["regressor_multi"].rows)


def test_a_fixed_batch_model_answers_any_number_of_rows(zoo: dict[str, ZooModel]) -> None:
    case = zoo["fixed_batch"]
    model = load_model(case.path)
    assert model.runtime.fixed_batch == 1
    one = [model.predict([row])[0] for row in case.rows]
    assert model.predict(case.rows) == one
    (label, probabilities) = model.infer(model.to_batch(case.rows), ["label", "probabilities"])
    assert model.as_values("label", label)[0] == [5]
    assert label.shape == (5,)
    assert probabilities.shape == (5, 2)


def test_zipmap_outputs_are_float32_tensors_in_class_order_for_v2(zoo: dict[str, ZooModel]) -> None:
    case = zoo["str_zipmap"]
    model = load_model(case.path)
    (labels, zipmap) = model.infer(model.to_batch(case.rows), ["output_label", "output_probability"])
    probabilities = model.as_array("output_probability", zipmap)
    assert probabilities.dtype == np.float32
    assert probabilities.shape == (5, 3)
    np.testing.assert_allclose(probabilities, model.predict(case.rows), rtol=1e-7)
    shape, values = model.as_values("output_probability", zipmap)
    assert shape == [5, 3]
    assert values == probabilities.ravel().tolist()
    assert model.as_array("output_label", labels).tolist() == model.predict_label(case.rows)


def test_a_given_sample_is_used_and_checked(zoo: dict[str, ZooModel]) -> None:
    case = zoo["regressor"]
    model = load_model(case.path, sample=[1.0, 2.0, 3.0])
    assert model.sample == [[1.0, 2.0, 3.0]]
    assert model.info.sample_source == "option"
    with pytest.raises(ModelLoadError, match="sample has 2 values; the model expects 3 features"):
        load_model(case.path, sample=[1.0, 2.0])


def test_training_facts_of_another_model_are_ignored(zoo: dict[str, ZooModel], tmp_path: Path) -> None:
    case = zoo["regressor"]
    model_file = tmp_path / "reg.onnx"
    model_file.write_bytes(case.path.read_bytes())
    (tmp_path / "training.json").write_text(json.dumps({"model_sha256": "0" * 64, "sample": [9, 9, 9]}))
    model = load_model(model_file)
    assert model.info.training is None
    assert model.info.sample_source == "zeros"


def test_the_model_name_can_be_given(zoo: dict[str, ZooModel]) -> None:
    assert load_model(zoo["regressor"].path).info.name == "regressor"
    assert load_model(zoo["regressor"].path, name="house-prices").info.name == "house-prices"


def test_binary_input_values_must_be_finite(classifier: TabularModel) -> None:
    batch = np.array([[1.0, np.inf, 1.0, 1.0]], dtype=np.float32)
    with pytest.raises(InvalidInputError, match="row 0, column 1: value inf is not finite"):
        classifier.check_finite(batch)
