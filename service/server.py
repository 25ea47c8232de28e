"""サーバーの起動（イメージの run.sh と `mii serve` の共通の入口）。

uvicorn を起動する前に設定とモデルを検証し、問題があれば 1 行のメッセージで終了する。
"""

from __future__ import annotations

import logging
import socket
import sys
from typing import Any

import uvicorn

from service.app.app import create_app, load_model_from
from service.configurations import ConfigurationError, Settings, load_settings
from service.logs import configure_logging
from service.ml.prediction import ModelLoadError, TabularModel
from service.protocol import HeadLimits, Responder, protocol_class

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


def head_limits(settings: Settings) -> HeadLimits:
    """設定から、リクエストの頭の上限。"""
    return HeadLimits(
        max_request_line_bytes=settings.max_request_line_bytes,
        max_header_field_bytes=settings.max_header_field_bytes,
        max_header_count=settings.max_header_count,
        max_head_bytes=settings.max_head_bytes,
        head_timeout=settings.head_timeout_seconds,
    )


def uvicorn_config(
    app: Any, settings: Settings, *, bounded: bool = True, responder: Responder | None = None
) -> uvicorn.Config:
    """uvicorn の設定（1 プロセス・uvloop・httptools）。サービスと、ベンチマークの天井の ASGI アプリで共通。

    `bounded`（サービス）なら、httptools のプロトコルを service/protocol.py のもの（頭の大きさと時間の上限、
    短い応答を 1 回の書き込みで、`responder` があれば表のルートに ASGI を通さずに）にする。天井は素の uvicorn
    （`bounded=False`）で測る。
    プロキシのヘッダ（X-Forwarded-*）は使わないので、uvicorn の ProxyHeadersMiddleware も通さない。
    WebSocket も使わない（Upgrade のヘッダは無視して普通に答える）。
    """
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=protocol_class(head_limits(settings), responder) if bounded else "httptools",
        ws="none",
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=int(settings.graceful_shutdown_seconds),
        timeout_keep_alive=settings.keep_alive_seconds,  # type: ignore[arg-type]
    )


def listening_socket(host: str, port: int) -> socket.socket:
    """待ち受けのソケットを先に作る（使用中なら OSError）。uvicorn が作るのと同じく SO_REUSEADDR。

    `mii serve` は、待ち受けられると分かってから「serving ...」と出す（uvicorn は起動を知らせてから
    bind に失敗する）。
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def serve(settings: Settings, model: TabularModel, sock: socket.socket | None = None) -> None:
    """uvicorn でサービスを起動し、終了まで戻らない（`sock` があればそこで待ち受ける）。"""
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings, model)
    config = uvicorn_config(app.entry, settings, responder=app.middleware)
    uvicorn.Server(config).run(sockets=[sock] if sock is not None else None)


def main() -> None:
    """環境変数の設定でサーバーを起動する。起動前の問題は 1 行で標準エラーに出し、終了コード 1。"""
    try:
        settings, model = prepare()
    except StartupError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    serve(settings, model)
