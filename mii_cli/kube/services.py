"""Service の読み出し（ClusterIP）。"""

from __future__ import annotations

from kubernetes.client import ApiClient

from mii_cli.errors import ClusterError
from mii_cli.kube import api as kapi


def cluster_ip(client: ApiClient, namespace: str, name: str) -> str | None:
    """Service の ClusterIP（Service が無い・ClusterIP を持たなければ None）。"""
    status, body = kapi.request(client, "GET", f"/api/v1/namespaces/{namespace}/services/{name}")
    if status == 404:
        return None
    if status >= 400:
        raise ClusterError(f"reading service {name} failed ({status}): {kapi.status_message(body)}")
    address = ((body or {}).get("spec") or {}).get("clusterIP")
    return address if isinstance(address, str) and address and address != "None" else None
