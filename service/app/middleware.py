"""純粋な ASGI ミドルウェア（BaseHTTPMiddleware より大幅に軽い）。

1 つのミドルウェアで次をまとめて行う:
- X-Request-ID の引き継ぎ（無ければ生成）とレスポンスヘッダへの付与、ログへの紐付け
- 応答した Pod を示す X-Served-By ヘッダ
- ボディサイズの上限（超えたら 413）
- Prometheus のメトリクス（ルート・ステータス別の件数と遅延）
- 想定外の例外を 500 {"detail": "Internal server error"} にし、スタックトレースはログにだけ出す
- ACCESS_LOG=true のときだけアクセスログ
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from fastapi import HTTPException

from service.app.metrics import Metrics
from service.logs import request_id_var

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("service.access")

_REQUEST_ID = b"x-request-id"
_CONTENT_LENGTH = b"content-length"
_INTERNAL_ERROR = b'{"detail":"Internal server error"}'


def _valid_request_id(value: bytes) -> bool:
    """クライアントの X-Request-ID をそのまま使ってよいか（長さと文字種）。"""
    return 0 < len(value) <= 128 and all(0x21 <= b <= 0x7E for b in value)


def _too_large(limit: int) -> HTTPException:
    """413 の例外を作る。"""
    return HTTPException(status_code=413, detail=f"request body is larger than {limit} bytes")


class ServiceMiddleware:
    """リクエスト ID・ボディ上限・メトリクス・例外処理をまとめた ASGI ミドルウェア。"""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        served_by: str,
        max_body_bytes: int,
        access_log: bool,
    ) -> None:
        """設定を受け取り、毎リクエストで使うヘッダ値を事前に作っておく。"""
        self.app = app
        self.metrics = metrics
        self.served_by = served_by.encode("latin-1", "replace")
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """HTTP リクエストを 1 件処理する。"""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        start = time.perf_counter()
        request_id = b""
        content_length = -1
        for name, value in scope["headers"]:
            if name == _REQUEST_ID:
                request_id = value
            elif name == _CONTENT_LENGTH:
                content_length = int(value) if value.isdigit() else -1
        if not _valid_request_id(request_id):
            request_id = os.urandom(16).hex().encode()
        token = request_id_var.set(request_id.decode())
        extra_headers = [
            (b"x-request-id", request_id),
            (b"x-served-by", self.served_by),
        ]
        status = 500
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra_headers]
            await send(message)

        limit = self.max_body_bytes
        received = 0

        async def receive_wrapper() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _too_large(limit)
            return message

        try:
            if content_length > limit:
                await self._send_json(send_wrapper, 413, _too_large(limit).detail)
            else:
                await self.app(scope, receive_wrapper, send_wrapper)
        except Exception:
            logger.exception(
                "unhandled error in %s %s",
                scope["method"],
                scope["path"],
                extra={"request_id": request_id.decode()},
            )
            if started:
                raise
            await self._send_body(send_wrapper, 500, _INTERNAL_ERROR)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            route_path = getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(scope["method"], route_path, status, elapsed)
            if self.access_log:
                logger.info(
                    '"%s %s" %d %.2fms',
                    scope["method"],
                    scope["path"],
                    status,
                    elapsed * 1000,
                    extra={"request_id": request_id.decode()},
                )
            request_id_var.reset(token)

    @staticmethod
    async def _send_json(send: Send, status: int, detail: str) -> None:
        """{"detail": ...} の JSON 応答を送る。"""
        await ServiceMiddleware._send_body(send, status, orjson.dumps({"detail": detail}))

    @staticmethod
    async def _send_body(send: Send, status: int, body: bytes) -> None:
        """JSON ボディの応答を送る。"""
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
