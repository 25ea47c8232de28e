"""`mii deploy --canary --analysis`: canary を段ごとに増やし、生のトラフィックで判定して自分で決める。

メッシュが無いので、流れは Pod の数で分ける: Service は安定版と canary の Pod を区別せずに選ぶので、canary の
Pod が k、安定版が n なら、canary はおよそ k/(k+n) の要求を受ける。段は canary の `--canary-replicas` から
1 つずつ、安定版の Pod の数まで（上限 10）。まず同じ行で答えを比べ（デプロイの比較と同じ）、段ごとに:

1. canary を k 個にして、Ready になるまで待つ（`kube.revisions.scale` と `wait_for_rollout`）。
2. 両方の側の Pod ごとの `/metrics` を API サーバーの Pod のプロキシ越しに読み、`interval` 秒後にもう一度
   読み、区間の初めと終わりの両方で読めた Pod の増えを側ごとに合わせる（Prometheus のサーバーは要らない。
   途中で起き直した Pod の系列は 0 から数える。読めなかった Pod は段の `unread` に残す）。
3. その区間の数字と答えの違いを probe/analysis.py の `judged` で閾値と比べる。

どこかの段で閾値を超えるか、要求が少なすぎて判定できなければ、すぐに canary を消して（安定版には触れない）
どの段のどの閾値をどれだけ超えたかの 1 行で失敗する（`AnalysisFailed`、終了コード 6）。途中の失敗（canary が
増えきらない、比べられない、昇格の関門）と中断でも canary を消す（`--no-rollback` なら残す）。すべての段を
通れば、canary を最初の大きさに戻してから（ノードに昇格の追加の Pod の場所を空ける）`mii promote` と同じ
昇格（関門つきのローリングアップデート、その後 canary を消す）を行う。

段ごとの数字は進み具合として知らせ、デプロイの結果（`--json` の `analysis`）と、Namespace の ConfigMap
`model-in-image-analyses`（新しいものから `KEPT_ANALYSES` 件、`mii history` が読む。書けなくても結末は
変えない）に残す。
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kubernetes.client import ApiClient

from mii_cli.errors import CheckFailed, MiiError
from mii_cli.kube import APP_LABEL, APP_NAME, CANARY_LABEL, CANARY_NAME
from mii_cli.kube.configmaps import write_config_map
from mii_cli.kube.render import MAX_CANARY_REPLICAS
from mii_cli.kube.revisions import read_deployment, scale
from mii_cli.kube.rollout import wait_for_rollout
from mii_cli.probe.analysis import Finding, Thresholds, judged
from mii_cli.probe.traffic import Reading, Traffic, parse, total, traffic
from mii_cli.results import Result, to_json
from mii_cli.workflows.deploy import DeployContext, compare_canary, withdraw_canary
from mii_cli.workflows.pod_metrics import read_pods
from mii_cli.workflows.release import ANALYSES_KEY, ANALYSES_NAME, PromoteResult, promote, read_analyses

# 残す分析の記録の件数（ConfigMap は workflows/release.py の ANALYSES_NAME）
KEPT_ANALYSES = 10


@dataclass(frozen=True)
class AnalysisStep(Result):
    """1 つの段: canary の Pod の数（計画）と測った安定版の Pod の数、区間の長さ、両方の側の数字、超えた閾値、
    判定できなかった理由、`/metrics` を読めなかった Pod。"""

    step: int
    canary_pods: int
    stable_pods: int
    seconds: float
    stable: Traffic
    canary: Traffic
    findings: list[Finding] = field(default_factory=list)
    undecided: str | None = None
    unread: list[str] = field(default_factory=list)

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
    """分析が canary を取り消した（どの段のどの閾値か、または途中の失敗）。`analysis` は `--json` で出す記録。

    閾値を超えたときは終了コード 6、途中の失敗はその失敗の終了コード（待ちきれなければ 7 など）。
    """

    def __init__(self, message: str, *, hint: str | None, analysis: Analysis, exit_code: int = 6) -> None:
        super().__init__(message, hint=hint)
        self.analysis = analysis
        self.exit_code = exit_code


def step_plan(canary_pods: int, stable_pods: int) -> list[int]:
    """段ごとの canary の Pod の数: `canary_pods` から 1 つずつ安定版の数まで（1 段以上、最大 10）。"""
    last = min(max(canary_pods, stable_pods), MAX_CANARY_REPLICAS)
    return list(range(canary_pods, max(last, canary_pods) + 1))


def window(before: dict[str, Reading], after: dict[str, Reading]) -> Traffic:
    """区間の初めと終わりの両方で読めた Pod の増えを合わせた数字。

    初めに読めなかった Pod（途中で Ready になった、1 度だけ読めなかった）は数えない: その累積の全部が 1 つの
    区間に入ってしまう。起き直して減った系列は 0 から数え直す（`Reading.since`）。
    """
    return traffic(total(after[pod].since(before[pod]) for pod in after if pod in before))


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


def keep(client: ApiClient, namespace: str, analysis: Analysis) -> str | None:
    """分析の記録を ConfigMap の先頭に足す（`KEPT_ANALYSES` 件まで。昇格の細部は版の履歴にあるので省く）。

    書けなければ、その理由を返す（記録は見るためのもので、分析の結末は変えない）。
    """
    record = to_json(analysis)
    record.pop("promotion", None)
    try:
        records = [record, *read_analyses(client, namespace)][:KEPT_ANALYSES]
        write_config_map(
            client, namespace, ANALYSES_NAME, {ANALYSES_KEY: json.dumps(records, sort_keys=True)}
        )
    except MiiError as error:
        return error.message
    return None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def measure_step(ctx: DeployContext, number: int, plan: list[int]) -> AnalysisStep:
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
        f"Step {number}/{len(plan)}: {pods} canary pods; reading live traffic for {settings.interval:g}s...",
    )
    _, stable_before, unread = read_pods(client, namespace, APP_LABEL, parse)
    _, canary_before, unread_canary = read_pods(client, namespace, CANARY_LABEL, parse)
    started = ctx.clock()
    ctx.sleep(settings.interval)
    _, stable_after, unread_after = read_pods(client, namespace, APP_LABEL, parse)
    _, canary_after, unread_canary_after = read_pods(client, namespace, CANARY_LABEL, parse)
    stable, canary = window(stable_before, stable_after), window(canary_before, canary_after)
    judgement = judged(stable, canary, ctx.verdict, settings.thresholds)
    return AnalysisStep(
        step=number,
        canary_pods=pods,
        stable_pods=len(stable_before.keys() & stable_after.keys()),
        seconds=round(ctx.clock() - started, 1),
        stable=stable,
        canary=canary,
        findings=judgement.findings,
        undecided=judgement.undecided,
        unread=list(dict.fromkeys([*unread, *unread_canary, *unread_after, *unread_canary_after])),
    )


class _Run:
    """1 回の分析: 段を積み、結末を記録し、失敗なら canary を消して `AnalysisFailed` にする。"""

    def __init__(self, ctx: DeployContext, plan: list[int]) -> None:
        self.ctx = ctx
        self.plan = plan
        self.steps: list[AnalysisStep] = []

    def finish(self, outcome: str, reason: str | None, promotion: PromoteResult | None = None) -> Analysis:
        """結末を文脈と ConfigMap に残す（書けなければ知らせるだけ）。"""
        ctx = self.ctx
        settings = ctx.request.analysis
        assert settings is not None
        analysis = Analysis(
            image=ctx.reference,
            model_sha256=ctx.record.model_sha256 if ctx.record else None,
            thresholds=settings.thresholds,
            interval=settings.interval,
            steps=list(self.steps),
            outcome=outcome,
            reason=reason,
            finished=_now(),
            promotion=promotion,
        )
        ctx.analysis = analysis
        problem = keep(ctx.client, ctx.request.namespace, analysis)
        if problem is not None:
            ctx.status.warn("analysis", f"the analysis was not recorded for mii history: {problem}")
        return analysis

    def fail(self, reason: str, *, hint: str | None, exit_code: int) -> AnalysisFailed:
        """canary を消し（`--no-rollback` なら残し）、記録して、投げる失敗を返す。"""
        ctx = self.ctx
        request = ctx.request
        if not request.rollback_on_failure:
            analysis = self.finish("left running", reason)
            return AnalysisFailed(
                f"{reason}; the canary is left running (--no-rollback): mii rollback removes it",
                hint=hint,
                analysis=analysis,
                exit_code=exit_code,
            )
        try:
            withdraw_canary(ctx.client, request.namespace, timeout=request.timeout, status=ctx.status)
        except MiiError as error:
            analysis = self.finish("rolled back", reason)
            return AnalysisFailed(
                f"{reason}; removing the canary failed too: {error.message}",
                hint=f"mii rollback -n {request.namespace} removes it",
                analysis=analysis,
                exit_code=exit_code,
            )
        analysis = self.finish("rolled back", reason)
        return AnalysisFailed(
            f"{reason}; removed the canary", hint=hint, analysis=analysis, exit_code=exit_code
        )

    def steps_run(self) -> None:
        """段を順に測り、最初に通らなかった段で失敗する。"""
        ctx, plan = self.ctx, self.plan
        for number in range(1, len(plan) + 1):
            where = f"analysis step {number}/{len(plan)}"
            try:
                step = measure_step(ctx, number, plan)
            except MiiError as error:
                raise self.fail(
                    f"{where}: {error.message}", hint=error.hint, exit_code=error.exit_code
                ) from None
            self.steps.append(step)
            line = step_line(step, len(plan))
            if step.passed:
                ctx.status.done("analysis", line)
                continue
            ctx.status.warn("analysis", line)
            hint = (
                "let the service take traffic during the analysis, "
                "lengthen --interval or lower --min-requests"
                if step.undecided is not None
                else "mii history shows the analysis; fix the model, rebuild and deploy again"
            )
            raise self.fail(failure_reason(step, len(plan)), hint=hint, exit_code=CheckFailed.exit_code)

    def promote(self) -> None:
        """canary を最初の大きさに戻してから昇格する（昇格の関門に通らなければ canary も消す）。"""
        ctx = self.ctx
        request = ctx.request
        namespace = request.namespace
        ctx.status.info(
            "analysis", f"all {len(self.plan)} steps within the thresholds: promoting {ctx.reference}"
        )
        try:
            if self.plan[-1] != request.canary_replicas:
                scale(ctx.client, namespace, CANARY_NAME, request.canary_replicas)
            promotion = promote(
                ctx.client,
                namespace,
                timeout=request.timeout,
                rollback_on_failure=request.rollback_on_failure,
                report=ctx.status.report,
            )
        except MiiError as error:
            raise self.fail(
                f"promotion: {error.message}", hint=error.hint, exit_code=error.exit_code
            ) from None
        self.finish("promoted", None, promotion)


def analyse_canary(ctx: DeployContext) -> None:
    """デプロイの手順: 答えを比べ、canary を段ごとに増やして判定し、超えれば取り消し、すべて通れば昇格する。

    比べられない・段の途中の失敗・昇格の失敗でも canary を消してから失敗する。中断（Ctrl-C）でも消してから
    中断を伝える。
    """
    request = ctx.request
    stable = read_deployment(ctx.client, request.namespace, APP_NAME) or {}
    stable_pods = int((stable.get("spec") or {}).get("replicas") or 1)
    run = _Run(ctx, step_plan(request.canary_replicas, stable_pods))
    try:
        try:
            compare_canary(ctx)
        except MiiError as error:
            raise run.fail(
                f"comparing the answers: {error.message}", hint=error.hint, exit_code=error.exit_code
            ) from None
        run.steps_run()
        run.promote()
    except KeyboardInterrupt:
        if request.rollback_on_failure:
            ctx.status.warn("analysis", "interrupted: removing the canary")
            withdraw_canary(ctx.client, request.namespace, timeout=request.timeout, status=ctx.status)
        raise
