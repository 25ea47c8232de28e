"""純粋な ASGI ミドルウェア（BaseHTTPMiddleware より大幅に軽い）。

1 つのミドルウェアで次をまとめて行う:
- X-Request-ID の引き継ぎ（無ければ生成）とレスポンスヘッダへの付与、ログへの紐付け
- 応答した Pod を示す X-Served-By ヘッダ
- 本文の上限（超えたら残りを読み捨てて 413）と期限（届かなければ 408）: `service.app.body`
- Prometheus のメトリクス（ルート・ステータス別の件数と遅延）
- 想定外の例外を 500 {"detail": "Internal server error"} にし、スタックトレースはログにだけ出す
- ACCESS_LOG=true のときだけアクセスログ
- 高速経路（FAST_PATH=true）: ハンドラ表にある (メソッド, パス) は FastAPI を通さずに直接応答する
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import orjson
from fastapi import HTTPException
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError

from service.app.body import BodyDeadlines, BodyTooLarge, LimitedReceive
from service.app.routers.routers import Handler
from service.app.state import ServiceState
from service.logs import request_id_var
from service.ml.prediction import InvalidInputError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("service.access")

_REQUEST_ID = b"x-request-id"
_CONTENT_LENGTH = b"content-length"
_EXPECT = b"expect"
_INTERNAL_ERROR = b'{"detail":"Internal server error"}'


def _valid_request_id(value: bytes) -> bool:
    """クライアントの X-Request-ID をそのまま使ってよいか（長さと文字種）。"""
    return 0 < len(value) <= 128 and all(0x21 <= b <= 0x7E for b in value)


class ServiceMiddleware:
    """リクエスト ID・ボディ上限・メトリクス・例外処理・高速経路をまとめた ASGI ミドルウェア。"""

    def __init__(
        self,
        app: ASGIApp,
        *,
        state: ServiceState,
        max_body_bytes: int,
        body_timeout_seconds: float,
        access_log: bool,
        handlers: dict[tuple[str, str], Handler] | None,
    ) -> None:
        """設定を受け取り、毎リクエストで使うヘッダ値を事前に作っておく。"""
        self.app = app
        self.state = state
        self.metrics = state.metrics
        self.served_by = state.served_by.encode("latin-1", "replace")
        self.max_body_bytes = max_body_bytes
        self.deadlines = BodyDeadlines(body_timeout_seconds, on_timeout=self.metrics.body_timeouts.inc)
        self.access_log = access_log
        self.handlers = handlers or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """HTTP リクエストを 1 件処理する。"""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        start = time.perf_counter()
        request_id = b""
        content_length = -1
        expects_continue = False
        for name, value in scope["headers"]:
            if name == _REQUEST_ID:
                request_id = value
            elif name == _CONTENT_LENGTH:
                content_length = int(value) if value.isdigit() else -1
            elif name == _EXPECT:
                expects_continue = value.lower() == b"100-continue"
        if not _valid_request_id(request_id):
            request_id = os.urandom(16).hex().encode()
        token = request_id_var.set(request_id.decode())
        extra_headers = [(b"x-request-id", request_id), (b"x-served-by", self.served_by)]
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
        body = LimitedReceive(receive, limit, self.deadlines)

        method, path = scope["method"], scope["path"]
        handler = self.handlers.get((method, path))
        route_path: str | None = path if handler is not None else None
        try:
            if content_length > limit:
                # Content-Length で分かる: 残りを読み捨ててから答える
                # （読まずに閉じるとリセットで応答が消える）。Expect: 100-continue のクライアントは
                # 本文をまだ送っていないので、読まずに断って閉じる
                drained = not expects_continue and await body.drain()
                error = BodyTooLarge(limit, drained=drained)
                await self._send(send_wrapper, 413, orjson.dumps({"detail": error.detail}), error.headers)
            elif handler is not None:
                await self._fast(handler, method, body, send_wrapper)
            else:
                await self.app(scope, body, send_wrapper)
        except Exception:
            logger.exception("unhandled error in %s %s", method, path)
            if started:
                raise
            await self._send(send_wrapper, 500, _INTERNAL_ERROR)
        finally:
            elapsed = time.perf_counter() - start
            if route_path is None:
                route = scope.get("route")
                # FastAPI のルート以外（/docs・/openapi.json）はパスそのもの。見つからないパスはまとめる
                matched = path if status not in (404, 405) else "unmatched"
                route_path = getattr(route, "path", None) or matched
            self.metrics.observe_request(method, route_path, status, elapsed)
            if self.access_log:
                logger.info(
                    '"%s %s" %d %.2fms',
                    method,
                    path,
                    status,
                    elapsed * 1000,
                )
            request_id_var.reset(token)

    async def _fast(self, handler: Handler, method: str, receive: Receive, send: Send) -> None:
        """ハンドラを直接呼んで応答する（FastAPI のルートと同じ応答・同じエラー形式）。"""
        headers: Mapping[str, str] | None = None
        try:
            body = await self._read_body(receive) if method == "POST" else b""
            code, payload = handler(self.state, body)
        except HTTPException as error:  # 413（上限）・408（期限）
            code, payload, headers = error.status_code, {"detail": error.detail}, error.headers
        except InvalidInputError as error:
            code, payload = 400, {"detail": str(error)}
        except RequestValidationError as error:
            code, payload = 422, {"detail": jsonable_encoder(error.errors())}
        await self._send(send, code, orjson.dumps(payload), headers)

    @staticmethod
    async def _read_body(receive: Receive) -> bytes:
        """本文を最後まで読む（上限は receive 側で確かめる）。"""
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    @staticmethod
    async def _send(send: Send, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        """JSON ボディの応答を送る（headers は接続を閉じるときの Connection など）。"""
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if headers:
            raw.extend((name.encode(), value.encode()) for name, value in headers.items())
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})
