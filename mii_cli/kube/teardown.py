"""`mii teardown`: Namespace を消し、消えるまで待つ（無ければ何もしない）。"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kubernetes.client import ApiClient

from mii_cli import console as out
from mii_cli.errors import ClusterError, WaitTimeout
from mii_cli.kube import api as kapi

MANAGED_BY = ("app.kubernetes.io/managed-by", "mii")


def read_namespace(client: ApiClient, namespace: str) -> dict[str, Any] | None:
    """Namespace のオブジェクト（無ければ None）。"""
    status, body = kapi.request(client, "GET", f"/api/v1/namespaces/{namespace}")
    if status == 404:
        return None
    if status >= 400:
        raise ClusterError(f"reading namespace {namespace} failed ({status}): {kapi.status_message(body)}")
    return dict(body)


def namespace_phase(client: ApiClient, namespace: str) -> str | None:
    """Namespace の phase（Active・Terminating）。無ければ None。"""
    body = read_namespace(client, namespace)
    return None if body is None else str((body.get("status") or {}).get("phase") or "Active")


def ensure_managed(body: dict[str, Any], namespace: str, action: str) -> None:
    """mii が作った Namespace でなければ ClusterError（他人の Namespace を変えたり消したりしない）。"""
    labels = (body.get("metadata") or {}).get("labels") or {}
    key, value = MANAGED_BY
    if labels.get(key) != value:
        raise ClusterError(
            f"namespace {namespace} exists but was not created by mii (no label {key}={value}); "
            f"refusing to {action} it",
            hint="pick another namespace with --namespace, or add the label if mii should own it",
        )


def wait_gone(
    client: ApiClient,
    namespace: str,
    *,
    timeout: float = 180.0,
    poll: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Namespace が消えるまで待ち、かかった秒数を返す。"""
    start = clock()
    with out.console.status(f"Waiting for namespace {namespace} to be deleted..."):
        while namespace_phase(client, namespace) is not None:
            if clock() - start >= timeout:
                raise WaitTimeout(
                    f"namespace {namespace} still exists after {timeout:.0f}s",
                    hint=f"see what blocks it: kubectl get namespace {namespace} -o yaml (finalizers)",
                )
            sleep(poll)
    return clock() - start


def teardown(
    client: ApiClient,
    namespace: str,
    *,
    timeout: float = 180.0,
    poll: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """mii の Namespace を（中身ごと）消して消えるまで待つ。無ければ deleted=False。"""
    existing = read_namespace(client, namespace)
    if existing is None:
        return {"namespace": namespace, "deleted": False, "seconds": 0.0}
    ensure_managed(existing, namespace, "delete")
    status, body = kapi.request(
        client, "DELETE", f"/api/v1/namespaces/{namespace}", query=[("propagationPolicy", "Foreground")]
    )
    if status == 404:
        return {"namespace": namespace, "deleted": False, "seconds": 0.0}
    if status >= 400:
        raise ClusterError(f"deleting namespace {namespace} failed ({status}): {kapi.status_message(body)}")
    seconds = wait_gone(client, namespace, timeout=timeout, poll=poll, clock=clock, sleep=sleep)
    return {"namespace": namespace, "deleted": True, "seconds": round(seconds, 1)}
