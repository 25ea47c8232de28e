"""FastAPI のアプリの組み立て: エンドポイントの表（`service.app.endpoints.ENDPOINTS`）から作るルート。

OpenAPI のドキュメント（/docs・/openapi.json）と、FAST_PATH=false のときの経路。FastAPI を import するのは
このモジュールだけで、FastAPI のアプリは最初に要るときに作る（`service.app.app.ServiceApp.framework`）。
ハンドラの呼び出しとエラーの形は高速経路と同じ `respond()` なので、応答はバイト単位で同じになる。
OpenAPI に載せるエラーのスキーマは `service.app.schemas` のもの。表に無いパスやメソッド（404・405）も、
ここの `_routing_error` がパスのプロトコルのエラーの形で答える。
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from starlette.exceptions import HTTPException

from service import constants
from service.app import v2_codec
from service.app.endpoints import ENDPOINTS, Endpoint, methods_of, respond
from service.app.errors import ServiceError, error_reply, message_reply, protocol_of
from service.app.handlers import Call
from service.app.openapi import exact_document
from service.app.replies import Reply
from service.app.schemas import ErrorResponse, V2Error, ValidationErrorResponse
from service.app.state import ServiceState
from service.logs import request_id_var

# エラーコードの説明（OpenAPI の responses）
_ERROR_TEXT = {
    400: "Input that the model cannot take",
    404: "No such thing for this model",
    408: "Body not received within BODY_TIMEOUT_SECONDS",
    413: "Request body larger than MAX_BODY_BYTES",
    422: "Body does not match the schema",
    500: "Internal error (details only in the server log)",
}


class RawReply(Response):
    """組み立て済みの応答（ステータス・本文・ヘッダ）をそのまま返すレスポンス。"""

    def __init__(self, answer: Reply) -> None:
        """応答をそのまま持つ（Starlette のヘッダの組み立てを通さない）。"""
        self.status_code, self.body, headers = answer
        self.raw_headers = list(headers)
        self.background = None


def _route_for(endpoint: Endpoint) -> Callable[[Request], Any]:
    """表の 1 行を FastAPI のルートの関数にする。"""

    async def route(request: Request) -> Response:
        state: ServiceState = request.app.state.service
        try:
            body = await request.body() if endpoint.reads_body else b""
        except ServiceError as error:  # 413（上限）・408（期限）
            return RawReply(error_reply(error, endpoint.protocol))
        params = request.path_params
        call = Call(params.get("name", ""), params.get("version"), endpoint.path)
        header_length = request.headers.get(v2_codec.HEADER_LENGTH)
        request_id = request_id_var.get().encode("latin-1")
        return RawReply(respond(endpoint, state, call, body, header_length, request_id))

    route.__name__ = f"{endpoint.handler.__name__}_{endpoint.method.lower()}_{len(endpoint.path)}"
    route.__doc__ = endpoint.summary
    return route


def _responses(endpoint: Endpoint) -> dict[int | str, dict[str, Any]]:
    """OpenAPI の responses（エラーコードとそのスキーマ）。"""
    error_model: Any = V2Error if endpoint.protocol == "v2" else ErrorResponse
    responses: dict[int | str, dict[str, Any]] = {}
    for code in sorted(endpoint.errors):
        model = ValidationErrorResponse if code == 422 else error_model
        responses[code] = {"model": model, "description": _ERROR_TEXT[code]}
    for code, model, description in endpoint.other:
        responses[code] = {"model": model, "description": description}
    return responses


def _openapi_extra(endpoint: Endpoint) -> dict[str, Any] | None:
    """本文（検証は自前）とパスの引数を OpenAPI に載せる。

    本文の正確なスキーマはモデルで決まるので、ここでは形だけを置き、モデルを読み込んだ後に
    `service.app.openapi.exact_document` が書き直す（`build_framework`）。
    """
    extra: dict[str, Any] = {}
    if endpoint.request_body is not None:
        extra["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in ("name", "version")
        if f"{{{name}}}" in endpoint.path
    ]
    if parameters:
        extra["parameters"] = parameters
    return extra or None


def add_routes(app: FastAPI) -> None:
    """表のエンドポイントを FastAPI のルートにする。"""
    for endpoint in ENDPOINTS:
        app.add_api_route(
            endpoint.path,
            _route_for(endpoint),
            methods=[endpoint.method],
            response_model=endpoint.response_model,
            responses=_responses(endpoint),
            summary=endpoint.summary,
            tags=list(endpoint.tags),
            openapi_extra=_openapi_extra(endpoint),
            include_in_schema=endpoint.documented,
        )
        if "HEAD" in methods_of(endpoint):
            # HEAD は GET と同じ応答（本文は uvicorn が外す）。OpenAPI には GET だけを載せる
            app.add_api_route(endpoint.path, _route_for(endpoint), methods=["HEAD"], include_in_schema=False)


def build_framework(state: ServiceState) -> FastAPI:
    """FastAPI のアプリを作り、表のルートを足す（`app.state.service` で状態を引ける）。"""
    app = FastAPI(
        title="model-in-image",
        version=constants.SERVICE_VERSION,
        description=(
            "An ONNX model (ONNX Runtime) baked into the image together with its server: the simple API "
            "of the specification and the Open Inference Protocol (V2, /v2)."
        ),
        # メトリクスは Prometheus で自前に取る。OpenTelemetry の判定を毎リクエスト走らせない
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.service = state
    app.add_exception_handler(HTTPException, _routing_error)
    add_routes(app)
    generic = app.openapi
    exact: dict[str, Any] = {}

    def contract() -> dict[str, Any]:
        """モデルに合わせた文書（モデルを読み込む前は FastAPI の文書のまま、覚えない）。"""
        if not exact:
            document = generic()
            if state.model_ is None:
                return document
            exact.update(exact_document(document, state.model))
        return exact

    app.openapi = contract  # type: ignore[method-assign]
    return app


async def _routing_error(request: Request, error: Exception) -> Response:
    """表に無いパス（404）やメソッド（405）も、パスのプロトコルのエラーの形で答える（/v2 の下は V2）。"""
    assert isinstance(error, HTTPException)
    headers = [
        (key.lower().encode("latin-1"), value.encode("latin-1"))
        for key, value in (error.headers or {}).items()
    ]
    return RawReply(message_reply(error.status_code, error.detail, protocol_of(request.url.path), headers))
