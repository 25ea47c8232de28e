"""サービスの入口の純粋な ASGI ミドルウェア（FastAPI の外側、最初に通る層）。

すべてのリクエストに共通すること（横断的な関心事）だけを行う:
- X-Request-ID の引き継ぎ（無ければ作る）と、応答への X-Request-ID・X-Served-By の付与
- 本文の上限（超えたら残りを読み捨てて 413）と期限（届かなければ 408）: `service.app.body`
- Prometheus のメトリクス（ルート・ステータス別の件数と遅延）
- 想定外の例外を 500 にし、スタックトレースはログにだけ出す。ACCESS_LOG=true ならアクセスログ
- 振り分け: 高速経路の表（`ServiceState.fast_routes`、エンドポイントの表から作る）にある
  (メソッド, パス) はその関数で答え、それ以外は FastAPI に渡す

本文までそろった表のルートのリクエストには、HTTP のプロトコル（service/protocol.py）が ASGI を通さずに
`respond()` で答える（uvicorn のリクエストごとのタスクと ASGI のメッセージを省く）。どちらの経路も
`read_head()`・`answer()`・`log_access()` を通るので、応答とメトリクスは同じになる。

エンドポイントもエラーの形も知らない: 答えは表の関数が、エラーの形は `errors.error_reply()` が決める。
リクエストごとの仕事を減らすため、ヘッダを 1 度だけ走査し、リクエスト ID は連番で作り、
ログ用の contextvar は FastAPI に渡すとき・例外・アクセスログのときだけ設定する。
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from service.app.body import BodyDeadlines, LimitedReceive, read_body
from service.app.errors import BodyTooLarge, ServiceError, error_reply, protocol_of
from service.app.replies import Headers, Reply
from service.app.state import FastRoute, ServiceState
from service.logs import request_id_var

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("service.access")

_REQUEST_ID = b"x-request-id"
_SERVED_BY = b"x-served-by"
_CONTENT_LENGTH = b"content-length"
_EXPECT = b"expect"
_HEADER_LENGTH = b"inference-header-content-length"
_START = "http.response.start"
_BODY = "http.response.body"


# クライアントの X-Request-ID をそのまま使ってよいか（長さと文字種: 空白・制御文字を含まない ASCII）
_VALID_REQUEST_ID = re.compile(rb"[\x21-\x7e]{1,128}")


class RequestIds:
    """リクエスト ID を作る: プロセスごとの乱数 16 桁 + 連番 16 桁（32 桁の 16 進、1 件ごとの乱数は無し）。"""

    def __init__(self) -> None:
        """プロセスの接頭辞を乱数で決める。"""
        self._prefix = os.urandom(8).hex().encode()
        self._counter = itertools.count(1)

    def next(self) -> bytes:
        """次の ID。"""
        return self._prefix + b"%016x" % next(self._counter)


class ServiceMiddleware:
    """リクエスト ID・本文の上限と期限・メトリクス・例外処理・振り分けの ASGI ミドルウェア。"""

    def __init__(
        self,
        app: ASGIApp,
        *,
        state: ServiceState,
        max_body_bytes: int,
        body_timeout_seconds: float,
        access_log: bool,
    ) -> None:
        """設定を受け取り、毎リクエストで使う値を事前に作っておく。"""
        self.app = app
        self.state = state
        self.metrics = state.metrics
        # 表はモデルの読み込み後に中身が入る（同じ辞書を持ち続ける）
        self.fast_routes = state.fast_routes
        self.served_by = (_SERVED_BY, state.served_by.encode("latin-1", "replace"))
        self.max_body_bytes = max_body_bytes
        self.deadlines = BodyDeadlines(body_timeout_seconds, on_timeout=self.metrics.body_timeout)
        self.access_log = access_log
        self.ids = RequestIds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """HTTP リクエストを 1 件処理する。"""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        content_length, request_id, expects_continue, header_length = self.read_head(scope["headers"])
        method, path = scope["method"], scope["path"]
        fast = self.fast_routes.get((method, path))
        limit = self.max_body_bytes
        status = 500
        started = False
        token = None
        try:
            if content_length > limit:
                # Content-Length で分かる: 残りを読み捨ててから答える
                # （読まずに閉じるとリセットで応答が消える）。Expect: 100-continue のクライアントは
                # 本文をまだ送っていないので、読まずに断って閉じる
                rest = LimitedReceive(receive, limit, self.deadlines)
                drained = not expects_continue and await rest.drain()
                answer = error_reply(BodyTooLarge(limit, drained=drained), protocol_of(path))
            elif fast is not None:
                if fast.reads_body:
                    try:
                        body = await read_body(receive, limit, self.deadlines)
                    except ServiceError as error:  # 413（上限）・408（期限）
                        answer = error_reply(error, fast.protocol)
                    else:
                        answer = self.answer(fast, body, header_length, request_id, method, path)
                else:
                    answer = self.answer(fast, b"", None, request_id, method, path)
            else:
                token = request_id_var.set(request_id.decode("latin-1"))
                extra = [(_REQUEST_ID, request_id), self.served_by]

                async def send_wrapper(message: Message) -> None:
                    nonlocal status, started
                    if message["type"] == _START:
                        started = True
                        status = message["status"]
                        message["headers"] = [*message.get("headers", ()), *extra]
                    await send(message)

                await self.app(scope, LimitedReceive(receive, limit, self.deadlines), send_wrapper)
                return
            status, payload, headers = answer
            started = True
            await send(
                {
                    "type": _START,
                    "status": status,
                    "headers": [*headers, (_REQUEST_ID, request_id), self.served_by],
                }
            )
            await send({"type": _BODY, "body": payload})
        except Exception as error:
            if token is None:
                token = request_id_var.set(request_id.decode("latin-1"))
            logger.exception("unhandled error in %s %s", method, path)
            if started:
                raise
            status, payload, headers = error_reply(
                error, fast.protocol if fast is not None else protocol_of(path)
            )
            started = True
            await send(
                {
                    "type": _START,
                    "status": status,
                    "headers": [*headers, (_REQUEST_ID, request_id), self.served_by],
                }
            )
            await send({"type": _BODY, "body": payload})
        finally:
            elapsed = time.perf_counter() - start
            if fast is not None:
                fast.stats.observe(status, elapsed)
            else:
                route = scope.get("route")
                # FastAPI のルート以外（/docs・/openapi.json）はパスそのもの。見つからないパスはまとめる
                matched = path if status not in (404, 405) else "unmatched"
                self.metrics.observe_request(method, getattr(route, "path", None) or matched, status, elapsed)
            if token is not None:
                request_id_var.reset(token)
            if self.access_log:
                self.log_access(method, path, status, elapsed, request_id)

    # --- 高速経路の表のルート（ASGI の経路と、プロトコルが直接答える経路で共通） ------------------------

    def read_head(self, headers: Headers) -> tuple[int, bytes, bool, str | None]:
        """ヘッダを 1 度だけ走査する。

        返すのは (Content-Length（無い・数でなければ -1）, リクエスト ID, 100-continue か,
        Inference-Header-Content-Length)。リクエスト ID は、クライアントのものが使えなければ作る。
        """
        request_id = b""
        content_length = -1
        expects_continue = False
        header_length: str | None = None
        for name, value in headers:
            if name == _CONTENT_LENGTH:
                # 先頭の 0 は HTTP として正しい（llhttp が 64 ビットに収まることを確かめ済み）。
                # そのまま int にすると 4,300 桁を超える値で ValueError になる
                content_length = int(value.lstrip(b"0") or b"0") if value.isdigit() else -1
            elif name == _REQUEST_ID:
                request_id = value
            elif name == _EXPECT:
                expects_continue = value.lower() == b"100-continue"
            elif name == _HEADER_LENGTH:
                header_length = value.decode("latin-1")
        if not request_id or _VALID_REQUEST_ID.fullmatch(request_id) is None:
            request_id = self.ids.next()
        return content_length, request_id, expects_continue, header_length

    def answer(
        self,
        fast: FastRoute,
        body: bytes,
        header_length: str | None,
        request_id: bytes,
        method: str,
        path: str,
    ) -> Reply:
        """表の関数で答える。想定外の例外はログに出して 500 の形にする（中身は出さない）。"""
        try:
            return fast.answer(body, header_length, request_id)
        except Exception as error:
            token = request_id_var.set(request_id.decode("latin-1"))
            logger.exception("unhandled error in %s %s", method, path)
            request_id_var.reset(token)
            return error_reply(error, fast.protocol)

    def route(self, method: str, path: str) -> FastRoute | None:
        """高速経路の表の (メソッド, パス) のルート（無ければ None）。"""
        return self.fast_routes.get((method, path))

    def respond(self, fast: FastRoute, method: str, path: str, headers: Headers, body: bytes) -> Reply:
        """本文までそろったリクエストに、表のルートで同期に答える（プロトコルが ASGI を通さずに呼ぶ）。

        ASGI の経路と同じく、リクエスト ID と X-Served-By を付け、メトリクスとアクセスログに記録する。
        本文の上限・期限・100-continue はプロトコルが先に確かめ、当てはまるものは ASGI の経路に回す。
        """
        start = time.perf_counter()
        _, request_id, _, header_length = self.read_head(headers)
        status, payload, out = self.answer(fast, body, header_length, request_id, method, path)
        elapsed = time.perf_counter() - start
        fast.stats.observe(status, elapsed)
        if self.access_log:
            self.log_access(method, path, status, elapsed, request_id)
        return status, payload, [*out, (_REQUEST_ID, request_id), self.served_by]

    def log_access(self, method: str, path: str, status: int, elapsed: float, request_id: bytes) -> None:
        """アクセスログの 1 行（リクエスト ID をログの文脈に入れて）。"""
        token = request_id_var.set(request_id.decode("latin-1"))
        try:
            logger.info('"%s %s" %d %.2fms', method, path, status, elapsed * 1000)
        finally:
            request_id_var.reset(token)
