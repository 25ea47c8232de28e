"""`mii smoke-test` のコマンド: --url が無ければ今の kube context のクラスタを確かめに行く。"""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from mii_cli import cli
from mii_cli.probe import cluster as kube_smoke
from mii_cli.probe.smoke_test import CheckResult, SmokeReport
from tests.fakes.kube_api import FakeApiServer

runner = CliRunner()


def test_without_url_the_cluster_is_checked_in_the_given_namespace(
    kubeconfig: FakeApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def cluster_smoke_test(**kwargs: Any) -> SmokeReport:
        seen.update(kwargs)
        check = CheckResult(
            name="load_balancing",
            method="GET",
            path="/predict/test",
            expected="2 pods",
            ok=True,
            detail="2 pods answered",
            elapsed_ms=1.0,
        )
        return SmokeReport(base_url="http://127.0.0.1:1", checks=[check])

    monkeypatch.setattr(kube_smoke, "cluster_smoke_test", cluster_smoke_test)
    result = runner.invoke(cli.app, ["smoke-test", "-n", "other-ns", "--timeout", "3", "--json"])
    assert result.exit_code == 0, result.output
    assert (seen["namespace"], seen["timeout"]) == ("other-ns", 3.0)
    payload = json.loads(result.stdout)
    assert (payload["passed"], payload["url"]) == (True, "http://127.0.0.1:1")


def test_without_url_and_without_a_cluster_is_one_message(no_kubeconfig: None) -> None:
    result = runner.invoke(cli.app, ["smoke-test"])
    assert result.exit_code == 5  # ClusterError
    assert "Error: no kube config found" in result.output
    assert "Traceback" not in result.output
