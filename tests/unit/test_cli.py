"""CLI の配線とエラー処理（1 行のメッセージと終了コード、--debug のトレースバック）のテスト。"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from mii_cli import cli
from mii_cli.errors import DockerError

runner = CliRunner()


def test_help_lists_every_command() -> None:
    result = runner.invoke(cli.app, ["--help"])
    assert result.exit_code == 0
    for command in ("train", "serve"):
        assert command in result.output


@pytest.mark.parametrize("command", ["train", "serve"])
def test_every_command_has_help(command: str) -> None:
    result = runner.invoke(cli.app, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_train_json(tmp_path: Path) -> None:
    result = runner.invoke(cli.app, ["train", "--output", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["accuracy"] > 0.9
    assert Path(payload["model_path"]).is_file()


def test_train_human_output(tmp_path: Path) -> None:
    result = runner.invoke(cli.app, ["train", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "held-out accuracy" in result.output


def test_train_error_is_one_message_and_exit_code(tmp_path: Path) -> None:
    result = runner.invoke(cli.app, ["train", "-o", str(tmp_path), "--test-size", "0.99"])
    assert result.exit_code == 3
    assert "Error: test size must be between" in result.output
    assert "Traceback" not in result.output


def test_serve_refuses_a_broken_model(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"garbage")
    result = runner.invoke(cli.app, ["serve", "--model", str(broken)])
    assert result.exit_code == 3
    assert "not a valid ONNX model" in result.output


def _raise(error: Exception) -> None:
    raise error


@pytest.fixture
def failing_command() -> typer.Typer:
    @cli.app.command("fail-for-test", hidden=True)
    def fail(kind: str) -> None:
        errors: dict[str, Exception] = {
            "docker": DockerError("no engine", hint="start docker", details="log line"),
            "bug": RuntimeError("kaboom"),
            "interrupt": KeyboardInterrupt(),
        }
        _raise(errors[kind])

    yield cli.app
    cli.app.registered_commands[:] = [c for c in cli.app.registered_commands if c.name != "fail-for-test"]


def test_mii_error_becomes_message_hint_and_code(failing_command: typer.Typer) -> None:
    result = runner.invoke(failing_command, ["fail-for-test", "docker"])
    assert result.exit_code == DockerError.exit_code == 4
    assert "Error: no engine" in result.output
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


def test_interrupt_exits_130(failing_command: typer.Typer) -> None:
    result = runner.invoke(failing_command, ["fail-for-test", "interrupt"])
    assert result.exit_code == 130


def test_smoke_test_without_url_and_without_a_cluster(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = runner.invoke(cli.app, ["smoke-test"])
    assert result.exit_code == 5  # ClusterError
    assert "Error:" in result.output
    assert "Traceback" not in result.output


def test_teardown_local_without_docker_is_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    result = runner.invoke(cli.app, ["teardown", "--local"])
    assert result.exit_code == 4
    assert "cannot reach the Docker engine" in result.output


@pytest.mark.parametrize("value", ["[1, 2", "[]", '["a", 1]', "[1, Infinity]"])
def test_a_bad_sample_option_is_one_clear_error(value: str) -> None:
    result = runner.invoke(cli.app, ["serve", "--sample", value])
    assert result.exit_code == 2
    assert "--sample must be a JSON list of finite numbers" in result.output
    assert "Traceback" not in result.output


def test_serve_with_another_model_uses_no_bundled_labels(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mii_cli.serve import resolve_overrides

    for name in ("MODEL_FILEPATH", "LABEL_FILEPATH"):
        monkeypatch.delenv(name, raising=False)
    model = tmp_path / "house.onnx"
    base = {"host": "127.0.0.1", "port": 1, "log_level": None, "log_format": None}
    assert resolve_overrides(model=model, labels=None, **base)["label_filepath"] == ""
    bundled = resolve_overrides(model=None, labels=None, sample=[1.0], **base)
    assert str(bundled["label_filepath"]).endswith("models/label.json")
    assert bundled["sample_row"] == [1.0]
    monkeypatch.setenv("MODEL_FILEPATH", str(model))
    assert resolve_overrides(model=None, labels=None, **base) == {
        "host": "127.0.0.1",
        "port": 1,
        "label_filepath": "",
    }
    monkeypatch.setenv("LABEL_FILEPATH", "/x/labels.json")
    assert "label_filepath" not in resolve_overrides(model=None, labels=None, **base)
