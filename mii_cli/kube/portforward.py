"""公式クライアントのポートフォワード（WebSocket）を 127.0.0.1 の TCP ポートとして使えるようにする。

ローカルの待ち受けに接続が来るたびに Pod へのストリームを 1 本開き、両方向にバイト列を中継する。
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes.client import ApiClient, CoreV1Api

from mii_cli.errors import ClusterError
from mii_cli.kube import APP_LABEL
from mii_cli.kube import api as kapi
from mii_cli.kube.pods import is_ready

# ストリームを開く関数: (ソケットのように読み書きできるもの, 閉じる関数) を返す
StreamOpener = Callable[[], tuple[Any, Callable[[], None]]]

CHUNK = 64 * 1024


def relay(local: socket.socket, remote: Any, *, idle_timeout: float = 300.0) -> None:
    """2 つのソケットの間でバイト列を中継する（どちらかが閉じるまで）。"""
    peers = {local.fileno(): (local, remote), remote.fileno(): (remote, local)}
    while True:
        readable, _, _ = select.select(list(peers), [], [], idle_timeout)
        if not readable:
            return
        for fileno in readable:
            source, target = peers[fileno]
            try:
                data = source.recv(CHUNK)
            except OSError:
                return
            if not data:
                return
            try:
                target.sendall(data)
            except OSError:
                return


class PortForwarder:
    """127.0.0.1 の空きポートで待ち受け、接続ごとに `open_stream` で開いたストリームへ中継する。"""

    def __init__(self, open_stream: StreamOpener, *, host: str = "127.0.0.1", port: int = 0) -> None:
        """待ち受けを作る（まだ受け付けない）。"""
        self._open_stream = open_stream
        self._server = socket.create_server((host, port))
        self._server.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="mii-port-forward", daemon=True)
        self.errors: list[str] = []

    @property
    def port(self) -> int:
        """ローカルのポート番号。"""
        port: int = self._server.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """ローカルの URL。"""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> PortForwarder:
        """受け付けを始める。"""
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """受け付けを止める。"""
        self.close()

    def close(self) -> None:
        """待ち受けを閉じる。"""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self._server.close()

    def _serve(self) -> None:
        """接続を受け付け、接続ごとのスレッドで中継する。"""
        while not self._stop.is_set():
            try:
                connection, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(connection,), daemon=True).start()

    def _handle(self, connection: socket.socket) -> None:
        """1 つの接続を中継する。"""
        with connection:
            try:
                remote, close = self._open_stream()
            except Exception as error:  # noqa: BLE001  開けなければ接続を閉じ、理由を残す
                self.errors.append(f"{type(error).__name__}: {error}")
                return
            try:
                relay(connection, remote)
            finally:
                try:
                    close()
                except Exception as error:  # noqa: BLE001  Pod 側の理由（エラーチャネル）を残す
                    self.errors.append(str(error))


def pod_stream_opener(client: ApiClient, namespace: str, pod: str, port: int) -> StreamOpener:
    """Pod の `port` へのポートフォワードのストリームを開く関数。"""
    from kubernetes.stream import portforward

    # portforward は ApiClient の call_api を一時的に差し替えるので、専用のクライアントを使い直列に開く
    dedicated = ApiClient(client.configuration)
    core = CoreV1Api(dedicated)
    lock = threading.Lock()

    def open_stream() -> tuple[Any, Callable[[], None]]:
        with lock:
            forward = portforward(
                core.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(port)
            )

        def close() -> None:
            # kubelet はポートに届かない理由をエラーチャネルで返す。閉じるときにそれを例外で伝える
            error = forward.error(port)
            forward.close()
            if error:
                raise ClusterError(f"port-forward to {pod}:{port}: {error}")

        return forward.socket(port), close

    return open_stream


def ready_pod(client: ApiClient, namespace: str) -> str:
    """Service の背後の Ready な Pod の名前（無ければ ClusterError）。"""
    core = CoreV1Api(client)
    pods = kapi.call(
        client, "listing pods", core.list_namespaced_pod, namespace, label_selector=APP_LABEL
    ).items
    ready = sorted(kapi.name_of(pod) for pod in pods if is_ready(pod))
    if not ready:
        raise ClusterError(
            f"no ready pod of the service in namespace {namespace}",
            hint="deploy first (mii deploy) and check mii status",
        )
    return ready[0]


@contextlib.contextmanager
def forward_to_pod(client: ApiClient, namespace: str, pod: str, port: int) -> Iterator[PortForwarder]:
    """名前を指定した Pod へのポートフォワードを開く（Service を通さず、その Pod だけを確かめる）。"""
    with PortForwarder(pod_stream_opener(client, namespace, pod, port)) as forwarder:
        yield forwarder


@contextlib.contextmanager
def forward_to_service(client: ApiClient, namespace: str, port: int) -> Iterator[PortForwarder]:
    """Service の Ready な Pod へのポートフォワードを開く。"""
    pod = ready_pod(client, namespace)
    with PortForwarder(pod_stream_opener(client, namespace, pod, port)) as forwarder:
        yield forwarder
