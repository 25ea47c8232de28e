"""応答の形: 組み立て済みの応答（ステータス・本文・ヘッダ）の型と、それを作る関数。

ハンドラ（`service.app.handlers`）・V2 のテンソルの読み書き（`service.app.v2_codec`）・エラーの本文
（`service.app.errors`）のどれもが、ここの `reply()` と `json_reply()` で応答を作る。高速経路はこの形を
そのまま ASGI に送り、FastAPI の経路は `service.app.fastapi_app.RawReply` に包んで送るので、
どちらの経路でもヘッダの組み立ては 1 か所になる。
"""

from __future__ import annotations

from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST

Headers = list[tuple[bytes, bytes]]
# 応答: (ステータス, 本文, ヘッダ)。ヘッダは content-type と content-length を含む
Reply = tuple[int, bytes, Headers]

JSON = b"application/json"
OCTET_STREAM = b"application/octet-stream"
METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST.encode()


def reply(status: int, body: bytes, content_type: bytes = JSON, extra: Headers | None = None) -> Reply:
    """応答を組み立てる。"""
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    return status, body, headers


def json_reply(status: int, payload: Any) -> Reply:
    """JSON の応答を組み立てる。"""
    return reply(status, orjson.dumps(payload))
