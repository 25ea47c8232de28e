"""`mii train`: 結果の JSON（TrainResult そのもの）、人向けの行、1 行のエラー。"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from mii_cli import cli

runner = CliRunner()


def test_json_is_the_train_result(tmp_path: Path) -> None:
    result = runner.invoke(cli.app, ["train", "--output", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) == {
        "model_path",
        "label_path",
        "facts_path",
        "accuracy",
        "model_sha256",
        "label_sha256",
        "facts",
    }
    assert payload["accuracy"] > 0.9
    assert Path(payload["model_path"]).is_file()


def test_human_output_names_the_accuracy(tmp_path: Path) -> None:
    result = runner.invoke(cli.app, ["train", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "held-out accuracy" in result.output


def test_a_bad_test_size_is_one_message_and_exit_code(tmp_path: Path) -> None:
    result = runner.invoke(cli.app, ["train", "-o", str(tmp_path), "--test-size", "0.99"])
    assert result.exit_code == 3
    assert "Error: test size must be between" in result.output
    assert "Traceback" not in result.output
