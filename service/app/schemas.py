"""OpenAPI のドキュメントに載せるリクエストとレスポンスのスキーマ（pydantic のモデル）。

エンドポイントの表（`service.app.endpoints.ENDPOINTS`）が各行のスキーマとしてここのモデルを挙げ、
FastAPI のアプリ（`service.app.fastapi_app`）がそれを /openapi.json に載せる。本文の検証はここでは
しない: 簡易 API は `service.app.handlers.rows_from_body`（よくある本文を外れたときだけ `Data` で
検証し直す）、V2 は `service.app.v2_codec.parse_infer` が行う。
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat


class Data(BaseModel):
    """推論の入力。`data` は特徴量の 2 次元配列（N 行 × 特徴量数）。"""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"data": [[5.1, 3.5, 1.4, 0.2]]}]},
    )

    data: list[list[StrictFloat]] = Field(
        description="Rows of features, one list of numbers per sample (as many as the model's width).",
    )


class ProbabilityResponse(BaseModel):
    """推論結果。1 行なら答えのリスト（分類はクラスごとの確率、回帰は出力の値）、N 行ならリストのリスト。

    モデルが無限大や NaN を計算した値（float32 の端の入力で積があふれる回帰器など）は、JSON に書けないので
    null になる。
    """

    prediction: list[float | None] | list[list[float | None]] = Field(
        description="Answers per row; a value the model computes as infinite or NaN is null."
    )


class LabelResponse(BaseModel):
    """ラベルの推論結果。1 行ならラベル名、N 行ならラベル名のリスト。"""

    prediction: str | list[str]


class HealthResponse(BaseModel):
    """ヘルスチェックの結果。"""

    health: str


class StatusResponse(BaseModel):
    """liveness / readiness の結果。"""

    status: str


class ErrorResponse(BaseModel):
    """エラー応答（400・404・408・413・500）。"""

    detail: str


class ValidationErrorItem(BaseModel):
    """本文がスキーマに合わない箇所 1 つ（FastAPI の 422 と同じ項目）。"""

    type: str
    loc: list[str | int]
    msg: str
    input: Any = Field(default=None, description="The offending value (absent for malformed JSON).")


class ValidationErrorResponse(BaseModel):
    """422 の応答: スキーマに合わない箇所のリスト。"""

    detail: list[ValidationErrorItem]


class V2Error(BaseModel):
    """V2 のエラー応答。"""

    error: str


class V2Live(BaseModel):
    """V2 のサーバーの liveness。"""

    live: bool


class V2Ready(BaseModel):
    """V2 のサーバーの readiness。"""

    ready: bool


class V2ModelReady(BaseModel):
    """V2 のモデルの readiness。"""

    name: str
    ready: bool


class V2ServerMetadata(BaseModel):
    """V2 のサーバーのメタデータ。"""

    name: str
    version: str
    extensions: list[str]


class V2TensorMetadata(BaseModel):
    """V2 のテンソルのメタデータ（-1 は任意の長さ）。"""

    name: str
    datatype: str
    shape: list[int]


class V2ModelMetadata(BaseModel):
    """V2 のモデルのメタデータ。"""

    name: str
    versions: list[str]
    platform: str
    inputs: list[V2TensorMetadata]
    outputs: list[V2TensorMetadata]


class V2RequestInput(BaseModel):
    """V2 の入力テンソル。`data` は行優先（平らでも入れ子でもよい）、バイナリなら binary_data_size。"""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class V2RequestOutput(BaseModel):
    """V2 で求める出力（parameters.binary_data でバイナリ）。"""

    name: str
    parameters: dict[str, Any] | None = None


class V2InferenceRequest(BaseModel):
    """V2 の推論リクエスト。"""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "1",
                    "inputs": [
                        {
                            "name": "float_input",
                            "shape": [1, 4],
                            "datatype": "FP32",
                            "data": [5.1, 3.5, 1.4, 0.2],
                        }
                    ],
                }
            ]
        },
    )

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[V2RequestInput]
    outputs: list[V2RequestOutput] | None = None


class V2ResponseOutput(BaseModel):
    """V2 の出力テンソル（バイナリなら data の代わりに parameters.binary_data_size）。"""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class V2InferenceResponse(BaseModel):
    """V2 の推論の応答。"""

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[V2ResponseOutput]
