"""`mii` コマンドの入口。

ここはコマンドとオプションの配線だけを行い、処理は各モジュールに任せる。
想定内のエラー（MiiError）はすべて `MiiGroup.invoke` で 1 行のメッセージと終了コードに変える。
"""

from __future__ import annotations

import traceback
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from mii_cli import console as out
from mii_cli.errors import MiiError


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
        typer.Option(help="Label JSON file (default: LABEL_FILEPATH or models/label.json)."),
    ] = None,
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
        log_level=log_level.value if log_level else None,
        log_format=log_format.value if log_format else None,
    )


# --- image commands (build, run): issue 3 ---


# --- smoke-test / load-test commands ---


# --- kubernetes commands (deploy, status, teardown, up, down) ---


def main() -> None:
    """コンソールスクリプト `mii` の入口。"""
    app()
