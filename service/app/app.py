"""FastAPI アプリケーションのファクトリ。

`create_app()` がアプリを組み立て、lifespan でモデルを読み込んで試し推論を行い、
決まった応答と高速経路の表を作ってから readiness を 200 にする。

リクエストは最初に `ServiceMiddleware`（FastAPI の外側）を通る。`ServiceApp.entry` がその入口で、
uvicorn にはこれを直接渡す（FastAPI・Starlette のミドルウェアの積み重ねは FastAPI に渡すときだけ通る）。
"""

from __future__ import annotations

import gc
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service import constants
from service.app import v2
from service.app.metrics import Metrics
from service.app.middleware import ASGIApp, Receive, Scope, Send, ServiceMiddleware
from service.app.routers.routers import add_routes, cached_replies, fast_routes
from service.app.state import ServiceState
from service.configurations import Settings, get_settings
from service.ml.loading import load_model
from service.ml.prediction import TabularModel

logger = logging.getLogger(__name__)


def load_model_from(settings: Settings) -> TabularModel:
    """設定どおりにモデル（とラベル・サンプル）を読み込む（失敗時は ModelLoadError）。"""
    return load_model(
        settings.model_filepath,
        settings.labels_path,
        sample=settings.sample,
        name=settings.model_name or None,
        intra_op_threads=settings.ort_intra_op_threads,
        inter_op_threads=settings.ort_inter_op_threads,
        max_batch_rows=settings.max_batch_rows,
    )


class ServiceApp(FastAPI):
    """FastAPI に、外側のミドルウェアを入口（`entry`）として持たせたアプリ。"""

    entry: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """入口（ミドルウェア）から処理する。"""
        await self.entry(scope, receive, send)

    async def framework(self, scope: Scope, receive: Receive, send: Send) -> None:
        """FastAPI そのもの（ミドルウェアが高速経路に無いリクエストを渡す先）。"""
        await FastAPI.__call__(self, scope, receive, send)


def create_app(settings: Settings | None = None, model: TabularModel | None = None) -> ServiceApp:
    """アプリを作る。model を渡せば読み込み済みのものを使う（起動前検証の二重読み込みを避ける）。"""
    settings = settings or get_settings()
    state = ServiceState(metrics=Metrics(), served_by=settings.pod_name or socket.gethostname(), model_=model)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        """起動時にモデルを読み込み、決まった応答と高速経路の表を作ってから ready にする。"""
        if state.model_ is None:
            state.model_ = load_model_from(settings)
        state.cached.update(cached_replies(state))
        state.v2_one_row.update(v2.one_row_json(state.model))
        if settings.fast_path:
            state.fast_routes.update(fast_routes(state))
        # 起動で作ったオブジェクト（FastAPI・pydantic・モデル）を GC の対象から外す: 世代別 GC が
        # リクエストごとに作られる短命のオブジェクトだけを見るので、1 リクエストの費用が 1 割ほど下がる
        gc.collect()
        gc.freeze()
        state.ready = True
        info = state.model.info
        logger.info(
            "model ready: %s (%s, sha256 %s, %d features, %d %s, output %s, V2 name %s version %s)",
            info.file_name,
            info.task,
            info.sha256[:12],
            info.num_features,
            info.num_outputs,
            "classes" if info.task == "classification" else "outputs",
            info.output_format,
            info.name,
            info.version,
        )
        try:
            yield
        finally:
            state.ready = False
            logger.info("shutting down")

    app = ServiceApp(
        title="model-in-image",
        version=constants.SERVICE_VERSION,
        description=(
            "An ONNX model (ONNX Runtime) baked into the image together with its server: the simple API "
            "of the specification and the Open Inference Protocol (V2, /v2)."
        ),
        lifespan=lifespan,
        # メトリクスは Prometheus で自前に取る。OpenTelemetry の判定を毎リクエスト走らせない
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.service = state
    app.state.settings = settings
    add_routes(app)
    app.entry = ServiceMiddleware(
        app.framework,
        state=state,
        max_body_bytes=settings.max_body_bytes,
        body_timeout_seconds=settings.body_timeout_seconds,
        access_log=settings.access_log,
    )
    return app
