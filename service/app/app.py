"""アプリケーションのファクトリ。

`create_app()` がアプリを組み立て、lifespan でモデルを読み込んで試し推論を行い、
決まった応答と高速経路の表を作ってから readiness を 200 にする。

リクエストは最初に `ServiceMiddleware` を通る。`ServiceApp.entry` がその入口で、uvicorn にはこれを直接渡す。
高速経路の表に無いリクエスト（/docs・/openapi.json、表に無いパスやメソッド（HEAD・OPTIONS を含む）、
FAST_PATH=false ならすべて）だけが FastAPI に渡る。FastAPI の import とアプリの組み立ては 0.5 CPU で約 0.5 s
かかり、起動から ready までの 3 割を占めていたので、最初に要るときに作る（FAST_PATH=false なら起動時に）。
作っている間はイベントループが止まる（プロセスに 1 度だけ）。lifespan は FastAPI を通さず
`ServiceApp` が答える。
"""

from __future__ import annotations

import gc
import logging
import socket
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from service.app import v2_codec
from service.app.endpoints import fast_routes
from service.app.handlers import cached_replies
from service.app.metrics import Metrics
from service.app.middleware import ASGIApp, Receive, Scope, Send, ServiceMiddleware
from service.app.mirror import start_mirror
from service.app.state import ServiceState
from service.configurations import Settings, get_settings
from service.ml.loading import load_model
from service.ml.prediction import TabularModel

if TYPE_CHECKING:
    from fastapi import FastAPI

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


class ServiceApp:
    """サービスの ASGI アプリ: 入口（`entry`、ミドルウェア）・lifespan・必要になってから作る FastAPI。"""

    def __init__(self, settings: Settings, state: ServiceState) -> None:
        """設定と状態を受け取り、入口のミドルウェアを作る（FastAPI はまだ作らない）。"""
        self.settings = settings
        # Starlette のアプリと同じ `app.state.service` で状態を引けるようにする（テスト）
        self.state = SimpleNamespace(service=state)
        self._framework: FastAPI | None = None
        self.middleware = ServiceMiddleware(
            self.inner,
            state=state,
            max_body_bytes=settings.max_body_bytes,
            body_timeout_seconds=settings.body_timeout_seconds,
            access_log=settings.access_log,
        )
        self.entry: ASGIApp = self.middleware

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """入口（ミドルウェア）から処理する。"""
        await self.entry(scope, receive, send)

    async def inner(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ミドルウェアが高速経路に無いものを渡す先: lifespan は自分で、それ以外は FastAPI で。"""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self.framework()(scope, receive, send)

    def framework(self) -> FastAPI:
        """FastAPI のアプリ（最初に呼ばれたときに import して組み立てる）。"""
        if self._framework is None:
            from service.app.fastapi_app import build_framework

            self._framework = build_framework(self.state.service)
            if self.state.service.ready:
                # 起動の後に作ったときは、それも GC の対象から外す（起動中なら start() がまとめて）
                _settle()
        return self._framework

    @property
    def routes(self) -> list[Any]:
        """FastAPI のルート（表のすべてのエンドポイントと、/openapi.json・/docs などの FastAPI のもの）。"""
        return list(self.framework().routes)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """ASGI の lifespan。起動は `start()`、終了（取り消しを含む）は `stop()`。

        MIRROR_CONFIG があれば、起動の後に写しの設定を読み直すタスク（service.app.mirror）を始め、
        終了で止める。
        起動の失敗はスタックトレースをログに出し、同じものを startup.failed で送ってから上げる（uvicorn は
        その本文を出して終了する）。
        """
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        try:
            self.start()
        except BaseException:
            logger.exception("application startup failed")
            await send({"type": "lifespan.startup.failed", "message": traceback.format_exc()})
            raise
        mirror = (
            start_mirror(self.state.service, Path(self.settings.mirror_config))
            if self.settings.mirror_config
            else None
        )
        await send({"type": "lifespan.startup.complete"})
        try:
            while (await receive())["type"] != "lifespan.shutdown":
                pass
        finally:
            if mirror is not None:
                mirror.cancel()
            self.stop()
        await send({"type": "lifespan.shutdown.complete"})

    def start(self) -> None:
        """モデルを読み込み（まだなら）、決まった応答と高速経路の表を作ってから ready にする。"""
        state, settings = self.state.service, self.settings
        if state.model_ is None:
            state.model_ = load_model_from(settings)
        state.cached.update(cached_replies(state))
        state.v2_one_row.update(v2_codec.one_row_json(state.model))
        if settings.fast_path:
            state.fast_routes.update(fast_routes(state))
        else:
            self.framework()
        _settle()
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

    def stop(self) -> None:
        """ready を下ろす（以後 readiness は 503）。"""
        self.state.service.ready = False
        logger.info("shutting down")


def _settle() -> None:
    """それまでに作ったオブジェクト（pydantic・モデル・FastAPI）を GC の対象から外す。

    世代別 GC がリクエストごとに作られる短命のオブジェクトだけを見るので、1 リクエストの費用が
    1 割ほど下がる。先に collect して、ゴミの循環まで永久に残さない。
    """
    gc.collect()
    gc.freeze()


def create_app(settings: Settings | None = None, model: TabularModel | None = None) -> ServiceApp:
    """アプリを作る。model を渡せば読み込み済みのものを使う（起動前検証の二重読み込みを避ける）。"""
    settings = settings or get_settings()
    state = ServiceState(metrics=Metrics(), served_by=settings.pod_name or socket.gethostname(), model_=model)
    return ServiceApp(settings, state)
