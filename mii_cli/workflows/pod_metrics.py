"""Ready な Pod ごとの `/metrics` を、API サーバーの Pod のプロキシで読む（verdict・analysis・shadow）。

どの数字を読むかは呼ぶ側が `reader`（`/metrics` の本文 -> 読み）で決める。読めない Pod は理由を添えて
別に返し、呼ぶ側がそれを除くか、失敗にするかを決める。
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from kubernetes.client import ApiClient

from mii_cli.errors import MiiError
from mii_cli.kube.pods import ready_pods
from mii_cli.kube.proxy import get_from_pod
from service.constants import DEFAULT_PORT

R = TypeVar("R")


def read_pods(
    client: ApiClient, namespace: str, selector: str, reader: Callable[[str], R]
) -> tuple[list[str], dict[str, R], list[str]]:
    """`selector` の Ready な Pod と、それぞれの `/metrics` の読み（読めない Pod は理由を添えて別に）。"""
    pods = ready_pods(client, namespace, selector)
    readings: dict[str, R] = {}
    unread: list[str] = []
    for pod in pods:
        try:
            readings[pod] = reader(get_from_pod(client, namespace, pod, DEFAULT_PORT, "/metrics"))
        except (MiiError, ValueError) as error:
            unread.append(f"{pod}: {getattr(error, 'message', None) or error}")
    return pods, readings, unread
