"""ConfigMap の読み書き（mii が Namespace に残す小さな記録のため）。何を書くかは知らない。"""

from __future__ import annotations

from kubernetes.client import ApiClient

from mii_cli.errors import ClusterError
from mii_cli.kube import APP_NAME, SERVICE_LABEL_KEY
from mii_cli.kube import api as kapi
from mii_cli.kube.apply import apply_one


def config_map_path(namespace: str, name: str) -> str:
    """ConfigMap の API のパス。"""
    return f"/api/v1/namespaces/{namespace}/configmaps/{name}"


def read_config_map(client: ApiClient, namespace: str, name: str) -> dict[str, str] | None:
    """ConfigMap の data（無ければ None）。"""
    status, body = kapi.request(client, "GET", config_map_path(namespace, name))
    if status == 404:
        return None
    if status >= 400:
        raise ClusterError(f"reading configmap {name} failed ({status}): {kapi.status_message(body)}")
    data: dict[str, str] = (body or {}).get("data") or {}
    return data


def write_config_map(client: ApiClient, namespace: str, name: str, data: dict[str, str]) -> None:
    """ConfigMap を data で作るか置き換える（サーバーサイドアプライ、アプリのラベル付き）。"""
    apply_one(
        client,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": {SERVICE_LABEL_KEY: APP_NAME}},
            "data": data,
        },
    )
