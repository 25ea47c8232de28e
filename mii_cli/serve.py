"""`mii serve`: Docker を使わずにモデル（既定は同梱モデル）をローカルで配信する。"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mii_cli.console import info
from mii_cli.errors import ConfigError, ModelError
from mii_cli.paths import model_and_labels
from service.server import StartupError, prepare, serve


def resolve_overrides(
    *,
    host: str,
    port: int,
    model: Path | None,
    labels: Path | None,
    log_level: str | None,
    log_format: str | None,
    sample: list[float] | None = None,
) -> dict[str, Any]:
    """CLI のオプションをサービス設定の上書きにする。

    モデルの優先順位は --model、環境変数 MODEL_FILEPATH、同梱の models/ の順。ラベルは --labels、
    LABEL_FILEPATH の順で、どちらも無ければ同梱のモデルには同梱のラベル、別のモデルにはラベル無し
    （同梱の label.json は同梱のモデルのもの。分類器はモデル自身のクラスラベルを使う）。
    """
    overrides: dict[str, Any] = {"host": host, "port": port}
    if model is None and "MODEL_FILEPATH" in os.environ:
        # 環境変数のモデル: ラベルも環境変数（無ければラベル無し）に任せる
        if labels is not None:
            overrides["label_filepath"] = labels
        elif "LABEL_FILEPATH" not in os.environ:
            overrides["label_filepath"] = ""
    else:
        chosen, chosen_labels = model_and_labels(model, labels)
        overrides["model_filepath"] = chosen
        overrides["label_filepath"] = chosen_labels or ""
    if sample is not None:
        overrides["sample_row"] = sample
    if log_level is not None:
        overrides["log_level"] = log_level.upper()
    if log_format is not None:
        overrides["log_format"] = log_format.upper()
    return overrides


def run_server(**options: Any) -> None:
    """設定とモデルを検証してから uvicorn を起動する（Ctrl-C で止まるまで戻らない）。"""
    try:
        settings, classifier = prepare(**resolve_overrides(**options))
    except StartupError as error:
        raise ModelError(str(error)) from None
    info(
        f"serving {settings.model_filepath} on http://{settings.host}:{settings.port}"
        " (docs: /docs); Ctrl-C to stop"
    )
    try:
        serve(settings, classifier)
    except KeyboardInterrupt:
        # Ctrl-C は正常な停止（uvicorn は処理中のリクエストを終えてから戻る）
        pass
    except SystemExit as error:
        # uvicorn は待ち受けに失敗すると（ポートが使用中など）ログを 1 行出して SystemExit する
        if error.code not in (0, None):
            raise ConfigError(
                f"cannot listen on {settings.host}:{settings.port}",
                hint="is another server using that port? pick one with --port",
            ) from None
    info("server stopped")
