"""`mii deploy --canary`・`mii promote`・`mii rollback`・`mii history` の CLI（クラスタは代役）。"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mii_cli import cli
from mii_cli.kube import APP_NAME, CANARY_NAME
from mii_cli.probe.compare import OutputDifference, Verdict
from mii_cli.workflows import deploy as deploying
from tests.fakes.kube_api import FakeApiServer

runner = CliRunner()
FIRST, SECOND = "model-in-image:0.1.0-aaa-111", "model-in-image:0.1.0-bbb-222"


@pytest.fixture
def verdict(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    rows_seen: list[Any] = []

    def compare(client: Any, namespace: str, rows: Any, emit: Any) -> Verdict:
        rows_seen.append(rows)
        return Verdict(
            rows=2,
            label_changes=1,
            changed_rows=[[6.0, 2.7, 5.1, 1.6]],
            differences=[OutputDifference(output="output_probability", largest=0.25)],
            stable_model="a" * 64,
            canary_model="b" * 64,
        )

    monkeypatch.setattr(deploying, "compare_with_stable", compare)
    return rows_seen


def mii(*args: str) -> Any:
    return runner.invoke(cli.app, list(args))


def test_a_canary_deploy_prints_the_verdict_and_the_next_step(
    kubeconfig: FakeApiServer, verdict: list[Any], tmp_path: Path
) -> None:
    assert mii("deploy", "--image", FIRST, "--timeout", "30").exit_code == 0
    rows = tmp_path / "rows.csv"
    rows.write_text("sepal_length,sepal_width,petal_length,petal_width\n6.0,2.7,5.1,1.6\n")
    result = mii("deploy", "--image", SECOND, "--canary", "--compare-rows", str(rows), "--timeout", "30")
    assert result.exit_code == 0, result.output
    assert verdict == [[[6.0, 2.7, 5.1, 1.6]]]
    for expected in (
        "Canary vs stable",
        "label changes",
        "largest difference: output_probability",
        "mii promote",
    ):
        assert expected in result.output
    assert f"deployed {SECOND} to {CANARY_NAME}" in result.output


def test_a_rows_file_that_cannot_be_read_is_one_error(kubeconfig: FakeApiServer, tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("1,2,x\n3,4,y\n")
    result = mii("deploy", "--image", SECOND, "--canary", "--compare-rows", str(rows))
    assert result.exit_code == 2
    assert f"Error: {rows}:2: not a row of numbers" in result.output


def test_promote_rollback_and_history_as_json(kubeconfig: FakeApiServer, verdict: list[Any]) -> None:
    assert mii("deploy", "--image", FIRST, "--timeout", "30").exit_code == 0
    assert mii("deploy", "--image", SECOND, "--canary", "--timeout", "30").exit_code == 0
    history = json.loads(mii("history", "--json").stdout)
    assert [(r["number"], r["image"]) for r in history["stable"]] == [(1, FIRST)]
    assert [(r["deployment"], r["image"]) for r in history["canary"]] == [(CANARY_NAME, SECOND)]
    promoted = mii("promote", "--json", "--timeout", "30")
    assert promoted.exit_code == 0, promoted.output
    assert json.loads(promoted.stdout)["image"] == SECOND
    back = mii("rollback", "--json", "--timeout", "30")
    assert back.exit_code == 0, back.output
    payload = json.loads(back.stdout)
    assert (payload["canary_removed"], payload["revision"]["image"]) == (False, FIRST)
    history = json.loads(mii("history", "--json").stdout)
    assert [(r["image"], r["current"]) for r in history["stable"]] == [(SECOND, False), (FIRST, True)]


def test_history_draws_a_table_and_says_when_nothing_is_deployed(kubeconfig: FakeApiServer) -> None:
    empty = mii("history")
    assert empty.exit_code == 0
    assert "nothing is deployed" in empty.output
    assert mii("deploy", "--image", FIRST, "--timeout", "30").exit_code == 0
    table = mii("history").output.splitlines()
    assert table[0].strip() == APP_NAME
    assert table[1].split() == ["rev", "image", "model", "sha256", "created", "serving"]
    assert table[2].split()[0] == "1"
    assert table[2].split()[-1] == "yes"


def test_rollback_on_a_first_deploy_is_one_error(kubeconfig: FakeApiServer) -> None:
    assert mii("deploy", "--image", FIRST, "--timeout", "30").exit_code == 0
    result = mii("rollback")
    assert result.exit_code == 2
    assert "Error: deployment model-in-image has no earlier revision to roll back to" in result.output
    assert "Traceback" not in result.output


def test_promote_without_a_canary_is_one_error(kubeconfig: FakeApiServer) -> None:
    assert mii("deploy", "--image", FIRST, "--timeout", "30").exit_code == 0
    result = mii("promote")
    assert result.exit_code == 2
    assert "Hint: mii deploy --canary" in result.output


def test_status_shows_the_model_of_each_pod_and_the_canary(
    kubeconfig: FakeApiServer, verdict: list[Any]
) -> None:
    assert mii("deploy", "--image", FIRST, "--timeout", "30").exit_code == 0
    assert mii("deploy", "--image", SECOND, "--canary", "--timeout", "30").exit_code == 0
    status = json.loads(mii("status", "--json").stdout)
    assert status["canary"]["image"] == SECOND
    assert {pod["canary"] for pod in status["pods"]} == {True, False}
    text = mii("status").output
    assert f"Canary {CANARY_NAME}" in text
    assert "(canary)" in text
