"""OpenAPI の文書を、配信しているモデルに合わせて正確にする: 文書が受け付けるものは、サーバーも受け付ける。

FastAPI が pydantic のモデル（`service.app.schemas`）から作る文書は、どのモデルにも当てはまる緩い形
（任意の長さの行、任意の形）で、しかも V2 の本文は `#/$defs/...` を指す壊れた参照を持っていた。
ここでは、読み込んだモデルの事実（入力の名前・型・特徴量の数・出力の名前・1 リクエストの最大行数、
モデルの名前と版）から、リクエストの部分を書き直す:

- 簡易 API の本文 `{"data": [[...], ...]}`: 1〜最大行数の行で、各行はちょうど特徴量の数の数。数はモデルの
  入力の型に収まる有限の値（float32 なら ±3.4028235677973366e38 未満。これ以上は float32 で無限大になる）。
- V2 の推論の本文: 入力テンソル 1 つ（名前・データ型はモデルのもの、形 `[N, F]`）。`data` は N × F 個の平らな
  リストか、形のとおり N 行 × F 個の入れ子。形と `data` の数の関係は JSON Schema の算術では書けないので、
  N ごとの組を並べる（`anyOf`）。`id` は文字列、`parameters` はオブジェクト（どれも null は省略と同じ）。
  出力の名前はモデルの出力のどれか。バイナリテンソル拡張（`Inference-Header-Content-Length`）は本文の
  長さに依る値なので形式のパラメータにせず、説明に書く（検証は `service.app.v2_codec`）。
- パスの `{name}`・`{version}`: 配信しているモデルの名前と版だけ（ほかは 404）。
- 回帰器にはラベルが無いので、ラベルの操作（`/label`・`/predict/test/label`・`/predict/label`）は載せない
  （サーバーはそこに 404 を返す）。分類器のラベルの操作には 404 を載せない。
- 参照はすべて `#/components/schemas/...` に置く（文書の中で解決できる）。

検証そのものはここではしない（ハンドラと `TabularModel`）。文書とサーバーが食い違わないことは、
tests/integration/test_openapi_contract.py が OpenAPI の検証器と、文書から要求を作る道具（Schemathesis）の
すべての確かめで確かめる。
"""

from __future__ import annotations

import copy
from typing import Any

from service.ml.prediction import FLOAT32_LIMIT, TabularModel

# float64 の入力の上限（JSON の数はこれを超えると無限大になる）
FLOAT64_MAX = 1.7976931348623157e308
_REF = "#/components/schemas/"

# FastAPI が作る文書の、書き直すリクエスト本文の操作（パス -> メソッド）
SIMPLE_BODY_PATHS = ("/predict", "/predict/label")
LABEL_PATHS = ("/label", "/predict/test/label", "/predict/label")
V2_INFER_PATHS = ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer")

BINARY_EXTENSION = (
    "Besides JSON tensors, the body may use the binary tensor extension (as tritonclient.http sends it): "
    "the JSON header first, then the raw tensor bytes, with the header's length in bytes in the "
    "`Inference-Header-Content-Length` request header (ASCII digits, 1 or more, at most the body's length) "
    "and `parameters.binary_data_size` on the input. Outputs asked with `binary_data` come back the same "
    "way (`application/octet-stream`, the JSON header's length in the `Inference-Header-Content-Length` "
    "response header)."
)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """null も省略と同じに受け付ける値（サーバーは `None` を無いものとして読む）。"""
    return {"anyOf": [schema, {"type": "null"}]}


def value_schema(model: TabularModel) -> dict[str, Any]:
    """入力の値 1 つ: モデルの型に収まる有限の数。"""
    if model.inputs[0].datatype == "FP32":
        return {"type": "number", "exclusiveMinimum": -FLOAT32_LIMIT, "exclusiveMaximum": FLOAT32_LIMIT}
    return {"type": "number", "minimum": -FLOAT64_MAX, "maximum": FLOAT64_MAX}


