"""クラスタ上のサービスのスモークテスト: ポートフォワード越しに `mii smoke-test --url` と同じ確認をし、
続けてクラスタ内の Job でロードバランシングを確かめる。結果は `SmokeReport` 1 つにまとめる
（`base_url` はポートフォワードの URL のまま）。
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from kubernetes.client import ApiClient

from mii_cli.errors import ClusterError
from mii_cli.kube import NAMESPACE
from mii_cli.kube.portforward import forward_to_service
from mii_cli.probe.in_cluster import LbCheckResult, run_lb_check
from mii_cli.probe.smoke_test import CheckResult, SmokeReport, run_smoke_test
from service.constants import DEFAULT_PORT

LB_CHECK_NAME = "load_balancing"

# スモークテストの関数: (URL, timeout=秒) -> 結果
SmokeRunner = Callable[..., SmokeReport]


def lb_check_result(outcome: LbCheckResult | ClusterError) -> CheckResult:
    """ロードバランシングの結果（または Job の失敗）をスモークテストの 1 件の確認にする。"""
    if isinstance(outcome, ClusterError):
        expected = "answered by >= 2 pods"
        ok = False
        detail = outcome.message + (f" ({outcome.hint})" if outcome.hint else "")
    else:
        expected = "answered by >= 2 pods (in-cluster job, X-Served-By)"
        ok = outcome.passed
        detail = outcome.detail
    return CheckResult(
        name=LB_CHECK_NAME,
        method="GET",
        path="/predict/test",
        expected=expected,
        ok=ok,
        detail=detail,
        elapsed_ms=None,
    )


def cluster_smoke_test(
    *,
    timeout: float = 5.0,
    namespace: str = NAMESPACE,
    client: ApiClient | None = None,
    requests: int = 60,
    smoke: SmokeRunner = run_smoke_test,
) -> SmokeReport:
    """Service の Ready な Pod へポートフォワードして確認し、ロードバランシングの確認を加えた結果を返す。"""
    if client is None:
        from mii_cli.kube.cluster import connect

        client, _ = connect()
    with forward_to_service(client, namespace, DEFAULT_PORT) as forwarder:
        report = smoke(forwarder.url, timeout=timeout)
    if report.unreachable is not None:
        if forwarder.errors:
            return replace(report, unreachable=f"{report.unreachable} (port-forward: {forwarder.errors[-1]})")
        return report
    try:
        result = run_lb_check(client, namespace, requests=requests)
    except ClusterError as error:
        return replace(report, checks=[*report.checks, lb_check_result(error)])
    served_by = [*report.served_by, *(pod for pod in result.served_by if pod not in report.served_by)]
    return replace(report, checks=[*report.checks, lb_check_result(result)], served_by=served_by)
