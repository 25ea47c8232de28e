"""`mii up`: デプロイし、デプロイしたサービスをクラスタの中と外から確かめる（2 つの流れを組み合わせる）。

ビルドは CLI の層が済ませてからイメージを渡す（進み具合を描くのは CLI の層なので）。
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kubernetes.client import ApiClient

from mii_cli.kube.cluster import ClusterInfo
from mii_cli.kube.render import Sizing
from mii_cli.probe import cluster as cluster_probe
from mii_cli.probe.smoke_test import SmokeReport
from mii_cli.workflows.deploy import DeployEvent, DeployResult, deploy


@dataclass(frozen=True)
class UpResult(DeployResult):
    """`mii up` の結果: デプロイの結果とクラスタのスモークテスト。"""

    smoke_test: SmokeReport | None = None


def up(
    *,
    namespace: str,
    image: str,
    registry: str | None,
    timeout: float,
    sizing: Sizing | None,
    client: ApiClient,
    info: ClusterInfo,
    on_event: Callable[[DeployEvent], None] | None = None,
    on_deployed: Callable[[DeployResult], None] | None = None,
    rollback_on_failure: bool = True,
    canary: bool = False,
    canary_replicas: int = 1,
    compare_rows: list[list[float]] | None = None,
) -> UpResult:
    """デプロイし（ロールアウトまで待つ）、ポートフォワードとクラスタ内の Job でスモークテストする。

    `on_deployed` はデプロイが済んだところで（スモークテストの前に）呼ばれる。
    """
    deployed = deploy(
        namespace=namespace,
        image=image,
        registry=registry,
        timeout=timeout,
        sizing=sizing,
        client=client,
        info=info,
        on_event=on_event,
        rollback_on_failure=rollback_on_failure,
        canary=canary,
        canary_replicas=canary_replicas,
        compare_rows=compare_rows,
    )
    if on_deployed is not None:
        on_deployed(deployed)
    report = cluster_probe.cluster_smoke_test(namespace=namespace, client=client)
    return UpResult(**vars(deployed), smoke_test=report)
