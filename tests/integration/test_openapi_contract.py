"""OpenAPI の仕様とアプリの実際の応答を突き合わせる（ずれが戻らないように）。

仕様のすべての操作に、正しいリクエストと誤ったリクエスト（スキーマ違い・壊れた JSON・列数違い・
NaN・空・行数超過・大きすぎる本文・途中で止まる本文、V2 ではデータ型・形・知らないモデル名も）を送り、
返ったステータスがその操作の `responses` に載っていること、本文がそこに書かれたスキーマに合うことを
確かめる。分類器（同梱の Iris）と回帰器（ラベルの操作が 404）の両方、高速経路と FastAPI の経路の両方で。
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

from tests.zoo import ZooModel

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


def _v2_probes(input_name: str, width: int) -> list[tuple[str, bytes, dict[str, str]]]:
    """V2 の推論に送る (名前, 本文, ヘッダ)。"""
    row = [0.5] * width

    def request(**tensor: Any) -> bytes:
        base = {"name": input_name, "shape": [1, width], "datatype": "FP32", "data": row}
        return json.dumps({"inputs": [{**base, **tensor}]}).encode()

    header = json.dumps(
        {
            "inputs": [
                {
                    "name": input_name,
                    "shape": [1, width],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 4 * width},
                }
            ]
        }
    ).encode()
    binary = header + b"\x00\x00\x80\x3f" * width
    json_headers = {"Content-Type": "application/json"}
    return [
        ("one-row", request(), json_headers),
        ("batch", request(shape=[2, width], data=row * 2), json_headers),
        ("binary", binary, {"Inference-Header-Content-Length": str(len(header))}),
        ("wrong-datatype", request(datatype="FP64"), json_headers),
        ("wrong-shape", request(shape=[1, width + 1]), json_headers),
        ("broken-json", b'{"inputs": [', json_headers),
        ("too-many-rows", request(shape=[51, width], data=row * 51), json_headers),
        ("too-large", b" " * 5000, json_headers),
    ]


def _models(
    model_path: Path, label_path: Path, zoo: dict[str, ZooModel]
) -> dict[str, tuple[dict[str, Any], str, str, int]]:
    """確かめるモデル: 名前 -> (設定, V2 の名前, 入力名, 幅)。"""
    return {
        "classifier": (
            {"model_filepath": model_path, "label_filepath": label_path},
            "iris_svc",
            "float_input",
            4,
        ),
        "regressor": ({"model_filepath": zoo["regressor"].path}, "regressor", "features", 3),
    }


def _concrete(path: str, name: str) -> str:
    return path.replace("{name}", name).replace("{version}", "1")


def _body_of(response: Any) -> Any:
    return response.json() if response.headers["content-type"] == "application/json" else None


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "fastapi-routes"])
def test_every_answer_of_every_operation_of_both_apis_is_documented(
    make_client: Callable[..., TestClient],
    model_path: Path,
    label_path: Path,
    zoo: dict[str, ZooModel],
    fast_path: bool,
) -> None:
    seen: dict[tuple[str, str, str], set[int]] = {}
    specs: dict[str, dict[str, Any]] = {}
    for model, (settings, name, input_name, width) in _models(model_path, label_path, zoo).items():
        client = make_client(
            **settings, max_batch_rows=50, max_body_bytes=4096, body_timeout_seconds=0.2, fast_path=fast_path
        )
        spec = specs[model] = client.get("/openapi.json").json()
        for method, path, _ in _operations(spec):
            targets = [_concrete(path, name)] + (
                [_concrete(path, "no-such-model")] if "{name}" in path else []
            )
            for target in targets:
                if method == "GET":
                    probes = [("plain", b"", {}), ("too-large", b"x" * 5000, {})]
                elif path.startswith("/v2"):
                    probes = _v2_probes(input_name, width)
                else:
                    row = [0.5] * width
                    probes = [
                        (n, b.replace(b"[5.1, 3.5, 1.4, 0.2]", json.dumps(row).encode()), {})
                        for n, b in POST_PROBES
                    ]
                for _probe, body, headers in probes:
                    response = client.request(method, target, content=body or None, headers=headers)
                    _check_documented(spec, method, path, response.status_code, _body_of(response))
                    seen.setdefault((model, method, path), set()).add(response.status_code)
                if method == "POST":
                    status, payload = _stalled_post(client, target)
                    assert status == 408
                    _check_documented(spec, method, path, status, payload)
                    seen[(model, method, path)].add(status)
    # どの操作でも、載っているコードのうち 500・503（モデルの読み込み前）以外はすべて実際に返った
    for (model, method, path), statuses in seen.items():
        documented = {int(code) for code in specs[model]["paths"][path][method.lower()]["responses"]}
        assert documented - {500, 503} == statuses, (model, method, path, sorted(statuses))
    # 回帰器の文書にはラベルの操作が無い（そこには 404 を返す）
    assert "/label" in specs["classifier"]["paths"]
    assert "/label" not in specs["regressor"]["paths"]


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


def test_internal_errors_and_not_ready_are_documented(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    state = client.app.state.service  # type: ignore[attr-defined]

    class Broken:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("the model went away")

    state.model_, state.ready = Broken(), False
    for method, path, _ in _operations(spec):
        body = POST_PROBES[0][1] if method == "POST" else None
        response = client.request(method, _concrete(path, "iris_svc"), content=body)
        _check_documented(spec, method, path, response.status_code, response.json())
    assert client.get("/health/ready").status_code == 503
    assert client.post("/predict", content=POST_PROBES[0][1]).status_code == 500


def test_the_spec_lists_the_validation_error_shape_for_bodies(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/predict", "/predict/label"):
        responses = spec["paths"][path]["post"]["responses"]
        assert {"200", "400", "408", "413", "422", "500"} <= set(responses)
        assert responses["422"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ValidationErrorResponse"
        }


def test_the_spec_lists_the_v2_error_shape_and_the_binary_extension(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        operation = spec["paths"][path]["post"]
        assert {"200", "400", "404", "408", "413", "500"} == set(operation["responses"])
        assert operation["responses"]["400"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/V2Error"
        }
        # 本文は JSON のテンソルだけを形式に載せ、バイナリテンソル拡張（本文の長さで決まるヘッダ）は説明に書く
        assert set(operation["requestBody"]["content"]) == {"application/json"}
        assert "Inference-Header-Content-Length" in operation["description"]
        assert set(operation["responses"]["200"]["content"]) == {
            "application/json",
            "application/octet-stream",
        }
        names = {p["name"]: p["schema"] for p in operation["parameters"]}
        assert names["name"] == {"type": "string", "enum": ["iris_svc"]}
