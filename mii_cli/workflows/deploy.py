"""`mii deploy`: イメージを渡し、適用し、ロールアウトを待ち、新しい Pod を確かめる（通らなければ戻す）。

デプロイには関門がある: ロールアウトが時間内に終わらない、または新しい版の Pod そのもの（Service が
選ぶ Pod ではなく）が確かめ（全エンドポイント、モデルの sha256、サンプルの答え）を通らなければ、
Deployment を前の版に戻し、戻り切るまで待ってから、何が起きて何に戻したかを 1 行で伝えて失敗する
（`rollback=False` なら戻さない。初めてのデプロイには戻す先が無い）。
`canary=True` なら、新しいイメージは安定版に並ぶ小さな 2 つ目の Deployment になり、確かめた後に
安定版と同じ行で比べる（workflows/release.py が昇格と取り消しを受け持つ）。

進み具合はイベント（`DeployEvent`）としてコールバックに渡す。端末に描くのは CLI の層。
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes.client import ApiClient, CoreV1Api

from mii_cli.errors import CheckFailed, ClusterError, ConfigError, MiiError
from mii_cli.image.daemon import DockerDaemon, current_daemon
from mii_cli.image.delivery import (
    ImagePlan,
    carry_out,
    check_daemon,
    latest_local_image,
    missing_image_hint,
    plan_image,
)
from mii_cli.image.record import (
    MODEL_FILE_LABEL,
    MODEL_SHA256_LABEL,
    SAMPLE_ANSWER_LABEL,
    ImageRecord,
    read_record,
    record_from_labels,
)
from mii_cli.kube import (
    APP_LABEL,
    APP_NAME,
    CANARY_LABEL,
    CANARY_NAME,
    MODEL_FILE_ANNOTATION,
    MODEL_SAMPLE_ANSWER_ANNOTATION,
    MODEL_SHA256_ANNOTATION,
)
from mii_cli.kube import api as kapi
from mii_cli.kube.apply import ApplyResult, apply_all
from mii_cli.kube.cluster import KIND, MINIKUBE, ClusterInfo, connect
from mii_cli.kube.namespace import ensure_managed, phase, read_namespace, wait_gone
from mii_cli.kube.nodes import check_pod_fits
from mii_cli.kube.pods import is_ready
from mii_cli.kube.portforward import forward_to_pod
from mii_cli.kube.render import (
    Manifest,
    Sizing,
    canary_deployment,
    find,
    load_manifests,
    model_annotations,
    pod_requests,
    render,
)
from mii_cli.kube.revisions import (
    Revision,
    delete_deployment,
    read_deployment,
    revision_of,
    rollback,
    template_hash,
)
from mii_cli.kube.rollout import RolloutProgress, RolloutResult, wait_for_rollout
from mii_cli.probe.compare import Verdict, compare
from mii_cli.probe.pods import PodsCheck, check_pods, new_pods
from mii_cli.results import Result
from service.constants import DEFAULT_PORT

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
    # デプロイした Deployment（安定版か canary）、その版、持つモデル、新しい Pod の確かめ
    deployment: str = APP_NAME
    revision: int | None = None
    model: ImageRecord | None = None
    pods_check: PodsCheck | None = None
    # canary のときだけ: 安定版との比較
    verdict: Verdict | None = None
    # イメージの渡し方（docker-env・load・push・use）
    delivery: ImagePlan | None = None


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


@dataclass(frozen=True)
class CheckingPods:
    """新しい版の Pod を 1 つずつ確かめ始めた。"""

    deployment: str
    pods: list[str]


@dataclass(frozen=True)
class PodsChecked:
    """新しい版の Pod を確かめ終えた。"""

    result: PodsCheck


@dataclass(frozen=True)
class RollingBack:
    """デプロイが失敗したので戻し始めた（`revision` が None なら canary を消す）。"""

    deployment: str
    reason: str
    revision: int | None


@dataclass(frozen=True)
class RolledBack:
    """戻し終えた（前の版が Ready、または canary が消えた）。"""

    deployment: str
    revision: Revision | None


@dataclass(frozen=True)
class Comparing:
    """canary と安定版を同じ行で比べ始めた。"""

    canary_pod: str
    stable_pod: str
    rows: int


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
    | CheckingPods
    | PodsChecked
    | RollingBack
    | RolledBack
    | Comparing
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


def record_from_template(deployment: dict[str, Any]) -> ImageRecord:
    """Deployment の Pod のテンプレート（イメージと注釈）から、そのモデルの記録を読み直す。"""
    template = deployment["spec"]["template"]
    annotations = template["metadata"].get("annotations") or {}
    return record_from_labels(
        str(template["spec"]["containers"][0]["image"]),
        {
            MODEL_FILE_LABEL: annotations.get(MODEL_FILE_ANNOTATION, ""),
            MODEL_SHA256_LABEL: annotations.get(MODEL_SHA256_ANNOTATION, ""),
            SAMPLE_ANSWER_LABEL: annotations.get(MODEL_SAMPLE_ANSWER_ANNOTATION, ""),
        },
    )


def record_annotations(record: ImageRecord) -> dict[str, str]:
    """記録を Pod のテンプレートの注釈にする。"""
    return model_annotations(
        model_file=record.model_file,
        model_sha256=record.model_sha256,
        image_tag=record.image_tag,
        image_digest=record.image_digest,
        sample_answer=record.sample_answer,
    )


def live_sizing(deployment: dict[str, Any] | None, sizing: Sizing | None) -> Sizing | None:
    """指定の無い CPU・メモリは、動いている Deployment の値（requests = limits）を引き継ぐ。"""
    if deployment is None:
        return sizing
    limits = (deployment["spec"]["template"]["spec"]["containers"][0].get("resources") or {}).get(
        "limits"
    ) or {}
    chosen = sizing or Sizing()
    return Sizing(
        replicas=chosen.replicas,
        cpu=chosen.cpu if chosen.cpu is not None else limits.get("cpu"),
        memory=chosen.memory if chosen.memory is not None else limits.get("memory"),
    )


def check_new_pods(
    client: ApiClient,
    namespace: str,
    name: str,
    record: ImageRecord | None,
    emit: Callable[[DeployEvent], None],
) -> PodsCheck:
    """Deployment の今の版の Pod を 1 つずつ確かめる（Ready、全エンドポイント、モデル、サンプルの答え）。"""
    current = template_hash(client, namespace, name)
    pods = new_pods(client, namespace, current) if current else []
    emit(CheckingPods(name, sorted(kapi.name_of(pod) for pod in pods)))
    result = check_pods(
        client,
        namespace,
        pods,
        model_sha256=record.model_sha256 if record else None,
        sample_answer=record.sample_answer if record else None,
    )
    emit(PodsChecked(result))
    return result


def _failed(error: MiiError, message: str) -> MiiError:
    """同じ種類の失敗を、戻したかどうかを足したメッセージで作り直す。"""
    return type(error)(message, hint=error.hint, details=error.details)


def roll_out(
    client: ApiClient,
    namespace: str,
    name: str,
    *,
    record: ImageRecord | None,
    timeout: float,
    image_hint: str,
    check: bool,
    emit: Callable[[DeployEvent], None],
) -> tuple[RolloutResult, PodsCheck | None]:
    """ロールアウトを待ち、新しい版の Pod を確かめる。どちらかが通らなければ MiiError。"""
    rollout = wait_for_rollout(
        client, namespace, name, timeout=timeout, image_hint=image_hint, on_progress=emit
    )
    emit(RolloutFinished(rollout))
    if not check:
        return rollout, None
    pods_check = check_new_pods(client, namespace, name, record, emit)
    if not pods_check.passed:
        raise CheckFailed(
            f"the new pods of {name} failed the check: {pods_check.problem}",
            hint=f"see the pods with mii status -n {namespace}",
        )
    return rollout, pods_check


def undo(
    client: ApiClient,
    namespace: str,
    failure: MiiError,
    *,
    previous: int | None,
    allowed: bool,
    timeout: float,
    emit: Callable[[DeployEvent], None],
) -> MiiError:
    """安定版のデプロイの失敗を受けて、前の版に戻す（戻せなければそのまま）。投げる失敗を返す。"""
    current = revision_of(read_deployment(client, namespace, APP_NAME))
    if previous is None:
        return _failed(failure, f"{failure.message} (first deploy: nothing to roll back to)")
    if current == previous:
        return _failed(failure, f"{failure.message} (the deployment was not changed)")
    if not allowed:
        return _failed(failure, f"{failure.message}; left as it is (--no-rollback): mii rollback undoes it")
    emit(RollingBack(APP_NAME, failure.message, previous))
    try:
        target = rollback(client, namespace, APP_NAME, previous)
        wait_for_rollout(client, namespace, APP_NAME, timeout=timeout)
    except MiiError as error:
        return _failed(
            failure,
            f"{failure.message}; rolling back to revision {previous} did not finish either: {error.message}",
        )
    emit(RolledBack(APP_NAME, target))
    return _failed(failure, f"{failure.message}; rolled back to revision {previous} ({target.image})")


def remove_canary(
    client: ApiClient,
    namespace: str,
    *,
    timeout: float = 120.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """canary の Deployment を消し、その Pod が（猶予のあいだ答え終えて）消えるまで待つ。無ければ False。"""
    if not delete_deployment(client, namespace, CANARY_NAME):
        return False
    core = CoreV1Api(client)
    deadline = clock() + timeout
    while kapi.call(
        client, "listing canary pods", core.list_namespaced_pod, namespace, label_selector=CANARY_LABEL
    ).items:
        if clock() >= deadline:
            raise ClusterError(
                f"the canary pods were still terminating after {timeout:.0f}s",
                hint=f"kubectl -n {namespace} get pods -l {CANARY_LABEL}",
            )
        sleep(1.0)
    return True


def withdraw_canary(
    client: ApiClient, namespace: str, reason: str, *, timeout: float, emit: Callable[[DeployEvent], None]
) -> bool:
    """canary を消し（その Pod が消えるまで待ち）、その始まりと終わりをイベントで知らせる。無ければ False。"""
    emit(RollingBack(CANARY_NAME, reason, None))
    removed = remove_canary(client, namespace, timeout=timeout)
    emit(RolledBack(CANARY_NAME, None))
    return removed


def _ready_pod(client: ApiClient, namespace: str, selector: str) -> str:
    core = CoreV1Api(client)
    pods = kapi.call(
        client, "listing pods", core.list_namespaced_pod, namespace, label_selector=selector
    ).items
    ready = sorted(
        kapi.name_of(pod) for pod in pods if is_ready(pod) and pod.metadata.deletion_timestamp is None
    )
    if not ready:
        raise ClusterError(f"no ready pod with {selector} in namespace {namespace}")
    return ready[0]


def compare_with_stable(
    client: ApiClient, namespace: str, rows: list[list[float]] | None, emit: Callable[[DeployEvent], None]
) -> Verdict:
    """canary の Pod と安定版の Pod に、それぞれポートフォワードして同じ行で比べる。"""
    canary_pod, stable_pod = (
        _ready_pod(client, namespace, CANARY_LABEL),
        _ready_pod(client, namespace, APP_LABEL),
    )
    emit(Comparing(canary_pod, stable_pod, len(rows or [])))
    with (
        forward_to_pod(client, namespace, stable_pod, DEFAULT_PORT) as stable,
        forward_to_pod(client, namespace, canary_pod, DEFAULT_PORT) as canary,
    ):
        return compare(stable.url, canary.url, rows)


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
    check: bool = True,
    rollback_on_failure: bool = True,
    canary: bool = False,
    canary_replicas: int = 1,
    compare_rows: list[list[float]] | None = None,
    daemon: DockerDaemon | None = None,
) -> DeployResult:
    """デプロイの全体: 接続 → イメージの計画 → Namespace の確認 → イメージを渡す → 適用 → 待つ → 確かめる。

    `image` が無ければ `repository` のローカルの最新の一意なタグをデプロイする。失敗すれば前の版に
    戻してから MiiError（`rollback_on_failure=False` なら戻さない）。`canary` なら安定版に並べて比べる。
    """
    emit = on_event or _ignore
    if client is None or info is None:
        client, info = connect(context)
    emit(ClusterConnected(info))
    daemon = daemon or current_daemon()
    if image is None:
        check_daemon(info, daemon)
        image = latest_local_image(repository)
    plan = plan_image(info, image, registry=registry, load=load, daemon=daemon)
    emit(ImagePlanned(plan))
    _prepare_namespace(client, namespace, emit)
    stable = read_deployment(client, namespace, APP_NAME)
    if canary and stable is None:
        raise ConfigError(
            f"there is no deployment {APP_NAME} in namespace {namespace} to run a canary beside",
            hint="deploy the first model without --canary",
        )
    chosen = live_sizing(stable, sizing) if canary else sizing
    # どのノードにも入らない大きさなら、イメージを渡す前に止める（Pending のまま期限まで待たない）
    check_pod_fits(client, *pod_requests(chosen))
    reference = plan.reference
    if plan.action != "use":
        if plan.action in ("push", "load"):
            emit(TransferringImage(image, plan.action))
        # push したなら、push が知らせたダイジェストで固定した参照になる（docker-env ならノードのエンジンに
        # あることを確かめるだけ）
        reference = carry_out(info, image, plan)
    emit(ImageAvailable(reference))
    record = read_record(image, reference)
    objects = render(reference, namespace, sizing=chosen, annotations=record_annotations(record))
    if canary:
        objects = [canary_deployment(objects, canary_replicas)]
    name = CANARY_NAME if canary else APP_NAME
    previous = revision_of(stable)
    applied = apply_all(client, objects, on_applied=lambda r: emit(ObjectApplied(r)))
    metrics = metrics_api_available(client)
    if not metrics:
        emit(MetricsApiMissing(METRICS_PATH, metrics_hint(info)))
    result = DeployResult(
        cluster=info,
        namespace=namespace,
        image=reference,
        applied=applied,
        metrics_api=metrics,
        deployment=name,
        model=record,
        delivery=plan,
    )
    if not wait:
        return result
    hint = missing_image_hint(info, reference)
    try:
        rollout, pods_check = roll_out(
            client, namespace, name, record=record, timeout=timeout, image_hint=hint, check=check, emit=emit
        )
    except MiiError as failure:
        if canary:
            if not rollback_on_failure:
                raise _failed(
                    failure, f"{failure.message}; the canary is left running (--no-rollback)"
                ) from None
            withdraw_canary(client, namespace, failure.message, timeout=timeout, emit=emit)
            raise _failed(failure, f"{failure.message}; removed the canary") from None
        raise undo(
            client,
            namespace,
            failure,
            previous=previous,
            allowed=rollback_on_failure,
            timeout=timeout,
            emit=emit,
        ) from None
    verdict = compare_with_stable(client, namespace, compare_rows, emit) if canary else None
    return DeployResult(
        cluster=info,
        namespace=namespace,
        image=reference,
        applied=applied,
        metrics_api=metrics,
        rollout=rollout,
        deployment=name,
        revision=revision_of(read_deployment(client, namespace, name)),
        model=record,
        pods_check=pods_check,
        verdict=verdict,
        delivery=plan,
    )
