"""ONNX ファイルの先頭情報（ModelProto の最上位フィールド）を読む小さなパーサ。

onnx パッケージを実行時依存に入れずに、opset・producer・IR バージョンを /metadata に出すためのもの。
グラフ本体（フィールド 7）は長さだけ読んで読み飛ばす。
"""

from __future__ import annotations

from dataclasses import dataclass, field

# ModelProto のフィールド番号（onnx.proto）
_IR_VERSION = 1
_PRODUCER_NAME = 2
_PRODUCER_VERSION = 3
_OPSET_IMPORT = 8
# OperatorSetIdProto のフィールド番号
_OPSET_DOMAIN = 1
_OPSET_VERSION = 2

_VARINT = 0
_FIXED64 = 1
_LENGTH_DELIMITED = 2
_FIXED32 = 5


class OnnxHeaderError(ValueError):
    """protobuf として読めないときの例外。"""


@dataclass(frozen=True)
class OnnxHeader:
    """ModelProto の最上位の情報。"""

    ir_version: int = 0
    producer_name: str = ""
    producer_version: str = ""
    opsets: dict[str, int] = field(default_factory=dict)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """pos から varint を 1 つ読み、値と次の位置を返す。"""
    result = 0
    shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise OnnxHeaderError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """メッセージを (フィールド番号, ワイヤ型, 値) の列に分解する。"""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise OnnxHeaderError("field number 0")
        value: int | bytes
        if wire == _VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire == _LENGTH_DELIMITED:
            length, pos = _read_varint(buf, pos)
            if pos + length > len(buf):
                raise OnnxHeaderError("truncated field")
            value, pos = buf[pos : pos + length], pos + length
        elif wire == _FIXED64:
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wire == _FIXED32:
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        else:
            raise OnnxHeaderError(f"unsupported wire type {wire}")
        if pos > len(buf):
            raise OnnxHeaderError("truncated field")
        out.append((number, wire, value))
    return out


def read_onnx_header(model_bytes: bytes) -> OnnxHeader:
    """ONNX モデルのバイト列から IR バージョン・producer・opset を読む。"""
    ir_version = 0
    producer_name = producer_version = ""
    opsets: dict[str, int] = {}
    for number, _wire, value in _fields(model_bytes):
        if number == _IR_VERSION and isinstance(value, int):
            ir_version = value
        elif number == _PRODUCER_NAME and isinstance(value, bytes):
            producer_name = value.decode("utf-8", "replace")
        elif number == _PRODUCER_VERSION and isinstance(value, bytes):
            producer_version = value.decode("utf-8", "replace")
        elif number == _OPSET_IMPORT and isinstance(value, bytes):
            domain, version = "", 0
            for sub_number, _sub_wire, sub_value in _fields(value):
                if sub_number == _OPSET_DOMAIN and isinstance(sub_value, bytes):
                    domain = sub_value.decode("utf-8", "replace")
                elif sub_number == _OPSET_VERSION and isinstance(sub_value, int):
                    version = sub_value
            opsets[domain or "ai.onnx"] = version
    return OnnxHeader(ir_version, producer_name, producer_version, opsets)
