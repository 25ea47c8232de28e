"""`mii status`: Deployment・Pod・Service・HPA の状態を集めて `ClusterStatus` にする（描くのは CLI の層）。"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes.client import ApiClient, AppsV1Api, AutoscalingV2Api, CoreV1Api

from mii_cli.errors import ClusterError
from mii_cli.kube import APP_LABEL, APP_NAME
from mii_cli.kube import api as kapi
from mii_cli.kube.namespace import read_namespace
from mii_cli.kube.pods import PodRow, pod_rows
from mii_cli.results import Result


@dataclass(frozen=True)
class DeploymentState(Result):
    """Deployment のイメージとレプリカ数。"""

    name: str
    image: str
    desired: int | None
    ready: int
    updated: int
    available: int


@dataclass(frozen=True)
class ServiceState(Result):
    """Service の種類・ClusterIP・ポート。"""

    name: str
    type: str
    cluster_ip: str | None
    ports: list[str]


@dataclass(frozen=True)
class HpaState(Result):
    """HPA の下限・上限、現在と目標のレプリカ数、CPU 使用率（計測の前は None）。"""

    name: str
    min: int | None
    max: int
    current_replicas: int | None
    desired_replicas: int | None
    cpu_current: int | None
    cpu_target: int | None


@dataclass(frozen=True)
class ClusterStatus(Result):
    """Namespace のアプリの状態（無いオブジェクトは None）。"""

    namespace: str
    deployment: DeploymentState | None
    pods: list[PodRow]
    service: ServiceState | None
    hpa: HpaState | None


def collect_status(client: ApiClient, namespace: str, *, now: datetime | None = None) -> ClusterStatus:
    """Namespace のアプリの状態を集める（Namespace が無ければ ClusterError）。"""
    core, apps, autoscaling = CoreV1Api(client), AppsV1Api(client), AutoscalingV2Api(client)
    if read_namespace(client, namespace) is None:
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
    return ClusterStatus(
        namespace=namespace,
        deployment=None if deployment is None else deployment_state(deployment),
        pods=pod_rows(pods, now or datetime.now(UTC)),
        service=None if service is None else service_state(service),
        hpa=None if hpa is None else hpa_state(hpa),
    )


def deployment_state(deployment: Any) -> DeploymentState:
    """Deployment のイメージとレプリカ数。"""
    status = deployment.status
    return DeploymentState(
        name=str(deployment.metadata.name),
        image=str(deployment.spec.template.spec.containers[0].image),
        desired=deployment.spec.replicas,
        ready=(status.ready_replicas or 0) if status else 0,
        updated=(status.updated_replicas or 0) if status else 0,
        available=(status.available_replicas or 0) if status else 0,
    )


def service_state(service: Any) -> ServiceState:
    """Service の種類・ClusterIP・ポート（`8000/TCP` の形）。"""
    return ServiceState(
        name=str(service.metadata.name),
        type=str(service.spec.type),
        cluster_ip=service.spec.cluster_ip,
        ports=[f"{p.port}/{p.protocol}" for p in service.spec.ports or []],
    )


def _cpu_utilization(metrics: list[Any] | None, value: str) -> int | None:
    """HPA の指標のうち CPU のもの（`target` か `current`）の平均使用率。"""
    for metric in metrics or []:
        if metric.type == "Resource" and metric.resource and metric.resource.name == "cpu":
            return getattr(metric.resource, value).average_utilization  # type: ignore[no-any-return]
    return None


def hpa_state(hpa: Any) -> HpaState:
    """HPA の現在・目標のレプリカ数と CPU 使用率。"""
    status = hpa.status
    return HpaState(
        name=str(hpa.metadata.name),
        min=hpa.spec.min_replicas,
        max=hpa.spec.max_replicas,
        current_replicas=status.current_replicas if status else None,
        desired_replicas=status.desired_replicas if status else None,
        cpu_current=_cpu_utilization(status.current_metrics if status else None, "current"),
        cpu_target=_cpu_utilization(hpa.spec.metrics, "target"),
    )
