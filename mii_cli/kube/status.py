"""`mii status`: Deployment・Pod・Service・HPA の状態を集め、Rich の表か JSON にする。"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubernetes.client import ApiClient, AppsV1Api, AutoscalingV2Api, CoreV1Api
from rich.console import Group
from rich.table import Table
from rich.text import Text

from mii_cli.errors import ClusterError
from mii_cli.kube import APP_LABEL, APP_NAME
from mii_cli.kube import api as kapi
from mii_cli.kube.explain import is_ready
from mii_cli.kube.rollout import _pod_state


def _age(timestamp: datetime | None, now: datetime) -> str:
    """経過時間の短い表記（`3m`・`2h` など）。"""
    if timestamp is None:
        return "-"
    seconds = max(0, int((now - timestamp).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def collect_status(client: ApiClient, namespace: str, *, now: datetime | None = None) -> dict[str, Any]:
    """Namespace のアプリの状態を辞書にする（Namespace が無ければ ClusterError）。"""
    now = now or datetime.now(UTC)
    core, apps, autoscaling = CoreV1Api(client), AppsV1Api(client), AutoscalingV2Api(client)
    if kapi.read(client, "reading the namespace", core.read_namespace, namespace) is None:
        raise ClusterError(f"namespace {namespace} does not exist: nothing is deployed", hint="mii deploy")
    deployment = kapi.read(
        client, "reading the deployment", apps.read_namespaced_deployment, APP_NAME, namespace
    )
    service = kapi.read(client, "reading the service", core.read_namespaced_service, APP_NAME, namespace)
    hpa = kapi.read(
        client, "reading the HPA", autoscaling.read_namespaced_horizontal_pod_autoscaler, APP_NAME, namespace
    )
    pods = kapi.call(
        client, "listing pods", core.list_namespaced_pod, namespace, label_selector=APP_LABEL
    ).items
    result: dict[str, Any] = {
        "namespace": namespace,
        "deployment": None,
        "pods": [],
        "service": None,
        "hpa": None,
    }
    if deployment is not None:
        status = deployment.status
        result["deployment"] = {
            "name": deployment.metadata.name,
            "image": deployment.spec.template.spec.containers[0].image,
            "desired": deployment.spec.replicas,
            "ready": (status.ready_replicas or 0) if status else 0,
            "updated": (status.updated_replicas or 0) if status else 0,
            "available": (status.available_replicas or 0) if status else 0,
        }
    for pod in sorted(pods, key=kapi.name_of):
        containers = (pod.status.container_statuses if pod.status else None) or []
        result["pods"].append(
            {
                "name": kapi.name_of(pod),
                "ready": is_ready(pod),
                "state": _pod_state(pod),
                "restarts": sum(c.restart_count or 0 for c in containers),
                "node": pod.spec.node_name if pod.spec else None,
                "ip": pod.status.pod_ip if pod.status else None,
                "age": _age(pod.metadata.creation_timestamp, now),
            }
        )
    if service is not None:
        result["service"] = {
            "name": service.metadata.name,
            "type": service.spec.type,
            "cluster_ip": service.spec.cluster_ip,
            "ports": [f"{p.port}/{p.protocol}" for p in service.spec.ports or []],
        }
    if hpa is not None:
        result["hpa"] = hpa_summary(hpa)
    return result


def hpa_summary(hpa: Any) -> dict[str, Any]:
    """HPA の現在・目標のレプリカ数と CPU 使用率。"""
    target = None
    for metric in hpa.spec.metrics or []:
        if metric.type == "Resource" and metric.resource and metric.resource.name == "cpu":
            target = metric.resource.target.average_utilization
    current = None
    for metric in (hpa.status.current_metrics if hpa.status else None) or []:
        if metric.type == "Resource" and metric.resource and metric.resource.name == "cpu":
            current = metric.resource.current.average_utilization
    return {
        "name": hpa.metadata.name,
        "min": hpa.spec.min_replicas,
        "max": hpa.spec.max_replicas,
        "current_replicas": hpa.status.current_replicas if hpa.status else None,
        "desired_replicas": hpa.status.desired_replicas if hpa.status else None,
        "cpu_current": current,
        "cpu_target": target,
    }


def render_status(status: dict[str, Any]) -> Group:
    """状態を Rich の表にする。"""
    parts: list[Any] = [Text.from_markup(f"[bold]Namespace[/bold] {status['namespace']}")]
    deployment = status["deployment"]
    if deployment:
        colour = "green" if deployment["ready"] >= (deployment["desired"] or 0) else "yellow"
        parts.append(
            Text.from_markup(
                f"[bold]Deployment[/bold] {deployment['name']}: [{colour}]ready {deployment['ready']}/"
                f"{deployment['desired']}[/{colour}], updated {deployment['updated']}, "
                f"image {deployment['image']}"
            )
        )
    else:
        parts.append(Text.from_markup("[bold]Deployment[/bold] [red]missing[/red]"))
    table = Table(title="Pods", title_justify="left", box=None, pad_edge=False)
    for column in ("name", "ready", "state", "restarts", "node", "age"):
        table.add_column(column)
    for pod in status["pods"]:
        table.add_row(
            pod["name"],
            "[green]yes[/green]" if pod["ready"] else "[yellow]no[/yellow]",
            pod["state"],
            str(pod["restarts"]),
            str(pod["node"] or "-"),
            pod["age"],
        )
    parts.append(table)
    service = status["service"]
    parts.append(
        Text.from_markup(
            f"[bold]Service[/bold] {service['name']}: {service['type']} {service['cluster_ip']} "
            f"{', '.join(service['ports'])}"
            if service
            else "[bold]Service[/bold] [red]missing[/red]"
        )
    )
    hpa = status["hpa"]
    if hpa:
        if hpa["cpu_current"] is None:
            # 最初の計測の前は desiredReplicas が 0 のまま: 「0 へ減らす」と読めないようにする
            replicas, cpu = f"{hpa['current_replicas']}", "<unknown> (no metrics yet)"
        else:
            replicas = f"{hpa['current_replicas']} → {hpa['desired_replicas']}"
            cpu = f"{hpa['cpu_current']}%"
        parts.append(
            Text.from_markup(
                f"[bold]HPA[/bold] {hpa['name']}: replicas {replicas} "
                f"(min {hpa['min']}, max {hpa['max']}), cpu {cpu} / {hpa['cpu_target']}%"
            )
        )
    else:
        parts.append(Text.from_markup("[bold]HPA[/bold] [red]missing[/red]"))
    return Group(*parts)
