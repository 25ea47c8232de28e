"""クラスタのスモークテスト（--url なし）: ポートフォワード越しの確認と、Job のロードバランシングの確認。"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from mii_cli.kube import portforward
from mii_cli.probe import cluster as kube_smoke
from mii_cli.probe.smoke_test import CheckResult, SmokeReport
from tests.fakes.http import HttpStandIn
from tests.fakes.kube_api import FakeApiServer
from tests.fakes.kube_objects import NAMESPACE, job_finishes

TWO_PODS = '{"requests": 60, "errors": 0, "served_by": {"model-in-image-0": 30, "x": 30}}'


def health_only(url: str, *, timeout: float = 5.0) -> SmokeReport:
    """ポートフォワード越しに /health だけを確かめる `run_smoke_test` の代わり。"""
    response = httpx.get(url + "/health", timeout=timeout)
    pod = response.headers["X-Served-By"]
    check = CheckResult(
        name="health",
        method="GET",
        path="/health",
        expected="200",
        ok=response.status_code == 200,
        detail="ok",
        elapsed_ms=1.0,
        status=200,
        served_by=pod,
    )
    return SmokeReport(base_url=url, checks=[check], served_by=[pod])


@pytest.fixture
def forwarded(
    deployed_api: FakeApiServer, pod_stand_in: HttpStandIn, monkeypatch: pytest.MonkeyPatch
) -> FakeApiServer:
    """デプロイ済みのクラスタで、ポートフォワードが Pod の代役へつながる。"""
    monkeypatch.setattr(portforward, "pod_stream_opener", lambda *args: pod_stand_in.opener())
    return deployed_api


def test_the_checks_go_through_the_port_forward_and_the_job_adds_load_balancing(
    forwarded: FakeApiServer,
) -> None:
    forwarded.on_apply.append(job_finishes(forwarded, TWO_PODS))
    report = kube_smoke.cluster_smoke_test(namespace=NAMESPACE, client=forwarded.client(), smoke=health_only)
    assert report.passed
    assert [c.name for c in report.checks] == ["health", "load_balancing"]
    assert report.served_by == ["model-in-image-0", "x"]


def test_the_report_keeps_the_url_of_the_port_forward(forwarded: FakeApiServer) -> None:
    forwarded.on_apply.append(job_finishes(forwarded, TWO_PODS))
    report = kube_smoke.cluster_smoke_test(namespace=NAMESPACE, client=forwarded.client(), smoke=health_only)
    assert httpx.URL(report.base_url).host == "127.0.0.1"


def test_the_job_sends_to_the_cluster_ip_of_the_service(forwarded: FakeApiServer) -> None:
    # DNS 名ではなく ClusterIP へ送る（CoreDNS の無いクラスタでも動く）
    forwarded.on_apply.append(job_finishes(forwarded, TWO_PODS))
    kube_smoke.cluster_smoke_test(namespace=NAMESPACE, client=forwarded.client(), smoke=health_only)
    (job,) = [r.body for r in forwarded.methods("PATCH", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs")]
    service_ip = forwarded.objects[f"/api/v1/namespaces/{NAMESPACE}/services/model-in-image"]["spec"][
        "clusterIP"
    ]
    assert (
        f"http://{service_ip}:8000/predict/test"
        in job["spec"]["template"]["spec"]["containers"][0]["command"]
    )


def test_a_failed_job_is_a_failed_check(forwarded: FakeApiServer) -> None:
    forwarded.on_apply.append(job_finishes(forwarded, "", succeeded=False))
    report = kube_smoke.cluster_smoke_test(namespace=NAMESPACE, client=forwarded.client(), smoke=health_only)
    assert not report.passed
    assert report.checks[-1].name == "load_balancing"
    assert "failed" in report.checks[-1].detail


def test_an_unreachable_service_stops_before_the_job(
    deployed_api: FakeApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> portforward.StreamOpener:
        def open_stream() -> tuple[Any, Callable[[], None]]:
            raise OSError("websocket handshake failed")

        return open_stream

    def unreachable(url: str, *, timeout: float = 5.0) -> SmokeReport:
        try:
            httpx.get(url, timeout=timeout)
        except httpx.HTTPError:
            pass
        return SmokeReport(base_url=url, checks=[], unreachable=f"cannot connect to {url}")

    monkeypatch.setattr(portforward, "pod_stream_opener", broken)
    report = kube_smoke.cluster_smoke_test(
        namespace=NAMESPACE, client=deployed_api.client(), smoke=unreachable
    )
    assert "websocket handshake failed" in (report.unreachable or "")
    assert not deployed_api.methods("PATCH", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs")
