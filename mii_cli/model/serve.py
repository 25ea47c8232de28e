"""`mii serve`: Docker を使わずにモデル（既定は同梱モデル）をローカルで配信する。"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mii_cli.errors import ConfigError, ModelError
from service.configurations import Settings
from service.ml.prediction import TabularModel
from service.server import StartupError, listening_socket, prepare, serve


@dataclass(frozen=True)
class ServeRequest:
    """`mii serve` で上書きするサービスの設定（既定値は `mii_cli.settings.serve_request` が埋める）。

    None の項目は上書きしない（サービスの環境変数 MODEL_FILEPATH・LABEL_FILEPATH などに任せる）。
    `label_filepath` の空文字はラベル無し。
    """

    host: str
    port: int
    model_filepath: Path | None = None
    label_filepath: Path | str | None = None
    sample: list[float] | None = None
    log_level: str | None = None
    log_format: str | None = None

    def overrides(self) -> dict[str, Any]:
        """サービス設定（`service.configurations.Settings`）の上書き。"""
        chosen = {
            "host": self.host,
            "port": self.port,
            "model_filepath": self.model_filepath,
            "label_filepath": self.label_filepath,
            "sample_row": self.sample,
            "log_level": self.log_level.upper() if self.log_level else None,
            "log_format": self.log_format.upper() if self.log_format else None,
        }
        return {name: value for name, value in chosen.items() if value is not None}


@dataclass(frozen=True)
class PreparedServer:
    """設定とモデルを検証し、待ち受けのソケットも作った、起動するだけのサーバー。"""

    settings: Settings
    model: TabularModel
    sock: socket.socket

    @property
    def url(self) -> str:
        """待ち受ける URL。"""
        return f"http://{self.settings.host}:{self.settings.port}"


def prepare_server(request: ServeRequest) -> PreparedServer:
    """設定とモデルを検証し、待ち受けのソケットを作る（読めなければ ModelError、使用中なら ConfigError）。"""
    try:
        settings, model = prepare(**request.overrides())
    except StartupError as error:
        raise ModelError(str(error)) from None
    try:
        sock = listening_socket(settings.host, settings.port)
    except OSError as error:
        raise ConfigError(
            f"cannot listen on {settings.host}:{settings.port}: {error.strerror or error}",
            hint="is another server using that port? pick one with --port (mii stop stops mii run)",
        ) from None
    return PreparedServer(settings, model, sock)


def serve_until_stopped(server: PreparedServer) -> None:
    """uvicorn を起動し、Ctrl-C（または SIGTERM）で止まるまで戻らない。"""
    try:
        serve(server.settings, server.model, server.sock)
    except KeyboardInterrupt:
        # Ctrl-C は正常な停止（uvicorn は処理中のリクエストを終えてから戻る）
        pass
    finally:
        server.sock.close()
