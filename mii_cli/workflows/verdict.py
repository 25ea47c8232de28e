"""`mii verdict`: 今の canary と安定版の数字（推論の件数・エラー率・p50/p99 と、同じ行での答えの違い）。

両方の側の Pod の `/metrics` を API サーバーの Pod のプロキシ越しに読み（Prometheus のサーバーは要らない）、
側ごとに合わせる。値は Pod が起きてからの累積。答えの違いは、デプロイのときと同じく両方の Pod に同じ行
（サンプルの行と `--compare-rows`）を送って比べる。合否は決めない（決めるのは利用者か、閾値を渡した呼び手）。
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kubernetes.client import ApiClient

from mii_cli.errors import ConfigError, MiiError
from mii_cli.kube import APP_LABEL, APP_NAME, CANARY_LABEL, CANARY_NAME
from mii_cli.kube.pods import ready_pods
from mii_cli.kube.proxy import get_from_pod
from mii_cli.kube.revisions import read_deployment
from mii_cli.probe.compare import Verdict
from mii_cli.probe.traffic import Reading, Traffic, parse, total, traffic
from mii_cli.results import Result
from mii_cli.workflows.deploy import compare_with_stable
from mii_cli.workflows.steps import Status
from service.constants import DEFAULT_PORT


@dataclass(frozen=True)
class Side(Result):
    """1 つの側（Deployment）の Pod と、その推論のリクエストの数字。`unread` は読めなかった Pod と理由。"""

    deployment: str
    pods: list[str]
    traffic: Traffic
    unread: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CanaryVerdict(Result):
    """canary と安定版の数字と、同じ行での答えの違い。"""

    namespace: str
    stable: Side
    canary: Side
    answers: Verdict
    # 出力ごとのいちばん大きな差のうち最大（比べられる出力が無ければ None）
    largest_difference: float | None


def read_side(client: ApiClient, namespace: str, deployment: str, selector: str) -> Side:
    """側の Ready な Pod の `/metrics` を読んで合わせる（読めない Pod は理由を添えて除く）。"""
    pods = ready_pods(client, namespace, selector)
    readings: list[Reading] = []
    unread: list[str] = []
    for pod in pods:
        try:
            readings.append(parse(get_from_pod(client, namespace, pod, DEFAULT_PORT, "/metrics")))
        except (MiiError, ValueError) as error:
            unread.append(f"{pod}: {getattr(error, 'message', None) or error}")
    return Side(deployment=deployment, pods=pods, traffic=traffic(total(readings)), unread=unread)


def canary_verdict(client: ApiClient, namespace: str, rows: list[list[float]] | None = None) -> CanaryVerdict:
    """今の canary と安定版の数字。canary が無ければ ConfigError。"""
    if read_deployment(client, namespace, CANARY_NAME) is None:
        raise ConfigError(
            f"there is no canary in namespace {namespace} to give a verdict on",
            hint="deploy a new model beside the stable one with mii deploy --canary",
        )
    stable = read_side(client, namespace, APP_NAME, APP_LABEL)
    canary = read_side(client, namespace, CANARY_NAME, CANARY_LABEL)
    answers = compare_with_stable(client, namespace, rows, Status())
    largest = [d.largest for d in answers.differences if d.largest is not None]
    return CanaryVerdict(
        namespace=namespace,
        stable=stable,
        canary=canary,
        answers=answers,
        largest_difference=max(largest) if largest else None,
    )
