"""サーバーの起動（イメージの run.sh と `mii serve` の共通の入口）。

uvicorn を起動する前に設定とモデルを検証し、問題があれば 1 行のメッセージで終了する。
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import uvicorn

from service.app.app import create_app, load_model_from
from service.configurations import ConfigurationError, Settings, load_settings
from service.logs import configure_logging
from service.ml.prediction import ModelLoadError, TabularModel

logger = logging.getLogger(__name__)


class StartupError(Exception):
    """起動前の検証に失敗したときの例外（メッセージは 1 行）。"""


def prepare(**overrides: Any) -> tuple[Settings, TabularModel]:
    """設定を読み込み、モデルを読み込んで返す。失敗は StartupError。"""
    try:
        settings = load_settings(**overrides)
    except ConfigurationError as error:
        raise StartupError(str(error)) from None
    try:
        model = load_model_from(settings)
    except ModelLoadError as error:
        raise StartupError(f"cannot load model: {error}") from None
    return settings, model


def uvicorn_config(app: Any, settings: Settings) -> uvicorn.Config:
    """uvicorn の設定（1 プロセス・uvloop・httptools）。サービスと、ベンチマークの天井の ASGI アプリで共通。

    プロキシのヘッダ（X-Forwarded-*）は使わないので、uvicorn の ProxyHeadersMiddleware も通さない。
    """
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=int(settings.graceful_shutdown_seconds),
        timeout_keep_alive=75,
    )


def serve(settings: Settings, model: TabularModel) -> None:
    """uvicorn でサービスを起動し、終了まで戻らない。"""
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings, model)
    uvicorn.Server(uvicorn_config(app.entry, settings)).run()


def main() -> None:
    """環境変数の設定でサーバーを起動する。起動前の問題は 1 行で標準エラーに出し、終了コード 1。"""
    try:
        settings, model = prepare()
    except StartupError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    serve(settings, model)
