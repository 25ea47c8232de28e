"""結果の表（Rich）: スモークテスト、負荷試験、ベンチマーク、`mii status`、`mii doctor`、Pod の表。"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from mii_cli.image.benchmark import TARGETS, BenchmarkReport
from mii_cli.kube.pods import PodRow
from mii_cli.kube.status import ClusterStatus, DeploymentState, HpaState, NetworkPolicyState
from mii_cli.probe.analysis import Judgement
from mii_cli.probe.compare import Verdict
from mii_cli.probe.load_test import LoadTestResult
from mii_cli.probe.mirror import MirrorNumbers
from mii_cli.probe.pods import PodsCheck
from mii_cli.probe.smoke_test import SmokeReport
from mii_cli.workflows.analysis import Analysis
from mii_cli.workflows.doctor import DoctorReport
from mii_cli.workflows.release import History
from mii_cli.workflows.verdict import CanaryVerdict, ShadowVerdict, Side

PASS = "[green]PASS[/green]"
FAIL = "[bold red]FAIL[/bold red]"


def _yes_no(value: bool) -> str:
    """Ready の列（yes は緑、no は黄色）。"""
    return "[green]yes[/green]" if value else "[yellow]no[/yellow]"


def smoke_table(report: SmokeReport) -> Table:
    """スモークテストの結果の表（check・status・detail・ms。リクエストは JSON の結果にある）。"""
    summary = report.summary
    table = Table(
        title=f"Smoke test of {report.base_url}: {summary['passed']}/{summary['total']} passed",
        title_justify="left",
        caption=_smoke_caption(report),
        caption_justify="left",
    )
    table.add_column("Check", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    table.add_column("Detail", overflow="fold")
    table.add_column("ms", justify="right", no_wrap=True)
    for check in report.checks:
        elapsed = "" if check.elapsed_ms is None else f"{check.elapsed_ms:.1f}"
        table.add_row(check.name, PASS if check.ok else FAIL, escape(check.detail), elapsed)
    return table


def _smoke_caption(report: SmokeReport) -> str:
    """表の下に出す補足（応答した Pod とモデルの sha256）。"""
    parts = [f"served by: {', '.join(report.served_by) or 'unknown'}"]
    if report.model_sha256:
        parts.append(f"model sha256: {report.model_sha256}")
    return " · ".join(parts)


def load_test_table(result: LoadTestResult) -> Table:
    """負荷試験の測定値と基準の表。"""

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    latency = result.latency_ms
    criteria = {c.name: c for c in result.criteria}

    def mark(name: str) -> str:
        return PASS if criteria[name].ok else FAIL

    table = Table(title="Load test result", title_justify="left", show_header=True)
    table.add_column("Measure", no_wrap=True)
    table.add_column("Value", justify="right")
    table.add_column("Target", justify="right")
    table.add_column("Result", no_wrap=True)
    table.add_row("requests", f"{result.requests:,} in {result.elapsed_s:.1f} s", "", "")
    table.add_row(
        "requests/s", f"{result.requests_per_s:,.1f}", criteria["throughput"].target, mark("throughput")
    )
    table.add_row("p50 ms", ms(latency["p50"]), "", "")
    table.add_row("p95 ms", ms(latency["p95"]), "", "")
    table.add_row("p99 ms", ms(latency["p99"]), criteria["p99 latency"].target, mark("p99 latency"))
    table.add_row("max ms", ms(latency["max"]), "", "")
    table.add_row("failures", f"{result.failures:,}", "0", mark("failed requests"))
    if result.served_by:
        pods = ", ".join(f"{pod} ({count:,})" for pod, count in result.served_by.items())
        table.add_row("served by", pods, "", "")
    return table


def benchmark_table(report: BenchmarkReport) -> Table:
    """ベンチマークの測定値と目標の表。"""
    table = Table(title=f"{report.image} at 0.5 CPU / 300 MiB, one-row POST /predict and V2 infer (JSON)")
    for column in ("metric", "measured", "target", "result"):
        table.add_column(column)
    for name, value in report.measurements.items():
        op, goal = TARGETS.get(name, ("", None))
        verdict = report.verdicts.get(name)
        mark = "" if verdict is None else ("[green]pass[/green]" if verdict else "[red]FAIL[/red]")
        table.add_row(name, f"{value:g}", f"{op} {goal:g}" if goal is not None else "", mark)
    mirror = report.details.get("mirror")
    if mirror:
        table.caption = (
            f"mirror: {mirror['percent']}% of {mirror['rate']:g} req/s to a shadow in {mirror['pairs']} "
            f"rounds against as many without; {mirror['mirrored']:,} copies sent, "
            f"{mirror['dropped']:,} dropped, {mirror['compared']:,} compared"
        )
    return table


def pod_table(
    rows: list[PodRow], *, title: str | None = None, name_header: str = "name", age: bool = True
) -> Table:
    """Pod の表（`mii status` とロールアウトの表示）。"""
    table = Table(title=title, title_justify="left", box=None, pad_edge=False)
    columns = [name_header, "ready", "state", "restarts", "node", "model", *(["age"] if age else [])]
    for column in columns:
        table.add_column(column)
    for row in rows:
        model = short_sha(row.model_sha256) + (" (canary)" if row.canary else "")
        cells = [row.name, _yes_no(row.ready), row.state, str(row.restarts), str(row.node or "-"), model]
        table.add_row(*cells, *([row.age] if age else []))
    return table


def short_sha(sha256: str | None) -> str:
    """モデルの sha256 の先頭 12 桁（記録が無ければ -）。"""
    return sha256[:12] if sha256 else "-"


def _hpa_line(hpa: HpaState) -> str:
    """HPA の 1 行（計測の前は目標のレプリカ数が 0 のままなので、「0 へ減らす」と読めないようにする。
    作られた直後でコントローラがまだ何も書いていない値は - と出す）。"""
    if hpa.cpu_current is None:
        replicas, cpu = _or_dash(hpa.current_replicas), "<unknown> (no metrics yet)"
    else:
        replicas = f"{_or_dash(hpa.current_replicas)} → {_or_dash(hpa.desired_replicas)}"
        cpu = f"{hpa.cpu_current}%"
    return (
        f"[bold]HPA[/bold] {hpa.name}: replicas {replicas} "
        f"(min {_or_dash(hpa.min)}, max {hpa.max}), cpu {escape(cpu)} / "
        f"{'-' if hpa.cpu_target is None else f'{hpa.cpu_target}%'}"
    )


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def _policy_line(policy: NetworkPolicyState) -> str:
    """NetworkPolicy の 1 行（選ぶ Pod、許す入りと出）。"""
    pods = policy.pod_selector or "all pods"
    rest = f"{policy.name}: pods {pods}, ingress {policy.ingress}, egress {policy.egress}"
    return f"[bold]NetworkPolicy[/bold] {escape(rest)}"


# NetworkPolicy は API サーバーが受け付けても、ネットワークプラグインが実施しなければ何も止めない
POLICY_ENFORCEMENT_NOTE = (
    "  [dim]enforced only if the cluster's network plugin supports NetworkPolicy "
    "(e.g. minikube start --cni=calico)[/dim]"
)


def _deployment_lines(what: str, deployment: DeploymentState) -> list[RenderableType]:
    """Deployment の行: Ready の数、イメージ（リポジトリ・タグ・ダイジェスト）、モデル、版。"""
    colour = "green" if deployment.ready >= (deployment.desired or 0) else "yellow"
    revision = f", revision {deployment.revision}" if deployment.revision is not None else ""
    return [
        Text.from_markup(
            f"[bold]{what}[/bold] {deployment.name}: [{colour}]ready {deployment.ready}/"
            f"{deployment.desired}[/{colour}], updated {deployment.updated}{revision}, "
            f"image {escape(deployment.repository)}"
        ),
        # 参照を分けて: タグ（読みやすさのため）と、Kubernetes が取るダイジェスト（--registry の push）
        Text(f"  tag {deployment.tag or 'none'}"),
        Text(f"  digest {deployment.digest or 'none (by tag)'}"),
        Text(f"  model {deployment.model_file or '?'} sha256 {deployment.model_sha256 or 'not recorded'}"),
    ]


def status_view(status: ClusterStatus) -> Group:
    """`mii status` の画面: Namespace・Deployment・Pod の表・Service・HPA・NetworkPolicy。"""
    parts: list[RenderableType] = [Text.from_markup(f"[bold]Namespace[/bold] {status.namespace}")]
    if status.deployment:
        parts.extend(_deployment_lines("Deployment", status.deployment))
    else:
        parts.append(Text.from_markup("[bold]Deployment[/bold] [red]missing[/red]"))
    if status.canary:
        parts.extend(_deployment_lines("Canary", status.canary))
    if status.shadow:
        parts.extend(_deployment_lines("Shadow", status.shadow))
    parts.append(pod_table(status.pods, title="Pods"))
    service = status.service
    if service:
        ports = ", ".join(service.ports)
        line = f"[bold]Service[/bold] {service.name}: {service.type} {service.cluster_ip} {ports}"
    else:
        line = "[bold]Service[/bold] [red]missing[/red]"
    parts.append(Text.from_markup(line))
    hpa = status.hpa
    parts.append(Text.from_markup(_hpa_line(hpa) if hpa else "[bold]HPA[/bold] [red]missing[/red]"))
    if status.network_policies:
        parts.extend(Text.from_markup(_policy_line(policy)) for policy in status.network_policies)
        parts.append(Text.from_markup(POLICY_ENFORCEMENT_NOTE))
    else:
        parts.append(Text.from_markup("[bold]NetworkPolicy[/bold] [red]missing[/red]"))
    return Group(*parts)


def pods_check_table(result: PodsCheck) -> Table:
    """新しい Pod の確かめの表（Pod ごとに 1 行）。"""
    table = Table(box=None, pad_edge=False)
    for column in ("new pod", "result", "detail"):
        table.add_column(column)
    for check in result.pods:
        table.add_row(check.pod, PASS if check.ok else FAIL, escape(check.detail))
    return table


def _difference(value: float | None, detail: str) -> str:
    if value is None:
        return detail or "-"
    return f"{value:.6g}"


def verdict_table(verdict: Verdict) -> Table:
    """canary と安定版の比較の表。"""
    table = Table(title="Canary vs stable", title_justify="left", box=None, pad_edge=False)
    table.add_column("")
    table.add_column("")
    table.add_row(
        "models", f"stable {short_sha(verdict.stable_model)} / canary {short_sha(verdict.canary_model)}"
    )
    table.add_row("rows compared", str(verdict.rows))
    changes = "n/a (regressor)" if verdict.label_changes is None else str(verdict.label_changes)
    table.add_row("label changes", changes)
    for row in verdict.changed_rows:
        table.add_row("", f"[dim]{escape(str(row))}[/dim]")
    for difference in verdict.differences:
        table.add_row(
            f"largest difference: {difference.output}",
            escape(_difference(difference.largest, difference.detail)),
        )
    table.add_row("same inputs", _yes_no(verdict.same_inputs))
    same = "n/a (regressors)" if verdict.same_classes is None else _yes_no(verdict.same_classes)
    table.add_row("same classes", same)
    return table


def _traffic_cells(side: Side) -> list[str]:
    traffic = side.traffic
    rate = "-" if traffic.error_rate is None else f"{traffic.error_rate:.2%}"
    p50 = "-" if traffic.p50_ms is None else f"{traffic.p50_ms:.2f} ms"
    p99 = "-" if traffic.p99_ms is None else f"{traffic.p99_ms:.2f} ms"
    return [escape(side.deployment), str(len(side.pods)), str(traffic.requests), rate, p50, p99]


def traffic_table(verdict: CanaryVerdict | ShadowVerdict) -> Table:
    """`mii verdict`: 両方の側の推論のリクエスト（Pod が起きてからの累積）。"""
    table = Table(
        title="Live traffic (since the pods started)", title_justify="left", box=None, pad_edge=False
    )
    shadow = isinstance(verdict, ShadowVerdict)
    # 影の側の数字には、写した側が数えた答えの無い写しも入る（workflows/verdict.py）
    errors = "errors (5xx, no answer)" if shadow else "errors (5xx)"
    for header in ("deployment", "pods", "requests", errors, "p50", "p99"):
        table.add_column(header, justify="left" if header == "deployment" else "right")
    other = verdict.shadow if isinstance(verdict, ShadowVerdict) else verdict.canary
    for side in (verdict.stable, other):
        table.add_row(*_traffic_cells(side))
    return table


def mirror_table(mirror: MirrorNumbers) -> Table:
    """`mii verdict`（影）: 安定版の Pod が写した生のリクエストと影の答え（写し先が決まってからの累積）。"""
    table = Table(
        title="Mirrored live requests (as the stable pods saw them)",
        title_justify="left",
        box=None,
        pad_edge=False,
    )
    table.add_column("")
    table.add_column("", justify="right")
    percent = "-" if mirror.percent is None else f"{mirror.percent:g}%"
    errors = ", ".join(f"{status}: {count}" for status, count in mirror.errors_by_status.items()) or "none"
    rate = "-" if mirror.error_rate is None else f"{mirror.error_rate:.2%}"
    rows = (
        ("mirroring", percent),
        ("mirrored", str(mirror.mirrored)),
        ("dropped (queue full)", str(mirror.dropped)),
        ("compared", f"{mirror.compared} requests, {mirror.rows} rows"),
        ("agreed", str(mirror.agreed)),
        ("label changes (rows)", str(mirror.label_changes)),
        ("largest output difference", f"{mirror.largest_difference:.3g}"),
        ("other shape (not compared)", str(mirror.incomparable)),
        ("shadow errors", f"{mirror.errors} ({rate}): {errors}"),
        ("shadow round trip p50 / p99", f"{_ms(mirror.p50_ms)} / {_ms(mirror.p99_ms)} ms"),
    )
    for name, value in rows:
        table.add_row(name, escape(value))
    return table


def judgement_table(judgement: Judgement) -> Table:
    """`mii verdict --judge`: 閾値ごとの限度と、超えたもの（件数が足りなければその理由）。"""
    t = judgement.thresholds
    table = Table(title="Judged against", title_justify="left", box=None, pad_edge=False)
    table.add_column("threshold")
    table.add_column("limit", justify="right")
    table.add_column("result")
    breached = {finding.threshold: finding.message for finding in judgement.findings}
    limits = (
        ("max-error-rate", f"{t.max_error_rate:.2%}"),
        ("max-latency-ratio", f"{t.max_latency_ratio:g}x (p50, p99; {t.latency_floor_ms:g} ms floor)"),
        ("max-label-changes", str(t.max_label_changes)),
    )
    for name, limit in limits:
        if judgement.undecided is not None:
            result = "[yellow]not judged[/yellow]"
        elif name in breached:
            result = f"[bold red]BREACHED[/bold red] {escape(breached[name])}"
        else:
            result = "[green]within[/green]"
        table.add_row(name, limit, result)
    if judgement.undecided is not None:
        table.add_row("min-requests", str(t.min_requests), f"[yellow]{escape(judgement.undecided)}[/yellow]")
    return table


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def analysis_table(analysis: Analysis) -> Table:
    """`mii deploy --analysis`: 段ごとの両方の側の数字と結果。"""
    table = Table(
        title=f"Analysis ({analysis.interval:g}s per step): {analysis.outcome}",
        title_justify="left",
        box=None,
        pad_edge=False,
    )
    for header in ("step", "pods c/s", "requests c/s", "5xx canary", "p50 c/s ms", "p99 c/s ms", "result"):
        table.add_column(header, justify="left" if header in ("step", "result") else "right")
    for step in analysis.steps:
        c, s = step.canary, step.stable
        if step.undecided is not None:
            result = f"[yellow]{escape(step.undecided)}[/yellow]"
        elif step.findings:
            result = "[bold red]" + escape("; ".join(f.message for f in step.findings)) + "[/bold red]"
        else:
            result = "[green]within[/green]"
        table.add_row(
            str(step.step),
            f"{step.canary_pods}/{step.stable_pods}",
            f"{c.requests}/{s.requests}",
            "-" if c.error_rate is None else f"{c.error_rate:.2%}",
            f"{_ms(c.p50_ms)}/{_ms(s.p50_ms)}",
            f"{_ms(c.p99_ms)}/{_ms(s.p99_ms)}",
            result,
        )
    return table


def analyses_table(records: list[dict[str, Any]]) -> Table:
    """`mii history`: 残した分析（新しい順）: いつ、どのイメージ、何段、結末と理由。"""
    table = Table(title="[bold]analyses[/bold]", title_justify="left", box=None)
    for header in ("finished", "image", "steps", "outcome"):
        table.add_column(header, overflow="fold" if header in ("image", "outcome") else "ellipsis")
    for record in records:
        outcome = str(record.get("outcome", ""))
        reason = record.get("reason")
        style = "green" if outcome == "promoted" else "red"
        table.add_row(
            _minute(str(record.get("finished", ""))),
            escape(_short_digest(str(record.get("image", "")))),
            str(len(record.get("steps") or [])),
            f"[{style}]{escape(outcome)}[/{style}]" + (f": {escape(str(reason))}" if reason else ""),
        )
    return table


def verdict_view(verdict: CanaryVerdict | ShadowVerdict) -> RenderableType:
    """`mii verdict` の表示: 生の通信の表と、答えの表（canary は同じ行での比べ、影は写した生の要求での比べ）。

    読めなかった Pod があれば添え、閾値で判定したときは、その表も続ける。
    """
    if isinstance(verdict, ShadowVerdict):
        answers, other = mirror_table(verdict.mirror), verdict.shadow
    else:
        answers, other = verdict_table(verdict.answers), verdict.canary
    parts: list[RenderableType] = [traffic_table(verdict), Text(""), answers]
    for side in (verdict.stable, other):
        for problem in side.unread:
            parts.append(Text(f"not read: {problem}", style="yellow"))
    if verdict.judgement is not None:
        parts.extend([Text(""), judgement_table(verdict.judgement)])
    return Group(*parts)


def history_table(history: History) -> RenderableType:
    """`mii history`: Deployment ごとに 1 つの表で、版ごとのイメージとモデル（いま答えている版に印）。
    80 桁の端末でも読めるよう、短い列は折り返さず、イメージの参照だけを折り返す（ダイジェストは先頭 12 桁。
    全部は --json に）。"""
    tables = []
    for revisions in (history.stable, history.canary):
        if not revisions:
            continue
        table = Table(title=f"[bold]{escape(revisions[0].deployment)}[/bold]", title_justify="left", box=None)
        table.add_column("rev", justify="right", no_wrap=True)
        table.add_column("image", overflow="fold")
        table.add_column("model", no_wrap=True, max_width=16, overflow="ellipsis")
        table.add_column("sha256", no_wrap=True)
        table.add_column("created", no_wrap=True)
        table.add_column("serving", no_wrap=True)
        for revision in revisions:
            table.add_row(
                str(revision.number),
                escape(_short_digest(revision.image)),
                escape(revision.model_file or "-"),
                short_sha(revision.model_sha256),
                _minute(revision.created),
                "[green]yes[/green]" if revision.current and revision.replicas else "",
            )
        tables.append(table)
    if history.analyses:
        tables.append(analyses_table(history.analyses))
    return Group(*tables)


def _short_digest(image: str) -> str:
    """`repo:tag@sha256:<64 桁>` のダイジェストを先頭 12 桁にする（どの版かを見分けるには足りる）。"""
    name, at, digest = image.partition("@sha256:")
    return f"{name}@sha256:{digest[:12]}" if at else image


def _minute(timestamp: str) -> str:
    """Kubernetes の時刻（2026-12-05T11:50:03Z）を分まで（2026-12-05 11:50、UTC）。"""
    if len(timestamp) >= 16 and timestamp[10] == "T":
        return f"{timestamp[:10]} {timestamp[11:16]}"
    return timestamp


def doctor_table(report: DoctorReport) -> Table:
    """`mii doctor` の表: 点検ごとの合否と詳細、通らなかった点検には対処。"""
    table = Table(title="mii doctor", title_justify="left")
    table.add_column("Check", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    table.add_column("Detail", overflow="fold")
    for check in report.checks:
        if check.ok:
            status = "[green]ok[/green]"
        else:
            status = "[bold red]FAIL[/bold red]" if check.required else "[yellow]warn[/yellow]"
        detail = escape(check.detail)
        if not check.ok and check.hint:
            detail += f"\n[dim]Hint:[/dim] {escape(check.hint)}"
        table.add_row(check.name, status, detail)
    return table
