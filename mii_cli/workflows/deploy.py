"""`mii deploy`: イメージをクラスタへ渡し、オブジェクトを順に適用し、ロールアウトを待つ。

進み具合はイベント（`DeployEvent`）としてコールバックに渡す。端末に描くのは CLI の層。
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kubernetes.client import ApiClient

from mii_cli.errors import MiiError
from mii_cli.image.delivery import ImagePlan, carry_out, latest_local_image, missing_image_hint, plan_image
from mii_cli.kube import APP_NAME
from mii_cli.kube import api as kapi
from mii_cli.kube.apply import ApplyResult, apply_all
from mii_cli.kube.cluster import KIND, MINIKUBE, ClusterInfo, connect
from mii_cli.kube.namespace import ensure_managed, phase, read_namespace, wait_gone
from mii_cli.kube.render import Manifest, Sizing, find, load_manifests, render
from mii_cli.kube.rollout import RolloutProgress, RolloutResult, wait_for_rollout
from mii_cli.results import Result

METRICS_PATH = "/apis/metrics.k8s.io/v1beta1"
METRICS_SERVER_MANIFEST = (
    "https://github.com/kubernetes-sigs/metrics-server/releases/latest/download/components.yaml"
)


# --- 結果 ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeployResult(Result):
    """デプロイの結果: クラスタ・デプロイした参照・適用の結果・metrics API・ロールアウト。"""

    cluster: ClusterInfo
    namespace: str
    image: str
    applied: list[ApplyResult]
    metrics_api: bool
    rollout: RolloutResult | None = None


@dataclass(frozen=True)
class DryRun:
    """`mii deploy --dry-run` で適用するオブジェクト（`note` はイメージの選び方の補足）。"""

    image: str
    objects: list[Manifest]
    note: str | None = None


# --- 進み具合のイベント ----------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterConnected:
    """クラスタに接続した。"""

    info: ClusterInfo


@dataclass(frozen=True)
class ImagePlanned:
    """イメージをどうクラスタへ渡すかを決めた（まだ何もしていない）。"""

    plan: ImagePlan


@dataclass(frozen=True)
class NamespaceStillDeleting:
    """前の `mii teardown` の Namespace がまだ消えかけている: 消えるまで待ち始めた。"""

    namespace: str


@dataclass(frozen=True)
class TransferringImage:
    """イメージを push するか、ノードへ読み込み始めた。"""

    image: str
    action: str


@dataclass(frozen=True)
class ImageAvailable:
    """クラスタがこの参照のイメージを使える。"""

    reference: str


@dataclass(frozen=True)
class ObjectApplied:
    """オブジェクトを 1 つ適用した。"""

    result: ApplyResult


@dataclass(frozen=True)
class MetricsApiMissing:
    """metrics API が無い（HPA が CPU 使用率を読めない）。`hint` は入れ方。"""

    path: str
    hint: str


@dataclass(frozen=True)
class RolloutFinished:
    """ロールアウトが終わった。"""

    result: RolloutResult


DeployEvent = (
    ClusterConnected
    | ImagePlanned
    | NamespaceStillDeleting
    | TransferringImage
    | ImageAvailable
    | ObjectApplied
    | MetricsApiMissing
    | RolloutProgress
    | RolloutFinished
)


def _ignore(event: DeployEvent) -> None:
    """イベントを捨てる（コールバックが無いとき）。"""


# --- 手順 ------------------------------------------------------------------------------------


def manifest_image() -> str:
    """manifests/deployment.yml に書かれたイメージ（--dry-run の既定）。"""
    deployment = find(load_manifests(), "Deployment")
    image: str = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


def dry_run_objects(
    namespace: str, image: str | None, repository: str, sizing: Sizing | None = None
) -> DryRun:
    """クラスタに触れずに、適用するオブジェクトを組み立てる。

    --image が無ければリポジトリのローカルの最新イメージ、Docker に届かなければマニフェストのイメージを使う。
    """
    note = None
    if image is None:
        try:
            image = latest_local_image(repository)
        except MiiError as error:
            image = manifest_image()
            note = f"{error.message}; showing the manifests' image {image}"
    return DryRun(image=image, objects=render(image, namespace, sizing=sizing), note=note)


def metrics_api_available(client: ApiClient) -> bool:
    """metrics API（metrics-server）が応答するか。HPA はこれが無いと CPU 使用率を読めない。"""
    status, _ = kapi.request(client, "GET", METRICS_PATH, timeout=10)
    return status == 200


def metrics_hint(info: ClusterInfo) -> str:
    """metrics-server を入れる方法（クラスタの種類ごと）。"""
    if info.flavor == MINIKUBE:
        return f"minikube -p {info.name} addons enable metrics-server"
    command = f"kubectl apply -f {METRICS_SERVER_MANIFEST}"
    if info.flavor == KIND:
        command += (
            " && kubectl -n kube-system patch deployment metrics-server --type=json "
            '-p \'[{"op":"add","path":"/spec/template/spec/containers/0/args/-",'
            '"value":"--kubelet-insecure-tls"}]\''
        )
    return command


def _prepare_namespace(client: ApiClient, namespace: str, emit: Callable[[DeployEvent], None]) -> None:
    """他人の Namespace には入らず、前の teardown で消えかけていれば消えるまで待つ。"""
    existing = read_namespace(client, namespace)
    if existing is None:
        return
    ensure_managed(existing, namespace, "deploy into")
    if phase(existing) == "Terminating":
        emit(NamespaceStillDeleting(namespace))
        wait_gone(client, namespace)


def deploy(
    *,
    namespace: str,
    image: str | None = None,
    repository: str = "",
    registry: str | None = None,
    timeout: float = 300.0,
    context: str | None = None,
    load: bool = True,
    wait: bool = True,
    sizing: Sizing | None = None,
    client: ApiClient | None = None,
    info: ClusterInfo | None = None,
    on_event: Callable[[DeployEvent], None] | None = None,
) -> DeployResult:
    """デプロイの全体: 接続 → イメージの計画 → Namespace の確認 → イメージを渡す → 適用 → 待つ。

    `image` が無ければ `repository` のローカルの最新の一意なタグをデプロイする。

    `on_event` を渡すと、それぞれの手順の進み具合をイベントで知らせる。
    """
    emit = on_event or _ignore
    if client is None or info is None:
        client, info = connect(context)
    emit(ClusterConnected(info))
    image = image or latest_local_image(repository)
    plan = plan_image(info, image, registry=registry, load=load)
    emit(ImagePlanned(plan))
    _prepare_namespace(client, namespace, emit)
    reference = plan.reference
    if plan.action != "use":
        emit(TransferringImage(image, plan.action))
        # push したなら、push が知らせたダイジェストで固定した参照になる
        reference = carry_out(info, image, plan)
    emit(ImageAvailable(reference))
    applied = apply_all(
        client, render(reference, namespace, sizing=sizing), on_applied=lambda r: emit(ObjectApplied(r))
    )
    metrics = metrics_api_available(client)
    if not metrics:
        emit(MetricsApiMissing(METRICS_PATH, metrics_hint(info)))
    rollout = None
    if wait:
        rollout = wait_for_rollout(
            client,
            namespace,
            APP_NAME,
            timeout=timeout,
            image_hint=missing_image_hint(info, reference),
            on_progress=emit,
        )
        emit(RolloutFinished(rollout))
    return DeployResult(
        cluster=info,
        namespace=namespace,
        image=reference,
        applied=applied,
        metrics_api=metrics,
        rollout=rollout,
    )
