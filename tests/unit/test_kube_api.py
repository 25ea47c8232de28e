"""公式クライアントの呼び出しとエラーの翻訳（代役の API サーバーと、届かないサーバー）。"""

from __future__ import annotations

import pytest
from kubernetes.client import ApiClient, Configuration, CoreV1Api

from mii_cli.errors import ClusterError
from mii_cli.kube import api as kapi
from tests.fakes.kube_api import FakeApiServer, status_body
from tests.support import free_port


def dead_client() -> ApiClient:
    configuration = Configuration(host=f"http://127.0.0.1:{free_port()}")
    configuration.retries = 0
    return ApiClient(configuration)


def test_status_message_variants() -> None:
    assert kapi.status_message(b'{"message": "nope"}') == "nope"
    assert kapi.status_message('{"reason": "NotFound"}') == "NotFound"
    assert kapi.status_message("plain text") == "plain text"
    assert kapi.status_message(None) == "None"


def test_typed_calls_translate_api_errors(fake_api: FakeApiServer) -> None:
    client = fake_api.client()
    fake_api.routes[("GET", "/api/v1/namespaces/x")] = (403, status_body(403, "namespaces is forbidden"))
    core = CoreV1Api(client)
    with pytest.raises(ClusterError, match=r"reading failed \(403\): namespaces is forbidden") as error:
        kapi.call(client, "reading", core.read_namespace, "x")
    assert "kubectl auth can-i" in (error.value.hint or "")
    with pytest.raises(ClusterError, match="403"):
        kapi.read(client, "reading", core.read_namespace, "x")
    assert kapi.read(client, "reading", core.read_namespace, "missing") is None


def test_unreachable_servers_are_one_message() -> None:
    client = dead_client()
    core = CoreV1Api(client)
    for attempt in (
        lambda: kapi.call(client, "reading", core.read_namespace, "x"),
        lambda: kapi.read(client, "reading", core.read_namespace, "x"),
        lambda: kapi.request(client, "GET", "/api/v1/namespaces/x", timeout=2),
    ):
        with pytest.raises(ClusterError, match="cannot reach the Kubernetes API server"):
            attempt()


def test_raw_requests_return_status_and_body(fake_api: FakeApiServer) -> None:
    client = fake_api.client()
    fake_api.routes[("GET", "/text")] = (200, "not json")
    assert kapi.request(client, "GET", "/text") == (200, "not json")
    fake_api.routes[("GET", "/empty")] = (200, "")
    assert kapi.request(client, "GET", "/empty") == (200, None)
    assert kapi.request(client, "GET", "/nothing")[0] == 404


def test_a_tls_failure_is_unreachable_not_a_status() -> None:
    """公式クライアントは TLS の失敗を status=0 の ApiException にする。届かないのと同じに扱う。"""
    from kubernetes.client import ApiClient, Configuration
    from kubernetes.client.exceptions import ApiException

    from mii_cli.errors import ClusterError
    from mii_cli.kube import api as kapi

    configuration = Configuration()
    configuration.host = "https://127.0.0.1:1"
    client = ApiClient(configuration)

    def fail(*args: object, **kwargs: object) -> None:
        raise ApiException(status=0, reason="SSLError: certificate verify failed")

    client.call_api = fail  # type: ignore[method-assign]
    with pytest.raises(
        ClusterError, match=r"cannot reach the Kubernetes API server at https://127\.0\.0\.1:1"
    ):
        kapi.request(client, "GET", "/api/v1/namespaces/x")
