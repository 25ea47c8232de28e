"""ONNX ヘッダの読み取りのテスト。"""

from __future__ import annotations

from pathlib import Path

import pytest

from service.ml.onnx_header import OnnxHeaderError, read_onnx_header


def test_reads_the_bundled_model(model_path: Path) -> None:
    import onnx

    proto = onnx.load(model_path)
    header = read_onnx_header(model_path.read_bytes())
    assert header.ir_version == proto.ir_version
    assert header.producer_name == proto.producer_name
    assert header.producer_version == proto.producer_version
    assert header.opsets == {(o.domain or "ai.onnx"): o.version for o in proto.opset_import}


def test_reads_the_reference_model(reference_dir: Path) -> None:
    header = read_onnx_header((reference_dir / "iris_svc.onnx").read_bytes())
    assert header.producer_version == "1.7.0"
    assert header.opsets == {"ai.onnx": 9, "ai.onnx.ml": 1}


@pytest.mark.parametrize(
    "data",
    [b"\x80", b"\x0a\x05ab", b"\x00\x01", b"\x0f", b"\xff" * 12],
)
def test_malformed_bytes_raise(data: bytes) -> None:
    with pytest.raises(OnnxHeaderError):
        read_onnx_header(data)


def test_fixed_width_fields_are_skipped() -> None:
    # フィールド 9（fixed64）と 10（fixed32）の後に ir_version=7
    data = bytes([9 << 3 | 1]) + b"\x00" * 8 + bytes([10 << 3 | 5]) + b"\x00" * 4 + b"\x08\x07"
    assert read_onnx_header(data).ir_version == 7


def test_reads_the_class_labels_of_the_bundled_model(model_path: Path) -> None:
    assert read_onnx_header(model_path.read_bytes()).class_labels == [0, 1, 2]


def _classifier_graph(attribute: object, op_type: str = "LinearClassifier") -> bytes:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node(op_type, ["x"], ["label", "scores"], domain="ai.onnx.ml", **attribute)  # type: ignore[arg-type]
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, 2])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    )
    return bytes(onnx.ModelProto.SerializeToString(model))


def test_reads_string_labels_of_a_classifier_node() -> None:
    data = _classifier_graph({"classlabels_strings": ["cat", "dog"], "coefficients": [1.0] * 4})
    assert read_onnx_header(data).class_labels == ["cat", "dog"]


def test_reads_negative_integer_labels() -> None:
    data = _classifier_graph({"classlabels_ints": [-1, 5], "coefficients": [1.0] * 4})
    assert read_onnx_header(data).class_labels == [-1, 5]


def test_a_graph_without_class_labels_has_none() -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert read_onnx_header(onnx.ModelProto.SerializeToString(model)).class_labels is None
