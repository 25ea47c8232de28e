"""API サーバーの Pod のプロキシ（`pods/proxy`）越しに、Pod の HTTP の GET を読む。

ポートフォワードと違って接続を張り続けず、1 回の GET で済む（クラスタの中のネットワークにも、
Prometheus のサーバーにも届かなくてよい）。要る権限は `pods/proxy` の get。
"""

from __future__ import annotations

from kubernetes.client import ApiClient, CoreV1Api

from mii_cli.kube import api as kapi


def get_from_pod(
    client: ApiClient, namespace: str, pod: str, port: int, path: str, timeout: float = 10.0
) -> str:
    """Pod の `port` の `path` を GET し、本文を返す（届かなければ ClusterError）。"""
    response = kapi.call(
        client,
        f"reading {path} of pod {pod}",
        CoreV1Api(client).connect_get_namespaced_pod_proxy_with_path,
        f"{pod}:{port}",
        namespace,
        path.lstrip("/"),
        _preload_content=False,
        _request_timeout=timeout,
    )
    data: bytes = response.data
    return data.decode("utf-8", errors="replace")
