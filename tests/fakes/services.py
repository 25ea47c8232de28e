"""わざと約束を破る推論サービス（Starlette の ASGI アプリ）。`tests.fakes.http.asgi_server` に載せて使う。

- `subtly_wrong_service`: 形は概ね正しいが、いくつかの約束を破る
- `broken_service`: 形の崩れた応答ばかり返す
- `rewriting_proxy`: 本物のサーバーの前に立ち、JSON の応答を書き換える（別のモデルを名乗るなど）
- `flaky_service`: /health には答えるが、推論は 3 回に 1 回 500 を返す
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

# 同梱モデルのサンプルの確率（/metadata の prediction_sample）とラベル
SAMPLE_P = [0.9720988869667053, 0.01597398892045021, 0.011927163228392601]
LABELS = {"0": "setosa", "1": "versicolor", "2": "virginica"}
METADATA = {
    "data_type": "float32",
    "data_structure": "(1,4)",
    "data_sample": [[5.1, 3.5, 1.4, 0.2]],
    "prediction_type": "float32",
    "prediction_structure": "(1,3)",
    "prediction_sample": SAMPLE_P,
    "model": {"file_name": "fake.onnx", "sha256": "ab" * 32, "num_classes": 3},
}

Handler = Callable[[Request], Awaitable[Response]]


def _app(handler: Handler) -> Starlette:
    """すべてのパスの GET と POST を 1 つの関数で答えるアプリ。"""
    return Starlette(routes=[Route("/{path:path}", handler, methods=["GET", "POST"])])


def _fake_probabilities(row: list[Any]) -> list[float]:
    """わざと誤るサービスの「推論」: 1 列目で 3 通りの確率を返す。"""
    if row[0] < 6:
        return SAMPLE_P
    if row[0] < 6.5:
        return [0.1, 0.8, 0.1]
    return [0.05, 0.05, 0.9]


async def _subtly_wrong(request: Request) -> Response:
    """形は概ね正しいが、health の本文・readiness・ラベル・行の順序・4xx・上限・V2 の約束を破る。"""
    path = request.url.path
    answers: dict[str, Any] = {
        "/health": {"health": "OK!"},
        "/metadata": METADATA,
        "/label": LABELS,
        "/predict/test": {"prediction": SAMPLE_P},
        "/predict/test/label": {"prediction": "virginica"},
    }
    if path == "/health/ready":
        return JSONResponse({"status": "not ready"}, status_code=503)
    if path.startswith("/v2"):
        # Open Inference Protocol を話さない
        return JSONResponse({"detail": "Not Found"}, status_code=404)
    if request.method == "GET":
        return JSONResponse(answers[path])
    # 本文の上限も NaN の拒否も無い（Python の json は NaN を受け付ける）
    body = json.loads(await request.body())
    if "data" not in body:
        return JSONResponse({"detail": [{"msg": "Field required"}]}, status_code=422)
    rows = body["data"]
    if not rows:
        return JSONResponse({"detail": "empty"}, status_code=400)
    if any(isinstance(v, str) for row in rows for v in row):
        return PlainTextResponse("Internal Server Error", status_code=500)
    if any(len(row) != 4 for row in rows):
        return JSONResponse({"detail": "bad row"}, status_code=400)
    # 行の順序を守らない（確率の高い順に並べ替えてしまう）
    probabilities = sorted((_fake_probabilities(row) for row in rows), key=lambda p: -p[0])
    if path == "/predict/label":
        labels = [LABELS[str(p.index(max(p)))] for p in probabilities]
        return JSONResponse({"prediction": labels[0] if len(labels) == 1 else labels})
    return JSONResponse({"prediction": probabilities[0] if len(rows) == 1 else probabilities})


async def _broken(request: Request) -> Response:
    """形の崩れた応答ばかり返す（readiness は 0.5 秒かかる）。"""
    path = request.url.path
    if path == "/metadata":
        return JSONResponse({"data_type": "float32", "model": {"sha256": "nope"}})
    if path == "/label":
        return JSONResponse({"0": "setosa"})
    if path == "/predict/test":
        return JSONResponse({"prediction": [0.5, 0.6, 0.7]})
    if path == "/health":
        return PlainTextResponse("ok")
    if path == "/health/ready":
        await asyncio.sleep(0.5)
    return PlainTextResponse("boom", status_code=500)


def subtly_wrong_service() -> Starlette:
    """形は概ね正しいが、いくつかの約束を破るサービス。"""
    return _app(_subtly_wrong)


def broken_service() -> Starlette:
    """形の崩れた応答ばかり返すサービス。"""
    return _app(_broken)


def rewriting_proxy(upstream_url: str, rewrite: Callable[[str, int, Any], Any]) -> Starlette:
    """本物のサーバーの前に立ち、JSON の応答を rewrite(パス, ステータス, 本文) で書き換えるプロキシ。"""

    async def handler(request: Request) -> Response:
        async with httpx.AsyncClient(base_url=upstream_url) as client:
            upstream = await client.request(
                request.method,
                request.url.path,
                content=await request.body(),
                headers={"content-type": "application/json"},
            )
        body = rewrite(request.url.path, upstream.status_code, upstream.json())
        return JSONResponse(body, status_code=upstream.status_code)

    return _app(handler)


def flaky_service() -> Starlette:
    """/health には答えるが、推論は 3 回に 1 回 500 を返すサービス。"""
    calls = 0

    async def health(request: Request) -> Response:
        return JSONResponse({"health": "ok"})

    async def predict(request: Request) -> Response:
        nonlocal calls
        calls += 1
        if calls % 3 == 0:
            return PlainTextResponse("Internal Server Error", status_code=500)
        return JSONResponse({"prediction": [1.0, 0.0, 0.0]})

    return Starlette(routes=[Route("/health", health), Route("/predict", predict, methods=["POST"])])
