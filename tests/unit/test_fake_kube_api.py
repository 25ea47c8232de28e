"""Kubernetes API サーバーの代役そのもののテスト（公式クライアントに正しく答えること）。"""

from __future__ import annotations

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
