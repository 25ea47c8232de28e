"""Pod の見え方: Ready か、表に出す状態、経過時間、表の 1 行。

`mii status` とロールアウトの表示が同じ `pod_row` で表の行を作る。
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mii_cli.kube import CANARY_NAME, MODEL_SHA256_ANNOTATION
from mii_cli.kube import api as kapi
from mii_cli.results import Result


@dataclass(frozen=True)
class PodRow(Result):
    """Pod の表の 1 行。"""

    name: str
    ready: bool
    state: str
    restarts: int
    node: str | None
    ip: str | None
    age: str
    # その Pod が持つモデル（Pod の注釈の sha256。記録が無ければ None）と、canary の Pod か
    model_sha256: str | None = None
    canary: bool = False


def ready_condition(pod: Any) -> bool:
    """Pod の Ready 条件が True か（削除中かどうかは見ない）。"""
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def is_ready(pod: Any) -> bool:
    """Pod が Ready で、削除中でもないか。"""
    return pod.status is not None and pod.metadata.deletion_timestamp is None and ready_condition(pod)


def ready_pods(client: Any, namespace: str, selector: str) -> list[str]:
    """ラベルで選ぶ Ready な Pod の名前（消えかけは除く、名前の順）。"""
    from kubernetes.client import CoreV1Api

    pods = kapi.call(
        client, "listing pods", CoreV1Api(client).list_namespaced_pod, namespace, label_selector=selector
    ).items
    return sorted(
        kapi.name_of(pod) for pod in pods if is_ready(pod) and pod.metadata.deletion_timestamp is None
    )


def annotate_pods(client: Any, namespace: str, selector: str, key: str, value: str) -> list[str]:
    """ラベルで選ぶ Pod（消えかけは除く）に注釈を付ける（サーバーサイドアプライ）。付けた Pod の名前。

    Pod の注釈を変えると kubelet はその Pod をすぐ同期する（ConfigMap のボリュームの中身もそのとき
    書き換わる）。Pod のテンプレートは変わらないので、Pod は起き直さない。
    """
    from kubernetes.client import CoreV1Api

    from mii_cli.kube.apply import server_side_apply

    pods = kapi.call(
        client, "listing pods", CoreV1Api(client).list_namespaced_pod, namespace, label_selector=selector
    ).items
    names = sorted(kapi.name_of(pod) for pod in pods if pod.metadata.deletion_timestamp is None)
    for name in names:
        server_side_apply(
            client,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace, "annotations": {key: value}},
            },
        )
    return names


def pod_state(pod: Any) -> str:
    """表に出す Pod の状態（削除中、コンテナの待機の理由、または phase）。"""
    if pod.metadata.deletion_timestamp is not None:
        return "Terminating"
    for container in (pod.status.container_statuses if pod.status else None) or []:
        if container.state and container.state.waiting and container.state.waiting.reason:
            return str(container.state.waiting.reason)
    return str(pod.status.phase if pod.status else "Unknown")


def restarts(pod: Any) -> int:
    """Pod のコンテナの再起動回数の合計。"""
    containers = (pod.status.container_statuses if pod.status else None) or []
    return sum(c.restart_count or 0 for c in containers)


def age(timestamp: datetime | None, now: datetime) -> str:
    """経過時間の短い表記（`45s`・`3m`・`2h`・`1d`。時刻が無ければ `-`）。"""
    if timestamp is None:
        return "-"
    seconds = max(0, int((now - timestamp).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def pod_row(pod: Any, now: datetime) -> PodRow:
    """公式クライアントの Pod を表の 1 行にする。"""
    return PodRow(
        name=kapi.name_of(pod),
        ready=is_ready(pod),
        state=pod_state(pod),
        restarts=restarts(pod),
        node=pod.spec.node_name if pod.spec else None,
        ip=pod.status.pod_ip if pod.status else None,
        age=age(pod.metadata.creation_timestamp, now),
        model_sha256=(pod.metadata.annotations or {}).get(MODEL_SHA256_ANNOTATION),
        canary=(pod.metadata.labels or {}).get("app") == CANARY_NAME,
    )


def pod_rows(pods: list[Any], now: datetime) -> list[PodRow]:
    """Pod の表（名前の順）。"""
    return [pod_row(pod, now) for pod in sorted(pods, key=kapi.name_of)]
