"""mii の Namespace: 読み取り（公式クライアントの型付き API）、持ち主の確認、消えるまでの待機。

`mii deploy`（消えかけの Namespace を待つ）と `mii teardown`（消して待つ）が共有する。
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kubernetes.client import ApiClient, CoreV1Api

from mii_cli.errors import ClusterError, WaitTimeout
from mii_cli.kube import api as kapi

# mii が作った Namespace に付くラベル（manifests/namespace.yml）
MANAGED_BY = ("app.kubernetes.io/managed-by", "mii")


def read_namespace(client: ApiClient, namespace: str) -> Any | None:
    """Namespace のオブジェクト（V1Namespace。無ければ None）。"""
    return kapi.read(client, f"reading namespace {namespace}", CoreV1Api(client).read_namespace, namespace)


def phase(obj: Any) -> str:
    """Namespace の phase（Active・Terminating）。"""
    return str((obj.status.phase if obj.status else None) or "Active")


def namespace_phase(client: ApiClient, namespace: str) -> str | None:
    """Namespace の phase。無ければ None。"""
    obj = read_namespace(client, namespace)
    return None if obj is None else phase(obj)


def ensure_managed(obj: Any, namespace: str, action: str) -> None:
    """mii が作った Namespace でなければ ClusterError（他人の Namespace を変えたり消したりしない）。"""
    labels = (obj.metadata.labels if obj.metadata else None) or {}
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
    """Namespace が消えるまで待ち、かかった秒数を返す（timeout 秒を過ぎれば WaitTimeout）。"""
    start = clock()
    while namespace_phase(client, namespace) is not None:
        if clock() - start >= timeout:
            raise WaitTimeout(
                f"namespace {namespace} still exists after {timeout:.0f}s",
                hint=f"see what blocks it: kubectl get namespace {namespace} -o yaml (finalizers)",
            )
        sleep(poll)
    return clock() - start
