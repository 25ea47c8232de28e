"""`mii deploy`: イメージを渡し、適用し、ロールアウトを待ち、新しい Pod を確かめる（通らなければ戻す）。

デプロイには関門がある: ロールアウトが時間内に終わらない、または新しい版の Pod そのもの（Service が
選ぶ Pod ではなく）が確かめ（全エンドポイント、モデルの sha256、サンプルの答え）を通らなければ、
Deployment を前の版に戻し、戻り切るまで待ってから、何が起きて何に戻したかを 1 行で伝えて失敗する
（`rollback=False` なら戻さない。初めてのデプロイには戻す先が無い）。
`canary=True` なら、新しいイメージは安定版に並ぶ小さな 2 つ目の Deployment になり、確かめた後に
安定版と同じ行で比べる（workflows/release.py が昇格と取り消しを受け持つ）。

デプロイは小さな手順（`DeployStep`）の並びで、手順は 1 つの文脈（`DeployContext`）を読み書きし、
進み具合を 1 つのコールバック（workflows/steps.py の `Status`）に知らせる。canary は手順の並びが
違うだけ（`steps_for`）。端末に描くのは CLI の層。
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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
    DEFAULT_MIRROR_PERCENT,
    MIRROR_NAME,
    MODEL_FILE_ANNOTATION,
    MODEL_SAMPLE_ANSWER_ANNOTATION,
    MODEL_SHA256_ANNOTATION,
    SHADOW_NAME,
)
from mii_cli.kube import api as kapi
from mii_cli.kube.apply import ApplyResult, apply_all
from mii_cli.kube.cluster import KIND, MINIKUBE, ClusterInfo, connect
from mii_cli.kube.namespace import ensure_managed, phase, read_namespace, wait_gone
from mii_cli.kube.nodes import check_pod_fits
from mii_cli.kube.pods import ready_pods
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
    shadow_objects,
)
from mii_cli.kube.revisions import (
    Revision,
    delete_deployment,
    read_deployment,
    revision_of,
    rollback,
    template_hash,
)
from mii_cli.kube.rollout import RolloutResult, wait_for_rollout
from mii_cli.probe.analysis import Thresholds
from mii_cli.probe.compare import Verdict, compare
from mii_cli.probe.pods import PodsCheck, check_pods, new_pods
from mii_cli.results import Result
from mii_cli.workflows.shadow import (
    Mirroring,
    apply_shadow,
    check_stable_mirrors,
    start_mirroring,
    stop_shadow,
)
from mii_cli.workflows.steps import Report, Status
from service.constants import DEFAULT_PORT

if TYPE_CHECKING:  # 型だけ（分析の手順は昇格を使うので、このモジュールの後に読む）
    from mii_cli.workflows.analysis import Analysis

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
    # --analysis のときだけ: 段ごとの数字と結末（昇格の結果を含む）
    analysis: Analysis | None = None
    # --shadow のときだけ: 写し先・割合・写しを始めた安定版の Pod
    mirroring: Mirroring | None = None


@dataclass(frozen=True)
class DryRun:
    """`mii deploy --dry-run` で適用するオブジェクト（`note` はイメージの選び方の補足）。"""

    image: str
    objects: list[Manifest]
    note: str | None = None


def manifest_image() -> str:
    """manifests/deployment.yml に書かれたイメージ（--dry-run の既定）。"""
    deployment = find(load_manifests(), "Deployment")
    image: str = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


def dry_run_objects(
    namespace: str,
    image: str | None,
    repository: str,
    sizing: Sizing | None = None,
    *,
    canary_replicas: int | None = None,
    shadow: bool = False,
    mirror_percent: float = DEFAULT_MIRROR_PERCENT,
) -> DryRun:
    """クラスタに触れずに、適用するオブジェクトを組み立てる（canary なら canary の Deployment、影なら影の
    Deployment・Service・NetworkPolicy: デプロイが適用するものと同じ）。

    --image が無ければリポジトリのローカルの最新イメージ、Docker に届かなければマニフェストのイメージを使う。
    """
    notes = []
    if image is None:
        try:
            image = latest_local_image(repository)
        except MiiError as error:
            image = manifest_image()
            notes.append(f"{error.message}; showing the manifests' image {image}")
    objects = render(image, namespace, sizing=sizing)
    if shadow:
        objects = shadow_objects(objects, namespace)
        notes.append(
            f"after the rollout, the stable pods are told to mirror {mirror_percent:g}% of their predict "
            f"requests to it (ConfigMap {MIRROR_NAME})"
        )
    elif canary_replicas is not None:
        objects = [canary_deployment(objects, canary_replicas)]
    return DryRun(image=image, objects=objects, note="; ".join(notes) or None)


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


def prepare_namespace(client: ApiClient, namespace: str, status: Status) -> None:
    """他人の Namespace には入らず、前の teardown で消えかけていれば消えるまで待つ。"""
    existing = read_namespace(client, namespace)
    if existing is None:
        return
    ensure_managed(existing, namespace, "deploy into")
    if phase(existing) == "Terminating":
        status.info("namespace", f"namespace {namespace} is still being deleted; waiting")
        status.start("namespace", f"Waiting for namespace {namespace} to be deleted...")
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


def applied_line(result: ApplyResult) -> str:
    """適用したオブジェクト 1 つの行。"""
    return f"{result.kind}/{result.name} {result.action}"


def check_new_pods(
    client: ApiClient, namespace: str, name: str, record: ImageRecord | None, status: Status
) -> PodsCheck:
    """Deployment の今の版の Pod を 1 つずつ確かめる（Ready、全エンドポイント、モデル、サンプルの答え）。"""
    current = template_hash(client, namespace, name)
    pods = new_pods(client, namespace, current) if current else []
    status.start("pods", f"Checking the {len(pods)} new pods of {name} one by one...")
    result = check_pods(
        client,
        namespace,
        pods,
        model_sha256=record.model_sha256 if record else None,
        sample_answer=record.sample_answer if record else None,
    )
    for check in result.pods:
        (status.done if check.ok else status.warn)("pods", f"pod {check.pod}: {check.detail}")
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
    status: Status,
) -> tuple[RolloutResult, PodsCheck | None]:
    """ロールアウトを待ち、新しい版の Pod を確かめる。どちらかが通らなければ MiiError。"""
    rollout = wait_for_rollout(
        client,
        namespace,
        name,
        timeout=timeout,
        image_hint=image_hint,
        on_progress=status.progress("rollout"),
    )
    status.done("rollout", f"deployment/{rollout.deployment}: {rollout.ready}/{rollout.desired} pods ready")
    if not check:
        return rollout, None
    pods_check = check_new_pods(client, namespace, name, record, status)
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
    status: Status,
) -> MiiError:
    """安定版のデプロイの失敗を受けて、前の版に戻す（戻せなければそのまま）。投げる失敗を返す。"""
    current = revision_of(read_deployment(client, namespace, APP_NAME))
    if previous is None:
        return _failed(failure, f"{failure.message} (first deploy: nothing to roll back to)")
    if current == previous:
        return _failed(failure, f"{failure.message} (the deployment was not changed)")
    if not allowed:
        return _failed(failure, f"{failure.message}; left as it is (--no-rollback): mii rollback undoes it")
    status.warn("rollback", f"{APP_NAME}: {failure.message}")
    status.start("rollback", f"Rolling {APP_NAME} back to revision {previous}...")
    try:
        target = rollback(client, namespace, APP_NAME, previous)
        wait_for_rollout(client, namespace, APP_NAME, timeout=timeout)
    except MiiError as error:
        return _failed(
            failure,
            f"{failure.message}; rolling back to revision {previous} did not finish either: {error.message}",
        )
    status.done("rollback", rolled_back_line(target))
    return _failed(failure, f"{failure.message}; rolled back to revision {previous} ({target.image})")


def rolled_back_line(target: Revision) -> str:
    """安定版を戻し終えた行。"""
    return f"deployment/{APP_NAME} is back on revision {target.number} ({target.image})"


def wait_pods_gone(
    client: ApiClient,
    namespace: str,
    selector: str,
    what: str,
    *,
    timeout: float = 120.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """ラベルで選ぶ Pod が（猶予のあいだ答え終えて）消えるまで待つ。期限を過ぎれば ClusterError。"""
    core = CoreV1Api(client)
    deadline = clock() + timeout
    while kapi.call(
        client, f"listing {what} pods", core.list_namespaced_pod, namespace, label_selector=selector
    ).items:
        if clock() >= deadline:
            raise ClusterError(
                f"the {what} pods were still terminating after {timeout:.0f}s",
                hint=f"kubectl -n {namespace} get pods -l {selector}",
            )
        sleep(1.0)


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
    wait_pods_gone(client, namespace, CANARY_LABEL, "canary", timeout=timeout, clock=clock, sleep=sleep)
    return True


def withdraw_canary(client: ApiClient, namespace: str, *, timeout: float, status: Status) -> bool:
    """canary を消し（その Pod が消えるまで待ち）、その始まりと終わりを知らせる。無ければ False。"""
    status.start("canary", f"Removing {CANARY_NAME}...")
    removed = remove_canary(client, namespace, timeout=timeout)
    status.done("canary", f"removed {CANARY_NAME}")
    return removed


def _ready_pod(client: ApiClient, namespace: str, selector: str) -> str:
    ready = ready_pods(client, namespace, selector)
    if not ready:
        raise ClusterError(f"no ready pod with {selector} in namespace {namespace}")
    return ready[0]


def compare_with_stable(
    client: ApiClient, namespace: str, rows: list[list[float]] | None, status: Status
) -> Verdict:
    """canary の Pod と安定版の Pod に、それぞれポートフォワードして同じ行で比べる。"""
    canary_pod, stable_pod = (
        _ready_pod(client, namespace, CANARY_LABEL),
        _ready_pod(client, namespace, APP_LABEL),
    )
    what = f"the sample rows and {len(rows)} rows" if rows else "the sample rows"
    status.start("compare", f"Comparing {canary_pod} with {stable_pod} on {what}...")
    with (
        forward_to_pod(client, namespace, stable_pod, DEFAULT_PORT) as stable,
        forward_to_pod(client, namespace, canary_pod, DEFAULT_PORT) as canary,
    ):
        return compare(stable.url, canary.url, rows)


# --- デプロイの要求と文脈 ------------------------------------------------------------------------


@dataclass(frozen=True)
class AnalysisSettings:
    """canary の分析（`--analysis`）の設定: 閾値と、段ごとに数字を読む区間の秒数。"""

    thresholds: Thresholds = field(default_factory=Thresholds)
    interval: float = 60.0


@dataclass(frozen=True)
class DeployRequest:
    """何をどうデプロイするか（`mii deploy` と `mii up` が同じオプションから作る）。

    `image` が無ければ `repository` のローカルの最新の一意なタグ。`registry` があれば push して
    その参照を、`load` なら minikube・kind のノードへ読み込む。`check` は新しい Pod の確かめ、
    `rollback_on_failure` は失敗したときの戻し。`canary` なら安定版に並べて `compare_rows` で比べる。
    """

    namespace: str
    image: str | None = None
    repository: str = ""
    registry: str | None = None
    timeout: float = 300.0
    context: str | None = None
    load: bool = True
    wait: bool = True
    sizing: Sizing | None = None
    check: bool = True
    rollback_on_failure: bool = True
    canary: bool = False
    canary_replicas: int = 1
    compare_rows: list[list[float]] | None = None
    # canary を段ごとに増やし、生のトラフィックで判定して昇格か取り消しを決める（workflows/analysis.py）
    analysis: AnalysisSettings | None = None
    # 影として動かし、安定版の Pod に推論のリクエストの mirror_percent % を写させる（workflows/shadow.py）
    shadow: bool = False
    mirror_percent: float = DEFAULT_MIRROR_PERCENT

    def __post_init__(self) -> None:
        """canary と影は同時に出せない（どちらも新しいモデルを安定版の横に置く別の形）。"""
        if self.shadow and self.canary:
            raise ConfigError(
                "--shadow and --canary (or --analysis) are two ways to run a new model beside the stable one",
                hint="run the shadow first, then mii deploy --analysis with the same image",
            )
        if not 0 < self.mirror_percent <= 100:
            raise ConfigError(
                f"--mirror-percent {self.mirror_percent:g} is out of range", hint="use 0.1 to 100"
            )

    @property
    def beside(self) -> bool:
        """新しいモデルを安定版の横に置くか（canary か影）。"""
        return self.canary or self.shadow

    @property
    def deployment(self) -> str:
        """デプロイする Deployment の名前（安定版・canary・影）。"""
        return CANARY_NAME if self.canary else SHADOW_NAME if self.shadow else APP_NAME


@dataclass
class DeployContext:
    """手順が共有する文脈: 要求・接続・知らせ口と、手順が順に埋めていく値。"""

    request: DeployRequest
    client: ApiClient
    info: ClusterInfo
    status: Status
    daemon: DockerDaemon
    # 手順が待つときの時計と眠り（テストが差し替える）
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    image: str = ""
    plan: ImagePlan | None = None
    stable: dict[str, Any] | None = None
    sizing: Sizing | None = None
    reference: str = ""
    record: ImageRecord | None = None
    objects: list[Manifest] = field(default_factory=list)
    applied: list[ApplyResult] = field(default_factory=list)
    metrics_api: bool = False
    rollout: RolloutResult | None = None
    pods_check: PodsCheck | None = None
    revision: int | None = None
    verdict: Verdict | None = None
    analysis: Analysis | None = None
    mirroring: Mirroring | None = None

    def result(self) -> DeployResult:
        """ここまでの値をデプロイの結果にする。"""
        return DeployResult(
            cluster=self.info,
            namespace=self.request.namespace,
            image=self.reference,
            applied=self.applied,
            metrics_api=self.metrics_api,
            rollout=self.rollout,
            deployment=self.request.deployment,
            revision=self.revision,
            model=self.record,
            pods_check=self.pods_check,
            verdict=self.verdict,
            delivery=self.plan,
            analysis=self.analysis,
            mirroring=self.mirroring,
        )


DeployStep = Callable[[DeployContext], None]


# --- 手順（それぞれ文脈を読み、埋め、知らせる） --------------------------------------------------


def plan_delivery(ctx: DeployContext) -> None:
    """デプロイするイメージを決め、クラスタへの渡し方（docker-env・load・push・そのまま）を決める。"""
    request = ctx.request
    image = request.image
    if image is None:
        check_daemon(ctx.info, ctx.daemon)
        image = latest_local_image(request.repository)
    ctx.image = image
    ctx.plan = plan_image(ctx.info, image, registry=request.registry, load=request.load, daemon=ctx.daemon)
    ctx.status.info("image", f"image: {ctx.plan.detail}")


def check_namespace(ctx: DeployContext) -> None:
    """Namespace が mii のものか（消えかけなら消えるまで待つ）。"""
    prepare_namespace(ctx.client, ctx.request.namespace, ctx.status)


def read_stable(ctx: DeployContext) -> None:
    """動いている安定版を読み、Pod の大きさを決める（canary は安定版の大きさを引き継ぐ）。"""
    request = ctx.request
    ctx.stable = read_deployment(ctx.client, request.namespace, APP_NAME)
    if request.beside and ctx.stable is None:
        what = "a canary" if request.canary else "a shadow"
        flag = "--canary" if request.canary else "--shadow"
        raise ConfigError(
            f"there is no deployment {APP_NAME} in namespace {request.namespace} to run {what} beside",
            hint=f"deploy the first model without {flag}",
        )
    ctx.sizing = live_sizing(ctx.stable, request.sizing) if request.beside else request.sizing


def check_fit(ctx: DeployContext) -> None:
    """どのノードにも入らない大きさなら、イメージを渡す前に止める（Pending のまま期限まで待たない）。"""
    check_pod_fits(ctx.client, *pod_requests(ctx.sizing))


def deliver_image(ctx: DeployContext) -> None:
    """イメージをクラスタが使えるようにし（push・load・docker-env の確かめ）、その記録を読む。"""
    plan = ctx.plan
    assert plan is not None
    reference = plan.reference
    if plan.action != "use":
        if plan.action in ("push", "load"):
            ctx.status.start("image", f"Making {ctx.image} available to the cluster ({plan.action})...")
        # push したなら、push が知らせたダイジェストで固定した参照になる（docker-env ならノードのエンジンに
        # あることを確かめるだけ）
        reference = carry_out(ctx.info, ctx.image, plan)
    ctx.reference = reference
    ctx.status.done("image", f"image: {reference}")
    ctx.record = read_record(ctx.image, reference)


def apply_objects(ctx: DeployContext) -> None:
    """オブジェクトを組み立てて適用する（canary なら 2 つ目の Deployment だけ）。"""
    assert ctx.record is not None
    request = ctx.request
    objects = render(
        ctx.reference, request.namespace, sizing=ctx.sizing, annotations=record_annotations(ctx.record)
    )
    ctx.objects = [canary_deployment(objects, request.canary_replicas)] if request.canary else objects
    ctx.applied = apply_all(
        ctx.client, ctx.objects, on_applied=lambda result: ctx.status.done("apply", applied_line(result))
    )


def check_metrics_api(ctx: DeployContext) -> None:
    """metrics API があるか（無ければ HPA が CPU を読めないので、入れ方を添えて知らせる）。"""
    ctx.metrics_api = metrics_api_available(ctx.client)
    if not ctx.metrics_api:
        ctx.status.warn(
            "metrics",
            f"the metrics API ({METRICS_PATH}) is not served, so the HPA cannot read CPU usage; "
            f"enable it with: {metrics_hint(ctx.info)}",
        )


def wait_and_check(ctx: DeployContext) -> None:
    """ロールアウトを待って新しい Pod を確かめる。通らなければ前の版に戻す（canary なら消す）。"""
    request, client, namespace = ctx.request, ctx.client, ctx.request.namespace
    name = request.deployment
    try:
        ctx.rollout, ctx.pods_check = roll_out(
            client,
            namespace,
            name,
            record=ctx.record,
            timeout=request.timeout,
            image_hint=missing_image_hint(ctx.info, ctx.reference),
            check=request.check,
            status=ctx.status,
        )
    except MiiError as failure:
        if request.beside:
            side = "canary" if request.canary else "shadow"
            if not request.rollback_on_failure:
                raise _failed(
                    failure, f"{failure.message}; the {side} is left running (--no-rollback)"
                ) from None
            ctx.status.warn(side, f"{name}: {failure.message}")
            if request.canary:
                withdraw_canary(client, namespace, timeout=request.timeout, status=ctx.status)
            else:
                stop_shadow(
                    client,
                    namespace,
                    timeout=request.timeout,
                    status=ctx.status,
                    clock=ctx.clock,
                    sleep=ctx.sleep,
                )
            raise _failed(failure, f"{failure.message}; removed the {side}") from None
        raise undo(
            client,
            namespace,
            failure,
            previous=revision_of(ctx.stable),
            allowed=request.rollback_on_failure,
            timeout=request.timeout,
            status=ctx.status,
        ) from None
    ctx.revision = revision_of(read_deployment(client, namespace, name))


def compare_canary(ctx: DeployContext) -> None:
    """canary と安定版を同じ行で比べる。"""
    ctx.verdict = compare_with_stable(ctx.client, ctx.request.namespace, ctx.request.compare_rows, ctx.status)


def steps_for(request: DeployRequest) -> list[DeployStep]:
    """要求に合わせた手順の並び（待たないならロールアウトの前まで。canary は比べ、分析は段ごとに決める）。"""
    if request.shadow:
        # 影: 安定版が写しの設定を読むかを確かめ、影のオブジェクトを適用し、確かめてから写しを始める
        shadow: list[DeployStep] = [
            plan_delivery,
            check_namespace,
            read_stable,
            check_stable_mirrors,
            check_fit,
        ]
        shadow += [deliver_image, apply_shadow]
        return [*shadow, wait_and_check, start_mirroring] if request.wait else shadow
    steps: list[DeployStep] = [
        plan_delivery,
        check_namespace,
        read_stable,
        check_fit,
        deliver_image,
        apply_objects,
        check_metrics_api,
    ]
    if request.wait:
        steps.append(wait_and_check)
        if request.canary and request.analysis is not None:
            # 分析の手順（比べることを含む）は昇格（workflows/release.py、このモジュールの手順を使う）を
            # 呼ぶので、ここで読む
            from mii_cli.workflows.analysis import analyse_canary

            steps.append(analyse_canary)
        elif request.canary:
            steps.append(compare_canary)
    return steps


def connected_line(info: ClusterInfo) -> str:
    """接続したクラスタの行。"""
    return f"cluster: {info.context} ({info.flavor}, {info.version or 'unknown version'}) at {info.server}"


def deploy(
    request: DeployRequest,
    *,
    client: ApiClient | None = None,
    info: ClusterInfo | None = None,
    report: Report | None = None,
    daemon: DockerDaemon | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> DeployResult:
    """デプロイの全体: 接続し、要求に合わせた手順（`steps_for`）を順に動かす。

    失敗すれば前の版に戻してから MiiError（`rollback_on_failure=False` なら戻さない）。
    """
    status = Status(report)
    if client is None or info is None:
        client, info = connect(request.context)
    status.info("cluster", connected_line(info))
    ctx = DeployContext(
        request=request,
        client=client,
        info=info,
        status=status,
        daemon=daemon or current_daemon(),
        clock=clock,
        sleep=sleep,
    )
    for step in steps_for(request):
        step(ctx)
    return ctx.result()
