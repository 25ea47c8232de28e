"""`mii` コマンドの入口。

ここはコマンドとオプションの配線だけを行い、処理は各モジュールに任せる。
想定内のエラー（MiiError）はすべて `MiiGroup.invoke` で 1 行のメッセージと終了コードに変える。
"""

from __future__ import annotations

import signal
import traceback
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from mii_cli import console as out
from mii_cli.errors import CheckFailed, MiiError


class LogLevel(str, Enum):
    """ログレベルの選択肢。"""

    critical = "CRITICAL"
    error = "ERROR"
    warning = "WARNING"
    info = "INFO"
    debug = "DEBUG"


class LogFormat(str, Enum):
    """ログ形式の選択肢。"""

    text = "TEXT"
    json = "JSON"


class MiiGroup(TyperGroup):
    """例外を CLI の境界で 1 行のメッセージと終了コードに変えるコマンドグループ。"""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        """サブコマンドを実行し、例外をメッセージにする（--debug ならトレースバックも出す）。"""
        try:
            return super().invoke(ctx)
        except MiiError as error:
            _report(ctx, error.message, error.hint, error.details)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            out.console.print("[yellow]Interrupted[/yellow]")
            raise typer.Exit(130) from None
        except Exception as error:
            if type(error).__module__.startswith("typer"):
                # --help・使い方の誤り・Exit は Typer 自身に任せる
                raise
            _report(
                ctx,
                f"unexpected error: {type(error).__name__}: {error}",
                "run again with --debug to see the traceback",
                None,
            )
            raise typer.Exit(1) from None


def _report(ctx: typer.Context, message: str, hint: str | None, details: str | None) -> None:
    """エラーを標準エラーに出す。"""
    if ctx.obj and ctx.obj.get("debug"):
        out.console.print(traceback.format_exc(), markup=False)
    if details:
        out.console.print(details, markup=False, style="dim")
    out.console.print(f"[bold red]Error:[/bold red] {message}", markup=True)
    if hint:
        out.console.print(f"[dim]Hint:[/dim] {hint}")


