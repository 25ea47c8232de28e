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
