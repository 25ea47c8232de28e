"""`mii status`: Deployment・Pod・Service・HPA・NetworkPolicy の状態を集めて `ClusterStatus` にする
（描くのは CLI の層）。"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes.client import ApiClient, AppsV1Api, AutoscalingV2Api, CoreV1Api, NetworkingV1Api

from mii_cli.errors import ClusterError
from mii_cli.kube import (
    APP_NAME,
    CANARY_NAME,
    MODEL_FILE_ANNOTATION,
    MODEL_SHA256_ANNOTATION,
    REVISION_ANNOTATION,
    SERVICE_LABEL_KEY,
    SHADOW_NAME,
)
from mii_cli.kube import api as kapi
from mii_cli.kube.namespace import read_namespace
from mii_cli.kube.pods import PodRow, pod_rows
from mii_cli.references import split_digest, split_reference, tag_of
from mii_cli.results import Result


@dataclass(frozen=True)
class DeploymentState(Result):
    """Deployment のイメージとレプリカ数。

    `image` はデプロイした参照そのまま。`repository`・`tag`・`digest` はそれを分けたもの（タグ・ダイジェストを
    書いていなければ None）: `--registry` で push したイメージは `REGISTRY/model-in-image:TAG@sha256:...` で、
    Kubernetes はダイジェストで取る（タグは読みやすさのため）。
    """

    computed = ("repository", "tag", "digest")

    name: str
    image: str
    desired: int | None
    ready: int
    updated: int
    available: int
    # Pod のテンプレートに記録したモデル（mii deploy が書く。無ければ None）と、Deployment の版
    model_sha256: str | None = None
    model_file: str | None = None
    revision: int | None = None

    @property
    def repository(self) -> str:
        """参照のリポジトリ（タグとダイジェストを除いたもの）。"""
        return split_reference(self.image)[0]

    @property
    def tag(self) -> str | None:
        """参照のタグ（書いていなければ None）。"""
        return tag_of(self.image)

    @property
    def digest(self) -> str | None:
        """参照のダイジェスト `sha256:...`（タグだけの参照なら None）。"""
        return split_digest(self.image)[1]


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
class NetworkPolicyState(Result):
    """NetworkPolicy が選ぶ Pod と、許す通信の要約。

    `pod_selector` はラベルセレクタの文字列（`kubectl -l` の形。空なら Namespace のすべての Pod）。
    `ingress`・`egress` は許す相手とポートを `, ` で並べたもの: 相手を限るなら `app=model-in-image:8000/TCP`、
    送り元・宛先を限らないならポートだけ（`8000/TCP`）、ポートも限らないなら `all`。
    何も許さなければ `none`、このポリシーがその向きを制限しなければ `unrestricted`。
    """

    name: str
    pod_selector: str
    ingress: str
    egress: str


@dataclass(frozen=True)
class ClusterStatus(Result):
    """Namespace のアプリの状態（無いオブジェクトは None、NetworkPolicy は Namespace のすべて）。"""

    namespace: str
    deployment: DeploymentState | None
    pods: list[PodRow]
    service: ServiceState | None
    hpa: HpaState | None
    network_policies: list[NetworkPolicyState]
    # 新しいモデルを試している 2 つ目の Deployment（無ければ None）
    canary: DeploymentState | None = None
    # 安定版の写しだけを受けている影の Deployment（無ければ None。その Pod は Service に選ばれない）
    shadow: DeploymentState | None = None


def collect_status(client: ApiClient, namespace: str, *, now: datetime | None = None) -> ClusterStatus:
    """Namespace のアプリの状態を集める（Namespace が無ければ ClusterError）。"""
    core, apps, autoscaling = CoreV1Api(client), AppsV1Api(client), AutoscalingV2Api(client)
    if read_namespace(client, namespace) is None:
        raise ClusterError(f"namespace {namespace} does not exist: nothing is deployed", hint="mii deploy")
    deployment = kapi.read(
        client, "reading the deployment", apps.read_namespaced_deployment, APP_NAME, namespace
    )
    canary = kapi.read(client, "reading the canary", apps.read_namespaced_deployment, CANARY_NAME, namespace)
    shadow = kapi.read(client, "reading the shadow", apps.read_namespaced_deployment, SHADOW_NAME, namespace)
    service = kapi.read(client, "reading the service", core.read_namespaced_service, APP_NAME, namespace)
    hpa = kapi.read(
        client, "reading the HPA", autoscaling.read_namespaced_horizontal_pod_autoscaler, APP_NAME, namespace
    )
    # 安定版と canary の Pod（Service が選ぶラベル）
    pods = kapi.call(
        client,
        "listing pods",
        core.list_namespaced_pod,
        namespace,
        label_selector=f"{SERVICE_LABEL_KEY}={APP_NAME}",
    ).items
    policies = kapi.call(
        client,
        "listing network policies",
        NetworkingV1Api(client).list_namespaced_network_policy,
        namespace,
    ).items
    return ClusterStatus(
        namespace=namespace,
        deployment=None if deployment is None else deployment_state(deployment),
        pods=pod_rows(pods, now or datetime.now(UTC)),
        service=None if service is None else service_state(service),
        hpa=None if hpa is None else hpa_state(hpa),
        network_policies=sorted(
            (network_policy_state(policy) for policy in policies), key=lambda state: state.name
        ),
        canary=None if canary is None else deployment_state(canary),
        shadow=None if shadow is None else deployment_state(shadow),
    )


def deployment_state(deployment: Any) -> DeploymentState:
    """Deployment のイメージとレプリカ数。"""
    status = deployment.status
    template_metadata = deployment.spec.template.metadata
    annotations = (template_metadata.annotations if template_metadata else None) or {}
    revision = (deployment.metadata.annotations or {}).get(REVISION_ANNOTATION)
    return DeploymentState(
        name=str(deployment.metadata.name),
        image=str(deployment.spec.template.spec.containers[0].image),
        desired=deployment.spec.replicas,
        ready=(status.ready_replicas or 0) if status else 0,
        updated=(status.updated_replicas or 0) if status else 0,
        available=(status.available_replicas or 0) if status else 0,
        model_sha256=annotations.get(MODEL_SHA256_ANNOTATION),
        model_file=annotations.get(MODEL_FILE_ANNOTATION),
        revision=int(revision) if revision and str(revision).isdigit() else None,
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


def label_selector(selector: Any) -> str:
    """ラベルセレクタ（V1LabelSelector）を `kubectl -l` の文字列にする（空・None なら空文字列）。"""
    if selector is None:
        return ""
    terms = [f"{key}={value}" for key, value in sorted((selector.match_labels or {}).items())]
    for expression in selector.match_expressions or []:
        key, operator, values = expression.key, expression.operator, ",".join(expression.values or [])
        if operator == "In":
            terms.append(f"{key} in ({values})")
        elif operator == "NotIn":
            terms.append(f"{key} notin ({values})")
        elif operator == "Exists":
            terms.append(key)
        else:  # DoesNotExist
            terms.append(f"!{key}")
    return ",".join(terms)


def _peer(peer: Any) -> str:
    """NetworkPolicy の相手 1 つ（Pod のラベル、Namespace のラベル、IP の範囲）。"""
    if peer.ip_block is not None:
        excepted = peer.ip_block._except or []
        return str(peer.ip_block.cidr) + (f" except {','.join(excepted)}" if excepted else "")
    pods = label_selector(peer.pod_selector) if peer.pod_selector is not None else None
    if peer.namespace_selector is None:
        # namespaceSelector が無ければ、ポリシーと同じ Namespace の Pod
        return pods or "all pods"
    namespaces = label_selector(peer.namespace_selector)
    return f"{pods or 'all pods'} in " + (f"namespaces {namespaces}" if namespaces else "all namespaces")


def _port(port: Any) -> str:
    """NetworkPolicy のポート 1 つ（`8000/TCP`、範囲なら `8000-8010/TCP`。プロトコルの既定は TCP）。"""
    number = "all" if port.port is None else str(port.port)
    if port.end_port is not None:
        number += f"-{port.end_port}"
    return f"{number}/{port.protocol or 'TCP'}"


def _rules(rules: list[Any] | None, peers_of: str) -> str:
    """ある向きの規則をまとめる（`NetworkPolicyState` の ingress・egress の形）。"""
    allowed: list[str] = []
    for rule in rules or []:
        peers = [_peer(peer) for peer in getattr(rule, peers_of) or []]
        ports = [_port(port) for port in rule.ports or []]
        if not peers and not ports:
            entries = ["all"]
        elif not peers:
            entries = ports
        elif not ports:
            entries = peers
        else:
            entries = [f"{peer}:{port}" for peer in peers for port in ports]
        allowed.extend(entry for entry in entries if entry not in allowed)
    return ", ".join(allowed) or "none"


def network_policy_state(policy: Any) -> NetworkPolicyState:
    """NetworkPolicy が選ぶ Pod と、許す入りと出の通信。"""
    spec = policy.spec
    types = spec.policy_types
    if not types:
        # API サーバーが埋めるのと同じ既定: Ingress は常に、Egress は規則があるときだけ
        types = ["Ingress", *(["Egress"] if spec.egress else [])]
    return NetworkPolicyState(
        name=str(policy.metadata.name),
        pod_selector=label_selector(spec.pod_selector),
        ingress=_rules(spec.ingress, "_from") if "Ingress" in types else "unrestricted",
        egress=_rules(spec.egress, "to") if "Egress" in types else "unrestricted",
    )
