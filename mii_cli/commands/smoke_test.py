"""`mii smoke-test`: 動いているサービス（--url、またはクラスタ）の全エンドポイントを確かめる。"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mii_cli.commands.options import ContextOption, JsonOption, NamespaceOption
from mii_cli.errors import CheckFailed
from mii_cli.kube import NAMESPACE
from mii_cli.ui import console as out

if TYPE_CHECKING:
    from mii_cli.probe.smoke_test import SmokeReport


def judge_smoke(report: SmokeReport, *, show_table: bool, unreachable_hint: str, what: str = "smoke") -> None:
    """スモークテストの表を出し、届かない・失敗があれば CheckFailed にする（smoke-test・up の共通）。"""
    from mii_cli.ui.tables import smoke_table

    if report.unreachable is not None:
        raise CheckFailed(report.unreachable, hint=unreachable_hint)
    if show_table:
        out.console.print(smoke_table(report))
    if not report.passed:
        names = ", ".join(check.name for check in report.failed)
        raise CheckFailed(
            f"{len(report.failed)} of {len(report.checks)} {what} checks failed: {names}",
            hint="see the detail column (or --json) for what each check expected",
        )


def smoke_test(
    url: Annotated[
        str | None, typer.Option(help="Base URL of a running service, e.g. http://127.0.0.1:8000.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each answer.", min=0.1)] = 5.0,
    namespace: NamespaceOption = NAMESPACE,
    context: ContextOption = None,
    model: Annotated[
        Path | None,
        typer.Option(help="Local copy of the served model, to compare answers with (default: models/)."),
    ] = None,
    labels: Annotated[Path | None, typer.Option(help="Labels for --model (default: none).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Check every endpoint of a running service (simple API and V2): answers, a batch and bad requests.

    Without --url, reach the Service in the cluster through a port-forward and prove load balancing
    with a short in-cluster Job.
    """
    import functools

    from mii_cli.paths import model_and_labels
    from mii_cli.probe import smoke_test as smoke

    # 手元のモデルと答えを比べる（既定は同梱の models/。--model を足せばそれとも）
    models = None if model is None else [model_and_labels(model, labels), model_and_labels(None, None)]
    check = functools.partial(smoke.run_smoke_test, models=models)
    if url is None:
        # --url が無ければクラスタ上のサービスをポートフォワード越しに確かめる
        from mii_cli.kube.cluster import connect
        from mii_cli.probe.cluster import cluster_smoke_test

        client, _ = connect(context)
        with out.console.status(f"Smoke-testing the Service in namespace {namespace}..."):
            report = cluster_smoke_test(timeout=timeout, namespace=namespace, client=client, smoke=check)
        unreachable_hint = "check the pods with `mii status`, or deploy with `mii deploy`"
        target = f"the Service in namespace {namespace} (port-forward and in-cluster)"
    else:
        report = check(url, timeout=timeout)
        unreachable_hint = "start the service with `mii serve` (or `mii run`) or check --url"
        target = report.base_url
    if as_json:
        out.print_json(report)
    judge_smoke(report, show_table=not as_json, unreachable_hint=unreachable_hint)
    out.success(f"all {len(report.checks)} smoke checks passed against {target}")


def register(app: typer.Typer) -> None:
    """コマンドを登録する。"""
    app.command("smoke-test")(smoke_test)
