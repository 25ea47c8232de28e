"""`mii teardown` / `mii down` のコマンド。"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mii_cli import cli
from tests.fakes.kube_api import FakeApiServer
from tests.fakes.kube_objects import NAMESPACE

runner = CliRunner()
MANAGED = {"app.kubernetes.io/managed-by": "mii"}


@pytest.fixture
def managed(kubeconfig: FakeApiServer) -> FakeApiServer:
    """今の kube context のクラスタに、mii が作った Namespace がある。"""
    kubeconfig.put(f"/api/v1/namespaces/{NAMESPACE}", {"metadata": {"name": NAMESPACE, "labels": MANAGED}})
    return kubeconfig


def test_teardown_json_is_the_teardown_result(managed: FakeApiServer) -> None:
    result = runner.invoke(cli.app, ["teardown", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert (payload["namespace"], payload["deleted"]) == (NAMESPACE, True)


def test_down_reports_the_deletion(managed: FakeApiServer) -> None:
    result = runner.invoke(cli.app, ["down"])
    assert result.exit_code == 0, result.output
    assert f"namespace {NAMESPACE} deleted" in result.output


def test_teardown_of_nothing_says_so(kubeconfig: FakeApiServer) -> None:
    result = runner.invoke(cli.app, ["teardown"])
    assert result.exit_code == 0
    assert "nothing to delete" in result.output


def test_down_of_nothing_says_so(kubeconfig: FakeApiServer) -> None:
    result = runner.invoke(cli.app, ["down"])
    assert result.exit_code == 0
    assert "nothing to delete" in result.output


def test_teardown_without_a_cluster_is_one_message(no_kubeconfig: None) -> None:
    result = runner.invoke(cli.app, ["teardown"])
    assert result.exit_code == 5
    assert "Error: no kube config found" in result.output


def test_teardown_local_without_docker_is_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    result = runner.invoke(cli.app, ["teardown", "--local"])
    assert result.exit_code == 4
    assert "cannot reach the Docker engine" in result.output
