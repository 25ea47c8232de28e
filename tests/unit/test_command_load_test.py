"""`mii load-test` のコマンド: locust を読み込む前に断る誤り。"""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from mii_cli import cli

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--duration", "soon"], "Error: --duration 'soon' is not a duration"),
        (["--users", "0"], "Invalid value for '--users'"),
        (["--endpoint", "health"], "Invalid value for '--endpoint'"),
    ],
)
def test_bad_options_are_refused_before_locust_starts(args: list[str], message: str) -> None:
    result = runner.invoke(cli.app, ["load-test", "--url", "http://127.0.0.1:9", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "locust" not in sys.modules


def test_a_url_without_scheme_is_refused() -> None:
    result = runner.invoke(cli.app, ["load-test", "--url", "127.0.0.1:8000"])
    assert result.exit_code == 2
    assert "Error: --url must be an http:// or https:// URL" in result.output
