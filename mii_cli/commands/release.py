"""`mii promote` / `mii rollback` / `mii history`: 新しいモデルを出した後の決め手と、版の履歴。"""

from __future__ import annotations

from typing import Annotated

import typer

from mii_cli.commands.options import (
    CompareRowsOption,
    ContextOption,
    JsonOption,
    JudgeOption,
    MaxErrorRateOption,
    MaxLabelChangesOption,
    MaxLatencyRatioOption,
    MinRequestsOption,
    NamespaceOption,
    RolloutTimeoutOption,
    thresholds_from,
)
from mii_cli.kube import NAMESPACE
from mii_cli.ui import console as out


def promote(
    namespace: NamespaceOption = NAMESPACE,
    timeout: RolloutTimeoutOption = 300.0,
    context: ContextOption = None,
    as_json: JsonOption = False,
) -> None:
    """Roll the stable pods to the canary's image (checked, undone on failure), then remove the canary."""
    from mii_cli.kube.cluster import connect
    from mii_cli.ui.live import DeployView
    from mii_cli.workflows.release import promote as promoting

    client, _ = connect(context)
    with DeployView() as view:
        result = promoting(client, namespace, timeout=timeout, report=view)
    if as_json:
        out.print_json(result)
        return
    sha = (result.model_sha256 or "not recorded")[:12]
    shadow = " and the shadow are" if result.shadow_removed else " is"
    out.success(
        f"promoted {result.image} (model {sha}) to revision {result.revision}; the canary{shadow} gone"
    )


def rollback(
    namespace: NamespaceOption = NAMESPACE,
    to_revision: Annotated[
        int | None,
        typer.Option(
            "--to-revision", help="Revision to go back to (default: the one before; see mii history).", min=1
        ),
    ] = None,
    timeout: RolloutTimeoutOption = 300.0,
    context: ContextOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove the canary and the shadow; with neither, roll the stable Deployment back one revision."""
    from mii_cli.kube.cluster import connect
    from mii_cli.ui.live import DeployView
    from mii_cli.workflows.release import roll_back

    client, _ = connect(context)
    with DeployView() as view:
        result = roll_back(client, namespace, to_revision=to_revision, timeout=timeout, report=view)
    if as_json:
        out.print_json(result)
    elif result.canary_removed or result.shadow_removed:
        removed = " and ".join(
            name
            for name, gone in (("canary", result.canary_removed), ("shadow", result.shadow_removed))
            if gone
        )
        out.success(f"rollback: removed the {removed}; the stable pods serve alone")
    elif result.revision is not None:
        out.success(
            f"rollback: the stable pods run revision {result.revision.number} ({result.revision.image})"
        )


def history(
    namespace: NamespaceOption = NAMESPACE,
    context: ContextOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the revisions of the Deployment (and the canary): image, model, sha256, which one serves.

    Below them, the analyses that `mii deploy --analysis` kept (newest first): steps, outcome, reason.
    """
    from mii_cli.kube.cluster import connect
    from mii_cli.ui.tables import history_table
    from mii_cli.workflows.release import history as reading

    client, _ = connect(context)
    result = reading(client, namespace)
    if as_json:
        out.print_json(result)
    elif not result.stable and not result.canary:
        out.info(f"no revisions in namespace {namespace}: nothing is deployed")
    else:
        out.console.print(history_table(result))


def verdict(
    namespace: NamespaceOption = NAMESPACE,
    compare_rows_file: CompareRowsOption = None,
    judge: JudgeOption = False,
    max_error_rate: MaxErrorRateOption = None,
    max_latency_ratio: MaxLatencyRatioOption = None,
    max_label_changes: MaxLabelChangesOption = None,
    min_requests: MinRequestsOption = None,
    context: ContextOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the canary (or the shadow) beside the stable pods: requests, 5xx rate, p50/p99, answers.

    For a canary the answers are compared on the same rows; for a shadow they are the stable pods' mirrored
    live requests: mirrored, dropped, compared, label changes, the largest output difference, the shadow's
    errors and round trip. With --judge (or any --max-* option) the numbers are judged against the
    thresholds, and the exit code says the outcome, so that a script can promote or roll back on it.
    """
    from mii_cli.commands.deploy import compare_rows
    from mii_cli.kube.cluster import connect
    from mii_cli.ui.tables import verdict_view
    from mii_cli.workflows.verdict import ShadowVerdict, judgement_error
    from mii_cli.workflows.verdict import verdict as reading

    thresholds = thresholds_from(judge, max_error_rate, max_latency_ratio, max_label_changes, min_requests)
    client, _ = connect(context)
    with out.console.status("Reading both sides' metrics and comparing their answers..."):
        result = reading(client, namespace, compare_rows(compare_rows_file), thresholds)
    failure = judgement_error(result)
    if as_json:
        out.print_json(result)
    else:
        out.console.print(verdict_view(result))
    if failure is not None:
        raise failure
    if as_json:
        return
    if isinstance(result, ShadowVerdict):
        out.info(
            "next: `mii deploy --analysis --image <the shadow's image>` tries it on users, "
            "`mii rollback` removes the shadow"
        )
    else:
        out.info("next: `mii promote` rolls the stable pods to the canary's image, `mii rollback` removes it")


def register(app: typer.Typer) -> None:
    """コマンドを登録する。"""
    app.command()(promote)
    app.command()(rollback)
    app.command()(history)
    app.command()(verdict)
