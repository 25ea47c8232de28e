"""`mii doctor`: 何かが動かないときに最初に走らせる点検（表と、通らなかった点検の対処）。"""

from __future__ import annotations

import typer

from mii_cli.commands.options import ContextOption, JsonOption
from mii_cli.errors import CheckFailed
from mii_cli.ui import console as out


def doctor(context: ContextOption = None, as_json: JsonOption = False) -> None:
    """Check what mii needs: Docker, the base image, the cluster, the metrics API, wrk, port 8000.

    Exits non-zero when a check the image commands need fails (Docker engine, base image, build
    network); the others are advice for the commands that use them.
    """
    from mii_cli.settings import get_cli_settings
    from mii_cli.ui.tables import doctor_table
    from mii_cli.workflows.doctor import Probe, diagnose

    settings = get_cli_settings()
    probe = Probe(
        base_image=settings.base_image,
        build_network=settings.build_network,
        registry=settings.registry,
        context=context,
    )
    with out.console.status("Checking Docker, the base image and the cluster..."):
        report = diagnose(probe)
    if as_json:
        out.print_json(report)
    else:
        out.console.print(doctor_table(report))
    if not report.passed:
        names = ", ".join(check.name for check in report.problems)
        raise CheckFailed(
            f"{len(report.problems)} required check(s) failed: {names}",
            hint="follow the hint of each failed check",
        )
    warnings = sum(not check.ok for check in report.checks)
    out.success("mii is ready" + (f" ({warnings} advisory check(s) failed)" if warnings else ""))


def register(app: typer.Typer) -> None:
    """コマンドを登録する。"""
    app.command()(doctor)
