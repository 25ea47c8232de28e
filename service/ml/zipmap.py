"""ZipMap を外したモデルのバイト列を作る（配信用のセッションに使う）。

skl2onnx の分類器は確率を ZipMap（ai.onnx.ml）で「行ごとの {クラス: 確率} の辞書」にして出す。
ONNX Runtime はその辞書を 1 行ごとに Python のオブジェクトとして作り、サービスはそれをまた
クラスの順の float のリストに戻していた。ZipMap は値を並べ替えるだけなので、ZipMap のノードを
同じ名前の出力を持つ Identity に置き換え、その出力の型を float のテンソルにすれば、同じ値が
`[N, C]` の配列で得られる（1 リクエストにつき辞書の生成と読み戻しの数 µs が消える）。

onnx パッケージを実行時依存に入れないため、protobuf のバイト列を直接書き換える。変えるのは
ZipMap のノード 1 つとグラフの出力の型 1 つだけで、ほかのフィールドは元のバイト列のまま写す。
書き換えたモデルが元のモデルと同じ答えを出すことは、読み込み時に `service.ml.loading` が確かめる。
"""

from __future__ import annotations

from service.ml.onnx_header import OnnxHeaderError, spans

# ModelProto・GraphProto・NodeProto・ValueInfoProto・TypeProto のフィールド番号（onnx.proto）
_MODEL_GRAPH = 7
_MODEL_OPSET_IMPORT = 8
_OPSET_DOMAIN = 1
_GRAPH_NODE = 1
_GRAPH_OUTPUT = 12
_NODE_INPUT = 1
_NODE_OUTPUT = 2
_NODE_NAME = 3
_NODE_OP_TYPE = 4
_NODE_DOMAIN = 7
_VALUE_NAME = 1
_VALUE_TYPE = 2
_TYPE_TENSOR = 1
_TENSOR_ELEM_TYPE = 1
_FLOAT = 1  # TensorProto.FLOAT


def _varint(value: int) -> bytes:
    """非負の整数を varint にする。"""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """長さ付きのフィールド（ワイヤ型 2）を 1 つ作る。"""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _strings(fields: list[tuple[int, int, int | bytes, bytes]], number: int) -> list[bytes]:
    """その番号の長さ付きフィールドの値をすべて返す。"""
    return [value for n, _wire, value, _raw in fields if n == number and isinstance(value, bytes)]


def _replace_node(node: bytes, output: bytes) -> bytes | None:
    """output を出す ZipMap のノードなら、同じ入出力の Identity のノードを返す（違えば None）。"""
    fields = spans(node)
    if _strings(fields, _NODE_OP_TYPE) != [b"ZipMap"] or _strings(fields, _NODE_DOMAIN) != [b"ai.onnx.ml"]:
        return None
    inputs, outputs = _strings(fields, _NODE_INPUT), _strings(fields, _NODE_OUTPUT)
    if outputs != [output] or len(inputs) != 1:
        return None
    names = _strings(fields, _NODE_NAME)
    return (
        _field(_NODE_INPUT, inputs[0])
        + _field(_NODE_OUTPUT, output)
        + b"".join(_field(_NODE_NAME, name) for name in names)
        + _field(_NODE_OP_TYPE, b"Identity")
    )


def _float_tensor_output(name: bytes) -> bytes:
    """名前 name の float のテンソルの出力（形は書かない: ONNX Runtime が推論する）。"""
    tensor_type = _varint(_TENSOR_ELEM_TYPE << 3) + _varint(_FLOAT)
    return _field(_VALUE_NAME, name) + _field(_VALUE_TYPE, _field(_TYPE_TENSOR, tensor_type))


def without_zipmap(model_bytes: bytes, output: str) -> bytes | None:
    """出力 output の ZipMap を Identity に置き換えたモデルのバイト列を返す。

    その出力を出す ZipMap が無い、標準の演算子セット（Identity を含む）を読み込んでいない、
    protobuf として読めない、のどれかなら None（呼び出し側は元のモデルのまま使う）。
    """
    target = output.encode()
    try:
        model = spans(model_bytes)
        domains = [
            next((v for n, _w, v, _r in spans(opset) if n == _OPSET_DOMAIN), b"")
            for opset in _strings(model, _MODEL_OPSET_IMPORT)
        ]
        if b"" not in domains and b"ai.onnx" not in domains:
            return None
        graphs = _strings(model, _MODEL_GRAPH)
        if len(graphs) != 1:
            return None
        replaced = outputs = 0
        parts: list[bytes] = []
        for number, _wire, value, raw in spans(graphs[0]):
            if number == _GRAPH_NODE and isinstance(value, bytes):
                node = _replace_node(value, target)
                if node is not None:
                    replaced += 1
                    raw = _field(_GRAPH_NODE, node)
            elif (
                number == _GRAPH_OUTPUT
                and isinstance(value, bytes)
                and _strings(spans(value), _VALUE_NAME) == [target]
            ):
                outputs += 1
                raw = _field(_GRAPH_OUTPUT, _float_tensor_output(target))
            parts.append(raw)
    except OnnxHeaderError:
        return None
    if replaced != 1 or outputs != 1:
        return None
    graph = _field(_MODEL_GRAPH, b"".join(parts))
    return b"".join(graph if number == _MODEL_GRAPH else raw for number, _wire, _value, raw in model)
