"""`mii serve`: Docker を使わずにモデル（既定は同梱モデル）をローカルで配信する。"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mii_cli.errors import ConfigError, ModelError
from mii_cli.paths import model_and_labels
from service.configurations import Settings
from service.ml.prediction import TabularModel
from service.server import StartupError, prepare, serve


@dataclass(frozen=True)
class ServeRequest:
    """`mii serve` のオプション（None は省略: サービスの環境変数か同梱モデルに任せる）。"""

    host: str
    port: int
    model: Path | None = None
    labels: Path | None = None
    sample: list[float] | None = None
    log_level: str | None = None
    log_format: str | None = None

    def overrides(self, environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
        """サービス設定の上書き。

        モデルの優先順位は --model、環境変数 MODEL_FILEPATH、同梱の models/ の順。ラベルは --labels、
        LABEL_FILEPATH の順で、どちらも無ければ同梱のモデルには同梱のラベル、別のモデルにはラベル無し
        （同梱の label.json は同梱のモデルのもの。分類器はモデル自身のクラスラベルを使う）。
        """
        overrides: dict[str, Any] = {"host": self.host, "port": self.port}
        if self.model is None and "MODEL_FILEPATH" in environ:
            # 環境変数のモデル: ラベルも環境変数（無ければラベル無し）に任せる
            if self.labels is not None:
                overrides["label_filepath"] = self.labels
            elif "LABEL_FILEPATH" not in environ:
                overrides["label_filepath"] = ""
        else:
            chosen, chosen_labels = model_and_labels(self.model, self.labels)
            overrides["model_filepath"] = chosen
            overrides["label_filepath"] = chosen_labels or ""
        if self.sample is not None:
            overrides["sample_row"] = self.sample
        if self.log_level is not None:
            overrides["log_level"] = self.log_level.upper()
        if self.log_format is not None:
            overrides["log_format"] = self.log_format.upper()
        return overrides


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
