"""`mii verdict`: 今の canary（または影）と安定版の数字（推論の件数・エラー率・p50/p99 と、答えの違い）。

影（shadow、`mii deploy --shadow`）が動いていれば、答えの違いは安定版の Pod が写した生のリクエストで
数えたもの（`mii_shadow_*`、probe/mirror.py）: 写した数・捨てた数・比べた数・ラベルの変わった行・
値のいちばん大きな差・影のエラーと往復の遅延。canary と影の両方があれば canary を見る。

両方の側の Pod の `/metrics` を API サーバーの Pod のプロキシ越しに読み（Prometheus のサーバーは要らない）、
側ごとに合わせる。値は Pod が起きてからの累積。答えの違いは、デプロイのときと同じく両方の Pod に同じ行
（サンプルの行と `--compare-rows`）を送って比べる。

閾値（`Thresholds`）を渡せば、その数字を probe/analysis.py の `judge` で判定し（`Judgement`）、
`judgement_error` が超えた閾値を 1 行の失敗にする。渡さなければ合否は決めない（決めるのは利用者）。
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kubernetes.client import ApiClient

from mii_cli.errors import CheckFailed, ConfigError, MiiError
from mii_cli.kube import APP_LABEL, APP_NAME, CANARY_LABEL, CANARY_NAME, SHADOW_LABEL, SHADOW_NAME
from mii_cli.kube.revisions import read_deployment
from mii_cli.probe.analysis import Judgement, Thresholds, judged
from mii_cli.probe.compare import Verdict
from mii_cli.probe.mirror import MirrorNumbers, MirrorReading, mirror_numbers, parse_mirror, total_mirror
from mii_cli.probe.traffic import Reading, Traffic, parse, total, traffic
from mii_cli.results import Result
from mii_cli.workflows.deploy import compare_with_stable
from mii_cli.workflows.pod_metrics import read_pods
from mii_cli.workflows.steps import Status


@dataclass(frozen=True)
class Side(Result):
    """1 つの側（Deployment）の Pod と、その推論のリクエストの数字。`unread` は読めなかった Pod と理由。"""

    deployment: str
    pods: list[str]
    traffic: Traffic
    unread: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CanaryVerdict(Result):
    """canary と安定版の数字と、同じ行での答えの違い（閾値を渡されたときは、その判定も）。"""

    namespace: str
    stable: Side
    canary: Side
    answers: Verdict
    # 出力ごとのいちばん大きな差のうち最大（比べられる出力が無ければ None）
    largest_difference: float | None
    judgement: Judgement | None = None


def read_side(client: ApiClient, namespace: str, deployment: str, selector: str, unanswered: int = 0) -> Side:
    """側の Ready な Pod の `/metrics` を読んで合わせる（読めない Pod は理由を添えて除く。`unanswered` は
    その側へ送って答えの無かった要求: probe/traffic.py の `traffic`）。"""
    pods, readings, unread = read_pods(client, namespace, selector, parse)
    return Side(
        deployment=deployment,
        pods=pods,
        traffic=traffic(total(readings.values()), unanswered),
        unread=unread,
    )


def _both(text: str) -> tuple[Reading, MirrorReading]:
    return parse(text), parse_mirror(text)


@dataclass(frozen=True)
class ShadowVerdict(Result):
    """影と安定版の数字と、安定版の Pod が写した生のリクエストでの答えの違い（閾値があればその判定も）。"""

    namespace: str
    stable: Side
    shadow: Side
    mirror: MirrorNumbers
    judgement: Judgement | None = None


def judgement_error(verdict: CanaryVerdict | ShadowVerdict) -> MiiError | None:
    """判定が合格でなければ、その 1 行の失敗（超えた閾値は CheckFailed、件数不足は MiiError）。"""
    judgement = verdict.judgement
    if judgement is None or judgement.passed:
        return None
    namespace = verdict.namespace
    side = "shadow" if isinstance(verdict, ShadowVerdict) else "canary"
    if judgement.undecided is not None:
        return MiiError(
            f"cannot judge the {side} yet: {judgement.undecided}",
            hint=f"let the service in namespace {namespace} take traffic, then run mii verdict again",
        )
    first, *rest = judgement.findings
    names = ", ".join(dict.fromkeys(f.threshold for f in rest))
    more = f" ({len(rest)} more {'finding' if len(rest) == 1 else 'findings'}: {names})" if rest else ""
    return CheckFailed(
        f"the {side} breaches --{first.threshold}: {first.message}{more}",
        hint=f"mii rollback -n {namespace} removes the {side}",
    )


def canary_verdict(
    client: ApiClient,
    namespace: str,
    rows: list[list[float]] | None = None,
    thresholds: Thresholds | None = None,
) -> CanaryVerdict:
    """今の canary と安定版の数字（`thresholds` があればその判定も）。canary が無ければ ConfigError。"""
    if read_deployment(client, namespace, CANARY_NAME) is None:
        raise ConfigError(
            f"there is no canary in namespace {namespace} to give a verdict on",
            hint="deploy a new model beside the stable one with mii deploy --canary",
        )
    stable = read_side(client, namespace, APP_NAME, APP_LABEL)
    canary = read_side(client, namespace, CANARY_NAME, CANARY_LABEL)
    answers = compare_with_stable(client, namespace, rows, Status())
    largest = [d.largest for d in answers.differences if d.largest is not None]
    return CanaryVerdict(
        namespace=namespace,
        stable=stable,
        canary=canary,
        answers=answers,
        largest_difference=max(largest) if largest else None,
        judgement=judged(stable.traffic, canary.traffic, answers, thresholds)
        if thresholds is not None
        else None,
    )


def shadow_verdict(client: ApiClient, namespace: str, thresholds: Thresholds | None = None) -> ShadowVerdict:
    """今の影と安定版の数字（`thresholds` があればその判定も）。影が無ければ ConfigError。

    安定版の Pod の `/metrics` は 1 度だけ読み、推論のリクエストの数字と写しの数字の両方にする。
    """
    if read_deployment(client, namespace, SHADOW_NAME) is None:
        raise ConfigError(
            f"there is no canary or shadow in namespace {namespace} to give a verdict on",
            hint="run a new model beside the stable one with mii deploy --shadow or mii deploy --canary",
        )
    pods, readings, unread = read_pods(client, namespace, APP_LABEL, _both)
    stable = Side(
        deployment=APP_NAME,
        pods=pods,
        traffic=traffic(total(reading for reading, _ in readings.values())),
        unread=unread,
    )
    mirror = mirror_numbers(total_mirror(found for _, found in readings.values()))
    # 影の側の数字には、写した側が数えた答えの無い写しも入る（影自身の `/metrics` には出ない）
    shadow = read_side(client, namespace, SHADOW_NAME, SHADOW_LABEL, mirror.unanswered)
    return ShadowVerdict(
        namespace=namespace,
        stable=stable,
        shadow=shadow,
        mirror=mirror,
        judgement=judged(stable.traffic, shadow.traffic, mirror, thresholds, "shadow")
        if thresholds is not None
        else None,
    )


def verdict(
    client: ApiClient,
    namespace: str,
    rows: list[list[float]] | None = None,
    thresholds: Thresholds | None = None,
) -> CanaryVerdict | ShadowVerdict:
    """canary があればその数字、無くて影があれば影の数字。どちらも無ければ ConfigError。"""
    if read_deployment(client, namespace, CANARY_NAME) is not None:
        return canary_verdict(client, namespace, rows, thresholds)
    return shadow_verdict(client, namespace, thresholds)
