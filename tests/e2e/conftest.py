"""e2e の共通フィクスチャ: 今の kube context のクラスタと Docker エンジン。

どちらも無ければ理由を示してスキップする。`MII_REQUIRE_CLUSTER=1`（CI）ではスキップせず失敗にする。

- `MII_E2E_CONTEXT`: kube context（既定は今のもの）
- `MII_E2E_NAMESPACE`: Namespace（既定 mii-e2e。利用者のデプロイに触れない）
- `MII_E2E_REPLICAS`・`MII_E2E_CPU`・`MII_E2E_MEMORY`: Deployment の大きさ（既定 2・250m・300Mi。
  2 コアのノードでもローリングアップデートの追加の Pod と HPA の増加が入る）
- `MII_E2E_REGISTRY`（無ければ `MII_REGISTRY`）: イメージを push するレジストリ。
  無ければ minikube・kind へ読み込む
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest
from typer.testing import CliRunner

NAMESPACE = os.environ.get("MII_E2E_NAMESPACE", "mii-e2e")
REPLICAS = int(os.environ.get("MII_E2E_REPLICAS", "2"))
CPU = os.environ.get("MII_E2E_CPU", "250m")
MEMORY = os.environ.get("MII_E2E_MEMORY", "300Mi")
REGISTRY = os.environ.get("MII_E2E_REGISTRY") or os.environ.get("MII_REGISTRY") or None
REQUIRED = os.environ.get("MII_REQUIRE_CLUSTER") == "1"


def unavailable(reason: str) -> NoReturn:
    """クラスタや Docker が無い: 普段はスキップ、MII_REQUIRE_CLUSTER=1 なら失敗。"""
    if REQUIRED:
        pytest.fail(f"MII_REQUIRE_CLUSTER=1 but {reason}")
    pytest.skip(reason)


def mii(*args: str) -> Any:
    """`mii` を CliRunner で実行し、結果を返す（終了コードは呼び出し側が確かめる）。"""
    from mii_cli import cli

    return CliRunner().invoke(cli.app, list(args))


def mii_json(*args: str) -> Any:
    """`mii ... --json` を実行し、成功を確かめて JSON を返す。"""
    result = mii(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def sizing_args() -> list[str]:
    """e2e の Deployment の大きさと、イメージの渡し方のオプション。"""
    args = ["--replicas", str(REPLICAS), "--cpu", CPU, "--memory", MEMORY]
    return [*args, "--registry", REGISTRY] if REGISTRY else args


@pytest.fixture(scope="session")
def cluster() -> tuple[Any, Any]:
    """今の kube context の API クライアントとクラスタの情報（届かなければスキップ）。"""
    from mii_cli.errors import MiiError
    from mii_cli.kube.cluster import connect

    try:
        return connect(os.environ.get("MII_E2E_CONTEXT"))
    except MiiError as error:
        unavailable(
            f"no Kubernetes cluster answers in the current kube context ({error.message}); start one, "
            "e.g. `tests/e2e/cluster/cluster.sh up` and `export "
            "KUBECONFIG=$(tests/e2e/cluster/cluster.sh kubeconfig) MII_REGISTRY=127.0.0.1:5000`, "
            "or `minikube start --cpus 4 --memory 8g && minikube addons enable metrics-server`; "
            "then run `uv run pytest -m e2e tests/e2e`"
        )


@pytest.fixture(scope="session")
def docker_client(cluster: tuple[Any, Any]) -> Any:
    """Docker エンジン（届かなければスキップ）。"""
    from mii_cli.build import docker_client as connect_docker
    from mii_cli.errors import MiiError

    try:
        return connect_docker()
    except MiiError as error:
        unavailable(f"the e2e suite builds the image and needs Docker: {error.message}")


@pytest.fixture(scope="session")
def image(docker_client: Any) -> str:
    """`mii build` と同じ処理でイメージを作り、一意のタグを返す。"""
    from mii_cli.build import build_with_defaults

    result = build_with_defaults(client=docker_client)
    return str(result.unique_tag)


@pytest.fixture(scope="module")
def deployed(cluster: tuple[Any, Any], image: str) -> Iterator[dict[str, Any]]:
    """`mii deploy` でデプロイし（ロールアウトを待つ）、モジュールの終わりに `mii teardown` で消す。"""
    result = mii_json("deploy", "-n", NAMESPACE, "--image", image, "--timeout", "420", *sizing_args())
    yield result
    teardown = mii("teardown", "-n", NAMESPACE, "--timeout", "300")
    assert teardown.exit_code == 0, teardown.output
