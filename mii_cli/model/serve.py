"""`mii serve`: Docker を使わずにモデル（既定は同梱モデル）をローカルで配信する。"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mii_cli.errors import ConfigError, ModelError
from service.configurations import Settings
from service.ml.prediction import TabularModel
from service.server import StartupError, prepare, serve


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
    """設定とモデルを検証し終えた、起動するだけのサーバー。"""

    settings: Settings
    model: TabularModel

    @property
    def url(self) -> str:
        """待ち受ける URL。"""
        return f"http://{self.settings.host}:{self.settings.port}"


def prepare_server(request: ServeRequest) -> PreparedServer:
    """設定とモデルを検証する（読めなければ ModelError）。"""
    try:
        settings, model = prepare(**request.overrides())
    except StartupError as error:
        raise ModelError(str(error)) from None
    return PreparedServer(settings, model)


def serve_until_stopped(server: PreparedServer) -> None:
    """uvicorn を起動し、Ctrl-C（または SIGTERM）で止まるまで戻らない。"""
    try:
        serve(server.settings, server.model)
    except KeyboardInterrupt:
        # Ctrl-C は正常な停止（uvicorn は処理中のリクエストを終えてから戻る）
        pass
    except SystemExit as error:
        # uvicorn は待ち受けに失敗すると（ポートが使用中など）ログを 1 行出して SystemExit する
        if error.code not in (0, None):
            raise ConfigError(
                f"cannot listen on {server.settings.host}:{server.settings.port}",
                hint="is another server using that port? pick one with --port",
            ) from None
