"""e2e の共通フィクスチャ: 今の kube context のクラスタと Docker エンジン、`mii` の呼び出し、e2e の設定。

どちらも無ければ理由を示してスキップする。`MII_REQUIRE_CLUSTER=1`（CI）ではスキップせず失敗にする。
設定は `tests.support.E2eSettings`（環境変数 MII_E2E_*）。
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NoReturn

import pytest

from tests.support import E2eSettings, Mii


@pytest.fixture(scope="session")
def e2e() -> E2eSettings:
    """e2e の設定（Namespace・大きさ・レジストリ・コンテキスト）。"""
    return E2eSettings.from_environment()


@pytest.fixture(scope="session")
def mii() -> Mii:
    """`mii` のコマンドを実行する道具（`mii(...)`、`mii.json(...)`）。"""
    return Mii()


def unavailable(e2e: E2eSettings, reason: str) -> NoReturn:
    """クラスタや Docker が無い: 普段はスキップ、MII_REQUIRE_CLUSTER=1 なら失敗。"""
    if e2e.required:
        pytest.fail(f"MII_REQUIRE_CLUSTER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def cluster(e2e: E2eSettings) -> tuple[Any, Any]:
    """今の kube context の API クライアントとクラスタの情報（届かなければスキップ）。"""
    from mii_cli.errors import MiiError
    from mii_cli.kube.cluster import connect

    try:
        return connect(e2e.context)
    except MiiError as error:
        unavailable(
            e2e,
            f"no Kubernetes cluster answers in the current kube context ({error.message}); start one, "
            'e.g. `tests/e2e/minikube/minikube.sh up` and `eval "$(tests/e2e/minikube/minikube.sh env)"` '
            "(as root), "
            "or `minikube start --cpus 4 --memory 8g && minikube addons enable metrics-server`; "
            "then run `uv run pytest -m e2e tests/e2e`",
        )


@pytest.fixture(scope="session")
def docker_client(e2e: E2eSettings, cluster: tuple[Any, Any]) -> Any:
    """Docker エンジン（届かなければスキップ）。"""
    from mii_cli.errors import MiiError
    from mii_cli.image.docker import docker_client as connect_docker

    try:
        return connect_docker()
    except MiiError as error:
        unavailable(e2e, f"the e2e suite builds the image and needs Docker: {error.message}")


@pytest.fixture(scope="session")
def image(docker_client: Any) -> str:
    """`mii build` と同じ要求（MII_* の設定と同梱モデル）でイメージを作り、一意のタグを返す。"""
    from mii_cli.commands.requests import build_request
    from mii_cli.image.build import build_image

    return build_image(build_request(), client=docker_client).unique_tag


@pytest.fixture(scope="module")
def deployed(e2e: E2eSettings, mii: Mii, cluster: tuple[Any, Any], image: str) -> Iterator[dict[str, Any]]:
    """`mii deploy` でデプロイし（ロールアウトを待つ）、モジュールの終わりに `mii teardown` で消す。"""
    result: dict[str, Any] = mii.json(
        "deploy", "-n", e2e.namespace, "--image", image, "--timeout", "420", *e2e.sizing_args
    )
    yield result
    teardown = mii("teardown", "-n", e2e.namespace, "--timeout", "300")
    assert teardown.exit_code == 0, teardown.output


@pytest.fixture(scope="module")
def made_images(docker_client: Any) -> Iterator[list[str]]:
    """テストが作ったイメージの参照を集め、モジュールの終わりにローカルのタグを消す（ビルドのたびに増やさない）。"""
    import contextlib

    from docker.errors import APIError

    references: list[str] = []
    yield references
    for reference in references:
        # レジストリへ push した参照は `REPO:TAG@sha256:...`: ローカルのタグは @ の前
        with contextlib.suppress(APIError):
            docker_client.images.remove(reference.split("@", 1)[0])
