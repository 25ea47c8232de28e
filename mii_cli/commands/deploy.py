"""`mii deploy` / `mii up`: Kubernetes へデプロイする（up はビルドとクラスタのスモークテストも）。"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mii_cli.commands.options import (
    CanaryOption,
    CanaryReplicasOption,
    CompareRowsOption,
    ContextOption,
    CpuOption,
    JsonOption,
    MemoryOption,
    NamespaceOption,
    NoRollbackOption,
    RegistryOption,
    ReplicasOption,
    RolloutTimeoutOption,
)
from mii_cli.kube import NAMESPACE
from mii_cli.ui import console as out

if TYPE_CHECKING:
    from mii_cli.workflows.deploy import DeployResult


def print_deployed(result: DeployResult) -> None:
    """デプロイの結果を人向けに出す（canary なら比較の表と、次の一手）。"""
    from mii_cli.ui.tables import verdict_table

    revision = f" (revision {result.revision})" if result.revision is not None else ""
    out.success(f"deployed {result.image} to {result.deployment} in namespace {result.namespace}{revision}")
    if result.verdict is not None:
        out.console.print(verdict_table(result.verdict))
        out.info("next: `mii promote` rolls the stable pods to the canary's image, `mii rollback` removes it")
        return
    out.info(
        "next: `mii smoke-test`, `mii status`, or port-forward: "
        f"kubectl -n {result.namespace} port-forward svc/model-in-image 8000:8000"
    )


def compare_rows(path: Path | None) -> list[list[float]] | None:
    """`--compare-rows` のファイルの行（無ければ None）。"""
    if path is None:
        return None
    from mii_cli.probe.compare import read_rows

    return read_rows(path)


def deploy(
    namespace: NamespaceOption = NAMESPACE,
    image: Annotated[
        str | None, typer.Option(help="Image reference (default: the newest local model-in-image build).")
    ] = None,
    registry: RegistryOption = None,
    replicas: ReplicasOption = None,
    cpu: CpuOption = None,
    memory: MemoryOption = None,
    timeout: RolloutTimeoutOption = 300.0,
    context: ContextOption = None,
    load: Annotated[
        bool, typer.Option("--load/--no-load", help="Load the local image into minikube/kind first.")
    ] = True,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the objects that would be applied; needs no cluster.")
    ] = False,
    canary: CanaryOption = False,
    canary_replicas: CanaryReplicasOption = 1,
    compare_rows_file: CompareRowsOption = None,
    no_rollback: NoRollbackOption = False,
    as_json: JsonOption = False,
) -> None:
    """Deploy to Kubernetes: carry the image, apply, wait for the rollout, check the new pods.

    If the rollout does not finish in time or a new pod fails the check, the Deployment is rolled
    back to the revision that ran before (the canary is removed) and the command fails.
    """
    from mii_cli.commands.requests import sizing
    from mii_cli.settings import fill, get_cli_settings
    from mii_cli.ui.live import DeployView
    from mii_cli.workflows import deploy as deploying

    chosen = sizing(replicas=replicas, cpu=cpu, memory=memory)
    if dry_run:
        from mii_cli.kube.render import to_yaml

        plan = deploying.dry_run_objects(namespace, image, get_cli_settings().image_repository, chosen)
        if plan.note:
            out.info(plan.note)
        if as_json:
            out.print_json(plan.objects)
        else:
            typer.echo(to_yaml(plan.objects), nl=False)
        return
    with DeployView() as view:
        result = deploying.deploy(
            namespace=namespace,
            image=image,
            repository=get_cli_settings().image_repository,
            registry=fill(registry, get_cli_settings().registry),
            timeout=timeout,
            context=context,
            load=load,
            sizing=chosen,
            on_event=view,
            rollback_on_failure=not no_rollback,
            canary=canary,
            canary_replicas=canary_replicas,
            compare_rows=compare_rows(compare_rows_file),
        )
    if as_json:
        out.print_json(result)
    else:
        print_deployed(result)


def up(
    namespace: NamespaceOption = NAMESPACE,
    image: Annotated[str | None, typer.Option(help="Deploy this image instead of building one.")] = None,
    registry: RegistryOption = None,
    replicas: ReplicasOption = None,
    cpu: CpuOption = None,
    memory: MemoryOption = None,
    timeout: RolloutTimeoutOption = 300.0,
    context: ContextOption = None,
    canary: CanaryOption = False,
    canary_replicas: CanaryReplicasOption = 1,
    compare_rows_file: CompareRowsOption = None,
    no_rollback: NoRollbackOption = False,
    as_json: JsonOption = False,
) -> None:
    """Build the image, deploy it (gated, rolled back on failure) and smoke-test it in the cluster."""
    from mii_cli.commands.build import build_with_progress
    from mii_cli.commands.requests import build_request, sizing
    from mii_cli.commands.smoke_test import judge_smoke
    from mii_cli.kube.cluster import connect
    from mii_cli.kube.nodes import check_pod_fits
    from mii_cli.kube.render import pod_requests
    from mii_cli.settings import fill, get_cli_settings
    from mii_cli.ui.live import DeployView
    from mii_cli.workflows import up as workflow

    chosen = sizing(replicas=replicas, cpu=cpu, memory=memory)
    client, info = connect(context)
    # ビルドの前に: Pod がどのノードにも入らない大きさなら、何も作らずに止める
    check_pod_fits(client, *pod_requests(chosen))
    if image is None:
        image = build_with_progress(build_request()).unique_tag
        out.success(f"built {image}")
    with DeployView() as view:

        def deployed(result: DeployResult) -> None:
            view.clear()
            print_deployed(result)

        result = workflow.up(
            namespace=namespace,
            image=image,
            registry=fill(registry, get_cli_settings().registry),
            timeout=timeout,
            sizing=chosen,
            client=client,
            info=info,
            on_event=view,
            on_deployed=deployed,
            rollback_on_failure=not no_rollback,
            canary=canary,
            canary_replicas=canary_replicas,
            compare_rows=compare_rows(compare_rows_file),
        )
    report = result.smoke_test
    assert report is not None
    if as_json:
        out.print_json(result)
    judge_smoke(
        report,
        show_table=not as_json,
        unreachable_hint="check the pods with `mii status`",
        what="cluster smoke",
    )
    out.success(f"up: {len(report.checks)} checks passed, served by {len(report.served_by)} pods")


def register(app: typer.Typer) -> None:
    """コマンドを登録する。"""
    app.command()(deploy)
    app.command()(up)
