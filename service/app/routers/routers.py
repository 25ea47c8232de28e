"""API エンドポイント。

各エンドポイントの中身は「状態と本文のバイト列を受け取り (ステータス, JSON にする値) を返す」
同期関数（ハンドラ）として書き、`HANDLERS` 表にまとめる。FastAPI のルートはこの表のハンドラを
呼ぶだけで、OpenAPI のドキュメントと検証の形式（422）を担う。
推論と入力検証は `service.ml.prediction.Classifier` に任せ、ここでは HTTP の入出力だけを扱う。

同じ表を `ServiceMiddleware` の高速経路も使う（FAST_PATH=true、既定）。高速経路は FastAPI の
リクエストごとの処理（ルーティング・依存解決・例外ミドルウェア）を通らないため 2 倍以上速いが、
応答はルート経由とバイト単位で同じになる（テストで両方の経路を確かめる）。
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, ValidationError

from service import constants
from service.app.state import ServiceState

router = APIRouter()

# ハンドラ: (状態, 本文) -> (HTTP ステータス, JSON にする値)
Handler = Callable[[ServiceState, bytes], tuple[int, Any]]


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


class StatusResponse(BaseModel):
    """liveness / readiness の結果。"""

    status: str


class ErrorResponse(BaseModel):
    """エラー応答（400・408・413・500）。"""

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


class JSONBytes(Response):
    """orjson で作った JSON を返すレスポンス。"""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        """内容を orjson で JSON バイト列にする。"""
        return orjson.dumps(content)


# --- ハンドラ（高速経路と FastAPI のルートで共有） -----------------------------------------


def rows_from_body(body: bytes) -> list[list[float]]:
    """本文を pydantic の JSON パーサで直接検証して行を返す（Content-Type は問わない）。

    形が合わないときは FastAPI と同じ形式の 422 になる RequestValidationError を投げる。
    """
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


def _one_or_many(values: list[Any]) -> Any:
    """1 行なら要素そのもの、N 行ならリストを返す。"""
    return values[0] if len(values) == 1 else values


def health(_state: ServiceState, _body: bytes) -> tuple[int, Any]:
    """サーバーの健全性（プロセスが応答できれば ok）。"""
    return 200, {"health": "ok"}


def live(_state: ServiceState, _body: bytes) -> tuple[int, Any]:
    """liveness。イベントループが応答できれば 200。"""
    return 200, {"status": "alive"}


def ready(state: ServiceState, _body: bytes) -> tuple[int, Any]:
    """readiness。モデル読み込みと試し推論が済んでいれば 200、それ以外は 503。"""
    return (200, {"status": "ready"}) if state.ready else (503, {"status": "not ready"})


def metadata(state: ServiceState, _body: bytes) -> tuple[int, Any]:
    """入出力の型・形・サンプル（元実装と同じ項目）とモデルの情報。"""
    return 200, state.metadata


def label(state: ServiceState, _body: bytes) -> tuple[int, Any]:
    """クラスインデックスとラベル名の対応。"""
    return 200, state.classifier.labels


def predict_test(state: ServiceState, _body: bytes) -> tuple[int, Any]:
    """サンプル [[5.1, 3.5, 1.4, 0.2]] の確率。"""
    probabilities = state.classifier.predict_proba(constants.SAMPLE_DATA)
    state.metrics.observe_prediction("/predict/test", 1)
    return 200, {"prediction": probabilities[0]}


def predict_test_label(state: ServiceState, _body: bytes) -> tuple[int, Any]:
    """サンプル [[5.1, 3.5, 1.4, 0.2]] のラベル。"""
    labels = state.classifier.predict_label(constants.SAMPLE_DATA)
    state.metrics.observe_prediction("/predict/test/label", 1)
    return 200, {"prediction": labels[0]}


def predict(state: ServiceState, body: bytes) -> tuple[int, Any]:
    """行ごとのクラス確率（1 行なら [p0, p1, p2]、N 行なら [[...], ...]）。"""
    probabilities = state.classifier.predict_proba(rows_from_body(body))
    state.metrics.observe_prediction("/predict", len(probabilities))
    return 200, {"prediction": _one_or_many(probabilities)}


def predict_label(state: ServiceState, body: bytes) -> tuple[int, Any]:
    """行ごとのラベル名（1 行なら "setosa"、N 行ならリスト）。"""
    labels = state.classifier.predict_label(rows_from_body(body))
    state.metrics.observe_prediction("/predict/label", len(labels))
    return 200, {"prediction": _one_or_many(labels)}


# (メソッド, パス) -> ハンドラ。高速経路はこの表を引く
HANDLERS: dict[tuple[str, str], Handler] = {
    ("GET", "/health"): health,
    ("GET", "/health/live"): live,
    ("GET", "/health/ready"): ready,
    ("GET", "/metadata"): metadata,
    ("GET", "/label"): label,
    ("GET", "/predict/test"): predict_test,
    ("GET", "/predict/test/label"): predict_test_label,
    ("POST", "/predict"): predict,
    ("POST", "/predict/label"): predict_label,
}


# --- FastAPI のルート（ドキュメントと、FAST_PATH=false のときの経路） -------------------------


async def _respond(request: Request, handler: Handler) -> Response:
    """ハンドラを呼び、結果を JSON 応答にする。"""
    state: ServiceState = request.app.state.service
    body = await request.body() if request.method == "POST" else b""
    status, payload = handler(state, body)
    return JSONBytes(payload, status_code=status)


# どのルートでも起こりうる応答（本文の上限はミドルウェアがすべてのリクエストで確かめる）
_ALWAYS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorResponse, "description": "Request body larger than MAX_BODY_BYTES"},
    500: {"model": ErrorResponse, "description": "Internal error (details only in the server log)"},
}
# 本文を読むルートで起こりうる応答
_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ALWAYS,
    400: {"model": ErrorResponse, "description": "Rows that the model cannot take"},
    408: {"model": ErrorResponse, "description": "Body not received within BODY_TIMEOUT_SECONDS"},
    422: {"model": ValidationErrorResponse, "description": "Body does not match the schema"},
}
# 本文のスキーマは OpenAPI に載せる（検証は rows_from_body が行う）
_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": Data.model_json_schema()}},
    }
}


@router.get("/health", response_model=HealthResponse, responses=_ALWAYS, tags=["health"])
async def health_route(request: Request) -> Response:
    """サーバーの健全性（プロセスが応答できれば ok）。"""
    return await _respond(request, health)


@router.get("/health/live", response_model=StatusResponse, responses=_ALWAYS, tags=["health"])
async def live_route(request: Request) -> Response:
    """liveness プローブ。イベントループが応答できれば 200。"""
    return await _respond(request, live)


@router.get(
    "/health/ready",
    response_model=StatusResponse,
    tags=["health"],
    responses={**_ALWAYS, 503: {"model": StatusResponse, "description": "Model not loaded yet"}},
)
async def ready_route(request: Request) -> Response:
    """readiness プローブ。モデル読み込みと試し推論が済んでいれば 200、それ以外は 503。"""
    return await _respond(request, ready)


@router.get("/metadata", responses=_ALWAYS, tags=["model"])
async def metadata_route(request: Request) -> Response:
    """入出力の型・形・サンプル（元実装と同じ項目）と、モデルの情報を返す。"""
    return await _respond(request, metadata)


@router.get("/label", response_model=dict[str, str], responses=_ALWAYS, tags=["model"])
async def label_route(request: Request) -> Response:
    """クラスインデックスとラベル名の対応を返す。"""
    return await _respond(request, label)


@router.get("/predict/test", response_model=ProbabilityResponse, responses=_ALWAYS, tags=["predict"])
async def predict_test_route(request: Request) -> Response:
    """サンプル [[5.1, 3.5, 1.4, 0.2]] の確率を返す。"""
    return await _respond(request, predict_test)


@router.get("/predict/test/label", response_model=LabelResponse, responses=_ALWAYS, tags=["predict"])
async def predict_test_label_route(request: Request) -> Response:
    """サンプル [[5.1, 3.5, 1.4, 0.2]] のラベルを返す。"""
    return await _respond(request, predict_test_label)


@router.post(
    "/predict", response_model=ProbabilityResponse, responses=_ERRORS, tags=["predict"], openapi_extra=_BODY
)
async def predict_route(request: Request) -> Response:
    """行ごとのクラス確率を返す（1 行なら [p0, p1, p2]、N 行なら [[...], ...]）。"""
    return await _respond(request, predict)


@router.post(
    "/predict/label", response_model=LabelResponse, responses=_ERRORS, tags=["predict"], openapi_extra=_BODY
)
async def predict_label_route(request: Request) -> Response:
    """行ごとのラベル名を返す（1 行なら "setosa"、N 行ならリスト）。"""
    return await _respond(request, predict_label)


@router.get("/metrics", include_in_schema=False)
async def metrics_route(request: Request) -> Response:
    """Prometheus 形式のメトリクス。"""
    state: ServiceState = request.app.state.service
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
