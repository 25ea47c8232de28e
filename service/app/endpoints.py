"""API エンドポイント: 1 つの表（`ENDPOINTS`）に、エンドポイントごとに 1 度だけ定義する。

各エンドポイントは「メソッド・パス・ハンドラ・リクエストとレスポンスのスキーマ・起こりうるエラーコード」
の 1 行で、この表から次の 2 つを作る。
- FastAPI のルート（`service.app.fastapi_app.add_routes`）: OpenAPI のドキュメントと、FAST_PATH=false の
  ときの経路。FastAPI の import は重い（0.5 CPU で約 0.5 s）ので、このモジュールは FastAPI を import しない。
  FastAPI のアプリは最初に要るとき（/docs・/openapi.json・表に無いパスやメソッド）、FAST_PATH=false なら
  起動時に作る（`service.app.app`）。
- 高速経路の表（`fast_routes`）: ミドルウェアが FastAPI を通さずに呼ぶ (メソッド, パス) の辞書。

どちらの経路も `respond()` でハンドラを呼び、例外は `service.app.errors.error_reply()` だけが
ステータスと本文に変えるので、応答はバイト単位で同じになる（テストで確かめる）。
ハンドラ（`service.app.handlers`）は HTTP の入出力だけを扱い、推論と入力の検証は `TabularModel` に任せる。
表の各行が挙げるスキーマは `service.app.schemas` の pydantic のモデル。

API は 2 つ: 仕様書の簡易 API（`/predict` など、エラーは `{"detail": ...}`）と、
Open Inference Protocol（V2、`/v2/...`、エラーは `{"error": "..."}`）。
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from service.app import handlers
from service.app.errors import MAPPED_ERRORS, Protocol, error_reply, protocol_of
from service.app.handlers import Call, Handler
from service.app.replies import Reply
from service.app.schemas import (
    Data,
    HealthResponse,
    LabelResponse,
    ProbabilityResponse,
    StatusResponse,
    V2InferenceRequest,
    V2InferenceResponse,
    V2Live,
    V2ModelMetadata,
    V2ModelReady,
    V2Ready,
    V2ServerMetadata,
)
from service.app.state import FastRoute, ServiceState
from service.logs import request_id_var

logger = logging.getLogger("service.access")


# --- エンドポイントの表 --------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """1 つのエンドポイントの定義（これだけから FastAPI のルートと高速経路を作る）。"""

    method: str
    path: str
    handler: Handler
    summary: str
    response_model: Any
    errors: tuple[int, ...] = ()
    request_body: type[BaseModel] | None = None
    tags: tuple[str, ...] = ()
    # 200 以外の決まった応答（503 の readiness など）: ステータス -> (スキーマ, 説明)
    other: tuple[tuple[int, Any, str], ...] = ()
    # OpenAPI のドキュメントに載せるか（/metrics は載せない）
    documented: bool = True

    @property
    def protocol(self) -> Protocol:
        """エラーの本文の形（`/v2` の下は V2）。"""
        return protocol_of(self.path)

    @property
    def reads_body(self) -> bool:
        """本文を読むか（POST）。"""
        return self.method == "POST"


# どのルートでも起こりうる（本文の上限はミドルウェアがすべてのリクエストで確かめる）
_ALWAYS = (413, 500)
# 本文を読む簡易 API のルート
_BODY = (400, 408, 413, 422, 500)
_V2_BODY = (400, 404, 408, 413, 500)
_V2_MODEL = (404, 413, 500)
_LABELS = (404, 413, 500)


def _v2_model_forms(
    suffix: str,
    method: str,
    handler: Handler,
    summary: str,
    model: Any,
    errors: tuple[int, ...],
    **extra: Any,
) -> list[Endpoint]:
    """V2 のモデルの操作の 2 つの形（版なしと `/versions/{version}` 付き）。"""
    return [
        Endpoint(
            method, f"/v2/models/{{name}}{suffix}", handler, summary, model, errors, tags=("v2",), **extra
        ),
        Endpoint(
            method,
            f"/v2/models/{{name}}/versions/{{version}}{suffix}",
            handler,
            f"{summary} (a given version)",
            model,
            errors,
            tags=("v2",),
            **extra,
        ),
    ]


_NOT_READY = ((503, StatusResponse, "Model not loaded yet"),)
_V2_NOT_READY_SERVER = ((503, V2Ready, "Model not loaded yet"),)
_V2_NOT_READY_MODEL = ((503, V2ModelReady, "Model not loaded yet"),)

ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "GET",
        "/health",
        handlers.health,
        "Server health (ok when the process answers)",
        HealthResponse,
        _ALWAYS,
        tags=("health",),
    ),
    Endpoint(
        "GET",
        "/health/live",
        handlers.live,
        "Liveness probe",
        StatusResponse,
        _ALWAYS,
        tags=("health",),
    ),
    Endpoint(
        "GET",
        "/health/ready",
        handlers.ready,
        "Readiness probe: 200 after the model is loaded and tried",
        StatusResponse,
        _ALWAYS,
        tags=("health",),
        other=_NOT_READY,
    ),
    Endpoint(
        "GET",
        "/metadata",
        handlers.metadata,
        "Input and output types, shapes, the sample and the model's facts",
        dict[str, Any],
        _ALWAYS,
        tags=("model",),
    ),
    Endpoint(
        "GET",
        "/label",
        handlers.label,
        "Class index -> label name (404 for a regressor)",
        dict[str, str],
        _LABELS,
        tags=("model",),
    ),
    Endpoint(
        "GET",
        "/predict/test",
        handlers.predict_test,
        "Answer for the sample row",
        ProbabilityResponse,
        _ALWAYS,
        tags=("predict",),
    ),
    Endpoint(
        "GET",
        "/predict/test/label",
        handlers.predict_test_label,
        "Label for the sample row (404 for a regressor)",
        LabelResponse,
        _LABELS,
        tags=("predict",),
    ),
    Endpoint(
        "POST",
        "/predict",
        handlers.predict,
        "Answer per row: class probabilities, or a regressor's output values",
        ProbabilityResponse,
        _BODY,
        Data,
        ("predict",),
    ),
    Endpoint(
        "POST",
        "/predict/label",
        handlers.predict_label,
        "Label per row (404 for a regressor)",
        LabelResponse,
        (*_BODY, 404),
        Data,
        ("predict",),
    ),
    Endpoint(
        "GET",
        "/v2",
        handlers.v2_server,
        "Open Inference Protocol: server metadata",
        V2ServerMetadata,
        _ALWAYS,
        tags=("v2",),
    ),
    Endpoint(
        "GET",
        "/v2/health/live",
        handlers.v2_live,
        "Open Inference Protocol: server live",
        V2Live,
        _ALWAYS,
        tags=("v2",),
    ),
    Endpoint(
        "GET",
        "/v2/health/ready",
        handlers.v2_ready,
        "Open Inference Protocol: server ready",
        V2Ready,
        _ALWAYS,
        tags=("v2",),
        other=_V2_NOT_READY_SERVER,
    ),
    *_v2_model_forms(
        "",
        "GET",
        handlers.v2_model_metadata,
        "Open Inference Protocol: model metadata",
        V2ModelMetadata,
        _V2_MODEL,
    ),
    *_v2_model_forms(
        "/ready",
        "GET",
        handlers.v2_model_ready,
        "Open Inference Protocol: model ready",
        V2ModelReady,
        _V2_MODEL,
        other=_V2_NOT_READY_MODEL,
    ),
    *_v2_model_forms(
        "/infer",
        "POST",
        handlers.v2_infer,
        "Open Inference Protocol: inference (JSON or binary tensors)",
        V2InferenceResponse,
        _V2_BODY,
        request_body=V2InferenceRequest,
    ),
    Endpoint(
        "GET",
        "/metrics",
        handlers.metrics,
        "Prometheus metrics",
        None,
        _ALWAYS,
        tags=("health",),
        documented=False,
    ),
]


def respond(
    endpoint: Endpoint,
    state: ServiceState,
    call: Call,
    body: bytes,
    header_length: str | None,
    request_id: bytes,
) -> Reply:
    """ハンドラを呼び、例外をそのエンドポイントの形のエラー応答にする（高速経路とルートで共通）。

    想定外の例外はスタックトレースをログにだけ出し、500 にする。リクエスト ID はそのログのため。
    """
    try:
        return endpoint.handler(state, call, body, header_length)
    except MAPPED_ERRORS as error:
        return error_reply(error, endpoint.protocol)
    except Exception as error:  # noqa: BLE001  想定外の例外はログに出して 500
        token = request_id_var.set(request_id.decode("latin-1"))
        try:
            logger.exception("unhandled error in %s %s", endpoint.method, call.route)
        finally:
            request_id_var.reset(token)
        return error_reply(error, endpoint.protocol)


# --- 表から作るもの: 高速経路（FastAPI のルートは fastapi_app.py） -----------------------------------


def fast_routes(state: ServiceState) -> dict[tuple[str, str], FastRoute]:
    """高速経路の表を作る（モデルを読み込んだ後。パスの {name}・{version} は配信中のモデルのもの）。

    答える関数は `respond` に (エンドポイント, 状態, 入力) を partial で結んだもの（C の呼び出しで、
    リクエストごとに Python の関数を 1 段増やさない）。
    """
    info = state.model.info
    table: dict[tuple[str, str], FastRoute] = {}
    for endpoint in ENDPOINTS:
        concrete = endpoint.path.format(name=info.name, version=info.version)
        version = info.version if "{version}" in endpoint.path else None
        call = Call(info.name, version, endpoint.path)
        for method in methods_of(endpoint):
            table[(method, concrete)] = FastRoute(
                answer=functools.partial(respond, endpoint, state, call),
                stats=state.metrics.route(method, endpoint.path),
                protocol=endpoint.protocol,
                reads_body=endpoint.reads_body,
            )
    return table


def methods_of(endpoint: Endpoint) -> tuple[str, ...]:
    """そのエンドポイントが答えるメソッド: GET は HEAD にも答える（RFC 9110 9.3.2: 同じヘッダで本文なし。
    本文は uvicorn が HEAD の応答から外す）。"""
    return ("GET", "HEAD") if endpoint.method == "GET" else (endpoint.method,)
