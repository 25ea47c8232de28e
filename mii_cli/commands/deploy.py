"""`mii deploy` / `mii up`: Kubernetes へデプロイする（up はビルドとクラスタのスモークテストも）。"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mii_cli.commands.options import (
    AnalysisOption,
    CanaryOption,
    CanaryReplicasOption,
    CompareRowsOption,
    ContextOption,
    CpuOption,
    IntervalOption,
    JsonOption,
    MaxErrorRateOption,
    MaxLabelChangesOption,
    MaxLatencyRatioOption,
    MemoryOption,
    MinRequestsOption,
    MirrorPercentOption,
    NamespaceOption,
    NoRollbackOption,
    RegistryOption,
    ReplicasOption,
    RolloutTimeoutOption,
    ShadowOption,
    thresholds_from,
)
from mii_cli.errors import ConfigError
from mii_cli.kube import APP_NAME, DEFAULT_MIRROR_PERCENT, NAMESPACE
from mii_cli.ui import console as out

if TYPE_CHECKING:
    from mii_cli.workflows.deploy import DeployRequest, DeployResult


def print_deployed(result: DeployResult) -> None:
    """デプロイの結果を人向けに出す（canary なら比較の表と、次の一手）。"""
    from mii_cli.ui.tables import verdict_table

    if result.analysis is not None and result.analysis.promotion is not None:
        from mii_cli.ui.tables import analysis_table

        promotion = result.analysis.promotion
        out.console.print(analysis_table(result.analysis))
        out.success(
            f"promoted {result.image} after {len(result.analysis.steps)} analysis steps: "
            f"deployment/{APP_NAME} in namespace {result.namespace} runs it (revision {promotion.revision}); "
            "the canary is removed"
        )
        return
    revision = f" (revision {result.revision})" if result.revision is not None else ""
    out.success(f"deployed {result.image} to {result.deployment} in namespace {result.namespace}{revision}")
    if result.mirroring is not None:
        out.info(
            f"the stable pods copy {result.mirroring.percent:g}% of their predict requests to the shadow; "
            "next: `mii verdict` shows how its answers compare, `mii rollback` removes it"
        )
        return
    if result.verdict is not None:
        out.console.print(verdict_table(result.verdict))
        out.info("next: `mii promote` rolls the stable pods to the canary's image, `mii rollback` removes it")
        return
    out.info(
        "next: `mii smoke-test`, `mii status`, or port-forward: "
        f"kubectl -n {result.namespace} port-forward svc/model-in-image 8000:8000"
    )


@contextmanager
def analysis_json(as_json: bool) -> Iterator[None]:
    """分析が canary を取り消したとき、`--json` ならその記録（段ごとの数字）を出してから失敗する。"""
    from mii_cli.workflows.analysis import AnalysisFailed

    try:
        yield
    except AnalysisFailed as failure:
        if as_json:
            # 成功のときと同じく `analysis` の下に記録を、並べて失敗（CLI の境界が 1 行でも出す）
            out.print_json(
                {
                    "analysis": failure.analysis,
                    "error": {"message": failure.message, "exit_code": failure.exit_code},
                }
            )
        raise


def compare_rows(path: Path | None) -> list[list[float]] | None:
    """`--compare-rows` のファイルの行（無ければ None）。"""
    if path is None:
        return None
    from mii_cli.probe.compare import read_rows

    return read_rows(path)


# --- deploy と up が共有するオプション（ここだけで定義する） ------------------------------------------


@dataclass(frozen=True)
class DeployOptions:
    """`mii deploy` と `mii up` の共通のオプションの値。"""

    namespace: str
    registry: str | None
    replicas: int | None
    cpu: str | None
    memory: str | None
    timeout: float
    context: str | None
    canary: bool
    canary_replicas: int
    compare_rows_file: Path | None
    no_rollback: bool
    analysis: bool
    shadow: bool
    mirror_percent: float
    interval: float
    max_error_rate: float | None
    max_latency_ratio: float | None
    max_label_changes: int | None
    min_requests: int | None
    as_json: bool

    def request(self, image: str | None, *, load: bool = True) -> DeployRequest:
        """ワークフローへの要求にする（設定 MII_* で埋め、行のファイルを読む）。"""
        from mii_cli.commands.requests import sizing
        from mii_cli.settings import fill, get_cli_settings
        from mii_cli.workflows.deploy import AnalysisSettings, DeployRequest

        thresholds = thresholds_from(
            self.analysis,
            self.max_error_rate,
            self.max_latency_ratio,
            self.max_label_changes,
            self.min_requests,
        )
        if thresholds is not None and not self.analysis:
            raise ConfigError(
                "the --max-* and --min-requests thresholds judge an analysis", hint="add --analysis"
            )

        return DeployRequest(
            namespace=self.namespace,
            image=image,
            repository=get_cli_settings().image_repository,
            registry=fill(self.registry, get_cli_settings().registry),
            timeout=self.timeout,
            context=self.context,
            load=load,
            sizing=sizing(replicas=self.replicas, cpu=self.cpu, memory=self.memory),
            rollback_on_failure=not self.no_rollback,
            canary=self.canary or self.analysis,
            canary_replicas=self.canary_replicas,
            compare_rows=compare_rows(self.compare_rows_file),
            analysis=AnalysisSettings(thresholds, self.interval) if thresholds is not None else None,
            shadow=self.shadow,
            mirror_percent=self.mirror_percent,
        )


SHARED_OPTIONS: list[tuple[str, Any, Any]] = [
    ("namespace", NamespaceOption, NAMESPACE),
    ("registry", RegistryOption, None),
    ("replicas", ReplicasOption, None),
    ("cpu", CpuOption, None),
    ("memory", MemoryOption, None),
    ("timeout", RolloutTimeoutOption, 300.0),
    ("context", ContextOption, None),
    ("canary", CanaryOption, False),
    ("canary_replicas", CanaryReplicasOption, 1),
    ("compare_rows_file", CompareRowsOption, None),
    ("no_rollback", NoRollbackOption, False),
    ("analysis", AnalysisOption, False),
    ("shadow", ShadowOption, False),
    ("mirror_percent", MirrorPercentOption, DEFAULT_MIRROR_PERCENT),
    ("interval", IntervalOption, 60.0),
    ("max_error_rate", MaxErrorRateOption, None),
    ("max_latency_ratio", MaxLatencyRatioOption, None),
    ("max_label_changes", MaxLabelChangesOption, None),
    ("min_requests", MinRequestsOption, None),
    ("as_json", JsonOption, False),
]


def with_deploy_options(command: Callable[..., None]) -> Callable[..., None]:
    """コマンドに共通のオプションを足し、その値を `options`（DeployOptions）として渡す。

    Typer はコマンドの引数の並び（シグネチャ）からオプションを作るので、共通のオプションの後に
    コマンド自身の引数を並べたシグネチャを持つ関数を返す。
    """
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "options"]
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, annotation, default in SHARED_OPTIONS
    ]
    names = [name for name, _, _ in SHARED_OPTIONS]

    def run(**values: Any) -> None:
        options = DeployOptions(**{name: values.pop(name) for name in names})
        command(options, **values)

    parameters = shared + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
    run.__name__ = command.__name__
    run.__qualname__ = command.__qualname__
    run.__doc__ = command.__doc__
    run.__module__ = command.__module__
    run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in parameters}
    return run


@with_deploy_options
def deploy(
    options: DeployOptions,
    image: Annotated[
        str | None, typer.Option(help="Image reference (default: the newest local model-in-image build).")
    ] = None,
    load: Annotated[
        bool, typer.Option("--load/--no-load", help="Load the local image into minikube/kind first.")
    ] = True,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the objects that would be applied; needs no cluster.")
    ] = False,
) -> None:
    """Deploy to Kubernetes: carry the image, apply, wait for the rollout, check the new pods.

    If the rollout does not finish in time or a new pod fails the check, the Deployment is rolled
    back to the revision that ran before (the canary is removed) and the command fails.
    """
    from mii_cli.ui.live import DeployView
    from mii_cli.workflows import deploy as deploying

    request = options.request(image, load=load)
    if dry_run:
        from mii_cli.kube.render import to_yaml

        plan = deploying.dry_run_objects(
            request.namespace,
            image,
            request.repository,
            request.sizing,
            canary_replicas=request.canary_replicas if request.canary else None,
            shadow=request.shadow,
            mirror_percent=request.mirror_percent,
        )
        if plan.note:
            out.info(plan.note)
        if options.as_json:
            out.print_json(plan.objects)
        else:
            typer.echo(to_yaml(plan.objects), nl=False)
        return
    with DeployView() as view, analysis_json(options.as_json):
        result = deploying.deploy(request, report=view)
    if options.as_json:
        out.print_json(result)
    else:
        print_deployed(result)


@with_deploy_options
def up(
    options: DeployOptions,
    image: Annotated[str | None, typer.Option(help="Deploy this image instead of building one.")] = None,
) -> None:
    """Build the image, deploy it (gated, rolled back on failure) and smoke-test it in the cluster."""
    from mii_cli.commands.build import build_with_progress
    from mii_cli.commands.requests import build_request
    from mii_cli.commands.smoke_test import judge_smoke
    from mii_cli.kube.cluster import connect
    from mii_cli.kube.nodes import check_pod_fits
    from mii_cli.kube.render import pod_requests
    from mii_cli.ui.live import DeployView
    from mii_cli.workflows import up as workflow

    request = options.request(image)
    client, info = connect(request.context)
    # ビルドの前に: Pod がどのノードにも入らない大きさなら、何も作らずに止める
    check_pod_fits(client, *pod_requests(request.sizing))
    if image is None:
        image = build_with_progress(build_request()).unique_tag
        out.success(f"built {image}")
        request = replace(request, image=image)
    with DeployView() as view, analysis_json(options.as_json):

        def deployed(result: DeployResult) -> None:
            view.clear()
            print_deployed(result)

        result = workflow.up(request, client=client, info=info, report=view, on_deployed=deployed)
    report = result.smoke_test
    assert report is not None
    if options.as_json:
        out.print_json(result)
    judge_smoke(
        report,
        show_table=not options.as_json,
        unreachable_hint="check the pods with `mii status`",
        what="cluster smoke",
    )
    out.success(f"up: {len(report.checks)} checks passed, served by {len(report.served_by)} pods")


def register(app: typer.Typer) -> None:
    """コマンドを登録する。"""
    app.command()(deploy)
    app.command()(up)
