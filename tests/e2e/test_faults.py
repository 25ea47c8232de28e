"""実クラスタで、クラスタが断りなく起こす障害: クラスタ内の負荷を Service に流しながら
- Pod の削除（自主的な退避。preStop と readiness で抜ける）: 失敗 0 件
- サーバーのプロセスの SIGKILL: Deployment が回復し、Pod が Ready に戻る。失敗の数と回復までの時間を測って出す
- 途中で止めた（Ctrl-C・SIGTERM）`mii deploy` をもう一度実行する: 同じ状態に収まり、余計なものが残らない

SIGKILL はノードのホストからプロセスに送るので、ノードがこのホストの minikube（none ドライバー）でなければ
スキップする（`MII_REQUIRE_MINIKUBE=1` では失敗）。
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.support import ROOT, BackgroundLoad, E2eSettings, Mii, relabelled_image, wait_for_running_job

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

APP_SELECTOR = "app=model-in-image"


def _ready(pod: Any) -> bool:
    conditions = pod.status.conditions or []
    return pod.metadata.deletion_timestamp is None and any(
        c.type == "Ready" and c.status == "True" for c in conditions
    )


def ready_pods(client: Any, namespace: str) -> list[Any]:
    from kubernetes.client import CoreV1Api

    pods = CoreV1Api(client).list_namespaced_pod(namespace, label_selector=APP_SELECTOR).items
    return [pod for pod in pods if _ready(pod)]


def wait_until(condition: Any, timeout: float, what: str) -> float:
    """条件が成り立つまで待ち、かかった秒数を返す（時間切れは失敗）。"""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout:.0f}s")


def test_a_pod_deleted_under_load_drops_no_request(
    e2e: E2eSettings, cluster: tuple[Any, Any], deployed: dict[str, Any]
) -> None:
    from kubernetes.client import CoreV1Api

    client = cluster[0]
    with BackgroundLoad(client, e2e.namespace, seconds=60) as load:
        wait_for_running_job(client, e2e.namespace, load.name)
        time.sleep(5)  # 負荷がすべての Pod に流れてから
        victim = ready_pods(client, e2e.namespace)[0].metadata.name
        CoreV1Api(client).delete_namespaced_pod(victim, e2e.namespace)
        wait_until(
            lambda: (
                len(ready_pods(client, e2e.namespace)) >= e2e.replicas
                and victim not in {pod.metadata.name for pod in ready_pods(client, e2e.namespace)}
            ),
            120,
            "a replacement pod did not become ready",
        )
        replacements = {pod.metadata.name for pod in ready_pods(client, e2e.namespace)}
    result = load.result()
    assert result.errors == 0, result.first_errors
    assert victim in result.served_by, "the deleted pod never served, so its removal proved nothing"
    assert replacements & set(result.served_by), "no replacement pod answered during the load"


def host_pid(container_id: str) -> int | None:
    """コンテナの最初のプロセスの、ノード（このホスト）での PID（crictl inspect）。"""
    crictl = shutil.which("crictl")
    if crictl is None:
        return None
    done = subprocess.run(
        [crictl, "inspect", "--output", "json", container_id],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        return None
    pid = (json.loads(done.stdout).get("info") or {}).get("pid")
    return int(pid) if pid and os.path.exists(f"/proc/{pid}") else None


def test_a_server_killed_hard_is_restarted_and_few_requests_fail(
    e2e: E2eSettings, cluster: tuple[Any, Any], deployed: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from kubernetes.client import CoreV1Api

    client = cluster[0]
    pod = ready_pods(client, e2e.namespace)[0]
    name, status = pod.metadata.name, pod.status.container_statuses[0]
    pid = host_pid(status.container_id.split("://", 1)[-1])
    if pid is None:
        reason = "the pod's processes are not on this host (needs the test minikube, none driver, and crictl)"
        if os.environ.get("MII_REQUIRE_MINIKUBE") == "1":
            pytest.fail(f"MII_REQUIRE_MINIKUBE=1 but {reason}")
        pytest.skip(reason)
    restarts = status.restart_count

    def recovered() -> bool:
        current = CoreV1Api(client).read_namespaced_pod(name, e2e.namespace)
        return current.status.container_statuses[0].restart_count > restarts and _ready(current)

    with BackgroundLoad(client, e2e.namespace, seconds=60) as load:
        wait_for_running_job(client, e2e.namespace, load.name)
        time.sleep(5)
        os.kill(pid, signal.SIGKILL)
        seconds = wait_until(recovered, 180, f"{name} was not restarted and ready again")
    result = load.result()
    with capsys.disabled():
        print(
            f"\nSIGKILL of the server in {name}: {result.errors} of {result.requests} in-cluster requests "
            f"failed; the pod was Ready again after {seconds:.1f} s"
        )
    # 止まった Pod へ向かっていた接続と、Ready でなくなるまでの短い間に振り分けられた接続だけが失敗する
    assert result.errors <= max(10, result.requests // 20), result.first_errors
    assert len(result.served_by) >= 2


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _deployment(client: Any, namespace: str) -> Any:
    from kubernetes.client import AppsV1Api

    return AppsV1Api(client).read_namespaced_deployment("model-in-image", namespace)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_deploy_converges_when_run_again(
    sig: signal.Signals,
    e2e: E2eSettings,
    mii: Mii,
    cluster: tuple[Any, Any],
    deployed: dict[str, Any],
    docker_client: Any,
    image: str,
    made_images: list[str],
) -> None:
    from kubernetes.client import AppsV1Api, BatchV1Api

    from mii_cli.image.delivery import ensure_in_cluster

    client, info = cluster
    new_image = ensure_in_cluster(
        info, relabelled_image(docker_client, image, made_images), registry=e2e.registry
    )
    args = [
        "deploy",
        "-n",
        e2e.namespace,
        "--image",
        new_image,
        "--no-load",
        "--timeout",
        "300",
        *e2e.sizing_args,
    ]
    env = {k: v for k, v in os.environ.items() if "COV" not in k.upper()}
    process = subprocess.Popen(
        [sys.executable, "-m", "mii_cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # 端末の Ctrl-C と同じ既定の SIGINT で（シェルの裏で動くテストは SIGINT を無視する状態を受け継ぎ、
        # Python はそのとき KeyboardInterrupt の処理を入れない: mii は止まらずに最後まで動いてしまう）
        preexec_fn=_default_sigint,
    )
    try:
        # ロールアウトが始まった（新しいイメージの Deployment が適用された）ところで止める
        wait_until(
            lambda: _deployment(client, e2e.namespace).spec.template.spec.containers[0].image == new_image,
            120,
            "mii deploy did not apply the new image",
        )
        time.sleep(1)
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == (130 if sig == signal.SIGINT else 143), stderr.decode()
    assert "Interrupted" in stderr.decode()

    again = mii.json(*args)
    assert again["rollout"]["ready"] >= e2e.replicas
    assert {a["kind"]: a["action"] for a in again["applied"]}["Deployment"] == "unchanged"
    # 同じ状態: すべての Ready な Pod が新しいイメージ、動いている ReplicaSet は 1 つ、残った Job は無い
    pods = ready_pods(client, e2e.namespace)
    assert len(pods) >= e2e.replicas
    assert {pod.spec.containers[0].image for pod in pods} == {new_image}
    replica_sets = (
        AppsV1Api(client).list_namespaced_replica_set(e2e.namespace, label_selector=APP_SELECTOR).items
    )
    assert [rs.spec.template.spec.containers[0].image for rs in replica_sets if rs.spec.replicas] == [
        new_image
    ]
    assert BatchV1Api(client).list_namespaced_job(e2e.namespace).items == []
