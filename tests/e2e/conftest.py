"""e2e の共通フィクスチャ: 今の kube context のクラスタと Docker エンジン。どちらも無ければスキップする。"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

# 利用者のデプロイを壊さないよう、e2e は専用の Namespace を使う（MII_E2E_NAMESPACE で変更可）
NAMESPACE = os.environ.get("MII_E2E_NAMESPACE", "mii-e2e")


@pytest.fixture(scope="session")
def cluster() -> tuple[Any, Any]:
    """今の kube context の API クライアントとクラスタの情報（届かなければスキップ）。"""
    from mii_cli.errors import MiiError
    from mii_cli.kube.cluster import connect

    try:
        return connect(os.environ.get("MII_E2E_CONTEXT"))
    except MiiError as error:
        pytest.skip(
            f"no Kubernetes cluster answers in the current kube context ({error.message}); "
            "start one, e.g. `minikube start --cpus 4 --memory 8g` and "
            "`minikube addons enable metrics-server`, then run `uv run pytest -m e2e tests/e2e`"
        )


@pytest.fixture(scope="session")
def docker_client(cluster: tuple[Any, Any]) -> Any:
    """Docker エンジン（届かなければスキップ）。"""
    from mii_cli.errors import MiiError
    from mii_cli.kube.images import docker_client as connect_docker

    try:
        return connect_docker()
    except MiiError as error:
        pytest.skip(f"the e2e suite builds the image and needs Docker: {error.message}")


@pytest.fixture(scope="session")
def image(docker_client: Any) -> str:
    """`mii build` と同じ処理でイメージを作り、一意のタグを返す。"""
    from mii_cli.build import build_with_defaults

    result = build_with_defaults(client=docker_client)
    return str(result.unique_tag)


@pytest.fixture(scope="module")
def deployed(cluster: tuple[Any, Any], image: str) -> Iterator[dict[str, Any]]:
    """デプロイし、モジュールの終わりに Namespace ごと消す。"""
    from mii_cli.kube.deploy import deploy
    from mii_cli.kube.teardown import teardown

    client, info = cluster
    result = deploy(namespace=NAMESPACE, image=image, client=client, info=info, timeout=420)
    yield result
    teardown(client, NAMESPACE, timeout=300)
