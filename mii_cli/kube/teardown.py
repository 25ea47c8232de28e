"""`mii teardown`: mii の Namespace を消し、消えるまで待つ（無ければ何もしない）。"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from kubernetes.client import ApiClient

from mii_cli.errors import ClusterError
from mii_cli.kube import api as kapi
from mii_cli.kube.namespace import ensure_managed, read_namespace, wait_gone
from mii_cli.results import Result


@dataclass(frozen=True)
class TeardownResult(Result):
    """削除の結果（無かったなら deleted=False）。"""

    namespace: str
    deleted: bool
    seconds: float


@dataclass(frozen=True)
class NamespaceDeleting:
    """Namespace の削除を頼み、消えるのを待ち始めた（CLI はスピナーを出す）。"""

    namespace: str


def teardown(
    client: ApiClient,
    namespace: str,
    *,
    timeout: float = 180.0,
    poll: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_event: Callable[[NamespaceDeleting], None] | None = None,
) -> TeardownResult:
    """mii の Namespace を（中身ごと）消して消えるまで待つ。無ければ deleted=False。"""
    nothing = TeardownResult(namespace=namespace, deleted=False, seconds=0.0)
    existing = read_namespace(client, namespace)
    if existing is None:
        return nothing
    ensure_managed(existing, namespace, "delete")
    status, body = kapi.request(
        client, "DELETE", f"/api/v1/namespaces/{namespace}", query=[("propagationPolicy", "Foreground")]
    )
    if status == 404:
        return nothing
    if status >= 400:
        raise ClusterError(f"deleting namespace {namespace} failed ({status}): {kapi.status_message(body)}")
    if on_event is not None:
        on_event(NamespaceDeleting(namespace))
    seconds = wait_gone(client, namespace, timeout=timeout, poll=poll, clock=clock, sleep=sleep)
    return TeardownResult(namespace=namespace, deleted=True, seconds=round(seconds, 1))