app = typer.Typer(
    cls=MiiGroup,
    name="mii",
    help="Model-in-image: train, serve, build, deploy and test an ONNX model baked into its image.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def main_callback(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """Model-in-image pattern as a tool."""
    ctx.obj = {"debug": debug}


JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
SampleOption = Annotated[
    str | None,
    typer.Option(
        help="Sample row for /predict/test and /metadata as JSON, e.g. '[5.1, 3.5, 1.4, 0.2]' "
        "(default: the model's training.json, else zeros)."
    ),
]


def _sample_row(text: str | None) -> list[float] | None:
    """--sample の JSON を数のリストにする（不正なら ConfigError。検査はサービスの SAMPLE_ROW と同じ）。"""
    from mii_cli.errors import ConfigError
    from service.configurations import parse_sample

    if text is None:
        return None
    try:
        return parse_sample(text)
    except ValueError:
        raise ConfigError(
            f"--sample must be a JSON list of finite numbers, got {text!r}",
            hint="for example --sample '[5.1, 3.5, 1.4, 0.2]' (one value per feature of the model)",
        ) from None


NamespaceOption = Annotated[str, typer.Option("--namespace", "-n", help="Kubernetes namespace to use.")]
ContextOption = Annotated[
    str | None, typer.Option("--context", help="kube context to use (default: the current context).")
]


@app.command()
def train(
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Folder to write the model, labels and training facts to.",
        ),
    ] = Path("models"),
    seed: Annotated[int, typer.Option(help="Random seed for the split and the SVC.")] = 42,
    test_size: Annotated[float, typer.Option(help="Fraction of the data held out for accuracy.")] = 0.2,
    as_json: JsonOption = False,
) -> None:
    """Train the Iris SVC and write iris_svc.onnx, label.json and training.json."""
    from mii_cli import train as training

    with out.console.status("Training Pipeline(StandardScaler, SVC) on Iris..."):
        result = training.train(output, seed=seed, test_size=test_size)
    if as_json:
        out.print_json(training.result_dict(result))
        return
    out.success(f"held-out accuracy: {result.accuracy:.4f} ({result.facts['test_rows']} rows)")
    out.success(f"model:  {result.model_path} (sha256 {result.model_sha256[:16]}…)")
    out.success(f"labels: {result.label_path}")
    out.info(f"training facts: {result.facts_path}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    model: Annotated[
        Path | None,
        typer.Option(help="ONNX model file (default: MODEL_FILEPATH or models/iris_svc.onnx)."),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            help="Label JSON file (default: LABEL_FILEPATH; models/label.json only for the bundled model)."
        ),
    ] = None,
    sample: SampleOption = None,
    log_level: Annotated[
        LogLevel | None,
        typer.Option(case_sensitive=False, help="Log level (default: LOG_LEVEL or DEBUG)."),
    ] = None,
    log_format: Annotated[
        LogFormat | None,
        typer.Option(case_sensitive=False, help="Log format (default: LOG_FORMAT or TEXT)."),
    ] = None,
) -> None:
    """Serve the model locally with uvicorn (no Docker needed). Ctrl-C stops it."""
    from mii_cli.serve import run_server

    run_server(
        host=host,
        port=port,
        model=model,
        labels=labels,
        sample=_sample_row(sample),
        log_level=log_level.value if log_level else None,
        log_format=log_format.value if log_format else None,
    )


# --- image commands (build, run): issue 3 ---


def _build_with_progress(**options: Any) -> Any:
    """ビルドのステップを Rich の進捗バーで見せながら `build_with_defaults` を呼ぶ（build・up の共通）。"""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from mii_cli import build as building

    with Progress(
        TextColumn("[bold]Building[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=out.console,
        transient=True,
    ) as progress:
        task = progress.add_task("validating the model", total=None)

        def update(state: building.BuildProgress) -> None:
            progress.update(
                task, total=state.total or None, completed=state.current, description=state.description
            )

        return building.build_with_defaults(on_progress=update, **options)


@app.command()
def build(
    tag: Annotated[
        str | None, typer.Option(help="Image tag (default: model-in-image:0.1.0, MII_IMAGE_*).")
    ] = None,
    base_image: Annotated[
        str | None, typer.Option(help="Base image (default: python:3.13-slim, MII_BASE_IMAGE).")
    ] = None,
    network: Annotated[
        str | None, typer.Option(help="Network for RUN steps, e.g. host (MII_BUILD_NETWORK).")
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="ONNX model to bake (default: models/iris_svc.onnx).")
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            help="Label JSON to bake (default: models/label.json for the bundled model, else none)."
        ),
    ] = None,
    sample: SampleOption = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Rebuild every step.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Bake the model and the server into an image (Docker SDK, classic builder)."""
    result = _build_with_progress(
        tag=tag,
        base_image=base_image,
        network=network,
        model=model,
        labels=labels,
        sample=_sample_row(sample),
        no_cache=no_cache,
    )
    if as_json:
        out.print_json(result.as_dict())
        return
    out.success(
        f"built {result.image_id[:19]} ({result.size_bytes / 1e6:.0f} MB, "
        f"{result.cached_steps}/{result.steps} steps cached)"
    )
    for name in result.tags:
        out.info(f"tag: {name}")
    out.info(f"model sha256: {result.model_sha256}")
    out.info(f"next: `mii run --image {result.unique_tag}` or `mii deploy --image {result.unique_tag}`")


@app.command()
def run(
    image: Annotated[str | None, typer.Option(help="Image to run (default: model-in-image:0.1.0).")] = None,
    port: Annotated[int, typer.Option(help="Port to publish on 127.0.0.1.", min=1, max=65535)] = 8000,
    name: Annotated[str | None, typer.Option(help="Container name (default: mii-local).")] = None,
    cpus: Annotated[float | None, typer.Option(help="CPU limit (default: 0.5, like the pod).")] = None,
    memory: Annotated[str | None, typer.Option(help="Memory limit (default: 300m, like the pod).")] = None,
    user: Annotated[
        str | None, typer.Option(help="Run as this UID[:GID] instead of the image's user.")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds to wait for readiness.")] = None,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Leave it running in the background.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Run the image locally with the pod's limits (0.5 CPU, 300 MiB, read-only root) on 127.0.0.1."""
    from mii_cli import run as running
    from mii_cli.build import docker_client
    from mii_cli.settings import get_cli_settings

    settings = get_cli_settings()
    spec = running.RunSpec(
        image=image or settings.default_image,
        name=name or settings.container_name,
        port=port,
        cpus=cpus or settings.cpus,
        memory=memory or settings.memory,
        user=user,
    )
    client = docker_client()
    with out.console.status(f"Starting {spec.image} and waiting for /health/ready..."):
        result = running.start_container(client, spec, timeout=timeout or settings.ready_timeout)
    if as_json:
        out.print_json(result.as_dict())
    else:
        out.success(f"{result.image} is ready at {result.url} after {result.ready_seconds:.2f} s")
    if detach:
        stop_command = "mii stop" + (f" --name {spec.name}" if spec.name != settings.container_name else "")
        out.info(f"check it: `mii smoke-test --url {result.url}`; stop it: `{stop_command}`")
        return
    out.info("Ctrl-C stops and removes the container")
    # SIGTERM（プロセスマネージャからの停止）も Ctrl-C と同じく、コンテナを止めて消してから終わる
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        for chunk in running.follow_logs(client, spec.name):
            out.console.print(chunk.decode(errors="replace").rstrip(), markup=False)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        running.remove_container(client, spec.name)
        out.success(f"stopped and removed {spec.name}")


@app.command()
def stop(
    name: Annotated[str | None, typer.Option(help="Container name (default: mii-local).")] = None,
) -> None:
    """Stop and remove the container started by `mii run` (nothing to stop is not an error)."""
    from mii_cli import run as running
    from mii_cli.build import docker_client
    from mii_cli.settings import get_cli_settings

    target = name or get_cli_settings().container_name
    with out.console.status(f"Stopping {target}..."):
        removed = running.remove_container(docker_client(), target)
    out.success(f"stopped and removed {target}" if removed else f"no container named {target}")


@app.command()
def benchmark(
    image: Annotated[
        str | None, typer.Option(help="Image to measure (default: model-in-image:0.1.0).")
    ] = None,
    base_image: Annotated[
        str | None, typer.Option(help="Base image, to report the size added (default: MII_BASE_IMAGE).")
    ] = None,
    duration: Annotated[int, typer.Option(help="Seconds per load phase.", min=1, max=600)] = 10,
    connections: Annotated[
        int, typer.Option(help="Connections for the maximum-throughput phase.", min=1)
    ] = 64,
    port: Annotated[
        int,
        typer.Option(
            help="Port to publish on 127.0.0.1 (the ceiling app uses the next one).", min=1, max=65534
        ),
    ] = 18000,
    rounds: Annotated[
        int, typer.Option(help="Rounds of ceiling, /predict and V2, measured in turn.", min=1, max=20)
    ] = 3,
    as_json: JsonOption = False,
) -> None:
    """Measure the image at 0.5 CPU / 300 MiB with wrk: share of the ASGI ceiling, p50/p99, memory, size.

    The ceiling is a bare ASGI app started from the same image under the same limits and measured in
    turn with the service, so that the share (service req/s / ceiling req/s) compares across machines.
    """
    from rich.table import Table

    from mii_cli import bench
    from mii_cli.build import docker_client
    from mii_cli.settings import get_cli_settings

    settings = get_cli_settings()
    target = image or settings.default_image
    with out.console.status(f"Benchmarking {target} (about {(3 * rounds + 2) * duration + 15} s)..."):
        report = bench.run_benchmark(
            docker_client(),
            image=target,
            base_image=base_image or settings.base_image,
            port=port,
            seconds=duration,
            connections=connections,
            rounds=rounds,
        )
    if as_json:
        out.print_json(report.as_dict())
    else:
        table = Table(title=f"{target} at 0.5 CPU / 300 MiB, one-row POST /predict and V2 infer (JSON)")
        for column in ("metric", "measured", "target", "result"):
            table.add_column(column)
        for name, value in report.measurements.items():
            op, goal = bench.TARGETS.get(name, ("", None))
            verdict = report.verdicts.get(name)
            mark = "" if verdict is None else ("[green]pass[/green]" if verdict else "[red]FAIL[/red]")
            table.add_row(name, f"{value:g}", f"{op} {goal:g}" if goal is not None else "", mark)
        out.console.print(table)
        out.info(f"errors: {report.details['errors']} of {report.details['requests']} requests")
    if not report.passed:
        raise CheckFailed("the image misses a performance target", hint="see the table above")


# --- smoke-test / load-test commands ---


@app.command("smoke-test")
def smoke_test(
    url: Annotated[
        str | None,
        typer.Option(help="Base URL of a running service, e.g. http://127.0.0.1:8000."),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each answer.", min=0.1)] = 5.0,
    namespace: NamespaceOption = "model-in-image",
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

    from mii_cli import smoke
    from mii_cli.paths import model_and_labels

    # 手元のモデルと答えを比べる（既定は同梱の models/。--model を足せばそれとも）
    models = None if model is None else [model_and_labels(model, labels), model_and_labels(None, None)]
    run = functools.partial(smoke.run_smoke_test, models=models)
    if url is None:
        # --url が無ければクラスタ上のサービスをポートフォワード越しに確かめる
        from mii_cli.kube.cluster import connect
        from mii_cli.kube.smoke import cluster_smoke_test

        client, _ = connect(context)
        with out.console.status(f"Smoke-testing the Service in namespace {namespace}..."):
            report = cluster_smoke_test(timeout=timeout, namespace=namespace, client=client, smoke=run)
        unreachable_hint = "check the pods with `mii status`, or deploy with `mii deploy`"
        target = f"the Service in namespace {namespace} (port-forward and in-cluster)"
    else:
        report = run(url, timeout=timeout)
        unreachable_hint = "start the service with `mii serve` (or `mii run`) or check --url"
        target = report.base_url
    if as_json:
        out.print_json(report.as_dict())
    _judge_smoke(report, show_table=not as_json, unreachable_hint=unreachable_hint)
    out.success(f"all {len(report.checks)} smoke checks passed against {target}")


def _judge_smoke(report: Any, *, show_table: bool, unreachable_hint: str, what: str = "smoke") -> None:
    """スモークテストの表を出し、届かない・失敗があれば CheckFailed にする（smoke-test・up の共通）。"""
    from mii_cli import smoke

    if report.unreachable is not None:
        raise CheckFailed(report.unreachable, hint=unreachable_hint)
    if show_table:
        out.console.print(smoke.render_table(report))
    if not report.passed:
        names = ", ".join(check.name for check in report.failed)
        raise CheckFailed(
            f"{len(report.failed)} of {len(report.checks)} {what} checks failed: {names}",
            hint="see the detail column (or --json) for what each check expected",
        )


class LoadEndpoint(str, Enum):
    """負荷をかけるエンドポイントの選択肢。"""

    predict = "predict"
    predict_label = "predict-label"
    mixed = "mixed"


@app.command("load-test")
def load_test(
    url: Annotated[str, typer.Option(help="Base URL of a running service, e.g. http://127.0.0.1:8000.")],
    duration: Annotated[str, typer.Option(help="How long to run: 30s, 2m, 1m30s.")] = "30s",
    users: Annotated[int, typer.Option(help="Concurrent users.", min=1)] = 20,
    spawn_rate: Annotated[float, typer.Option(help="Users started per second.", min=0.1)] = 20.0,
    rate: Annotated[
        float | None,
        typer.Option(help="Cap on total requests/s (default: as fast as the users can go).", min=0.1),
    ] = None,
    endpoint: Annotated[
        LoadEndpoint, typer.Option(case_sensitive=False, help="What to call: one row per request.")
    ] = LoadEndpoint.predict,
    as_json: JsonOption = False,
) -> None:
    """Load-test a running service with locust; PASS needs > 100 requests/s and p99 < 100 ms."""
    # locust は import 時に gevent の monkeypatch を行うので、loadtest モジュールの関数の中でだけ読み込む
    from mii_cli import loadtest

    options = loadtest.LoadTestOptions(
        url=url,
        duration_s=loadtest.parse_duration(duration),
        users=users,
        spawn_rate=spawn_rate,
        rate=rate,
        endpoint=endpoint.value,
    )
    options.validate()
    out.info(loadtest.describe(options))
    if rate is not None and rate <= loadtest.TARGET_MIN_RPS:
        out.warn(f"--rate {rate:g} is not above the throughput target of {loadtest.TARGET_MIN_RPS:g}")

    def progress(elapsed: float, requests: int, failures: int, rps: float, p99: float | None) -> None:
        p99_text = "-" if p99 is None else f"{p99:.1f} ms"
        out.info(f"{elapsed:5.1f} s  {requests:,} requests  {rps:,.1f}/s  p99 {p99_text}  {failures} failed")

    result = loadtest.run_load_test(options, progress=progress)
    if as_json:
        out.print_json(result.as_dict())
    else:
        out.console.print(loadtest.summary_table(result))
    if result.errors:
        for message, count in result.errors.items():
            out.warn(f"{count:,} × {message}")
    if not result.passed:
        raise CheckFailed(
            "load test FAILED: " + "; ".join(result.verdict.reasons),
            hint="compare with the targets of the specification (> 100 requests/s, p99 < 100 ms)",
        )
    out.success(
        f"load test PASSED: {result.requests_per_s:,.1f} requests/s, p99 {result.latency_ms['p99']:.1f} ms"
    )


# --- kubernetes commands (deploy, status, teardown, up, down) ---

RegistryOption = Annotated[
    str | None,
    typer.Option(
        help="Push the image to this registry (e.g. 127.0.0.1:5000) and deploy that reference (MII_REGISTRY)."
    ),
]
ReplicasOption = Annotated[
    int | None,
    typer.Option(help="Pods to create (default 4, MII_REPLICAS); the HPA's minimum becomes min(3, N)."),
]
CpuOption = Annotated[
    str | None,
    typer.Option(help="CPU per pod, requests = limits (default 500m, MII_POD_CPU), e.g. 250m."),
]
MemoryOption = Annotated[
    str | None,
    typer.Option(help="Memory per pod, requests = limits (default 300Mi, MII_POD_MEMORY), e.g. 256Mi."),
]


def _sizing(replicas: int | None, cpu: str | None, memory: str | None) -> Any:
    """--replicas・--cpu・--memory（無ければ MII_REPLICAS・MII_POD_CPU・MII_POD_MEMORY）を確かめて
    Deployment の大きさにする（不正なら ConfigError）。再デプロイでも同じ大きさを保つには設定で渡す。
    """
    from mii_cli.kube.render import Sizing
    from mii_cli.settings import get_cli_settings

    settings = get_cli_settings()
    return Sizing(
        replicas=replicas if replicas is not None else settings.replicas,
        cpu=cpu or settings.pod_cpu,
        memory=memory or settings.pod_memory,
    )


def _registry(registry: str | None) -> str | None:
    """--registry、無ければ MII_REGISTRY。"""
    from mii_cli.settings import get_cli_settings

    return registry or get_cli_settings().registry


RolloutTimeoutOption = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for the rollout.", min=1)
]


def _print_deploy(result: dict[str, Any], as_json: bool) -> None:
    """deploy の結果を出す（--json なら JSON）。"""
    if as_json:
        out.print_json(result)
        return
    out.success(f"deployed {result['image']} to namespace {result['namespace']}")
    out.info(
        "next: `mii smoke-test`, `mii status`, or port-forward: "
        f"kubectl -n {result['namespace']} port-forward svc/model-in-image 8000:8000"
    )


@app.command()
def deploy(
    namespace: NamespaceOption = "model-in-image",
    image: Annotated[
        str | None,
        typer.Option(help="Image reference (default: the newest local model-in-image build)."),
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
    as_json: JsonOption = False,
) -> None:
    """Deploy to Kubernetes: load or push the image, apply Namespace..HPA, wait for the rollout."""
    sizing = _sizing(replicas, cpu, memory)
    if dry_run:
        from mii_cli.kube import deploy as deploying
        from mii_cli.kube.render import to_yaml

        _, objects = deploying.dry_run_objects(namespace, image, sizing)
        if as_json:
            out.print_json(objects)
        else:
            typer.echo(to_yaml(objects), nl=False)
        return
    from mii_cli.kube.deploy import deploy as run_deploy

    result = run_deploy(
        namespace=namespace,
        image=image,
        registry=_registry(registry),
        timeout=timeout,
        context=context,
        load=load,
        sizing=sizing,
    )
    _print_deploy(result, as_json)


@app.command()
def status(
    namespace: NamespaceOption = "model-in-image",
    context: ContextOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the Deployment, pods, Service and HPA in one view."""
    from mii_cli.kube.cluster import connect
    from mii_cli.kube.status import collect_status, render_status

    client, _ = connect(context)
    result = collect_status(client, namespace)
    if as_json:
        out.print_json(result)
    else:
        out.console.print(render_status(result))


@app.command()
def teardown(
    namespace: NamespaceOption = "model-in-image",
    context: ContextOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the namespace to go.", min=1)] = 180.0,
    local: Annotated[
        bool, typer.Option("--local", help="Stop the `mii run` container instead (= mii stop).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete the namespace (and everything in it) and wait until it is gone."""
    from mii_cli.kube.cluster import connect
    from mii_cli.kube.teardown import teardown as run_teardown

    if local:
        stop()
        return

    client, _ = connect(context)
    result = run_teardown(client, namespace, timeout=timeout)
    if as_json:
        out.print_json(result)
    elif result["deleted"]:
        out.success(f"namespace {namespace} deleted ({result['seconds']}s)")
    else:
        out.info(f"namespace {namespace} does not exist: nothing to delete")


@app.command()
def up(
    namespace: NamespaceOption = "model-in-image",
    image: Annotated[str | None, typer.Option(help="Deploy this image instead of building one.")] = None,
    registry: RegistryOption = None,
    replicas: ReplicasOption = None,
    cpu: CpuOption = None,
    memory: MemoryOption = None,
    timeout: RolloutTimeoutOption = 300.0,
    context: ContextOption = None,
    as_json: JsonOption = False,
) -> None:
    """Build the image, deploy it and smoke-test it in the cluster, in one go."""
    from mii_cli.kube import smoke as kube_smoke
    from mii_cli.kube.cluster import connect
    from mii_cli.kube.deploy import deploy as run_deploy

    sizing = _sizing(replicas, cpu, memory)
    client, info = connect(context)
    if image is None:
        image = _build_with_progress().unique_tag
        out.success(f"built {image}")
    result = run_deploy(
        namespace=namespace,
        image=image,
        registry=_registry(registry),
        timeout=timeout,
        sizing=sizing,
        client=client,
        info=info,
    )
    _print_deploy(result, False)
    report = kube_smoke.cluster_smoke_test(namespace=namespace, client=client)
    result["smoke_test"] = report.as_dict()
    if as_json:
        out.print_json(result)
    _judge_smoke(
        report,
        show_table=not as_json,
        unreachable_hint="check the pods with `mii status`",
        what="cluster smoke",
    )
    out.success(f"up: {len(report.checks)} checks passed, served by {len(report.served_by)} pods")


@app.command()
def down(
    namespace: NamespaceOption = "model-in-image",
    context: ContextOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the namespace to go.", min=1)] = 180.0,
    as_json: JsonOption = False,
) -> None:
    """Tear the deployment down (same as teardown)."""
    teardown(namespace=namespace, context=context, timeout=timeout, as_json=as_json)


def main() -> None:
    """コンソールスクリプト `mii` の入口。"""
    app()
