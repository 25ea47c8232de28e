"""実クラスタでのライフサイクル: ビルド → `mii deploy`（要求した数の Ready な Pod）→ 全エンドポイント →
負荷分散 → `mii status` → 負荷をかけながらの新しいイメージへのローリングアップデート（失敗 0 件）→
同じイメージの再デプロイで変化なし → HPA が CPU を読み、負荷で増える → `mii teardown` → `mii down`。

HPA の確認は最後に置く: 増えた Pod で小さなノードが埋まると、ローリングアップデートの追加の Pod が入らない。

今の kube context のクラスタと Docker が要る。無ければ理由を示してスキップする（`MII_REQUIRE_CLUSTER=1`
では失敗）。1 コマンドで実行する: `uv run pytest -m e2e tests/e2e`
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from mii_cli.kube.status import HpaState
from tests.support import BackgroundLoad, E2eSettings, Mii, relabelled_image, wait_for_running_job

# デプロイ（ロールアウトの待ち）や HPA の増加を含むので、1 つのテストの上限を長くする
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

# HPA を動かす負荷: 50 行のバッチ（サーバー側の CPU がクライアント側より重い）を 3 つの Pod から送る
LOAD_BODY = json.dumps({"data": [[5.1, 3.5, 1.4, 0.2]] * 50})


def test_rollout_has_the_requested_ready_pods(
    e2e: E2eSettings, mii: Mii, cluster: tuple[Any, Any], deployed: dict[str, Any]
) -> None:
    from kubernetes.client import AppsV1Api, CoreV1Api

    assert deployed["rollout"]["ready"] == e2e.replicas
    assert {a["kind"] for a in deployed["applied"]} >= {
        "Namespace",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
    }
    if e2e.registry:
        # push したイメージをダイジェストで: 動いているコンテナのイメージは push したものそのもの
        assert deployed["image"].startswith(f"{e2e.registry}/")
        digest = deployed["image"].split("@", 1)[1]
        assert digest.startswith("sha256:")
        core = CoreV1Api(cluster[0])
        pods = core.list_namespaced_pod(e2e.namespace, label_selector="app=model-in-image").items
        assert {pod.status.container_statuses[0].image_id.rsplit("@", 1)[-1] for pod in pods} == {digest}
    deployment = AppsV1Api(cluster[0]).read_namespaced_deployment("model-in-image", e2e.namespace)
    resources = deployment.spec.template.spec.containers[0].resources
    # ephemeral-storage は既定のまま（/tmp とコンテナのログの分）
    assert (
        resources.requests
        == resources.limits
        == {
            "cpu": e2e.cpu,
            "memory": e2e.memory,
            "ephemeral-storage": "256Mi",
        }
    )
    status = mii.json("status", "-n", e2e.namespace)
    assert status["deployment"]["image"] == deployed["image"]
    assert sum(pod["ready"] for pod in status["pods"]) >= e2e.replicas
    assert status["service"]["ports"] == ["8000/TCP"]


def test_every_endpoint_through_a_port_forward(
    e2e: E2eSettings, cluster: tuple[Any, Any], deployed: dict[str, Any]
) -> None:
    from mii_cli.kube.portforward import forward_to_service
    from mii_cli.probe.smoke_test import run_smoke_test

    with forward_to_service(cluster[0], e2e.namespace, 8000) as forwarder:
        report = run_smoke_test(forwarder.url, timeout=10)
    assert report.passed, report.failed


def test_requests_are_load_balanced_over_pods(
    e2e: E2eSettings, cluster: tuple[Any, Any], deployed: dict[str, Any]
) -> None:
    from mii_cli.probe.in_cluster import run_lb_check

    result = run_lb_check(cluster[0], e2e.namespace, requests=100)
    assert result.passed, result.detail
    assert len(result.served_by) >= 2
    # Service の ClusterIP へ送っている（クラスタの DNS に頼らない）
    assert (result.url or "").startswith("http://")
    assert ".svc" not in (result.url or "")


def test_the_cluster_smoke_test_command_passes(e2e: E2eSettings, mii: Mii, deployed: dict[str, Any]) -> None:
    report = mii.json("smoke-test", "-n", e2e.namespace, "--timeout", "10")
    assert report["passed"]
    assert report["url"].startswith("http://127.0.0.1:")
    checks = {check["name"]: check for check in report["checks"]}
    assert checks["load_balancing"]["ok"], checks["load_balancing"]["detail"]
    assert len(report["served_by"]) >= 2


def test_mii_status_shows_deployment_pods_service_and_hpa(
    e2e: E2eSettings, mii: Mii, deployed: dict[str, Any]
) -> None:
    result = mii("status", "-n", e2e.namespace)
    assert result.exit_code == 0, result.output
    for expected in ("model-in-image", "Pods", "8000/TCP", "HPA"):
        assert expected in result.output, result.output


def test_rolling_update_under_load_drops_no_request(
    e2e: E2eSettings,
    mii: Mii,
    cluster: tuple[Any, Any],
    deployed: dict[str, Any],
    docker_client: Any,
    image: str,
    made_images: list[str],
) -> None:
    from mii_cli.image.delivery import ensure_in_cluster

    client, info = cluster
    # イメージを先にクラスタへ渡し（push または読み込み）、負荷の間に更新が収まるようにする
    relabelled = relabelled_image(docker_client, image, made_images)
    new_image = ensure_in_cluster(info, relabelled, registry=e2e.registry)
    if new_image not in made_images:
        made_images.append(new_image)
    with BackgroundLoad(client, e2e.namespace, seconds=90) as load:
        wait_for_running_job(client, e2e.namespace, load.name)
        result = mii.json(
            "deploy",
            "-n",
            e2e.namespace,
            "--image",
            new_image,
            "--no-load",
            "--timeout",
            "300",
            *e2e.sizing_args,
        )
    load_result = load.result()
    assert result["rollout"]["ready"] >= e2e.replicas
    assert {a["kind"]: a["action"] for a in result["applied"]}["Deployment"] == "configured"
    assert load_result.errors == 0, load_result.first_errors
    assert load_result.requests > 100


def test_a_second_deploy_of_the_same_image_changes_nothing(
    e2e: E2eSettings, mii: Mii, deployed: dict[str, Any]
) -> None:
    current = mii.json("status", "-n", e2e.namespace)["deployment"]["image"]
    result = mii.json("deploy", "-n", e2e.namespace, "--image", current, *e2e.sizing_args)
    assert {a["action"] for a in result["applied"]} == {"unchanged"}


def _hpa(client: Any, namespace: str) -> HpaState:
    from mii_cli.kube.status import collect_status

    hpa = collect_status(client, namespace).hpa
    assert hpa is not None, "the HPA is missing"
    return hpa


def test_hpa_reads_cpu_from_metrics_server_and_scales_out_under_load(
    e2e: E2eSettings, cluster: tuple[Any, Any], deployed: dict[str, Any]
) -> None:

    client = cluster[0]
    assert deployed["metrics_api"], "the metrics API is not served (metrics-server)"
    hpa = _hpa(client, e2e.namespace)
    assert (hpa.min, hpa.max, hpa.cpu_target) == (min(3, e2e.replicas), max(10, e2e.replicas), 50)
    readings: list[tuple[Any, Any]] = []
    load = BackgroundLoad(
        client,
        e2e.namespace,
        name="mii-e2e-hpa-load",
        seconds=150,
        parallelism=3,
        body=LOAD_BODY,
        path="/predict",
        cpu_limit="500m",
        timeout=300,
    )
    with load:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            hpa = _hpa(client, e2e.namespace)
            readings.append((hpa.cpu_current, hpa.desired_replicas))
            if hpa.cpu_current is not None and (hpa.desired_replicas or 0) > (hpa.min or 0):
                break
            time.sleep(5)
    result = load.result()
    assert hpa.cpu_current is not None, f"the HPA never read CPU usage: {readings}"
    scaled = (hpa.desired_replicas or 0) > (hpa.min or 0)
    assert scaled, f"the HPA did not scale out: (cpu %, desired replicas) {readings}"
    assert result.errors == 0, result.first_errors


def test_teardown_removes_everything_and_waits(
    e2e: E2eSettings, mii: Mii, cluster: tuple[Any, Any], deployed: dict[str, Any]
) -> None:
    from mii_cli.kube.namespace import namespace_phase

    result = mii.json("teardown", "-n", e2e.namespace, "--timeout", "300")
    assert result["deleted"] is True
    assert namespace_phase(cluster[0], e2e.namespace) is None


def test_down_on_nothing_is_a_no_op(e2e: E2eSettings, mii: Mii, deployed: dict[str, Any]) -> None:
    result = mii("down", "-n", e2e.namespace)
    assert result.exit_code == 0, result.output
    assert "nothing to delete" in result.output
