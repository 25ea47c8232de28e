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
