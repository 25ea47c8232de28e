"""`mii` コマンドの入口: アプリを組み立てるだけ。

コマンドは `mii_cli/commands/` にあり、ここはエラーの境界（`MiiGroup`）と `--debug` を持つアプリに
それらを登録する。想定内のエラー（MiiError）は境界で 1 行のメッセージ・ヒント・終了コードになる。
"""

from __future__ import annotations

import signal
import traceback
from types import FrameType
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from mii_cli.commands import register
from mii_cli.errors import MiiError
from mii_cli.ui import console as out
from mii_cli.ui.help import quiet_flag_types


class Terminated(KeyboardInterrupt):
    """SIGTERM を受けた。Ctrl-C と同じく、進行中の処理の後片付け（finally）を通って終わる。"""


def _terminate(_signum: int, _frame: FrameType | None) -> None:
    raise Terminated


class MiiGroup(TyperGroup):
    """例外を CLI の境界で 1 行のメッセージと終了コードに変えるコマンドグループ。"""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        """`--debug` はどこに書いてもよい（`--` より後ろは値なので動かさない）。"""
        end = args.index("--") if "--" in args else len(args)
        if "--debug" in args[1:end]:
            args = ["--debug", *[arg for arg in args[:end] if arg != "--debug"], *args[end:]]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        """サブコマンドを実行し、例外をメッセージにする（--debug ならトレースバックも出す）。"""
        try:
            return super().invoke(ctx)
        except MiiError as error:
            _report(ctx, error.message, error.hint, error.details)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt as interrupt:
            terminated = isinstance(interrupt, Terminated)
            out.console.print(f"[yellow]Interrupted{' (SIGTERM)' if terminated else ''}[/yellow]")
            raise typer.Exit(143 if terminated else 130) from None
        except BrokenPipeError:
            # 読み手が先に閉じた（`mii ... | head`）: Click がエラーを出さずに終える
            raise
        except Exception as error:
            if type(error).__module__.startswith(("typer", "click")):
                # --help・使い方の誤り・Exit は Typer 自身に任せる
                raise
            message = f"unexpected error: {type(error).__name__}: {error}"
            _report(ctx, message, "run again with --debug to see the traceback", None)
            raise typer.Exit(1) from None


def _report(ctx: typer.Context, message: str, hint: str | None, details: str | None) -> None:
    """エラーを標準エラーに出す（--debug ならトレースバックも）。"""
    trace = traceback.format_exc() if ctx.obj and ctx.obj.get("debug") else None
    out.error(message, hint=hint, details=details, trace=trace)


quiet_flag_types()

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


register(app)


def main() -> None:
    """コンソールスクリプト `mii` の入口。SIGTERM（kill、CI の打ち切り）も Ctrl-C と同じに扱う。"""
    signal.signal(signal.SIGTERM, _terminate)
    app()
