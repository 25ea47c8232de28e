"""`mii status`: Deployment・Pod・Service・HPA・NetworkPolicy を 1 画面に。"""

from __future__ import annotations

import typer

from mii_cli.commands.options import ContextOption, JsonOption, NamespaceOption
from mii_cli.kube import NAMESPACE
from mii_cli.ui import console as out


def status(
    namespace: NamespaceOption = NAMESPACE,
    context: ContextOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the Deployment, pods, Service, HPA and NetworkPolicies in one view."""
    from mii_cli.kube.cluster import connect
    from mii_cli.kube.status import collect_status
    from mii_cli.ui.tables import status_view

    client, _ = connect(context)
    result = collect_status(client, namespace)
    if as_json:
        out.print_json(result)
    else:
        out.console.print(status_view(result))


def register(app: typer.Typer) -> None:
    """コマンドを登録する。"""
    app.command()(status)
