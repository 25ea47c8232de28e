"""ASGI アプリを実モデルで動かすフィクスチャ。"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app.app import create_app
from service.configurations import load_settings


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


@pytest.fixture
def client(make_client: Callable[..., TestClient], model_path: Path, label_path: Path) -> TestClient:
    """同梱モデルのアプリ（1 リクエスト最大 50 行、ボディ最大 4 KiB）。"""
    return make_client(
        model_filepath=model_path,
        label_filepath=label_path,
        max_batch_rows=50,
        max_body_bytes=4096,
        pod_name="pod-a",
    )
