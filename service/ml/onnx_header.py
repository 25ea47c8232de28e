"""ONNX ファイルの先頭情報（ModelProto の最上位フィールド）とクラスラベルを読む小さなパーサ。

onnx パッケージを実行時依存に入れずに、opset・producer・IR バージョンを /metadata に出し、
分類器のクラスラベル（ZipMap や *Classifier ノードの classlabels_* 属性）を読むためのもの。
グラフ（フィールド 7）はノードの op_type・domain・属性だけを見て、初期値などは読み飛ばす。
"""

from __future__ import annotations

from dataclasses import dataclass, field

# ModelProto のフィールド番号（onnx.proto）
_IR_VERSION = 1
_PRODUCER_NAME = 2
_PRODUCER_VERSION = 3
_OPSET_IMPORT = 8
_GRAPH = 7
# GraphProto・NodeProto・AttributeProto のフィールド番号
_GRAPH_NODE = 1
_NODE_OP_TYPE = 4
_NODE_ATTRIBUTE = 5
_NODE_DOMAIN = 7
_ATTR_NAME = 1
_ATTR_INTS = 8
_ATTR_STRINGS = 9
# クラスラベルを持つ属性（ZipMap は *_int64s、ai.onnx.ml の分類器は *_ints）
_INT_LABELS = ("classlabels_int64s", "classlabels_ints")
_STRING_LABELS = ("classlabels_strings",)
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
    class_labels: list[int] | list[str] | None = None


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


def spans(buf: bytes) -> list[tuple[int, int, int | bytes, bytes]]:
    """メッセージを (フィールド番号, ワイヤ型, 値, そのフィールドの元のバイト列) の列に分解する。

    元のバイト列は、一部のフィールドだけを書き換えてメッセージを組み直すため（`service.ml.zipmap`）。
    """
    out: list[tuple[int, int, int | bytes, bytes]] = []
    pos = 0
    while pos < len(buf):
        start = pos
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
        out.append((number, wire, value, buf[start:pos]))
    return out


def _fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """メッセージを (フィールド番号, ワイヤ型, 値) の列に分解する。"""
    return [(number, wire, value) for number, wire, value, _raw in spans(buf)]


def _signed(value: int) -> int:
    """varint の 64 ビット 2 の補数を符号付きの整数にする。"""
    return value - (1 << 64) if value >= 1 << 63 else value


def _packed_varints(data: bytes) -> list[int]:
    """packed な repeated int64 を読む。"""
    values = []
    pos = 0
    while pos < len(data):
        value, pos = _read_varint(data, pos)
        values.append(_signed(value))
    return values


def _node_class_labels(node: bytes) -> tuple[str, list[int] | list[str]] | None:
    """ai.onnx.ml のノードなら (op_type, クラスラベル) を返す（ラベルの属性が無ければ None）。"""
    op_type = domain = ""
    attributes: list[bytes] = []
    for number, _wire, value in _fields(node):
        if number == _NODE_OP_TYPE and isinstance(value, bytes):
            op_type = value.decode("utf-8", "replace")
        elif number == _NODE_DOMAIN and isinstance(value, bytes):
            domain = value.decode("utf-8", "replace")
        elif number == _NODE_ATTRIBUTE and isinstance(value, bytes):
            attributes.append(value)
    if domain != "ai.onnx.ml":
        return None
    for attribute in attributes:
        name = ""
        ints: list[int] = []
        strings: list[str] = []
        for number, wire, value in _fields(attribute):
            if number == _ATTR_NAME and isinstance(value, bytes):
                name = value.decode("utf-8", "replace")
            elif number == _ATTR_INTS and isinstance(value, int) and wire == _VARINT:
                ints.append(_signed(value))
            elif number == _ATTR_INTS and isinstance(value, bytes):
                ints.extend(_packed_varints(value))
            elif number == _ATTR_STRINGS and isinstance(value, bytes):
                strings.append(value.decode("utf-8", "replace"))
        if name in _INT_LABELS and ints:
            return op_type, ints
        if name in _STRING_LABELS and strings:
            return op_type, strings
    return None


def _graph_class_labels(graph: bytes) -> list[int] | list[str] | None:
    """グラフのクラスラベル。ZipMap の属性を優先し、無ければ最初の分類器ノードの属性。"""
    found: list[int] | list[str] | None = None
    for number, _wire, value in _fields(graph):
        if number != _GRAPH_NODE or not isinstance(value, bytes):
            continue
        labels = _node_class_labels(value)
        if labels is None:
            continue
        op_type, classes = labels
        if op_type == "ZipMap":
            return classes
        if found is None:
            found = classes
    return found


def read_onnx_header(model_bytes: bytes) -> OnnxHeader:
    """ONNX モデルのバイト列から IR バージョン・producer・opset・クラスラベルを読む。"""
    ir_version = 0
    producer_name = producer_version = ""
    opsets: dict[str, int] = {}
    class_labels: list[int] | list[str] | None = None
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
        elif number == _GRAPH and isinstance(value, bytes):
            class_labels = _graph_class_labels(value)
    return OnnxHeader(ir_version, producer_name, producer_version, opsets, class_labels)
