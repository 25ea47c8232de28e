"""NetworkPolicy（manifests/networkpolicy.yml）を本物のクラスタで確かめる。

API サーバーが受け入れ、`mii status` が示し、クラスタ内の確認の Job は Service に届く。
クラスタのネットワークプラグインが NetworkPolicy を効かせるなら（テスト用の minikube は kube-router で
効かせる）、アプリの Pod は外へ接続を開けず、同じイメージでポリシーに選ばれない Pod（対照）は
同じ相手に届く。

効かせる仕組みが無いクラスタでは、効き目のテストだけをスキップする（`MII_REQUIRE_MINIKUBE=1` では失敗）。
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import E2eSettings, Mii

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CONTROL = "mii-e2e-netpol-control"
# Pod の中で接続を試すスクリプト: 引数の host:port ごとに open か blocked を 1 行
PROBE = """
import socket, sys
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=4).close()
        print(target, "open")
    except OSError as error:
        print(target, "blocked", type(error).__name__)
"""


def probe(client: Any, namespace: str, pod: str, targets: list[str]) -> dict[str, str]:
    """Pod の中から各相手へ TCP の接続を試す（kubectl exec と同じ API）。"""
    from kubernetes.client import CoreV1Api
    from kubernetes.stream import stream

    output = stream(
        CoreV1Api(client).connect_get_namespaced_pod_exec,
        pod,
        namespace,
        command=["python", "-c", PROBE, *targets],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _request_timeout=60,
    )
    answers = dict(line.split(" ", 2)[:2] for line in str(output).splitlines() if line.count(" ") >= 1)
    assert set(answers) == set(targets), output
    return answers


def test_the_cluster_accepts_the_policies_and_status_shows_them(
    e2e: E2eSettings, mii: Mii, cluster: tuple[Any, Any], deployed: dict[str, Any]
) -> None:
    from kubernetes.client import NetworkingV1Api

    applied = {(a["kind"], a["name"]) for a in deployed["applied"]}
    assert {("NetworkPolicy", "model-in-image"), ("NetworkPolicy", "model-in-image-checks")} <= applied
    live = NetworkingV1Api(cluster[0]).list_namespaced_network_policy(e2e.namespace).items
    assert {policy.metadata.name for policy in live} == {"model-in-image", "model-in-image-checks"}
    shown = {policy["name"]: policy for policy in mii.json("status", "-n", e2e.namespace)["network_policies"]}
    assert shown["model-in-image"]["egress"] == "none"
    assert shown["model-in-image"]["ingress"] == "8000/TCP"


def test_the_check_job_still_reaches_the_service(
    e2e: E2eSettings, cluster: tuple[Any, Any], deployed: dict[str, Any]
) -> None:
    from mii_cli.probe.in_cluster import run_lb_check

    result = run_lb_check(cluster[0], e2e.namespace, requests=40)
    assert result.passed, result.detail


@pytest.fixture(scope="module")
def enforced(cluster: tuple[Any, Any]) -> None:
    """クラスタが NetworkPolicy を効かせるか（テスト用の minikube の kube-router）。"""
    from kubernetes.client import AppsV1Api
    from kubernetes.client.exceptions import ApiException

    try:
        AppsV1Api(cluster[0]).read_namespaced_daemon_set("kube-router", "kube-system")
    except ApiException as error:
        if error.status != 404:
            raise
        reason = "no NetworkPolicy enforcement known in this cluster (the test minikube runs kube-router)"
        if os.environ.get("MII_REQUIRE_MINIKUBE") == "1":
            pytest.fail(f"MII_REQUIRE_MINIKUBE=1 but {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def control_pod(e2e: E2eSettings, cluster: tuple[Any, Any], deployed: dict[str, Any]) -> Iterator[str]:
    """同じイメージで、どのポリシーにも選ばれない Pod（対照）。"""
    from kubernetes.client import CoreV1Api

    core = CoreV1Api(cluster[0])
    container = {
        "name": "control",
        "image": deployed["image"],
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-c", "import time; time.sleep(900)"],
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"cpu": "100m", "memory": "64Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    core.create_namespaced_pod(
        e2e.namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": CONTROL, "labels": {"app": CONTROL}},
            "spec": {"containers": [container], "automountServiceAccountToken": False},
        },
    )
    deadline = time.monotonic() + 120
    while core.read_namespaced_pod(CONTROL, e2e.namespace).status.phase != "Running":
        assert time.monotonic() < deadline, "the control pod did not start"
        time.sleep(1)
    yield CONTROL
    core.delete_namespaced_pod(CONTROL, e2e.namespace, grace_period_seconds=0)


def outside_targets(client: Any) -> list[str]:
    """アプリの Pod から見た「外」: API サーバー（kubernetes の Service）とノードの kubelet。"""
    from kubernetes.client import CoreV1Api

    core = CoreV1Api(client)
    api_server = core.read_namespaced_service("kubernetes", "default").spec.cluster_ip
    node = core.list_node().items[0]
    node_ip = next(a.address for a in node.status.addresses if a.type == "InternalIP")
    return [f"{api_server}:443", f"{node_ip}:10250"]


def test_a_model_pod_cannot_open_a_connection_out_while_a_control_pod_can(
    e2e: E2eSettings, cluster: tuple[Any, Any], deployed: dict[str, Any], enforced: None, control_pod: str
) -> None:
    from kubernetes.client import CoreV1Api

    client = cluster[0]
    targets = outside_targets(client)
    model_pod = (
        CoreV1Api(client).list_namespaced_pod(e2e.namespace, label_selector="app=model-in-image").items[0]
    )
    # 対照: ポリシーの無い Pod からは同じ相手に届く（経路はある。止めているのはポリシー）
    assert probe(client, e2e.namespace, control_pod, targets) == dict.fromkeys(targets, "open")
    assert probe(client, e2e.namespace, model_pod.metadata.name, targets) == dict.fromkeys(targets, "blocked")
