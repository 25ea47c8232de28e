"""リクエスト本文の受け取り: 大きさの上限（413）と、本文が届くまでの期限（408）。

- 上限を超える本文には、413 を返す前に残りを読み捨てる（`DRAIN_MAX_BYTES` と期限まで）。
  読まずに応答して接続を閉じると、クライアントが送りかけのデータがソケットに残り、カーネルが
  リセットを送って、413 の応答はクライアントが読む前に消える（`Connection: close` を送る
  urllib などで起きる）。読み切れなかったときだけ `Connection: close` を付けて閉じる。
- 本文の期限（`BODY_TIMEOUT_SECONDS`）は、リクエストごとのタイマーではなく、1 つの見張り
  （`BodyDeadlines`）がまとめて守る。uvloop のタイマーは 1 本の設定と取り消しに約 5 µs かかり、
  ほとんどのリクエストは本文を最初の受け取りで得るので、その費用をすべてのリクエストに払わない。
  見張りは期限を過ぎて待っているタスクだけを取り消し、その待ちを `BodyTimeout`（408）に変える。
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from service import constants
from service.app.errors import BodyTimeout, BodyTooLarge

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]


class BodyDeadlines:
    """本文を待っているタスクを見張り、期限を過ぎたものを取り消す（プロセスに 1 つ）。

    見張りは `interval` 秒ごとに 1 回だけ動き、待っているタスクが無くなれば止まる。
    """

    def __init__(self, seconds: float, *, interval: float = 0.5, on_timeout: Callable[[], None]) -> None:
        """期限の秒数・見回りの間隔・期限切れのたびに呼ぶ関数（メトリクス）を受け取る。"""
        self.seconds = seconds
        self.interval = interval
        self.on_timeout = on_timeout
        self._waiting: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        # イベントループごとの次の見回り（サーバーではループは 1 つ。テストでは複数ありうる）
        self._patrols: dict[asyncio.AbstractEventLoop, asyncio.TimerHandle] = {}

    async def wait(self, receive: Receive, deadline: float) -> Message:
        """`receive()` を期限付きで待つ。期限を過ぎれば BodyTimeout。"""
        task = asyncio.current_task()
        if task is None:  # pragma: no cover  ASGI サーバーは常にタスクの中で呼ぶ
            return await receive()
        self._waiting[task] = deadline
        self._arm(task.get_loop())
        try:
            return await receive()
        except asyncio.CancelledError:
            if task not in self._expired:
                raise
            self._expired.discard(task)
            task.uncancel()
            self.on_timeout()
            raise BodyTimeout(self.seconds) from None
        finally:
            self._waiting.pop(task, None)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """そのループの見回りが予約されていなければ予約する。"""
        if loop not in self._patrols:
            self._patrols[loop] = loop.call_later(self.interval, self._check, loop)

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        """期限を過ぎて待っているタスクを取り消す。まだ待っているものがあれば次の見回りを予約する。"""
        del self._patrols[loop]
        now = loop.time()
        waiting = False
        for task, deadline in list(self._waiting.items()):
            if task.get_loop() is not loop:
                continue
            waiting = True
            if deadline <= now and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        if waiting:
            self._arm(loop)


class LimitedReceive:
    """1 リクエストの `receive` を包み、本文の上限と期限を守る。

    期限は最初の受け取りの時刻から `BODY_TIMEOUT_SECONDS` 後（本文全体がそれまでに届くこと）。
    """

    __slots__ = ("_deadline", "_deadlines", "_receive", "complete", "limit", "received")

    def __init__(
        self,
        receive: Receive,
        limit: int,
        deadlines: BodyDeadlines,
        *,
        received: int = 0,
        deadline: float | None = None,
    ) -> None:
        """元の receive・上限のバイト数・見張り（と、すでに受け取った量と期限）を受け取る。"""
        self._receive = receive
        self._deadlines = deadlines
        self._deadline = deadline
        self.limit = limit
        self.received = received
        self.complete = False

    async def __call__(self) -> Message:
        """次のメッセージを受け取る。上限を超えたら残りを読み捨てて BodyTooLarge。"""
        message = await self._next()
        if message["type"] == "http.request" and self.received > self.limit:
            drained = await self.drain()
            raise BodyTooLarge(self.limit, drained=drained)
        return message

    async def _next(self) -> Message:
        """期限付きで 1 つ受け取り、受け取った量と本文の終わりを記録する。"""
        if self._deadline is None:
            self._deadline = asyncio.get_running_loop().time() + self._deadlines.seconds
        message = await self._deadlines.wait(self._receive, self._deadline)
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.complete = True
        else:
            # 切断: これ以上は届かない
            self.complete = True
        return message

    async def drain(self) -> bool:
        """本文の残りを読み捨てる（`DRAIN_MAX_BYTES` と期限まで）。最後まで読めたら True。"""
        budget = self.received + constants.DRAIN_MAX_BYTES
        try:
            while not self.complete and self.received <= budget:
                await self._next()
        except BodyTimeout:
            return False
        return self.complete


async def read_body(receive: Receive, limit: int, deadlines: BodyDeadlines) -> bytes:
    """本文を最後まで読む（高速経路用: 1 回で届く普通の本文にはオブジェクトを作らない）。

    上限を超えたら残りを読み捨てて BodyTooLarge、期限を過ぎたら BodyTimeout。
    """
    deadline = asyncio.get_running_loop().time() + deadlines.seconds
    message = await deadlines.wait(receive, deadline)
    if message["type"] != "http.request":
        return b""
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise BodyTooLarge(limit)
        return body
    rest = LimitedReceive(receive, limit, deadlines, received=len(body), deadline=deadline)
    if rest.received > limit:
        raise BodyTooLarge(limit, drained=await rest.drain())
    chunks = [body]
    while not rest.complete:
        message = await rest()
        chunks.append(message.get("body", b""))
    return b"".join(chunks)
