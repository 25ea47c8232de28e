"""Kubernetes API サーバーの代役そのもののテスト（公式クライアントに正しく答えること）。"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fakes.kube_api import FakeApiServer


def test_fake_server_answers_the_official_client(fake_api: FakeApiServer) -> None:
    from kubernetes.client import CoreV1Api, V1Namespace, V1ObjectMeta, VersionApi

    client = fake_api.client()
    assert VersionApi(client).get_code().git_version == "v1.34.0"
    fake_api.put("/api/v1/namespaces/demo", V1Namespace(metadata=V1ObjectMeta(name="demo")))
    assert CoreV1Api(client).read_namespace("demo").metadata.name == "demo"
    assert [n.metadata.name for n in CoreV1Api(client).list_namespace().items] == ["demo"]


def test_fake_server_forgets_replicas_that_nobody_owns(fake_api: FakeApiServer) -> None:
    from mii_cli.kube import api as kapi

    client = fake_api.client()
    path = "/apis/apps/v1/namespaces/n/deployments/d"
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 4}}
    query = [("fieldManager", "m")]
    kapi.request(client, "PATCH", path, query=query, body=body, content_type="application/apply-patch+yaml")
    without = {**body, "spec": {}}
    kapi.request(
        client, "PATCH", path, query=query, body=without, content_type="application/apply-patch+yaml"
    )
    assert "replicas" not in fake_api.objects[path]["spec"]


# --- NetworkPolicy（networking.k8s.io/v1）: 他の Namespace のオブジェクトと同じく適用・読み・一覧・削除 ---

POLICIES = "/apis/networking.k8s.io/v1/namespaces/n/networkpolicies"


def _policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": "n"},
        "spec": spec,
    }


def _apply(fake: FakeApiServer, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    from mii_cli.kube import api as kapi

    query = [("fieldManager", "mii"), ("force", "true")]
    return kapi.request(
        fake.client(), "PATCH", path, query=query, body=body, content_type="application/apply-patch+yaml"
    )


def test_the_fake_server_serves_network_policies(fake_api: FakeApiServer) -> None:
    from kubernetes.client import NetworkingV1Api

    deny = _policy("deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "egress": []})
    status, created = _apply(fake_api, f"{POLICIES}/deny", deny)
    assert (status, created["kind"], created["metadata"]["generation"]) == (201, "NetworkPolicy", 1)
    again_status, again = _apply(fake_api, f"{POLICIES}/deny", deny)
    assert again_status == 200
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    _apply(fake_api, f"{POLICIES}/web", _policy("web", {"podSelector": {"matchLabels": {"app": "web"}}}))
    api = NetworkingV1Api(fake_api.client())
    assert api.read_namespaced_network_policy("deny", "n").spec.policy_types == ["Ingress", "Egress"]
    assert [p.metadata.name for p in api.list_namespaced_network_policy("n").items] == ["deny", "web"]
    assert api.list_namespaced_network_policy("other").items == []
    api.delete_namespaced_network_policy("web", "n")
    assert [p.metadata.name for p in api.list_namespaced_network_policy("n").items] == ["deny"]
    from kubernetes.client.exceptions import ApiException

    with pytest.raises(ApiException) as error:
        api.read_namespaced_network_policy("web", "n")
    assert error.value.status == 404
    assert json.loads(error.value.body)["message"] == 'networkpolicies.networking.k8s.io "web" not found'


def test_the_fake_server_defaults_network_policies_like_the_real_one(fake_api: FakeApiServer) -> None:
    spec = {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [],
        "egress": [{"ports": [{"port": 8000}]}],
    }
    _, created = _apply(fake_api, f"{POLICIES}/web", _policy("web", spec))
    # 本物: policyTypes は規則から、ポートの protocol は TCP、空の規則のリストは返さない（omitempty）
    assert created["spec"] == {
        "podSelector": {"matchLabels": {"app": "web"}},
        "policyTypes": ["Ingress", "Egress"],
        "egress": [{"ports": [{"port": 8000, "protocol": "TCP"}]}],
    }
    _, ingress_only = _apply(fake_api, f"{POLICIES}/in", _policy("in", {"podSelector": {}}))
    assert ingress_only["spec"]["policyTypes"] == ["Ingress"]


def test_deleting_a_namespace_removes_its_objects_of_every_api_group(fake_api: FakeApiServer) -> None:
    from mii_cli.kube import api as kapi

    fake_api.put("/api/v1/namespaces/n", {"metadata": {"name": "n"}})
    fake_api.put("/api/v1/namespaces/n/services/s", {"metadata": {"name": "s"}})
    fake_api.put("/apis/apps/v1/namespaces/n/deployments/d", {"metadata": {"name": "d"}})
    _apply(fake_api, f"{POLICIES}/deny", _policy("deny", {"podSelector": {}}))
    kept = "/apis/networking.k8s.io/v1/namespaces/n2/networkpolicies/deny"
    fake_api.put(kept, {"metadata": {"name": "deny"}})
    client = fake_api.client()
    assert kapi.request(client, "DELETE", "/api/v1/namespaces/n")[0] == 200
    assert kapi.request(client, "GET", f"{POLICIES}/deny")[0] == 200  # まだ Terminating
    kapi.request(client, "GET", "/api/v1/namespaces/n")  # 消えかけのまま 1 度読まれた後に消える
    assert kapi.request(client, "GET", "/api/v1/namespaces/n")[0] == 404
    assert sorted(fake_api.objects) == [kept]


# --- 影（mii deploy --shadow）が頼るやりとり: Pod への注釈の部分的な適用、Service の ClusterIP、削除 ---

PODS = "/api/v1/namespaces/n/pods"


def test_a_partial_pod_applied_server_side_merges_into_the_live_pod(fake_api: FakeApiServer) -> None:
    from kubernetes.client import CoreV1Api

    from tests.fakes.kube_objects import pod, put_pods

    put_pods(fake_api, pod("web-0", namespace="n", labels={"app": "web"}, annotations={"kept": "yes"}))
    before = fake_api.objects[f"{PODS}/web-0"]
    partial = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "n", "annotations": {"io.mii/mirror": "1"}},
    }
    status, applied = _apply(fake_api, f"{PODS}/web-0", partial)
    assert status == 200
    read = CoreV1Api(fake_api.client()).read_namespaced_pod("web-0", "n")
    # 注釈は重なり、ほかのフィールド（ラベル・spec・status・前からの注釈）は残る
    assert read.metadata.annotations == {"kept": "yes", "io.mii/mirror": "1"}
    assert read.metadata.labels == {"app": "web"}
    assert (read.status.phase, read.spec.node_name) == ("Running", "node-1")
    assert int(applied["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    # 同じ注釈をもう一度: 書き込まない。値が変われば書き込む
    _, same = _apply(fake_api, f"{PODS}/web-0", partial)
    assert same["metadata"]["resourceVersion"] == applied["metadata"]["resourceVersion"]
    changed = {**partial, "metadata": {**partial["metadata"], "annotations": {"io.mii/mirror": "2"}}}
    _, again = _apply(fake_api, f"{PODS}/web-0", changed)
    assert again["metadata"]["annotations"]["io.mii/mirror"] == "2"
    assert int(again["metadata"]["resourceVersion"]) > int(applied["metadata"]["resourceVersion"])


def test_a_partial_pod_applied_to_a_missing_pod_is_invalid(fake_api: FakeApiServer) -> None:
    partial = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gone", "namespace": "n"}}
    status, body = _apply(fake_api, f"{PODS}/gone", partial)
    assert (status, body["kind"], body["reason"]) == (422, "Status", "Invalid")
    assert body["message"] == 'Pod "gone" is invalid: spec.containers: Required value'
    assert f"{PODS}/gone" not in fake_api.objects


def _service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "n"},
        "spec": {"selector": {"app": name}, "ports": [{"port": 8000}]},
    }


def test_a_service_keeps_the_cluster_ip_it_was_given_and_no_two_services_share_one(
    fake_api: FakeApiServer,
) -> None:
    from mii_cli.kube import api as kapi

    client = fake_api.client()
    services = "/api/v1/namespaces/n/services"
    _, first = _apply(fake_api, f"{services}/a", _service("a"))
    _, second = _apply(fake_api, f"{services}/b", _service("b"))
    address = first["spec"]["clusterIP"]
    assert first["spec"]["clusterIPs"] == [address]
    _, again = _apply(fake_api, f"{services}/a", _service("a"))
    assert again["spec"]["clusterIP"] == address
    status, read = kapi.request(client, "GET", f"{services}/a")
    assert (status, read["spec"]["clusterIP"]) == (200, address)
    # 消して作り直しても、残っている Service のアドレスとは重ならない
    kapi.request(client, "DELETE", f"{services}/a")
    _, recreated = _apply(fake_api, f"{services}/c", _service("c"))
    assert len({address, second["spec"]["clusterIP"], recreated["spec"]["clusterIP"]}) == 3


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/api/v1/namespaces/n/services/s", 'services "s" not found'),
        ("/api/v1/namespaces/n/configmaps/s", 'configmaps "s" not found'),
        (f"{POLICIES}/s", 'networkpolicies.networking.k8s.io "s" not found'),
        ("/apis/apps/v1/namespaces/n/deployments/s", 'deployments.apps "s" not found'),
    ],
)
def test_a_delete_answers_200_then_404_when_the_object_is_gone(
    fake_api: FakeApiServer, path: str, message: str
) -> None:
    from mii_cli.kube import api as kapi

    client = fake_api.client()
    fake_api.put(path, {"metadata": {"name": "s", "namespace": "n"}})
    query = [("propagationPolicy", "Background")]
    assert kapi.request(client, "DELETE", path, query=query)[0] == 200
    status, body = kapi.request(client, "DELETE", path, query=query)
    assert (status, body["kind"], body["reason"], body["message"]) == (404, "Status", "NotFound", message)
    assert kapi.request(client, "GET", path)[0] == 404
