"""`mii teardown` / `mii down`: mii の Namespace を消して、消えるまで待つ（--local は mii stop）。"""

from __future__ import annotations

from typing import Annotated

import typer

from mii_cli.commands.options import ContextOption, JsonOption, NamespaceOption, NamespaceTimeoutOption
from mii_cli.commands.run import stop
from mii_cli.kube import NAMESPACE
from mii_cli.ui import console as out


def teardown(
    namespace: NamespaceOption = NAMESPACE,
    context: ContextOption = None,
    timeout: NamespaceTimeoutOption = 180.0,
    local: Annotated[
        bool, typer.Option("--local", help="Stop the `mii run` container instead (= mii stop).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete the namespace (and everything in it) and wait until it is gone."""
    from mii_cli.kube.cluster import connect
    from mii_cli.kube.teardown import teardown as delete_namespace
    from mii_cli.ui.live import TeardownView

    if local:
        stop()
        return
    client, _ = connect(context)
    with TeardownView() as view:
        result = delete_namespace(client, namespace, timeout=timeout, on_event=view)
    if as_json:
        out.print_json(result)
    elif result.deleted:
        out.success(f"namespace {namespace} deleted ({result.seconds}s)")
    else:
        out.info(f"namespace {namespace} does not exist: nothing to delete")


def register(app: typer.Typer) -> None:
    """コマンドを登録する（`down` は `teardown` と同じ関数: オプションもすべて同じ）。"""
    app.command()(teardown)
    app.command(
        "down", help="Same as teardown: delete the namespace and wait until it is gone (--local: mii stop)."
    )(teardown)
