"""ポートフォワード: 127.0.0.1 の待ち受けから Pod へのストリームへの中継、Ready な Pod の選び方。"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from mii_cli.errors import ClusterError
from mii_cli.kube import portforward
from tests.fakes.http import HttpStandIn
from tests.fakes.kube_api import FakeApiServer
from tests.fakes.kube_objects import NAMESPACE, pod, put_pods


def test_the_forwarder_relays_http_to_the_pod(pod_stand_in: HttpStandIn) -> None:
    with portforward.PortForwarder(pod_stand_in.opener()) as forwarder:
        for path in ("/health", "/predict/test"):
            response = httpx.get(forwarder.url + path, timeout=5)
            assert response.json() == {"path": path}
            assert response.headers["X-Served-By"] == "model-in-image-0"


def test_the_forwarder_reports_streams_it_cannot_open() -> None:
    def broken() -> tuple[Any, Callable[[], None]]:
        raise OSError("pod is gone")

    with portforward.PortForwarder(broken) as forwarder, pytest.raises(httpx.HTTPError):
        httpx.get(forwarder.url, timeout=2)
    assert forwarder.errors == ["OSError: pod is gone"]


def test_without_a_ready_pod_there_is_nothing_to_forward_to(fake_api: FakeApiServer) -> None:
    put_pods(fake_api, pod("starting", ready=False))
    with pytest.raises(ClusterError, match="no ready pod"):
        portforward.ready_pod(fake_api.client(), NAMESPACE)


def test_the_first_ready_pod_by_name_is_chosen(fake_api: FakeApiServer) -> None:
    put_pods(fake_api, pod("b"), pod("a"), pod("0-not-ready", ready=False))
    assert portforward.ready_pod(fake_api.client(), NAMESPACE) == "a"


class Forward:
    """kubernetes.stream.portforward の結果の代わり（kubelet のエラーチャネルの答えを持つ）。"""

    def __init__(self, error: str | None, calls: list[tuple[Any, ...]]) -> None:
        self._error, self.calls = error, calls

    def socket(self, port: int) -> str:
        return f"socket:{port}"

    def error(self, port: int) -> str | None:
        return self._error

    def close(self) -> None:
        self.calls.append(("close",))


def forwarding(monkeypatch: pytest.MonkeyPatch, error: str | None) -> list[tuple[Any, ...]]:
    """公式クライアントのポートフォワードを記録する代わりに差し替え、呼ばれ方を返す。"""
    import kubernetes.stream

    calls: list[tuple[Any, ...]] = []

    def fake_portforward(method: Any, *args: Any, **kwargs: Any) -> Forward:
        calls.append((method.__name__, *args, kwargs))
        return Forward(error, calls)

    monkeypatch.setattr(kubernetes.stream, "portforward", fake_portforward)
    return calls


def test_a_stream_is_opened_through_the_portforward_api(
    fake_api: FakeApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = forwarding(monkeypatch, None)
    sock, close = portforward.pod_stream_opener(fake_api.client(), NAMESPACE, "pod-a", 8000)()
    close()
    assert sock == "socket:8000"
    assert calls == [
        ("connect_get_namespaced_pod_portforward", "pod-a", NAMESPACE, {"ports": "8000"}),
        ("close",),
    ]


def test_the_kubelet_reason_is_raised_when_the_stream_closes(
    fake_api: FakeApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    forwarding(monkeypatch, "error forwarding port 8000: connection refused")
    _, close = portforward.pod_stream_opener(fake_api.client(), NAMESPACE, "pod-a", 8000)()
    with pytest.raises(ClusterError, match="pod-a:8000: error forwarding port 8000: connection refused"):
        close()
