"""本文の受け取り（上限・読み捨て・期限の見張り）の単体テスト。ASGI の receive をまねて動かす。"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from service import constants
from service.app.body import BodyDeadlines, LimitedReceive
from service.app.errors import BodyTimeout, BodyTooLarge, status_of


def _chunks(*parts: bytes, stall: bool = False) -> Callable[[], Awaitable[dict[str, Any]]]:
    """parts を順に渡す receive。stall なら最後の後に止まる（残りが届かないクライアント）。"""
    queue = list(parts)

    async def receive() -> dict[str, Any]:
        if queue:
            body = queue.pop(0)
            return {"type": "http.request", "body": body, "more_body": bool(queue) or stall}
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    return receive


def _deadlines(seconds: float = 0.1) -> tuple[BodyDeadlines, list[int]]:
    timeouts: list[int] = []
    return BodyDeadlines(seconds, interval=0.02, on_timeout=lambda: timeouts.append(1)), timeouts


def test_a_body_in_one_chunk_passes_without_a_timeout() -> None:
    deadlines, timeouts = _deadlines()

    async def read() -> dict[str, Any]:
        return await LimitedReceive(_chunks(b"abc"), 10, deadlines)()

    assert asyncio.run(read())["body"] == b"abc"
    assert timeouts == []


def test_a_stalled_body_becomes_408_after_the_deadline() -> None:
    deadlines, timeouts = _deadlines(0.1)

    async def read() -> tuple[float, int]:
        receive = LimitedReceive(_chunks(b"{", stall=True), 10, deadlines)
        await receive()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(BodyTimeout) as error:
            await receive()
        assert status_of(error.value) == 408
        assert error.value.close
        task = asyncio.current_task()
        assert task is not None
        return loop.time() - started, task.cancelling()

    elapsed, cancelling = asyncio.run(read())
    assert 0.05 <= elapsed < 1.0
    assert cancelling == 0  # 見張りの取り消しは 408 に変わり、タスクは取り消し扱いのまま残らない
    assert timeouts == [1]


def test_a_cancellation_from_elsewhere_is_not_turned_into_408() -> None:
    deadlines, timeouts = _deadlines(60)

    async def read() -> None:
        receive = LimitedReceive(_chunks(b"{", stall=True), 10, deadlines)
        await receive()
        await receive()

    async def main() -> None:
        task = asyncio.create_task(read())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert timeouts == []


def test_an_oversized_body_is_read_out_before_the_413() -> None:
    deadlines, _ = _deadlines()
    receive = LimitedReceive(_chunks(b"x" * 8, b"x" * 8, b"x" * 8), 10, deadlines)

    async def read() -> BodyTooLarge:
        await receive()
        with pytest.raises(BodyTooLarge) as error:
            await receive()
        return error.value

    error = asyncio.run(read())
    assert receive.complete
    assert receive.received == 24
    assert status_of(error) == 413
    assert not error.close  # 読み切ったので接続はそのまま使える


def test_a_body_beyond_the_drain_budget_closes_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "DRAIN_MAX_BYTES", 16)
    deadlines, _ = _deadlines()
    receive = LimitedReceive(_chunks(*[b"x" * 8] * 10), 4, deadlines)

    async def read() -> BodyTooLarge:
        with pytest.raises(BodyTooLarge) as error:
            await receive()
        return error.value

    error = asyncio.run(read())
    assert not receive.complete
    assert error.close


def test_a_drain_that_stalls_stops_at_the_deadline() -> None:
    deadlines, _ = _deadlines(0.1)
    receive = LimitedReceive(_chunks(b"x" * 8, stall=True), 100, deadlines)

    async def drain() -> bool:
        return await receive.drain()

    assert asyncio.run(drain()) is False
