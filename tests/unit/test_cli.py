"""`mii` の組み立て: すべてのコマンドが登録されていること、エラーの境界（1 行のメッセージ・ヒント・
終了コード、--debug のトレースバック、Ctrl-C）、読み手が先に閉じたパイプで静かに終わること。
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from mii_cli import cli
from mii_cli.errors import DockerError
from tests.support import ROOT

runner = CliRunner()
COMMANDS = sorted(get_command(cli.app).commands)  # type: ignore[attr-defined]


def test_the_app_has_the_commands_of_the_lifecycle() -> None:
    lifecycle = {"train", "serve", "build", "run", "stop", "smoke-test", "load-test", "benchmark"}
    kubernetes = {"deploy", "status", "teardown", "up", "down", "doctor"}
    model_updates = {"promote", "rollback", "history", "verdict"}
    assert set(COMMANDS) == lifecycle | kubernetes | model_updates


def test_help_lists_every_command() -> None:
    result = runner.invoke(cli.app, ["--help"])
    assert result.exit_code == 0
    rows = [line.split() for line in result.output.splitlines() if line.startswith("│ ")]
    listed = {row[1] for row in rows if len(row) > 1}
    assert set(COMMANDS) <= listed


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = runner.invoke(cli.app, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_the_entry_module_only_assembles() -> None:
    source = (ROOT / "mii_cli" / "cli.py").read_text()
    assert len(source.splitlines()) < 100
    assert "@app.command" not in source


def _raise(error: BaseException) -> None:
    raise error


@pytest.fixture
def failing_command() -> Iterator[typer.Typer]:
    """境界を確かめるための、決まった例外を投げる隠しコマンド。"""

    @cli.app.command("fail-for-test", hidden=True)
    def fail(kind: str) -> None:
        errors: dict[str, BaseException] = {
            "docker": DockerError("no engine [for now]", hint="start docker", details="log line"),
            "bug": RuntimeError("kaboom"),
            "interrupt": KeyboardInterrupt(),
        }
        _raise(errors[kind])

    yield cli.app
    cli.app.registered_commands[:] = [c for c in cli.app.registered_commands if c.name != "fail-for-test"]


def test_mii_error_becomes_message_hint_and_code(failing_command: typer.Typer) -> None:
    result = runner.invoke(failing_command, ["fail-for-test", "docker"])
    assert result.exit_code == DockerError.exit_code == 4
    assert "Error: no engine [for now]" in result.output
    assert "Hint: start docker" in result.output
    assert "log line" in result.output
    assert "Traceback" not in result.output


def test_unexpected_error_has_no_traceback_without_debug(failing_command: typer.Typer) -> None:
    result = runner.invoke(failing_command, ["fail-for-test", "bug"])
    assert result.exit_code == 1
    assert "unexpected error: RuntimeError: kaboom" in result.output
    assert "Traceback" not in result.output


def test_debug_shows_the_traceback(failing_command: typer.Typer) -> None:
    result = runner.invoke(failing_command, ["--debug", "fail-for-test", "bug"])
    assert result.exit_code == 1
    assert "Traceback" in result.output


@pytest.mark.parametrize(
    "args",
    [["fail-for-test", "--debug", "bug"], ["fail-for-test", "bug", "--debug"]],
    ids=["after-the-command", "at-the-end"],
)
def test_debug_works_where_users_type_it(failing_command: typer.Typer, args: list[str]) -> None:
    result = runner.invoke(failing_command, args)
    assert result.exit_code == 1
    assert "Traceback" in result.output


def test_debug_after_a_double_dash_is_a_value(failing_command: typer.Typer) -> None:
    result = runner.invoke(failing_command, ["fail-for-test", "--", "--debug"])
    assert result.exit_code == 1  # "--debug" が kind: KeyError の想定外のエラー
    assert "unexpected error: KeyError" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_flags_show_no_value_placeholder_in_help(command: str) -> None:
    """on/off のフラグ（--json・--help など）に `<bool>` と出すと、値を書くように読める。"""
    result = runner.invoke(cli.app, [command, "--help"])
    assert "<bool>" not in result.output
    assert "--help" in result.output


def test_down_is_teardown_with_every_option() -> None:
    teardown = runner.invoke(cli.app, ["teardown", "--help"]).output
    down = runner.invoke(cli.app, ["down", "--help"]).output
    options = [line.split()[1] for line in teardown.splitlines() if line.startswith("│ --")]
    assert "--local" in options
    assert options == [line.split()[1] for line in down.splitlines() if line.startswith("│ --")]
    assert "Same as teardown" in down


@pytest.mark.parametrize("command", ["deploy", "status", "teardown", "down", "history", "smoke-test"])
@pytest.mark.parametrize("name", ["Bad_Name", "UPPER", "-x", "a" * 64, "with space"])
def test_a_namespace_kubernetes_would_refuse_is_one_error_before_any_work(command: str, name: str) -> None:
    args = [command, "--namespace", name, "--dry-run"] if command == "deploy" else [command, "-n", name]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 2, result.output
    (error,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert error.startswith(f"Error: --namespace {name!r} is not a Kubernetes namespace name: ")
    assert "Hint: e.g. model-in-image" in result.output


def test_interrupt_exits_130(failing_command: typer.Typer) -> None:
    result = runner.invoke(failing_command, ["fail-for-test", "interrupt"])
    assert result.exit_code == 130


def test_sigterm_ends_a_running_command_like_ctrl_c_with_its_cleanup(tmp_path: Path) -> None:
    """本物のプロセスに SIGTERM: 待っている処理の finally が走り、1 行と終了コード 143 で終わる。"""
    program = tmp_path / "sleeper.py"
    marker = tmp_path / "cleaned-up"
    program.write_text(
        "import sys, time\n"
        "from mii_cli import cli\n"
        "@cli.app.command('sleep-for-test')\n"
        "def sleep() -> None:\n"
        "    try:\n"
        "        print('ready', flush=True)\n"
        "        time.sleep(60)\n"
        "    finally:\n"
        f"        open({str(marker)!r}, 'w').close()\n"
        "sys.argv = ['mii', 'sleep-for-test']\n"
        "cli.main()\n"
    )
    env = {k: v for k, v in os.environ.items() if "COV" not in k.upper()}
    process = subprocess.Popen(
        [sys.executable, str(program)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"ready\n"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 143
    assert stderr.decode().strip() == "Interrupted (SIGTERM)"
    assert marker.exists()


@pytest.mark.parametrize(
    "args", [["--help"], ["deploy", "--dry-run", "--image", "model-in-image:1"]], ids=["help", "dry-run"]
)
def test_a_reader_that_closes_the_pipe_early_ends_the_command_quietly(args: list[str]) -> None:
    # 読み手（`| head -1` のような）が何も読まずに閉じたパイプへ書く
    reader, writer = os.pipe()
    os.close(reader)
    env = {k: v for k, v in os.environ.items() if "COV" not in k.upper()}
    result = subprocess.run(
        [sys.executable, "-m", "mii_cli", *args],
        cwd=ROOT,
        stdout=writer,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        env={**env, "KUBECONFIG": "/nonexistent"},
        check=False,
    )
    os.close(writer)
    assert result.stderr == ""
    assert result.returncode == 1
