"""ログ設定。

LOG_FORMAT=TEXT は人が読む 1 行、JSON は 1 行 1 レコードの JSON。
どちらもリクエスト中に出たログには X-Request-ID の値（request_id）が付く。
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from typing import Any

import orjson

# 処理中のリクエストの ID（ログに載せる）
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_TEXT_FORMAT = "%(asctime)s %(levelname)s [%(name)s] [request_id=%(request_id)s] %(message)s"


_base_factory = logging.getLogRecordFactory()


def _record_with_request_id(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """すべてのログレコードに、そのときのリクエストの ID（request_id）を付ける。"""
    record = _base_factory(*args, **kwargs)
    record.request_id = request_id_var.get()
    return record


# ハンドラやロガーごとのフィルタではなくレコードの生成時に付けるので、どのロガー・ハンドラでも同じ
logging.setLogRecordFactory(_record_with_request_id)


class JsonFormatter(logging.Formatter):
    """ログレコードを 1 行の JSON にするフォーマッタ。"""

    def format(self, record: logging.LogRecord) -> str:
        """時刻・レベル・ロガー名・メッセージ・request_id（と例外）を JSON にする。"""
        payload: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(payload).decode()


def configure_logging(level: str, fmt: str) -> None:
    """ルートロガーを標準エラー出力 1 本に設定する（uvicorn のロガーも含む）。"""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "JSON" else logging.Formatter(_TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # アクセスログは自前のミドルウェアで出す（ACCESS_LOG）
    logging.getLogger("uvicorn.access").disabled = True
