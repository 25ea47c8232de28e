"""`mii serve`: 起動の前に断る誤り（壊れたモデル、不正な --sample）は 1 行のエラー。"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mii_cli import cli

runner = CliRunner()


def test_a_broken_model_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"garbage")
    result = runner.invoke(cli.app, ["serve", "--model", str(broken)])
    assert result.exit_code == 3
    assert "not a valid ONNX model" in result.output


@pytest.mark.parametrize("value", ["[1, 2", "[]", '["a", 1]', "[1, Infinity]"])
def test_a_bad_sample_option_is_one_clear_error(value: str) -> None:
    result = runner.invoke(cli.app, ["serve", "--sample", value])
    assert result.exit_code == 2
    assert "--sample must be a JSON list of finite numbers" in result.output
    assert "Traceback" not in result.output


def test_a_busy_port_is_one_error_before_anything_says_serving() -> None:
    """使用中のポートでは「serving ...」も「Application startup complete」も出さず、1 行で止まる。"""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(cli.app, ["serve", "--port", str(port)])
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert lines[0] == f"Error: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert "serving" not in result.output
    assert "startup complete" not in result.output
