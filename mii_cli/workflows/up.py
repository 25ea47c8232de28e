"""`mii up`: デプロイし、デプロイしたサービスをクラスタの中と外から確かめる（2 つの流れを組み合わせる）。

ビルドは CLI の層が済ませてからイメージを渡す（進み具合を描くのは CLI の層なので）。
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kubernetes.client import ApiClient

from mii_cli.kube.cluster import ClusterInfo
from mii_cli.probe import cluster as cluster_probe
from mii_cli.probe.smoke_test import SmokeReport
from mii_cli.workflows.deploy import DeployRequest, DeployResult, deploy
from mii_cli.workflows.steps import Report


@dataclass(frozen=True)
class UpResult(DeployResult):
    """`mii up` の結果: デプロイの結果とクラスタのスモークテスト。"""

    smoke_test: SmokeReport | None = None


def up(
    request: DeployRequest,
    *,
    client: ApiClient,
    info: ClusterInfo,
    report: Report | None = None,
    on_deployed: Callable[[DeployResult], None] | None = None,
) -> UpResult:
    """デプロイし（ロールアウトまで待つ）、ポートフォワードとクラスタ内の Job でスモークテストする。

    `on_deployed` はデプロイが済んだところで（スモークテストの前に）呼ばれる。
    """
    deployed = deploy(request, client=client, info=info, report=report)
    if on_deployed is not None:
        on_deployed(deployed)
    smoke = cluster_probe.cluster_smoke_test(namespace=request.namespace, client=client)
    return UpResult(**vars(deployed), smoke_test=smoke)
