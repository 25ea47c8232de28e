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
