"""API エンドポイント。

ルータは HTTP の入出力だけを担い、推論は `service.ml.prediction.Classifier` に任せる。
推論系のエンドポイントは orjson でシリアライズした Response を直接返し、
FastAPI のレスポンス検証を省いて 1 リクエストあたりのオーバーヘッドを抑える。
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, ValidationError

from service import constants
from service.app.state import ServiceState

router = APIRouter()


class Data(BaseModel):
    """推論の入力。`data` は特徴量の 2 次元配列（N 行 × 特徴量数）。"""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"data": [list(row) for row in constants.SAMPLE_DATA]}]},
    )

    data: list[list[StrictFloat]] = Field(
        description="Rows of features, one list of numbers per sample (Iris: 4 features).",
    )


class ProbabilityResponse(BaseModel):
    """確率の推論結果。1 行なら確率のリスト、N 行なら行ごとのリストのリスト。"""

    prediction: list[float] | list[list[float]]


class LabelResponse(BaseModel):
    """ラベルの推論結果。1 行ならラベル名、N 行ならラベル名のリスト。"""

    prediction: str | list[str]


class HealthResponse(BaseModel):
    """ヘルスチェックの結果。"""

    health: str


class ErrorResponse(BaseModel):
    """エラー応答（400・413・500）。"""

    detail: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Rows that the model cannot take"},
    413: {"model": ErrorResponse, "description": "Request body too large"},
}


class JSONBytes(Response):
    """orjson で作った JSON を返すレスポンス。"""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        """内容を orjson で JSON バイト列にする。"""
        return orjson.dumps(content)


def _state(request: Request) -> ServiceState:
    """アプリの状態（読み込み済みの Classifier など）を返す。"""
    state: ServiceState = request.app.state.service
    return state


@router.get("/health", response_model=HealthResponse, tags=["health"])
async def health() -> Response:
    """サーバーの健全性（プロセスが応答できれば ok）。"""
    return JSONBytes({"health": "ok"})


@router.get("/health/live", tags=["health"])
async def live() -> Response:
    """liveness プローブ。イベントループが応答できれば 200。"""
    return JSONBytes({"status": "alive"})


@router.get("/health/ready", tags=["health"], responses={503: {"description": "Not ready"}})
async def ready(request: Request) -> Response:
    """readiness プローブ。モデル読み込みと試し推論が済んでいれば 200、それ以外は 503。"""
    if _state(request).ready:
        return JSONBytes({"status": "ready"})
    return JSONBytes({"status": "not ready"}, status_code=503)


@router.get("/metadata", tags=["model"])
async def metadata(request: Request) -> Response:
    """入出力の型・形・サンプル（元実装と同じ項目）と、モデルの情報を返す。"""
    return JSONBytes(_state(request).metadata)


@router.get("/label", tags=["model"])
async def label(request: Request) -> Response:
    """クラスインデックスとラベル名の対応を返す。"""
    return JSONBytes(_state(request).classifier.labels)


@router.get("/predict/test", response_model=ProbabilityResponse, tags=["predict"])
async def predict_test(request: Request) -> Response:
    """サンプル [[5.1, 3.5, 1.4, 0.2]] の確率を返す。"""
    state = _state(request)
    probabilities = state.classifier.predict_proba(constants.SAMPLE_DATA)
    state.metrics.observe_prediction("/predict/test", 1)
    return JSONBytes({"prediction": probabilities[0]})


@router.get("/predict/test/label", response_model=LabelResponse, tags=["predict"])
async def predict_test_label(request: Request) -> Response:
    """サンプル [[5.1, 3.5, 1.4, 0.2]] のラベルを返す。"""
    state = _state(request)
    labels = state.classifier.predict_label(constants.SAMPLE_DATA)
    state.metrics.observe_prediction("/predict/test/label", 1)
    return JSONBytes({"prediction": labels[0]})


async def _read_rows(request: Request) -> list[list[float]]:
    """ボディを pydantic の JSON パーサで直接検証して行を返す。

    FastAPI の汎用のボディ処理（json.loads + 依存解決）を通さず、Content-Type も問わない。
    形が合わないときは FastAPI と同じ形式の 422 になる RequestValidationError を投げる。
    """
    body = await request.body()
    try:
        return Data.model_validate_json(body).data
    except ValidationError as error:
        errors = []
        for item in error.errors(include_url=False):
            entry = {"type": item["type"], "loc": ("body", *item["loc"]), "msg": item["msg"]}
            if item["type"] != "json_invalid":
                # 壊れた JSON 全体は送り返さない（最大 1 MiB になりうるため）
                entry["input"] = item.get("input")
            errors.append(entry)
        raise RequestValidationError(errors) from None


# 本文のスキーマは OpenAPI に載せる（検証は _read_rows が行う）
_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": Data.model_json_schema()}},
    }
}


@router.post(
    "/predict",
    response_model=ProbabilityResponse,
    responses=_ERRORS,
    tags=["predict"],
    openapi_extra=_BODY,
)
async def predict(request: Request) -> Response:
    """行ごとのクラス確率を返す（1 行なら [p0, p1, p2]、N 行なら [[...], ...]）。"""
    state = _state(request)
    probabilities = state.classifier.predict_proba(await _read_rows(request))
    state.metrics.observe_prediction("/predict", len(probabilities))
    result = probabilities[0] if len(probabilities) == 1 else probabilities
    return JSONBytes({"prediction": result})


@router.post(
    "/predict/label",
    response_model=LabelResponse,
    responses=_ERRORS,
    tags=["predict"],
    openapi_extra=_BODY,
)
async def predict_label(request: Request) -> Response:
    """行ごとのラベル名を返す（1 行なら "setosa"、N 行ならリスト）。"""
    state = _state(request)
    labels = state.classifier.predict_label(await _read_rows(request))
    state.metrics.observe_prediction("/predict/label", len(labels))
    return JSONBytes({"prediction": labels[0] if len(labels) == 1 else labels})


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus 形式のメトリクス。"""
    return Response(
        generate_latest(_state(request).metrics.registry),
        media_type=CONTENT_TYPE_LATEST,
    )
