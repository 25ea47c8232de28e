"""`mii deploy --canary --analysis`: canary を段ごとに増やし、生のトラフィックで判定して自分で決める。

メッシュが無いので、流れは Pod の数で分ける: Service は安定版と canary の Pod を区別せずに選ぶので、canary の
Pod が k、安定版が n なら、canary はおよそ k/(k+n) の要求を受ける。段は canary の `--canary-replicas` から
1 つずつ、安定版の Pod の数まで（上限 10）。段ごとに:

1. canary を k 個にして、Ready になるまで待つ（`kube.revisions.scale` と `wait_for_rollout`）。
2. 両方の側の Pod ごとの `/metrics` を API サーバーの Pod のプロキシ越しに読み、`interval` 秒後にもう一度
   読み、Pod ごとの増えを側ごとに合わせる（Prometheus のサーバーは要らない。起き直した Pod は 0 から数える）。
3. その区間の数字と、デプロイの比較（サンプルの行と `--compare-rows`）の答えの違いを probe/analysis.py の
   `judge` で閾値と比べる。

どこかの段で閾値を超えるか、要求が少なすぎて判定できなければ、すぐに canary を消して（安定版には触れない）
どの段のどの閾値をどれだけ超えたかの 1 行で失敗する（`AnalysisFailed`、終了コード 6）。すべての段を通れば
`mii promote` と同じ昇格（関門つきのローリングアップデート、その後 canary を消す）を行う。

段ごとの数字は進み具合として知らせ、デプロイの結果（`--json` の `analysis`）と、Namespace の ConfigMap
`model-in-image-analyses`（新しいものから `KEPT_ANALYSES` 件、`mii history` が読む）に残す。
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kubernetes.client import ApiClient

from mii_cli.errors import CheckFailed, MiiError
from mii_cli.kube import APP_LABEL, APP_NAME, CANARY_LABEL, CANARY_NAME
from mii_cli.kube.configmaps import write_config_map
from mii_cli.kube.revisions import read_deployment, scale
from mii_cli.kube.rollout import wait_for_rollout
from mii_cli.probe.analysis import Finding, Thresholds, judge
from mii_cli.probe.traffic import Reading, Traffic, total, traffic
from mii_cli.results import Result, to_json
from mii_cli.workflows.deploy import DeployContext, withdraw_canary
from mii_cli.workflows.release import ANALYSES_KEY, ANALYSES_NAME, PromoteResult, promote, read_analyses
from mii_cli.workflows.verdict import read_pods

# 残す分析の記録の件数（ConfigMap は workflows/release.py の ANALYSES_NAME）
KEPT_ANALYSES = 10
# canary の段の上限（canary の Deployment の上限と同じ）
MAX_CANARY_PODS = 10


@dataclass(frozen=True)
class AnalysisStep(Result):
    """1 つの段: canary と安定版の Pod の数、区間の長さ、両方の側の数字、超えた閾値、判定できなかった理由。"""

    step: int
    canary_pods: int
    stable_pods: int
    seconds: float
    stable: Traffic
    canary: Traffic
    findings: list[Finding] = field(default_factory=list)
    undecided: str | None = None

    computed = ("passed",)

    @property
    def passed(self) -> bool:
        """閾値をどれも超えず、判定できたか。"""
        return not self.findings and self.undecided is None


@dataclass(frozen=True)
class Analysis(Result):
    """分析の全体: 閾値・区間・段・結末（promoted か rolled back）と、その理由（失敗の 1 行）。"""

    image: str
    model_sha256: str | None
    thresholds: Thresholds
    interval: float
    steps: list[AnalysisStep]
    outcome: str
    reason: str | None = None
    finished: str = ""
    promotion: PromoteResult | None = None


class AnalysisFailed(CheckFailed):
    """分析が canary を取り消した（どの段のどの閾値か）。`analysis` は `--json` で出す記録。"""

    def __init__(self, message: str, *, hint: str | None, analysis: Analysis) -> None:
        super().__init__(message, hint=hint)
        self.analysis = analysis


def step_plan(canary_pods: int, stable_pods: int) -> list[int]:
    """段ごとの canary の Pod の数: `canary_pods` から 1 つずつ安定版の数まで（1 段以上、最大 10）。"""
    last = min(max(canary_pods, stable_pods), MAX_CANARY_PODS)
    return list(range(canary_pods, max(last, canary_pods) + 1))


def window(before: dict[str, Reading], after: dict[str, Reading]) -> Traffic:
    """Pod ごとの 2 つの読みの間の増えを合わせた数字（区間の途中で現れた Pod は 0 から）。"""
    return traffic(total(after[pod].since(before.get(pod, Reading())) for pod in after))


def step_line(step: AnalysisStep, steps: int) -> str:
    """段の 1 行（両方の側の数字と結果）。"""

    def side(name: str, t: Traffic) -> str:
        rate = "-" if t.error_rate is None else f"{t.error_rate:.2%}"
        p50 = "-" if t.p50_ms is None else f"{t.p50_ms:.2f}"
        p99 = "-" if t.p99_ms is None else f"{t.p99_ms:.2f}"
        return f"{name} {t.requests} req, 5xx {rate}, p50 {p50} ms, p99 {p99} ms"

    head = (
        f"step {step.step}/{steps} ({step.canary_pods} canary, {step.stable_pods} stable pods, "
        f"{step.seconds:.0f}s): {side('stable', step.stable)}; {side('canary', step.canary)}"
    )
    if step.undecided is not None:
        return f"{head}: {step.undecided}"
    if step.findings:
        return f"{head}: breaches {', '.join(dict.fromkeys(f.threshold for f in step.findings))}"
    return f"{head}: within the thresholds"


def failure_reason(step: AnalysisStep, steps: int) -> str:
    """取り消しの理由の 1 行（最初に超えた閾値と、その値）。"""
    where = f"analysis step {step.step}/{steps} ({step.canary_pods} canary pods)"
    if step.undecided is not None:
        return f"{where}: {step.undecided} in {step.seconds:.0f}s"
    first = step.findings[0]
    return f"{where}: the canary breaches --{first.threshold}: {first.message}"


def keep(client: ApiClient, namespace: str, analysis: Analysis) -> None:
    """分析の記録を ConfigMap の先頭に足す（`KEPT_ANALYSES` 件まで。昇格の細部は版の履歴にあるので省く）。"""
    record = to_json(analysis)
    record.pop("promotion", None)
    records = [record, *read_analyses(client, namespace)][:KEPT_ANALYSES]
    write_config_map(client, namespace, ANALYSES_NAME, {ANALYSES_KEY: json.dumps(records, sort_keys=True)})


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def measure_step(ctx: DeployContext, number: int, plan: list[int], stable_pods: int) -> AnalysisStep:
    """1 つの段: canary を `plan[number - 1]` Pod にして待ち、区間の両方の側の数字を読んで判定する。"""
    request, client, status = ctx.request, ctx.client, ctx.status
    settings = request.analysis
    assert settings is not None
    namespace, pods = request.namespace, plan[number - 1]
    if number > 1 and pods != plan[number - 2]:
        status.start("analysis", f"Step {number}/{len(plan)}: scaling {CANARY_NAME} to {pods} pods...")
        scale(client, namespace, CANARY_NAME, pods)
        wait_for_rollout(
            client, namespace, CANARY_NAME, timeout=request.timeout, clock=ctx.clock, sleep=ctx.sleep
        )
    status.start(
        "analysis",
        f"Step {number}/{len(plan)}: {pods} canary beside {stable_pods} stable pods; "
        f"reading live traffic for {settings.interval:g}s...",
    )
    _, stable_before, _ = read_pods(client, namespace, APP_LABEL)
    _, canary_before, _ = read_pods(client, namespace, CANARY_LABEL)
    started = ctx.clock()
    ctx.sleep(settings.interval)
    _, stable_after, _ = read_pods(client, namespace, APP_LABEL)
    _, canary_after, _ = read_pods(client, namespace, CANARY_LABEL)
    stable, canary = window(stable_before, stable_after), window(canary_before, canary_after)
    try:
        findings, undecided = judge(stable, canary, ctx.verdict, settings.thresholds), None
    except ValueError as error:
        findings, undecided = [], str(error)
    return AnalysisStep(
        step=number,
        canary_pods=pods,
        stable_pods=stable_pods,
        seconds=round(ctx.clock() - started, 1),
        stable=stable,
        canary=canary,
        findings=findings,
        undecided=undecided,
    )


def analyse_canary(ctx: DeployContext) -> None:
    """デプロイの手順: canary を段ごとに増やして判定し、超えれば取り消し、すべて通れば昇格する。

    段の途中の失敗（canary が増えきらない、API サーバーが答えない）でも canary を消してから失敗する。
    """
    request, client, status = ctx.request, ctx.client, ctx.status
    settings = request.analysis
    assert settings is not None
    namespace = request.namespace
    stable = read_deployment(client, namespace, APP_NAME) or {}
    stable_pods = int((stable.get("spec") or {}).get("replicas") or 1)
    plan = step_plan(request.canary_replicas, stable_pods)
    record = ctx.record
    steps: list[AnalysisStep] = []

    def finish(outcome: str, reason: str | None, promotion: PromoteResult | None = None) -> Analysis:
        analysis = Analysis(
            image=ctx.reference,
            model_sha256=record.model_sha256 if record else None,
            thresholds=settings.thresholds,
            interval=settings.interval,
            steps=steps,
            outcome=outcome,
            reason=reason,
            finished=_now(),
            promotion=promotion,
        )
        ctx.analysis = analysis
        keep(client, namespace, analysis)
        return analysis

    for number in range(1, len(plan) + 1):
        try:
            step = measure_step(ctx, number, plan, stable_pods)
        except MiiError as error:
            reason = f"analysis step {number}/{len(plan)}: {error.message}"
            withdraw_canary(client, namespace, timeout=request.timeout, status=status)
            finish("rolled back", reason)
            raise type(error)(
                f"{reason}; removed the canary", hint=error.hint, details=error.details
            ) from None
        steps.append(step)
        line = step_line(step, len(plan))
        if step.passed:
            status.done("analysis", line)
            continue
        status.warn("analysis", line)
        reason = failure_reason(step, len(plan))
        withdraw_canary(client, namespace, timeout=request.timeout, status=status)
        analysis = finish("rolled back", reason)
        hint = (
            "let the service take traffic during the analysis, lengthen --interval or lower --min-requests"
            if step.undecided is not None
            else "mii history shows the analysis; fix the model, rebuild and deploy again"
        )
        raise AnalysisFailed(f"{reason}; removed the canary", hint=hint, analysis=analysis)
    status.info("analysis", f"all {len(plan)} steps within the thresholds: promoting {ctx.reference}")
    try:
        promotion = promote(
            client,
            namespace,
            timeout=request.timeout,
            rollback_on_failure=request.rollback_on_failure,
            report=status.report,
        )
    except MiiError as error:
        finish("promotion failed", error.message)
        raise
    finish("promoted", None, promotion)
