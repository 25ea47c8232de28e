"""Open Inference Protocol（V2、REST）の推論リクエストの読み取りと応答の組み立て。

- 入力と出力はモデル自身のテンソル名と V2 のデータ型（FP32・FP64・INT64・BYTES など）を使う。
  ZipMap の出力は、クラスの順の FP32 テンソル `[N, C]` として返す。
- JSON のテンソル（`data` は平らでも入れ子でもよい、行優先）と、Triton のバイナリテンソル拡張
  （`Inference-Header-Content-Length` ヘッダ、`binary_data_size`・`binary_data`・
  `binary_data_output`）。`tritonclient.http` の既定（入力も出力もバイナリ）でそのまま使える。
- 誤りは `InvalidInputError`（400）で、どのテンソルの何がいけないかを 1 行で示す。

V2 の本文（テンソル）の読み書きだけを行う。パスのモデル名と版の確かめ・メトリクスは、これを呼ぶ
V2 のハンドラ（`service.app.handlers`）が行う。モデルのメタデータの本文（`model_metadata`）と、
1 行の答えの決まった部分（`one_row_json`）も、起動時にここで作る。
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

import numpy as np
import orjson

from service.app.replies import OCTET_STREAM, Reply, json_reply, reply
from service.ml.prediction import InvalidInputError, TabularModel, TensorSpec

HEADER_LENGTH = "inference-header-content-length"
# V2 のデータ型 -> 値の並び（リトルエンディアン）。BYTES は要素ごとに 4 バイトの長さ + 中身
_NUMPY_TYPES: dict[str, str] = {
    "FP32": "<f4",
    "FP64": "<f8",
    "INT64": "<i8",
    "INT32": "<i4",
    "BOOL": "|b1",
}


class InferRequest(NamedTuple):
    """読み取った推論リクエスト（1 リクエストに 1 つ作るので軽い NamedTuple）。"""

    id: str | None
    # 検証済みの入力: 配列、または値の少ない JSON（1 行など）は行のリスト（`TabularModel.small_rows`）
    batch: np.ndarray | list[list[float]]
    outputs: list[str]
    binary: list[bool]


def _describe(value: Any) -> str:
    """誤りのメッセージに出す値（長ければ切る）。"""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# Inference-Header-Content-Length の桁数の上限（本文の上限より十分大きく、int() の桁数の上限より十分小さい）
_LENGTH_DIGITS = 18


def header_length_value(header_length: str, body_length: int) -> int:
    """Inference-Header-Content-Length を読む: ASCII の数字だけの、本文の中の長さ（1 以上）。

    `str.isdigit()` は「²」や全角の数字も数字とみなし、`int()` はそれを読めずに落ちるので、ASCII に限る。
    桁数にも上限を置く（Python の `int()` は 4300 桁を超える文字列を断る）。0 は JSON のヘッダが空で、
    推論のリクエストにならないので断る。
    """
    if (
        not header_length.isascii()
        or not header_length.isdigit()
        or len(header_length) > _LENGTH_DIGITS
        or not 0 < int(header_length) <= body_length
    ):
        shown = header_length if len(header_length) <= 40 else header_length[:37] + "..."
        raise InvalidInputError(
            f"Inference-Header-Content-Length {shown!r} is not a length (ASCII digits, 1 or more) within "
            f"the body of {body_length} bytes"
        )
    return int(header_length)


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """本文を JSON のヘッダとバイナリの部分に分ける。"""
    if header_length is None:
        return body, b""
    length = header_length_value(header_length, len(body))
    return body[:length], body[length:]


def _rows_from_json(model: TabularModel, name: str, data: Any, rows: int) -> np.ndarray | list[list[float]]:
    """JSON の `data`（平ら、または形のとおりの行ごとの入れ子）を行に分けて検証する。

    入れ子なら、形 `[N, F]` のとおり N 個の行がそれぞれ F 個の数でなければならない（値の数が合っていても、
    `[[1, 2], [3, 4]]` は形 `[1, 4]` の入れ子ではない）。
    """
    width = model.width
    if not isinstance(data, list):
        raise InvalidInputError(f'input {name!r} needs "data" (a list of numbers) or binary data')
    if data and type(data[0]) is list:
        if any(type(row) is not list for row in data):
            raise InvalidInputError(f'input {name!r} mixes rows (lists) and single values in "data"')
        if len(data) != rows or any(len(row) != width for row in data):
            raise InvalidInputError(
                f'input {name!r} has "data" nested as {_nesting(data)}; shape [{rows}, {width}] needs '
                f"{rows} rows of {width} values (or all {rows * width} values in one flat list)"
            )
        flat = [value for row in data for value in row]
    else:
        flat = data
    for value in flat:
        kind = type(value)
        if kind is not float and kind is not int:
            raise InvalidInputError(f"input {name!r} has a value that is not a number: {_describe(value)}")
    if len(flat) != rows * width:
        raise InvalidInputError(
            f"input {name!r} has {len(flat)} values; shape [{rows}, {width}] needs {rows * width}"
        )
    if rows == 1:
        return model.small_rows([flat])
    return model.to_batch([flat[i : i + width] for i in range(0, len(flat), width)])


def _nesting(data: list[Any]) -> str:
    """入れ子の形の説明（`3 rows of 2, 2 and 4 values` など）。"""
    lengths = [len(row) for row in data[:5]]
    more = ", ..." if len(data) > 5 else ""
    return f"{len(data)} rows of {', '.join(map(str, lengths))}{more} values"


def _rows_from_binary(model: TabularModel, name: str, size: Any, binary: bytes, rows: int) -> np.ndarray:
    """バイナリの入力（`binary_data_size` バイト）を配列にして検証する。"""
    item = model.runtime.dtype(0).itemsize
    expected = rows * model.width * item
    if type(size) is not int or size != expected:
        raise InvalidInputError(
            f"input {name!r} has binary_data_size {_describe(size)}; shape [{rows}, {model.width}] of "
            f"{model.inputs[0].datatype} needs {expected} bytes"
        )
    if len(binary) != size:
        raise InvalidInputError(
            f"input {name!r} declares {size} bytes of binary data; "
            f"the body has {len(binary)} after the header"
        )
    dtype = np.dtype(model.runtime.dtype).newbyteorder("<")
    batch = np.frombuffer(binary, dtype=dtype).reshape(rows, model.width).astype(model.runtime.dtype)
    model.check_finite(batch)
    return batch


def parse_infer(model: TabularModel, body: bytes, header_length: str | None) -> InferRequest:
    """V2 の推論リクエスト（JSON、またはバイナリ拡張）を読み、検証済みの入力と求める出力を返す。"""
    header, binary = _split(body, header_length)
    try:
        request = orjson.loads(header)
    except orjson.JSONDecodeError as error:
        raise InvalidInputError(f"the inference request is not valid JSON ({error})") from None
    if not isinstance(request, dict):
        raise InvalidInputError("the inference request must be a JSON object")
    spec = model.inputs[0]
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InvalidInputError(f'the inference request needs "inputs": a list of one tensor, {spec.name!r}')
    tensor = inputs[0]
    name = tensor.get("name")
    if name != spec.name:
        raise InvalidInputError(f"unknown input {_describe(name)}; the model's input is {spec.name!r}")
    datatype = tensor.get("datatype")
    if datatype != spec.datatype:
        raise InvalidInputError(
            f"input {name!r} has datatype {_describe(datatype)}; the model expects {spec.datatype}"
        )
    shape = tensor.get("shape")
    dims = _dims(shape)
    if dims is None or len(dims) != 2 or dims[1] != model.width or dims[0] < 1:
        raise InvalidInputError(
            f"input {name!r} has shape {_describe(shape)}; the model expects [N, {model.width}] with N >= 1"
        )
    rows = dims[0]
    model.check_rows(rows)
    parameters = tensor.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise InvalidInputError(
            f"input {name!r} has parameters {_describe(parameters)}; they must be a JSON object"
        )
    size = parameters.get("binary_data_size") if parameters is not None else None
    if size is not None:
        batch: np.ndarray | list[list[float]] = _rows_from_binary(model, name, size, binary, rows)
    elif binary:
        raise InvalidInputError(f"the body has {len(binary)} bytes of binary data that no input declares")
    else:
        batch = _rows_from_json(model, name, tensor.get("data"), rows)
    outputs, binary_flags = _requested_outputs(model, request)
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInputError(f"the request id must be a string, got {_describe(request_id)}")
    return InferRequest(request_id, batch, outputs, binary_flags)


def _dims(shape: Any) -> list[int] | None:
    """形の次元（整数のリスト）。JSON Schema と同じく、`2.0` のような整数の値の数も整数とみなす。"""
    if type(shape) is not list:
        return None
    dims = []
    for dim in shape:
        if type(dim) is int:
            dims.append(dim)
        elif type(dim) is float and dim.is_integer():
            dims.append(int(dim))
        else:
            return None
    return dims


def _flag(parameters: Any, name: str) -> bool | None:
    """`parameters` の真偽値（無ければ None、真偽値でなければ 400）。"""
    if parameters is None:
        return None
    if not isinstance(parameters, dict):
        raise InvalidInputError(f"parameters must be a JSON object, got {_describe(parameters)}")
    value = parameters.get(name)
    if value is not None and not isinstance(value, bool):
        raise InvalidInputError(f"parameter {name} must be true or false, got {_describe(value)}")
    return value


def _requested_outputs(model: TabularModel, request: dict[str, Any]) -> tuple[list[str], list[bool]]:
    """求められた出力の名前と、それぞれをバイナリで返すか。指定が無ければすべての出力。"""
    default_binary = bool(_flag(request.get("parameters"), "binary_data_output"))
    requested = request.get("outputs")
    known = model.output_names
    if requested is None:
        return known, [default_binary] * len(known)
    if not isinstance(requested, list) or not all(isinstance(o, dict) for o in requested):
        raise InvalidInputError('"outputs" must be a list of objects with a "name"')
    if not requested:
        raise InvalidInputError(
            f'"outputs" is empty; name at least one of {", ".join(known)} (or leave it out)'
        )
    names: list[str] = []
    binary: list[bool] = []
    for output in requested:
        name = output.get("name")
        if name not in known:
            raise InvalidInputError(
                f"unknown output {_describe(name)}; the model's outputs are {', '.join(known)}"
            )
        flag = _flag(output.get("parameters"), "binary_data")
        names.append(name)
        binary.append(default_binary if flag is None else flag)
    return names, binary


def _encode(array: np.ndarray, datatype: str) -> bytes:
    """テンソルをバイナリテンソル拡張の並び（行優先、リトルエンディアン）にする。"""
    if datatype == "BYTES":
        parts = []
        for value in array.ravel().tolist():
            raw = value if isinstance(value, bytes) else str(value).encode()
            parts.append(struct.pack("<I", len(raw)))
            parts.append(raw)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=_NUMPY_TYPES[datatype]).tobytes()


class OneRowJson:
    """1 行の V2 の JSON の答えのうち、決まった部分（モデル名・版・出力の名前・型・形）を前もって
    バイト列にしたもの（結び付けた出力の組ごとに起動時に 1 つ）。

    答えるときは値だけを orjson で書いて継ぎ合わせる（辞書を作って全体を書くより速い）。できるのは
    `orjson.dumps` で応答の辞書を書いたのと同じバイト列（テストで確かめる）。
    """

    __slots__ = ("close", "head", "opens")

    def __init__(self, model: TabularModel, names: tuple[str, ...], shapes: list[list[int]]) -> None:
        """モデルと出力の名前の組、各出力の形（1 行のとき）から決まった部分を作る。"""
        head = orjson.dumps({"model_name": model.info.name, "model_version": model.info.version})
        self.head = head[:-1] + b","
        opens: list[bytes] = []
        for index, (name, shape) in enumerate(zip(names, shapes, strict=True)):
            entry = orjson.dumps({"name": name, "datatype": model.output_datatypes[name], "shape": shape})
            opens.append((b'"outputs":[' if index == 0 else b"},") + entry[:-1] + b',"data":')
        self.opens = opens
        self.close = b"}]}"

    def render(self, request_id: str | None, values: list[list[Any]]) -> bytes:
        """出力ごとの平らな値から応答の本文を作る。"""
        parts = [self.head]
        if request_id is not None:
            parts.append(b'"id":' + orjson.dumps(request_id) + b",")
        for opening, value in zip(self.opens, values, strict=True):
            parts.append(opening)
            parts.append(orjson.dumps(value))
        parts.append(self.close)
        return b"".join(parts)


def one_row_json(model: TabularModel) -> dict[tuple[str, ...], OneRowJson]:
    """結び付けた出力の組ごとの `OneRowJson`（起動時に 1 度作る）。"""
    return {names: OneRowJson(model, names, bound.shapes) for names, bound in model.bound.items()}


def answer_infer(
    model: TabularModel, request: InferRequest, one_row: dict[tuple[str, ...], OneRowJson]
) -> Reply:
    """読み取ったリクエストで推論し、V2 の応答を返す。

    1 行で、求める出力がすべて JSON で、その組が結び付けてあれば（one_row にあれば）、結び付けた
    出力の値をそのまま JSON に継ぎ合わせる（`infer_values` と `OneRowJson`）。それ以外は `infer` の
    結果を `render_infer` で。どちらも同じバイト列になる。
    """
    if not any(request.binary):
        names = tuple(request.outputs)
        template = one_row.get(names)
        if template is not None:
            values = model.infer_values(request.batch, names)
            if values is not None:
                return reply(200, template.render(request.id, values))
    return render_infer(model, request, model.infer(request.batch, request.outputs))


def _payload(model: TabularModel, request: InferRequest, outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """V2 の推論の応答の本体（モデル名・版・id・出力）。"""
    payload: dict[str, Any] = {"model_name": model.info.name, "model_version": model.info.version}
    if request.id is not None:
        payload["id"] = request.id
    payload["outputs"] = outputs
    return payload


def render_infer(model: TabularModel, request: InferRequest, results: list[Any]) -> Reply:
    """推論の結果を V2 の応答にする（バイナリを求める出力があればバイナリテンソル拡張で）。"""
    datatypes = model.output_datatypes
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, result, binary in zip(request.outputs, results, request.binary, strict=True):
        datatype = datatypes[name]
        if binary:
            array = model.as_array(name, result)
            raw = _encode(array, datatype)
            entry = {
                "name": name,
                "datatype": datatype,
                "shape": list(array.shape),
                "parameters": {"binary_data_size": len(raw)},
            }
            chunks.append(raw)
        else:
            shape, values = model.as_values(name, result)
            if datatype == "BYTES":
                values = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]
            entry = {"name": name, "datatype": datatype, "shape": shape, "data": values}
        outputs.append(entry)
    payload = _payload(model, request, outputs)
    if not chunks:
        return json_reply(200, payload)
    header = orjson.dumps(payload)
    return reply(
        200,
        header + b"".join(chunks),
        OCTET_STREAM,
        [(HEADER_LENGTH.encode(), str(len(header)).encode())],
    )


def model_metadata(model: TabularModel) -> dict[str, Any]:
    """V2 のモデルのメタデータ。"""
    return {
        "name": model.info.name,
        "versions": [model.info.version],
        "platform": "onnxruntime_onnx",
        "inputs": [_tensor(spec) for spec in model.inputs],
        "outputs": [_tensor(spec) for spec in model.outputs],
    }


def _tensor(spec: TensorSpec) -> dict[str, Any]:
    """テンソルのメタデータ 1 つ。"""
    return {"name": spec.name, "datatype": spec.datatype, "shape": spec.shape}
