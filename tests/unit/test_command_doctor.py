"""`mii doctor` のコマンド: 表、`--json` の形、必須の点検で決まる終了コード。"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mii_cli import cli
from mii_cli.settings import get_cli_settings
from tests.fakes.docker_engine import FakeDockerEngine

runner = CliRunner()
BASE = "localhost/python:3.13-slim"


@pytest.fixture
def environment(
    fake_docker: FakeDockerEngine, no_kubeconfig: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> FakeDockerEngine:
    """代役の Docker エンジン、クラスタ無し、wrk の無い PATH、ビルドのネットワークの設定無し。"""
    monkeypatch.setenv("DOCKER_HOST", fake_docker.url)
    monkeypatch.setenv("MII_BASE_IMAGE", BASE)
    monkeypatch.delenv("MII_BUILD_NETWORK", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    get_cli_settings.cache_clear()
    return fake_docker


def test_json_is_the_list_of_checks(environment: FakeDockerEngine) -> None:
    environment.pullable.add(BASE)
    result = runner.invoke(cli.app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert list(payload) == ["checks"]
    assert all(list(check) == ["name", "ok", "detail", "hint"] for check in payload["checks"])
    assert {c["name"]: c["ok"] for c in payload["checks"]}["docker"] is True


def test_missing_advice_still_exits_zero_and_says_so(environment: FakeDockerEngine) -> None:
    environment.pullable.add(BASE)
    result = runner.invoke(cli.app, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "advisory check(s) failed" in result.output
    assert "apt-get install wrk" in result.output  # 通らなかった点検の対処


def test_a_failed_required_check_exits_non_zero_after_the_table(environment: FakeDockerEngine) -> None:
    result = runner.invoke(cli.app, ["doctor"])
    assert result.exit_code == 6
    assert "base-image" in result.output
    assert "Error: 1 required check(s) failed: base-image" in result.output


def test_json_is_printed_before_a_failure(environment: FakeDockerEngine) -> None:
    result = runner.invoke(cli.app, ["doctor", "--json"])
    assert result.exit_code == 6
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["base-image"]["ok"] is False
    assert "MII_BASE_IMAGE" in checks["base-image"]["hint"]
