"""OpenAPI の仕様とアプリの実際の応答を突き合わせる（ずれが戻らないように）。

仕様のすべての操作に、正しいリクエストと誤ったリクエスト（スキーマ違い・壊れた JSON・列数違い・
NaN・空・行数超過・大きすぎる本文・途中で止まる本文）を送り、返ったステータスがその操作の
`responses` に載っていること、本文がそこに書かれたスキーマに合うことを確かめる。
高速経路と FastAPI の経路の両方で。
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient

SAMPLE = [5.1, 3.5, 1.4, 0.2]
# (名前, 本文) の組。POST の操作に送る
POST_PROBES: list[tuple[str, bytes]] = [
    ("one-row", json.dumps({"data": [SAMPLE]}).encode()),
    ("batch", json.dumps({"data": [SAMPLE, SAMPLE]}).encode()),
    ("missing-data", b'{"rows": [[1, 2, 3, 4]]}'),
    ("non-numeric", b'{"data": [["a", 2, 3, 4]]}'),
    ("broken-json", b'{"data": [[1, 2'),
    ("wrong-width", b'{"data": [[1, 2, 3]]}'),
    ("nan", b'{"data": [[NaN, 2, 3, 4]]}'),
    ("empty", b'{"data": []}'),
    ("too-many-rows", json.dumps({"data": [SAMPLE] * 51}).encode()),
    ("too-large", b'{"data": [' + b"[1, 2, 3, 4], " * 400 + b"[1, 2, 3, 4]]}"),
]


@pytest.fixture(params=[True, False], ids=["fast-path", "fastapi-routes"])
def app_client(
    request: pytest.FixtureRequest, make_client: Callable[..., TestClient], model_path: Path, label_path: Path
) -> TestClient:
    """1 リクエスト 50 行・本文 4 KiB・本文の期限 0.2 秒のアプリ。"""
    return make_client(
        model_filepath=model_path,
        label_filepath=label_path,
        max_batch_rows=50,
        max_body_bytes=4096,
        body_timeout_seconds=0.2,
        fast_path=request.param,
    )


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    ]


def _check_documented(spec: dict[str, Any], method: str, path: str, status: int, body: Any) -> None:
    """ステータスが操作の responses にあり、本文がそのスキーマに合うこと。"""
    operation = spec["paths"][path][method.lower()]
    documented = operation["responses"]
    assert str(status) in documented, f"{method} {path} answered {status}, documented: {sorted(documented)}"
    schema = documented[str(status)].get("content", {}).get("application/json", {}).get("schema")
    if schema:
        jsonschema.validate(body, {**schema, "components": spec["components"]})


def _stalled_post(client: TestClient, path: str) -> tuple[int, Any]:
    """本文の最初のかけらだけを渡して止まるクライアントを、ASGI で直接まねる。"""
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": b'{"data": [[', "more_body": True}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.sleep(3600)  # 残りは届かない
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }

    async def call() -> None:
        await asyncio.wait_for(client.app(scope, receive, send), timeout=10)  # type: ignore[arg-type]

    asyncio.run(call())
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body)


def test_every_answer_of_every_operation_is_documented(app_client: TestClient) -> None:
    spec = app_client.get("/openapi.json").json()
    seen: dict[tuple[str, str], set[int]] = {}
    for method, path, _ in _operations(spec):
        probes = POST_PROBES if method == "POST" else [("plain", b""), ("too-large", b"x" * 5000)]
        for _name, body in probes:
            response = app_client.request(
                method, path, content=body or None, headers={"Content-Type": "application/json"}
            )
            _check_documented(spec, method, path, response.status_code, response.json())
            seen.setdefault((method, path), set()).add(response.status_code)
        if method == "POST":
            status, payload = _stalled_post(app_client, path)
            assert status == 408
            _check_documented(spec, method, path, status, payload)
            seen[(method, path)].add(status)
    # 本文を読む操作では、載っているコードのうち 500 以外はすべて実際に返った
    for (method, path), statuses in seen.items():
        if method == "POST":
            documented = {int(code) for code in spec["paths"][path]["post"]["responses"]}
            assert documented - {500} == statuses, (path, sorted(statuses))


def test_internal_errors_and_not_ready_are_documented(app_client: TestClient) -> None:
    spec = app_client.get("/openapi.json").json()
    state = app_client.app.state.service  # type: ignore[attr-defined]

    class Broken:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("the model went away")

    state.classifier_, state.ready = Broken(), False
    for method, path, _ in _operations(spec):
        body = POST_PROBES[0][1] if method == "POST" else None
        response = app_client.request(method, path, content=body)
        _check_documented(spec, method, path, response.status_code, response.json())
    assert app_client.get("/health/ready").status_code == 503
    assert app_client.post("/predict", content=POST_PROBES[0][1]).status_code == 500


def test_the_spec_lists_the_validation_error_shape_for_bodies(app_client: TestClient) -> None:
    spec = app_client.get("/openapi.json").json()
    for path in ("/predict", "/predict/label"):
        responses = spec["paths"][path]["post"]["responses"]
        assert {"200", "400", "408", "413", "422", "500"} <= set(responses)
        assert responses["422"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ValidationErrorResponse"
        }
