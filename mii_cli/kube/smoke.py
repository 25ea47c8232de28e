"""クラスタ上のサービスのスモークテスト: ポートフォワード越しに `mii smoke-test --url` と同じ確認をし、
続けてクラスタ内の Job でロードバランシングを確かめる。結果は `SmokeReport` 1 つにまとめる。
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes.client import ApiClient

from mii_cli.errors import ClusterError
from mii_cli.kube import NAMESPACE
from mii_cli.kube.lbcheck import run_lb_check
from mii_cli.kube.portforward import forward_to_service
from mii_cli.smoke import CheckResult, SmokeReport, run_smoke_test
from service.constants import DEFAULT_PORT

LB_CHECK_NAME = "load_balancing"


def lb_check_result(result: dict[str, Any] | None, error: ClusterError | None = None) -> CheckResult:
    """ロードバランシングの結果をスモークテストの 1 件の確認にする。"""
    if error is not None:
        detail = error.message + (f" ({error.hint})" if error.hint else "")
        return CheckResult(
            LB_CHECK_NAME, "GET", "/predict/test", "answered by >= 2 pods", False, detail, None
        )
    assert result is not None
    return CheckResult(
        LB_CHECK_NAME,
        "GET",
        "/predict/test",
        "answered by >= 2 pods (in-cluster job, X-Served-By)",
        bool(result["passed"]),
        str(result["detail"]),
        None,
    )


def cluster_smoke_test(
    *,
    timeout: float = 5.0,
    namespace: str = NAMESPACE,
    client: ApiClient | None = None,
    requests: int = 60,
    smoke: Callable[..., SmokeReport] = run_smoke_test,
) -> SmokeReport:
    """Service の Ready な Pod へポートフォワードして確認し、ロードバランシングの確認を加えた結果を返す。"""
    if client is None:
        from mii_cli.kube.cluster import connect

        client, _ = connect()
    with forward_to_service(client, namespace, DEFAULT_PORT) as forwarder:
        report = smoke(forwarder.url, timeout=timeout)
    if report.unreachable is not None:
        if forwarder.errors:
            report.unreachable += f" (port-forward: {forwarder.errors[-1]})"
        return report
    try:
        result = run_lb_check(client, namespace, requests=requests)
        check = lb_check_result(result)
        for pod in result.get("served_by") or {}:
            if pod not in report.served_by:
                report.served_by.append(pod)
    except ClusterError as error:
        check = lb_check_result(None, error)
    report.checks.append(check)
    return report
