"""実クラスタでのライフサイクル: ビルド → デプロイ（4 Pod）→ 全エンドポイント → 負荷分散 → HPA →
負荷をかけながらの新しいイメージへのローリングアップデート（失敗 0 件）→ 削除。

今の kube context のクラスタと Docker が要る。無ければ理由を示してスキップする。
1 コマンドで実行する: `uv run pytest -m e2e tests/e2e`
"""

from __future__ import annotations

import io
import json
import threading
import time
from typing import Any

import pytest

from tests.e2e.conftest import NAMESPACE

pytestmark = pytest.mark.e2e


def test_rollout_has_four_ready_pods(cluster: tuple[Any, Any], deployed: dict[str, Any]) -> None:
    from mii_cli.kube.status import collect_status

    assert deployed["rollout"]["ready"] == 4
    assert {a["kind"] for a in deployed["applied"]} >= {
        "Namespace",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
    }
    status = collect_status(cluster[0], NAMESPACE)
    assert status["deployment"]["image"] == deployed["image"]
    assert sum(pod["ready"] for pod in status["pods"]) >= 3
    assert status["service"]["ports"] == ["8000/TCP"]


def test_every_endpoint_through_a_port_forward(cluster: tuple[Any, Any], deployed: dict[str, Any]) -> None:
    from mii_cli.kube.portforward import forward_to_service
    from mii_cli.smoke import run_smoke_test

    with forward_to_service(cluster[0], NAMESPACE, 8000) as forwarder:
        report = run_smoke_test(forwarder.url, timeout=10)
    assert report.passed, [c for c in report.checks if not c.ok]


def test_requests_are_load_balanced_over_pods(cluster: tuple[Any, Any], deployed: dict[str, Any]) -> None:
    from mii_cli.kube.lbcheck import run_lb_check

    result = run_lb_check(cluster[0], NAMESPACE, requests=100)
    assert result["passed"], result["detail"]
    assert len(result["served_by"]) >= 2


def test_the_cluster_smoke_test_command_passes(deployed: dict[str, Any]) -> None:
    from typer.testing import CliRunner

    from mii_cli import cli

    result = CliRunner().invoke(cli.app, ["status", "-n", NAMESPACE])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli.app, ["smoke-test", "-n", NAMESPACE, "--timeout", "10", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"]
    assert "load_balancing" in {check["name"] for check in report["checks"]}


def test_hpa_is_present_and_reads_cpu_metrics(cluster: tuple[Any, Any], deployed: dict[str, Any]) -> None:
    from mii_cli.kube.status import collect_status

    assert deployed["metrics_api"], "the metrics API is not served: minikube addons enable metrics-server"
    deadline = time.monotonic() + 180
    hpa: dict[str, Any] = {}
    while time.monotonic() < deadline:
        hpa = collect_status(cluster[0], NAMESPACE)["hpa"]
        if hpa["cpu_current"] is not None:
            break
        time.sleep(5)
    assert (hpa["min"], hpa["max"], hpa["cpu_target"]) == (3, 10, 50)
    assert hpa["cpu_current"] is not None, "the HPA never read CPU usage from metrics-server"


def _new_image(docker_client: Any, image: str) -> str:
    """同じ中身で ID だけ違うイメージ（ラベルを 1 つ足す）を作り、一意のタグを返す。"""
    stamp = str(int(time.time()))
    dockerfile = f"FROM {image}\nLABEL io.mii.e2e.rollout={stamp}\n".encode()
    built, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile), rm=True, pull=False)
    repository, _, tag = image.rpartition(":")
    new_tag = f"{tag.split('-')[0]}-e2e-{stamp}"
    built.tag(repository, new_tag)
    return f"{repository}:{new_tag}"


def test_rolling_update_under_load_drops_no_request(
    cluster: tuple[Any, Any], deployed: dict[str, Any], docker_client: Any, image: str
) -> None:
    from mii_cli.kube.deploy import deploy
    from mii_cli.kube.images import ensure_in_cluster
    from mii_cli.kube.lbcheck import run_lb_check

    client, info = cluster
    new_image = _new_image(docker_client, image)
    # イメージの読み込み（minikube image load は時間がかかる）を先に済ませ、負荷の間に更新が収まるようにする
    new_image = ensure_in_cluster(info, new_image)
    outcome: dict[str, Any] = {}

    def load() -> None:
        try:
            outcome["result"] = run_lb_check(client, NAMESPACE, requests=1, duration=90, timeout=300)
        except Exception as error:  # noqa: BLE001  スレッドの失敗を本体へ渡す
            outcome["error"] = error

    worker = threading.Thread(target=load)
    worker.start()
    time.sleep(15)  # Job の Pod が動き出して負荷をかけ始めるまで
    result = deploy(namespace=NAMESPACE, image=new_image, client=client, info=info, timeout=300, load=False)
    worker.join(timeout=400)
    assert "error" not in outcome, outcome.get("error")
    load_result = outcome["result"]
    assert result["rollout"]["ready"] >= 3
    assert {a["kind"]: a["action"] for a in result["applied"]}["Deployment"] == "configured"
    assert load_result["errors"] == 0, load_result.get("first_errors")
    assert load_result["requests"] > 100


def test_a_second_deploy_of_the_same_image_changes_nothing(
    cluster: tuple[Any, Any], deployed: dict[str, Any]
) -> None:
    from mii_cli.kube.deploy import deploy
    from mii_cli.kube.status import collect_status

    client, info = cluster
    current = collect_status(client, NAMESPACE)["deployment"]["image"]
    result = deploy(namespace=NAMESPACE, image=current, client=client, info=info, timeout=300)
    assert {a["action"] for a in result["applied"]} == {"unchanged"}


def test_teardown_removes_everything(cluster: tuple[Any, Any], deployed: dict[str, Any]) -> None:
    from mii_cli.kube.teardown import namespace_phase, teardown

    client, _ = cluster
    assert teardown(client, NAMESPACE, timeout=300)["deleted"] is True
    assert namespace_phase(client, NAMESPACE) is None
    assert teardown(client, NAMESPACE)["deleted"] is False
