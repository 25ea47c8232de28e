"""ノードが Pod に与えられる大きさ: 要求した CPU・メモリの Pod が、どれかのノードに入るか。

`--memory 1Ti` の Pod はスケジュールされず、ロールアウトの期限まで Pending のまま待つことになる。
クラスタに届くときは、適用の前に、スケジュールできるノード（Ready で、cordon されていない）の
allocatable と比べ、どのノードにも入らなければ 1 行で止める。ノードを読めない権限なら確かめない。
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes.client import ApiClient

from mii_cli.errors import ConfigError
from mii_cli.kube import api as kapi
from mii_cli.kube.quantity import parse_quantity


@dataclass(frozen=True)
class NodeRoom:
    """ノード 1 つの allocatable（CPU はミリコア、メモリはバイト）。"""

    name: str
    cpu_millicores: int
    memory_bytes: int


def _schedulable(node: dict[str, Any]) -> bool:
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def node_rooms(client: ApiClient) -> list[NodeRoom] | None:
    """スケジュールできるノードの allocatable（ノードを読めなければ None）。"""
    status, body = kapi.request(client, "GET", "/api/v1/nodes", timeout=10)
    if status != 200 or not isinstance(body, dict):
        return None
    rooms = []
    for node in body.get("items") or []:
        if not _schedulable(node):
            continue
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        cpu = parse_quantity(str(allocatable.get("cpu", "0")))
        memory = parse_quantity(str(allocatable.get("memory", "0")))
        if cpu is None or memory is None:
            continue
        rooms.append(NodeRoom(node["metadata"]["name"], int(cpu * 1000), int(memory)))
    return rooms


def _mib(size: int) -> str:
    return f"{size / 2**30:.1f}Gi" if size >= 2**30 else f"{size / 2**20:.0f}Mi"


def check_pod_fits(client: ApiClient, cpu_millicores: int, memory_bytes: int) -> None:
    """要求した大きさの Pod がどれかのノードに入ることを確かめる。入らなければ ConfigError。"""
    rooms = node_rooms(client)
    if not rooms:
        return
    if any(r.cpu_millicores >= cpu_millicores and r.memory_bytes >= memory_bytes for r in rooms):
        return
    most_cpu = max(rooms, key=lambda r: r.cpu_millicores)
    most_memory = max(rooms, key=lambda r: r.memory_bytes)
    wants = []
    if cpu_millicores > most_cpu.cpu_millicores:
        wants.append(f"{cpu_millicores}m of CPU (the most a node has is {most_cpu.cpu_millicores}m)")
    if memory_bytes > most_memory.memory_bytes:
        wants.append(
            f"{_mib(memory_bytes)} of memory (the most a node has is {_mib(most_memory.memory_bytes)})"
        )
    if not wants:
        wants.append(f"{cpu_millicores}m of CPU and {_mib(memory_bytes)} of memory on the same node")
    raise ConfigError(
        f"no node of the cluster can give one pod {' and '.join(wants)}",
        hint="pass a smaller --cpu/--memory (MII_POD_CPU/MII_POD_MEMORY), or add a larger node",
    )
