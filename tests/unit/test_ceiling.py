"""ベンチマークの天井（何もしない ASGI アプリ）のテスト: 本文を読み切って決まった JSON を返す。"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from service import ceiling


def _run(scope: dict[str, Any], messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(ceiling.app(scope, receive, send))
    assert queue == []  # すべて読んだ
    return sent


def test_the_ceiling_reads_the_whole_body_and_answers_json() -> None:
    sent = _run(
        {"type": "http", "method": "POST", "path": "/predict"},
        [
            {"type": "http.request", "body": b'{"data": ', "more_body": True},
            {"type": "http.request", "body": b"[[1, 2, 3, 4]]}", "more_body": False},
        ],
    )
    start, body = sent
    assert start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/json"
    assert int(headers[b"content-length"]) == len(body["body"])
    assert len(json.loads(body["body"])["prediction"]) == 3


def test_the_ceiling_completes_its_lifespan() -> None:
    sent = _run({"type": "lifespan"}, [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
