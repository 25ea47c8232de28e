"""結合テストの共通フィクスチャ: 実モデルの ASGI アプリ、ループバックの本物のサーバー、
本物の Docker エンジン。
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app.app import create_app
from service.configurations import load_settings
from tests.support import ROOT, SERVICE_ENV, free_port


@pytest.fixture
def make_client(clean_env: pytest.MonkeyPatch) -> Iterator[Callable[..., TestClient]]:
    """設定を上書きしてアプリを作り、lifespan を回した TestClient を返す。"""
    clients: list[TestClient] = []

    def factory(**overrides: Any) -> TestClient:
        settings = load_settings(**overrides)
        client = TestClient(create_app(settings), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture(params=[True, False], ids=["fast-path", "fastapi-routes"])
def client(
    request: pytest.FixtureRequest, make_client: Callable[..., TestClient], model_path: Path, label_path: Path
) -> TestClient:
    """同梱モデルのアプリ（1 リクエスト最大 50 行、ボディ最大 4 KiB）。高速経路と FastAPI の経路の両方で。"""
    return make_client(
        model_filepath=model_path,
        label_filepath=label_path,
        max_batch_rows=50,
        max_body_bytes=4096,
        pod_name="pod-a",
        fast_path=request.param,
    )


# --- 本物のサーバー（`python -m mii_cli serve`）: スモークテストと負荷試験が使う ---


@pytest.fixture(scope="session")
def start_live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., str]]:
    """`python -m mii_cli serve` を 127.0.0.1 の空きポートで起動し、ready になった URL を返すファクトリ。

    引数は `mii serve` にそのまま渡す（`--model`・`--labels` など）。`env` はサービスの環境変数
    （`BODY_TIMEOUT_SECONDS` など）。同じ引数のサーバーはセッションの中で使い回し、
    セッションの終わりに Ctrl-C（SIGINT）で止める。
    """
    import os
    import signal
    import subprocess
    import sys
    import time

    import httpx

    servers: dict[tuple[object, ...], tuple[str, subprocess.Popen[bytes]]] = {}
    base_env = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV}
    base_env["POD_NAME"] = "live-server"

    def start(*args: str, env: dict[str, str] | None = None) -> str:
        key = (*args, *sorted((env or {}).items()))
        if key in servers:
            return servers[key][0]
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = tmp_path_factory.mktemp("live-server") / "server.log"
        command = [sys.executable, "-m", "mii_cli", "serve", "--port", str(port), "--log-level", "error"]
        with log.open("wb") as handle:
            process = subprocess.Popen(
                [*command, *args],
                cwd=ROOT,
                env={**base_env, **(env or {})},
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        servers[key] = (url, process)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"mii serve {' '.join(args)} exited early:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/health/ready", timeout=0.5).status_code == 200:
                    return url
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        pytest.fail(f"mii serve {' '.join(args)} did not become ready:\n{log.read_text()}")

    yield start
    for _, process in servers.values():
        process.send_signal(signal.SIGINT)
    for _, process in servers.values():
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def live_server(start_live_server: Callable[..., str]) -> str:
    """同梱モデルを配信する本物のサーバーの URL。"""
    return start_live_server()


@pytest.fixture(scope="session")
def docker() -> Any:
    """本物の Docker エンジン（無ければスキップ。MII_REQUIRE_DOCKER=1 の CI では失敗）。"""
    import os

    from mii_cli.errors import DockerError
    from mii_cli.image.docker import docker_client

    try:
        return docker_client()
    except DockerError as error:
        if os.environ.get("MII_REQUIRE_DOCKER") == "1":
            pytest.fail(f"MII_REQUIRE_DOCKER=1 but no Docker engine answers: {error.message}")
        pytest.skip(f"no Docker engine answers ({error.message}); start Docker to run these tests")