def components(model: TabularModel) -> dict[str, dict[str, Any]]:
    """書き直したリクエストが使う部品。"""
    width, rows, spec = model.width, model.max_batch_rows, model.inputs[0]
    row = {"type": "array", "items": _ref("InputValue"), "minItems": width, "maxItems": width}
    flag = _nullable({"type": "boolean"})
    per_rows = [
        {
            "properties": {
                "shape": {"const": [count, width]},
                "data": {
                    "anyOf": [
                        {"type": "array", "items": _ref("InputValue"), "minItems": count * width,
                         "maxItems": count * width},
                        {"type": "array", "items": _ref("InputRow"), "minItems": count, "maxItems": count},
                    ]
                },
            }
        }
        for count in range(1, rows + 1)
    ]  # fmt: skip
    return {
        "InputValue": value_schema(model),
        "InputRow": {**row, "description": f"One row: exactly {width} feature values."},
        "PredictRequest": {
            "type": "object",
            "required": ["data"],
            "properties": {
                "data": {
                    "type": "array",
                    "items": _ref("InputRow"),
                    "minItems": 1,
                    "maxItems": rows,
                    "description": f"1 to {rows} rows of {width} features each.",
                }
            },
            "examples": [{"data": [model.info.sample]}],
        },
        "V2InferInput": {
            "type": "object",
            "required": ["name", "shape", "datatype", "data"],
            "properties": {
                "name": {"const": spec.name},
                "datatype": {"const": spec.datatype},
                "shape": {
                    "type": "array",
                    "prefixItems": [{"type": "integer", "minimum": 1, "maximum": rows}, {"const": width}],
                    "minItems": 2,
                    "maxItems": 2,
                },
                "parameters": _nullable(
                    {"type": "object", "properties": {"binary_data_size": {"type": "null"}}}
                ),
                "data": {
                    "type": "array",
                    "description": "Row-major: flat, or nested exactly as `shape` says.",
                },
            },
            "anyOf": per_rows,
        },
        "V2InferOutput": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"enum": list(model.output_names)},
                "parameters": _nullable({"type": "object", "properties": {"binary_data": flag}}),
            },
        },
        "V2InferRequest": {
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "id": _nullable({"type": "string"}),
                "parameters": _nullable({"type": "object", "properties": {"binary_data_output": flag}}),
                "inputs": {"type": "array", "items": _ref("V2InferInput"), "minItems": 1, "maxItems": 1},
                "outputs": _nullable({"type": "array", "items": _ref("V2InferOutput"), "minItems": 1}),
            },
            "examples": [
                {
                    "id": "1",
                    "inputs": [
                        {
                            "name": spec.name,
                            "shape": [1, width],
                            "datatype": spec.datatype,
                            "data": model.info.sample,
                        }
                    ],
                }
            ],
        },
    }


def _json_body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(schema)}}}


def exact_document(document: dict[str, Any], model: TabularModel) -> dict[str, Any]:
    """FastAPI が作った文書を、モデルに合わせて書き直した写しを返す。"""
    document = copy.deepcopy(document)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(components(model))
    info = model.info
    for path in LABEL_PATHS:
        if model.task == "regression":
            document.get("paths", {}).pop(path, None)
        else:
            # 分類器のラベルの操作は 404（回帰器にはラベルが無い）を返さない
            for operation in document.get("paths", {}).get(path, {}).values():
                operation.get("responses", {}).pop("404", None)
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters") or []:
                if parameter.get("in") == "path" and parameter.get("name") == "name":
                    parameter["schema"] = {"type": "string", "enum": [info.name]}
                elif parameter.get("in") == "path" and parameter.get("name") == "version":
                    parameter["schema"] = {"type": "string", "enum": [info.version]}
            if path in SIMPLE_BODY_PATHS and method == "post":
                operation["requestBody"] = _json_body("PredictRequest")
            elif path in V2_INFER_PATHS and method == "post":
                operation["requestBody"] = _json_body("V2InferRequest")
                operation["description"] = BINARY_EXTENSION
                content = operation["responses"]["200"].setdefault("content", {})
                content["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
    return document
