"""deploy・status・teardown・クラスタのスモークテスト（ポートフォワードと Job）と CLI の配線。

クラスタは HTTP の境界（tests/unit/test_kube_fakeapi.py の代役の API サーバー）でだけ置き換える。
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes.client import (
    V1ContainerState,
    V1ContainerStateRunning,
    V1ContainerStatus,
    V1HorizontalPodAutoscaler,
    V1ObjectMeta,
    V1Pod,
    V1PodCondition,
    V1PodSpec,
    V1PodStatus,
    V2HorizontalPodAutoscalerStatus,
    V2MetricStatus,
    V2MetricValueStatus,
    V2ResourceMetricStatus,
)
from typer.testing import CliRunner

from mii_cli import cli
from mii_cli.errors import ClusterError, WaitTimeout
from mii_cli.kube import lbcheck, portforward, status, teardown
from mii_cli.kube import smoke as kube_smoke
from mii_cli.kube.cluster import ClusterInfo
from mii_cli.kube.deploy import deploy, metrics_hint
from mii_cli.kube.render import find, render
from mii_cli.smoke import CheckResult, SmokeReport
from tests.fakes.kube_api import FakeApiServer, status_body, to_dict, write_kubeconfig

NS = "model-in-image"
MANAGED = {"app.kubernetes.io/managed-by": "mii"}
IMAGE = "model-in-image:0.1.0-0123456789ab-fedcba987654"
DEPLOYMENT = f"/apis/apps/v1/namespaces/{NS}/deployments/model-in-image"
JOB = f"/apis/batch/v1/namespaces/{NS}/jobs/{lbcheck.JOB_NAME}"
runner = CliRunner()


def ready_pod(name: str, labels: dict[str, str] | None = None, phase: str = "Running") -> V1Pod:
    return V1Pod(
        metadata=V1ObjectMeta(
            name=name,
            namespace=NS,
            labels=labels or {"app": "model-in-image"},
            creation_timestamp="2025-01-01T00:00:00Z",
        ),
        spec=V1PodSpec(containers=[], node_name="node-1"),
        status=V1PodStatus(
            phase=phase,
            pod_ip="10.0.0.1",
            conditions=[V1PodCondition(type="Ready", status="True")],
            container_statuses=[
                V1ContainerStatus(
                    name="model-in-image",
                    image=IMAGE,
                    image_id="",
                    ready=True,
                    restart_count=1,
                    state=V1ContainerState(running=V1ContainerStateRunning()),
                )
            ],
        ),
    )


def become_ready(fake: FakeApiServer) -> Callable[[str, dict[str, Any]], None]:
    """Deployment が適用されたら、コントローラの代わりに status を埋め Ready な Pod を置く。"""

    def hook(path: str, obj: dict[str, Any]) -> None:
        if obj["kind"] != "Deployment":
            return
        replicas = obj["spec"].get("replicas", 4)
        obj["status"] = {
            "observedGeneration": obj["metadata"]["generation"],
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
        }
        for index in range(replicas):
            fake.put(
                f"/api/v1/namespaces/{NS}/pods/model-in-image-{index}", ready_pod(f"model-in-image-{index}")
            )

    return hook


INFO = ClusterInfo("docker-desktop", "http://127.0.0.1", "docker-desktop", "docker-desktop", "v1.34.0")


# --- deploy ---


def test_deploy_applies_waits_and_warns_about_missing_metrics(
    fake_api: FakeApiServer, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_api.on_apply.append(become_ready(fake_api))
    result = deploy(namespace=NS, image=IMAGE, client=fake_api.client(), info=INFO, timeout=30)
    assert result["image"] == IMAGE
    assert [a["action"] for a in result["applied"]] == ["created"] * 5
    assert result["rollout"]["ready"] == 4
    assert result["metrics_api"] is False
    assert "minikube" not in metrics_hint(INFO)
    assert "metrics-server" in metrics_hint(INFO)
    assert "kubectl apply -f" in capsys.readouterr().err.replace("\n", "")


def test_deploy_with_metrics_and_without_waiting(fake_api: FakeApiServer) -> None:
    fake_api.routes[("GET", "/apis/metrics.k8s.io/v1beta1")] = (200, {"kind": "APIResourceList"})
    result = deploy(namespace=NS, image=IMAGE, client=fake_api.client(), info=INFO, wait=False)
    assert result["metrics_api"] is True
    assert result["rollout"] is None


def test_deploy_waits_for_a_terminating_namespace(
    fake_api: FakeApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.put(
        f"/api/v1/namespaces/{NS}",
        {"metadata": {"name": NS, "labels": MANAGED}, "status": {"phase": "Terminating"}},
    )
    waited: list[str] = []

    def gone(client: Any, namespace: str) -> float:
        waited.append(namespace)
        del fake_api.objects[f"/api/v1/namespaces/{NS}"]
        return 0.0

    monkeypatch.setattr("mii_cli.kube.deploy.wait_gone", gone)
    deploy(namespace=NS, image=IMAGE, client=fake_api.client(), info=INFO, wait=False)
    assert waited == [NS]


def test_metrics_hints_per_cluster() -> None:
    assert (
        metrics_hint(ClusterInfo("m", "", "minikube", "dev"))
        == "minikube -p dev addons enable metrics-server"
    )
    assert "--kubelet-insecure-tls" in metrics_hint(ClusterInfo("kind-x", "", "kind", "x"))


# --- status ---


def hpa() -> V1HorizontalPodAutoscaler:
    body = find(render(IMAGE, NS), "HorizontalPodAutoscaler")
    model = V1HorizontalPodAutoscaler.from_dict(body)
    assert model is not None
    return model


def test_status_collects_everything(fake_api: FakeApiServer) -> None:
    from datetime import UTC, datetime

    from kubernetes.client import V2HorizontalPodAutoscaler

    fake_api.on_apply.append(become_ready(fake_api))
    deploy(namespace=NS, image=IMAGE, client=fake_api.client(), info=INFO, wait=False)
    path = f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers/model-in-image"
    scaler = V2HorizontalPodAutoscaler.from_dict(fake_api.objects[path])
    assert scaler is not None
    scaler.status = V2HorizontalPodAutoscalerStatus(
        current_replicas=4,
        desired_replicas=5,
        current_metrics=[
            V2MetricStatus(
                type="Resource",
                resource=V2ResourceMetricStatus(
                    name="cpu", current=V2MetricValueStatus(average_utilization=63)
                ),
            )
        ],
    )
    fake_api.put(path, to_dict(scaler))
    result = status.collect_status(fake_api.client(), NS, now=datetime(2025, 1, 1, 2, 5, tzinfo=UTC))
    assert result["deployment"]["image"] == IMAGE
    assert result["deployment"]["ready"] == 4
    assert [p["name"] for p in result["pods"]] == [f"model-in-image-{i}" for i in range(4)]
    assert result["pods"][0] | {"age": "2h"} == result["pods"][0]
    assert result["pods"][0]["restarts"] == 1
    assert result["service"]["ports"] == ["8000/TCP"]
    assert result["hpa"] | {"cpu_current": 63, "cpu_target": 50, "desired_replicas": 5} == result["hpa"]
    from rich.console import Console

    console = Console(width=160, record=True)
    console.print(status.render_status(result))
    text = console.export_text()
    assert "ready 4/4" in text
    assert "cpu 63% / 50%" in text
    assert "8000/TCP" in text


def test_status_of_a_new_hpa_does_not_read_as_scaling_to_zero() -> None:
    from rich.console import Console

    # 本物の HPA は最初の計測まで desiredReplicas が 0、currentMetrics が無い
    result = {
        "namespace": NS,
        "deployment": None,
        "pods": [],
        "service": None,
        "hpa": {
            "name": "model-in-image",
            "min": 2,
            "max": 10,
            "current_replicas": 2,
            "desired_replicas": 0,
            "cpu_current": None,
            "cpu_target": 50,
        },
    }
    console = Console(width=160, record=True)
    console.print(status.render_status(result))
    text = console.export_text()
    assert "replicas 2 (min 2, max 10)" in text
    assert "→ 0" not in text
    assert "no metrics yet" in text


def test_status_of_a_partial_deployment(fake_api: FakeApiServer) -> None:
    fake_api.put(f"/api/v1/namespaces/{NS}", {"metadata": {"name": NS, "labels": MANAGED}})
    result = status.collect_status(fake_api.client(), NS)
    assert result["deployment"] is None
    assert result["hpa"] is None
    assert result["service"] is None
    from rich.console import Console

    console = Console(width=120, record=True)
    console.print(status.render_status(result))
    assert console.export_text().count("missing") == 3
    assert status._age(None, None) == "-"  # type: ignore[arg-type]


def test_status_without_a_namespace(fake_api: FakeApiServer) -> None:
    with pytest.raises(ClusterError, match="nothing is deployed") as error:
        status.collect_status(fake_api.client(), NS)
    assert error.value.hint == "mii deploy"


# --- teardown ---


def test_teardown_deletes_and_waits(fake_api: FakeApiServer) -> None:
    fake_api.put(f"/api/v1/namespaces/{NS}", {"metadata": {"name": NS, "labels": MANAGED}})
    answers = iter(
        [
            (200, {"metadata": {"name": NS, "labels": MANAGED}, "status": {"phase": "Active"}}),
            (200, {"metadata": {"name": NS, "labels": MANAGED}, "status": {"phase": "Terminating"}}),
        ]
    )

    def get(request: Any) -> tuple[int, Any]:
        return next(answers, (404, status_body(404, "gone")))

    result = teardown.teardown(fake_api.client(), NS, sleep=lambda _: None)
    assert result["deleted"] is True
    assert fake_api.methods("DELETE")[0].param("propagationPolicy") == "Foreground"
    # 2 回目: 削除前の確認で Active、待つ間に 1 度 Terminating、次に 404
    fake_api.put(f"/api/v1/namespaces/{NS}", {"metadata": {"name": NS, "labels": MANAGED}})
    fake_api.routes[("DELETE", f"/api/v1/namespaces/{NS}")] = (200, {"kind": "Status"})
    fake_api.routes[("GET", f"/api/v1/namespaces/{NS}")] = get
    polls: list[float] = []
    result = teardown.teardown(fake_api.client(), NS, poll=0.1, sleep=polls.append)
    assert result["deleted"]
    assert polls == [0.1]


def test_teardown_is_idempotent(fake_api: FakeApiServer) -> None:
    assert teardown.teardown(fake_api.client(), NS) == {"namespace": NS, "deleted": False, "seconds": 0.0}


def test_teardown_timeout_and_errors(fake_api: FakeApiServer) -> None:
    fake_api.routes[("DELETE", f"/api/v1/namespaces/{NS}")] = (200, {"kind": "Status"})
    fake_api.put(
        f"/api/v1/namespaces/{NS}",
        {"metadata": {"name": NS, "labels": MANAGED}, "status": {"phase": "Terminating"}},
    )
    ticks = iter(range(0, 1000, 100))
    with pytest.raises(WaitTimeout, match="still exists") as error:
        teardown.teardown(fake_api.client(), NS, timeout=150, sleep=lambda _: None, clock=lambda: next(ticks))
    assert "finalizers" in (error.value.hint or "")
    fake_api.routes[("DELETE", f"/api/v1/namespaces/{NS}")] = (403, status_body(403, "forbidden"))
    with pytest.raises(ClusterError, match="forbidden"):
        teardown.teardown(fake_api.client(), NS)
    fake_api.routes[("GET", f"/api/v1/namespaces/{NS}")] = (500, status_body(500, "boom"))
    with pytest.raises(ClusterError, match="boom"):
        teardown.namespace_phase(fake_api.client(), NS)


# --- ポートフォワードの中継 ---


class Backend:
    """Pod の代わりの HTTP サーバー（X-Served-By を返す）。"""

    def __init__(self, name: str = "model-in-image-0") -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                body = json.dumps({"path": self.path}).encode()
                self.send_response(200)
                self.send_header("X-Served-By", name)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def opener(self) -> portforward.StreamOpener:
        def open_stream() -> tuple[Any, Callable[[], None]]:
            sock = socket.create_connection(self.httpd.server_address[:2])  # type: ignore[arg-type]
            return sock, sock.close

        return open_stream


@pytest.fixture
def backend() -> Iterator[Backend]:
    server = Backend()
    yield server
    server.httpd.shutdown()


def test_port_forwarder_relays_http(backend: Backend) -> None:
    with portforward.PortForwarder(backend.opener()) as forwarder:
        for path in ("/health", "/predict/test"):
            response = httpx.get(forwarder.url + path, timeout=5)
            assert response.json() == {"path": path}
            assert response.headers["X-Served-By"] == "model-in-image-0"
        assert forwarder.port > 0


def test_port_forwarder_reports_streams_it_cannot_open() -> None:
    def broken() -> tuple[Any, Callable[[], None]]:
        raise OSError("pod is gone")

    with portforward.PortForwarder(broken) as forwarder, pytest.raises(httpx.HTTPError):
        httpx.get(forwarder.url, timeout=2)
    assert forwarder.errors == ["OSError: pod is gone"]


def test_ready_pod_choice(fake_api: FakeApiServer) -> None:
    with pytest.raises(ClusterError, match="no ready pod"):
        portforward.ready_pod(fake_api.client(), NS)
    fake_api.put(f"/api/v1/namespaces/{NS}/pods/b", ready_pod("b"))
    fake_api.put(f"/api/v1/namespaces/{NS}/pods/a", ready_pod("a"))
    assert portforward.ready_pod(fake_api.client(), NS) == "a"


def test_pod_stream_opener_uses_the_portforward_api(
    fake_api: FakeApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kubernetes.stream

    calls: list[tuple[Any, ...]] = []

    errors: dict[int, str | None] = {8000: None}

    class Forward:
        def socket(self, port: int) -> str:
            return f"socket:{port}"

        def error(self, port: int) -> str | None:
            return errors[port]

        def close(self) -> None:
            calls.append(("close",))

    def fake_portforward(method: Any, *args: Any, **kwargs: Any) -> Forward:
        calls.append((method.__name__, *args, kwargs))
        return Forward()

    monkeypatch.setattr(kubernetes.stream, "portforward", fake_portforward)
    sock, close = portforward.pod_stream_opener(fake_api.client(), NS, "pod-a", 8000)()
    close()
    assert sock == "socket:8000"
    assert calls == [("connect_get_namespaced_pod_portforward", "pod-a", NS, {"ports": "8000"}), ("close",)]
    # kubelet がエラーチャネルで理由を返したら、閉じるときに伝える
    errors[8000] = "error forwarding port 8000: connection refused"
    _, close = portforward.pod_stream_opener(fake_api.client(), NS, "pod-a", 8000)()
    with pytest.raises(ClusterError, match="pod-a:8000: error forwarding port 8000: connection refused"):
        close()


# --- ロードバランシングの Job ---


def test_job_result_parsing_and_verdict() -> None:
    log = 'starting\n{"requests": 60, "errors": 0, "served_by": {"a": 31, "b": 29}}\n'
    result = lbcheck.parse_result(log)
    assert lbcheck.verdict(result) == (True, "60 in-cluster requests answered by 2 pods (a=31, b=29)")
    single = {"requests": 60, "errors": 0, "served_by": {"a": 60}}
    assert lbcheck.verdict(single) == (
        False,
        "60 in-cluster requests answered by 1 pods (a=60); need at least 2",
    )
    failing = {
        "requests": 5,
        "errors": 2,
        "first_errors": ["URLError: refused"],
        "served_by": {"a": 2, "b": 1},
    }
    assert lbcheck.verdict(failing)[0] is False
    assert "URLError" in lbcheck.verdict(failing)[1]
    with pytest.raises(ClusterError, match="printed no result") as error:
        lbcheck.parse_result("Traceback\n{not json\n")
    assert "Traceback" in (error.value.details or "")


def test_job_script_counts_pods_with_the_standard_library(backend: Backend) -> None:
    import subprocess
    import sys

    url = f"http://127.0.0.1:{backend.httpd.server_address[1]}/predict/test"
    output = subprocess.run(
        [sys.executable, "-c", lbcheck.SCRIPT, url, "3"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert lbcheck.parse_result(output)["served_by"] == {"model-in-image-0": 3}
    job = lbcheck.job_manifest(IMAGE, "demo", "http://10.96.0.10:8000/predict/test", requests=3)
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][3:] == [
        "http://10.96.0.10:8000/predict/test",
        "3",
        "0",
    ]
    output = subprocess.run(
        [sys.executable, "-c", lbcheck.SCRIPT, url, "1", "0.3"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert lbcheck.parse_result(output)["requests"] > 1
    assert "app" not in job["spec"]["template"]["metadata"]["labels"]


def job_finishes(
    fake: FakeApiServer, log: str, *, succeeded: bool = True
) -> Callable[[str, dict[str, Any]], None]:
    def hook(path: str, obj: dict[str, Any]) -> None:
        if obj["kind"] != "Job":
            return
        obj["status"] = {"succeeded": 1} if succeeded else {"failed": 1}
        obj["metadata"]["uid"] = "job-uid-1"
        labels = {"job-name": lbcheck.JOB_NAME, "batch.kubernetes.io/controller-uid": "job-uid-1"}
        fake.put(f"/api/v1/namespaces/{NS}/pods/lb-1", ready_pod("lb-1", labels))
        # 前回の Job の Pod（ガベージコレクトを待っている）: 同じ job-name だが uid が違う
        old = {"job-name": lbcheck.JOB_NAME, "batch.kubernetes.io/controller-uid": "job-uid-0"}
        fake.put(f"/api/v1/namespaces/{NS}/pods/lb-0", ready_pod("lb-0", old))
        fake.logs["lb-0"] = '{"requests": 1, "errors": 1, "served_by": {}}'

        fake.logs["lb-1"] = log

    return hook


def deployed(fake: FakeApiServer) -> None:
    fake.on_apply.append(become_ready(fake))
    deploy(namespace=NS, image=IMAGE, client=fake.client(), info=INFO, wait=False)


def test_results_of_parallel_job_pods_are_added_up() -> None:
    merged = lbcheck.merge_results(
        [
            {"url": "u", "requests": 10, "errors": 1, "first_errors": ["e1"], "served_by": {"a": 4, "b": 5}},
            {"url": "u", "requests": 7, "errors": 0, "first_errors": [], "served_by": {"b": 7}},
        ]
    )
    assert merged == {
        "url": "u",
        "requests": 17,
        "errors": 1,
        "first_errors": ["e1"],
        "served_by": {"a": 4, "b": 12},
    }


def test_a_load_job_runs_parallel_pods_that_post_a_body() -> None:
    body = '{"data": [[5.1, 3.5, 1.4, 0.2]]}'
    job = lbcheck.job_manifest(IMAGE, "demo", "http://10.96.0.10:8000/predict", parallelism=3, body=body)
    assert (job["spec"]["parallelism"], job["spec"]["completions"]) == (3, 3)
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][-1] == body


def test_run_lb_check_runs_the_job_and_cleans_up(fake_api: FakeApiServer) -> None:
    deployed(fake_api)
    fake_api.on_apply.append(
        job_finishes(fake_api, '{"requests": 4, "errors": 0, "served_by": {"a": 2, "b": 2}}')
    )
    result = lbcheck.run_lb_check(fake_api.client(), NS, requests=4, sleep=lambda _: None)
    assert result["passed"]
    assert result["image"] == IMAGE
    job = fake_api.methods("PATCH", JOB)[0].body
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    assert len(fake_api.methods("DELETE", JOB)) == 2
    assert JOB not in fake_api.objects
    # 前回の Job の Pod を拾わないよう、今回の Job の uid で Pod を選ぶ
    pod_lists = fake_api.methods("GET", f"/api/v1/namespaces/{NS}/pods")
    selectors = [p.param("labelSelector") for p in pod_lists]
    assert "batch.kubernetes.io/controller-uid=job-uid-1" in selectors


def test_run_lb_check_failures(fake_api: FakeApiServer) -> None:
    with pytest.raises(ClusterError, match="no deployment"):
        lbcheck.run_lb_check(fake_api.client(), NS)
    deployed(fake_api)
    fake_api.on_apply.append(job_finishes(fake_api, "Traceback: boom", succeeded=False))
    with pytest.raises(ClusterError, match="job mii-lb-check failed") as error:
        lbcheck.run_lb_check(fake_api.client(), NS, sleep=lambda _: None)
    assert "boom" in (error.value.details or "")


def test_run_lb_check_timeouts(fake_api: FakeApiServer) -> None:
    deployed(fake_api)
    fake_api.routes[("DELETE", JOB)] = (200, {"kind": "Status"})
    fake_api.put(JOB, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": lbcheck.JOB_NAME}})
    ticks = iter(range(0, 10000, 100))
    with pytest.raises(WaitTimeout, match="still being deleted"):
        lbcheck.run_lb_check(
            fake_api.client(), NS, timeout=150, sleep=lambda _: None, clock=lambda: next(ticks)
        )
    del fake_api.objects[JOB]
    ticks = iter(range(0, 10000, 100))
    with pytest.raises(WaitTimeout, match="did not finish"):
        lbcheck.run_lb_check(
            fake_api.client(), NS, timeout=150, sleep=lambda _: None, clock=lambda: next(ticks)
        )


def test_run_lb_check_without_a_pod(fake_api: FakeApiServer) -> None:
    deployed(fake_api)

    def no_pod(path: str, obj: dict[str, Any]) -> None:
        if obj["kind"] == "Job":
            obj["status"] = {"succeeded": 1}

    fake_api.on_apply.append(no_pod)
    with pytest.raises(ClusterError, match="has no pod"):
        lbcheck.run_lb_check(fake_api.client(), NS, sleep=lambda _: None)


# --- クラスタのスモークテスト（--url なし） ---


def fake_smoke(url: str, *, timeout: float = 5.0) -> SmokeReport:
    """ポートフォワード越しに 1 件だけ確かめる `run_smoke_test` の代わり。"""
    response = httpx.get(url + "/health", timeout=timeout)
    pod = response.headers["X-Served-By"]
    check = CheckResult("health", "GET", "/health", "200", response.status_code == 200, "ok", 1.0, 200, pod)
    return SmokeReport(base_url=url, checks=[check], served_by=[pod])


def test_cluster_smoke_test_goes_through_the_port_forward_and_the_job(
    fake_api: FakeApiServer, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployed(fake_api)
    fake_api.on_apply.append(
        job_finishes(
            fake_api, '{"requests": 60, "errors": 0, "served_by": {"model-in-image-0": 30, "x": 30}}'
        )
    )
    monkeypatch.setattr(portforward, "pod_stream_opener", lambda *args: backend.opener())
    report = kube_smoke.cluster_smoke_test(namespace=NS, client=fake_api.client(), smoke=fake_smoke)
    assert report.passed
    assert [c.name for c in report.checks] == ["health", "load_balancing"]
    assert report.served_by == ["model-in-image-0", "x"]
    assert report.base_url.startswith("http://127.0.0.1:")  # ポートフォワードの URL のまま
    # Job は DNS 名ではなく Service の ClusterIP へ送る（CoreDNS の無いクラスタでも動く）
    (job,) = [r.body for r in fake_api.methods("PATCH", f"/apis/batch/v1/namespaces/{NS}/jobs")]
    service_ip = fake_api.objects[f"/api/v1/namespaces/{NS}/services/model-in-image"]["spec"]["clusterIP"]
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert f"http://{service_ip}:8000/predict/test" in command


def test_cluster_smoke_test_reports_a_failed_job_as_a_failed_check(
    fake_api: FakeApiServer, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployed(fake_api)
    fake_api.on_apply.append(job_finishes(fake_api, "", succeeded=False))
    monkeypatch.setattr(portforward, "pod_stream_opener", lambda *args: backend.opener())
    report = kube_smoke.cluster_smoke_test(namespace=NS, client=fake_api.client(), smoke=fake_smoke)
    assert not report.passed
    assert report.checks[-1].name == "load_balancing"
    assert "failed" in report.checks[-1].detail


def test_cluster_smoke_test_stops_when_the_service_is_unreachable(
    fake_api: FakeApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployed(fake_api)

    def broken(*args: Any) -> portforward.StreamOpener:
        def open_stream() -> tuple[Any, Callable[[], None]]:
            raise OSError("websocket handshake failed")

        return open_stream

    def smoke(url: str, *, timeout: float = 5.0) -> SmokeReport:
        try:
            httpx.get(url, timeout=timeout)
        except httpx.HTTPError:
            pass
        return SmokeReport(base_url=url, checks=[], unreachable=f"cannot connect to {url}")

    monkeypatch.setattr(portforward, "pod_stream_opener", broken)
    report = kube_smoke.cluster_smoke_test(namespace=NS, client=fake_api.client(), smoke=smoke)
    assert report.unreachable is not None
    assert "websocket handshake failed" in report.unreachable
    assert not fake_api.methods("PATCH", JOB)


# --- CLI ---


@pytest.fixture
def kubeconfig(fake_api: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeApiServer:
    """代役のサーバーを今のコンテキストにする（Docker Desktop の扱い: イメージの読み込み不要）。"""
    path = write_kubeconfig(tmp_path / "config", fake_api.url, context="docker-desktop")
    monkeypatch.setenv("KUBECONFIG", str(path))
    fake_api.on_apply.append(become_ready(fake_api))
    return fake_api


def test_cli_deploy_status_teardown(kubeconfig: FakeApiServer) -> None:
    result = runner.invoke(cli.app, ["deploy", "--image", IMAGE, "--json", "--timeout", "30"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["cluster"]["flavor"] == "docker-desktop"
    assert payload["rollout"]["ready"] == 4
    result = runner.invoke(cli.app, ["deploy", "--image", IMAGE])
    assert result.exit_code == 0, result.output
    assert "port-forward svc/model-in-image 8000:8000" in result.output
    result = runner.invoke(cli.app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["deployment"]["ready"] == 4
    result = runner.invoke(cli.app, ["status"])
    assert result.exit_code == 0
    assert "ready 4/4" in result.output
    result = runner.invoke(cli.app, ["teardown", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["deleted"] is True
    result = runner.invoke(cli.app, ["down"])
    assert result.exit_code == 0
    assert "nothing to delete" in result.output
    result = runner.invoke(cli.app, ["teardown"])
    assert result.exit_code == 0
    assert "nothing to delete" in result.output


def test_cli_teardown_reports_deletion(kubeconfig: FakeApiServer) -> None:
    kubeconfig.put(f"/api/v1/namespaces/{NS}", {"metadata": {"name": NS, "labels": MANAGED}})
    result = runner.invoke(cli.app, ["down"])
    assert result.exit_code == 0, result.output
    assert f"namespace {NS} deleted" in result.output


def test_cli_without_a_cluster_is_one_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    for command in (["deploy", "--image", IMAGE], ["status"], ["teardown"], ["up", "--image", IMAGE]):
        result = runner.invoke(cli.app, command)
        assert result.exit_code == 5, command
        assert "Error: no kube config found" in result.output
        assert "Traceback" not in result.output


def test_cli_up_deploys_and_smoke_tests(kubeconfig: FakeApiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    check = CheckResult("load_balancing", "GET", "/predict/test", ">= 2 pods", True, "2 pods", None)
    passed = SmokeReport(base_url="http://127.0.0.1:1", checks=[check], served_by=["a", "b"])
    monkeypatch.setattr(kube_smoke, "cluster_smoke_test", lambda **kwargs: passed)
    result = runner.invoke(cli.app, ["up", "--image", IMAGE, "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["smoke_test"]["passed"] is True
    failed = SmokeReport(
        base_url="http://127.0.0.1:1", checks=[check.__class__(**{**check.__dict__, "ok": False})]
    )
    monkeypatch.setattr(kube_smoke, "cluster_smoke_test", lambda **kwargs: failed)
    result = runner.invoke(cli.app, ["up", "--image", IMAGE])
    assert result.exit_code == 6
    assert "1 of 1 cluster smoke checks failed" in result.output


def test_cli_up_builds_first(kubeconfig: FakeApiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from mii_cli import build as building

    built: list[str] = []

    def fake_build(**kwargs: Any) -> Any:
        built.append(kwargs["tag"])
        return SimpleNamespace(unique_tag=IMAGE)

    monkeypatch.setattr(building, "build_image", fake_build)
    check = CheckResult("health", "GET", "/health", "200", True, "ok", 1.0)
    monkeypatch.setattr(
        kube_smoke,
        "cluster_smoke_test",
        lambda **kwargs: SmokeReport(base_url="u", checks=[check], served_by=["a"]),
    )
    result = runner.invoke(cli.app, ["up"])
    assert result.exit_code == 0, result.output
    assert built
    assert f"built {IMAGE}" in result.output
    live = kubeconfig.objects[DEPLOYMENT]
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE


@pytest.mark.parametrize("command", ["deploy", "status", "teardown", "up", "down"])
def test_every_kubernetes_command_has_help(command: str) -> None:
    result = runner.invoke(cli.app, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_cli_smoke_test_without_url_goes_to_the_cluster(
    kubeconfig: FakeApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--url なしの smoke-test は今のコンテキストのクラスタに、--namespace を渡して確かめに行く。"""
    from mii_cli.smoke import CheckResult, SmokeReport

    seen: dict[str, Any] = {}

    def fake(**kwargs: Any) -> SmokeReport:
        seen.update(kwargs)
        check = CheckResult(
            name="load_balancing",
            method="GET",
            path="/predict/test",
            expected="2 pods",
            ok=True,
            detail="2 pods answered",
            elapsed_ms=1.0,
        )
        return SmokeReport("http://127.0.0.1:1", [check])

    monkeypatch.setattr(kube_smoke, "cluster_smoke_test", fake)
    result = runner.invoke(cli.app, ["smoke-test", "-n", "other-ns", "--timeout", "3", "--json"])
    assert result.exit_code == 0, result.output
    assert seen["namespace"] == "other-ns"
    assert seen["timeout"] == 3.0
    assert json.loads(result.stdout)["passed"] is True


def test_teardown_refuses_a_namespace_mii_did_not_create(fake_api: FakeApiServer) -> None:
    fake_api.put(f"/api/v1/namespaces/{NS}", {"metadata": {"name": NS, "labels": {"team": "x"}}})
    with pytest.raises(ClusterError, match="was not created by mii") as error:
        teardown.teardown(fake_api.client(), NS)
    assert "--namespace" in (error.value.hint or "")
    assert not fake_api.methods("DELETE")


def test_deploy_refuses_a_namespace_mii_did_not_create(fake_api: FakeApiServer) -> None:
    fake_api.put(f"/api/v1/namespaces/{NS}", {"metadata": {"name": NS}})
    with pytest.raises(ClusterError, match="refusing to deploy into it"):
        deploy(namespace=NS, image=IMAGE, client=fake_api.client(), info=INFO, wait=False)
    assert not fake_api.methods("PATCH")
