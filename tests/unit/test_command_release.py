"""`mii deploy --canary`・`mii promote`・`mii rollback`・`mii history` の CLI（クラスタは代役）。"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mii_cli import cli
from mii_cli.kube import APP_NAME, CANARY_NAME, NAMESPACE, SHADOW_NAME
from mii_cli.probe.compare import OutputDifference, Verdict
from mii_cli.workflows import deploy as deploying
from tests.fakes.kube_api import FakeApiServer
from tests.fakes.mirroring_pods import MirroringPods

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


# --- 影（shadow）: mii deploy --shadow、mii rollback・promote が消す ------------------------------------


@pytest.fixture
def mirroring(kubeconfig: FakeApiServer) -> MirroringPods:
    """安定版の Pod（model-in-image-0〜3）の /metrics の代役: ConfigMap の写しの割合を名乗る。"""
    return MirroringPods(kubeconfig, [f"{APP_NAME}-{i}" for i in range(4)])


def test_a_shadow_deploy_says_what_the_stable_pods_mirror_and_rollback_removes_it(
    kubeconfig: FakeApiServer, mirroring: MirroringPods
) -> None:
    assert mii("deploy", "--image", FIRST, "--timeout", "30").exit_code == 0
    shown = mii("deploy", "--image", SECOND, "--shadow", "--mirror-percent", "5", "--timeout", "30")
    assert shown.exit_code == 0, shown.output
    assert f"deployed {SECOND} to {SHADOW_NAME}" in shown.output
    assert "the stable pods copy 5% of their predict requests to the shadow" in " ".join(shown.output.split())
    assert "mii rollback" in shown.output
    back = mii("rollback", "--timeout", "30")
    assert back.exit_code == 0, back.output
    assert "rollback: removed the shadow; the stable pods serve alone" in back.output
    assert {m.shadow.percent for m in mirroring.metrics.values()} == {0.0}


def test_a_shadow_deploy_as_json_has_the_mirroring(
    kubeconfig: FakeApiServer, mirroring: MirroringPods
) -> None:
    assert mii("deploy", "--image", FIRST, "--timeout", "30").exit_code == 0
    result = mii("deploy", "--image", SECOND, "--shadow", "--json", "--timeout", "30")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    address = kubeconfig.objects[f"/api/v1/namespaces/{NAMESPACE}/services/{SHADOW_NAME}"]["spec"][
        "clusterIP"
    ]
    assert payload["deployment"] == SHADOW_NAME
    assert payload["mirroring"] == {
        "target": f"{address}:8000",
        "percent": 10.0,
        "pods": [f"{APP_NAME}-{i}" for i in range(4)],
    }
    back = json.loads(mii("rollback", "--json", "--timeout", "30").stdout)
    assert (back["canary_removed"], back["shadow_removed"], back["revision"]) == (False, True, None)


def test_rollback_names_both_the_canary_and_the_shadow(
    kubeconfig: FakeApiServer, mirroring: MirroringPods, verdict: list[Any]
) -> None:
    assert mii("deploy", "--image", FIRST, "--timeout", "30").exit_code == 0
    assert mii("deploy", "--image", SECOND, "--shadow", "--timeout", "30").exit_code == 0
    assert mii("deploy", "--image", SECOND, "--canary", "--timeout", "30").exit_code == 0
    back = mii("rollback", "--timeout", "30")
    assert back.exit_code == 0, back.output
    assert "rollback: removed the canary and shadow; the stable pods serve alone" in back.output


def test_promote_says_the_shadow_is_gone_too(
    kubeconfig: FakeApiServer, mirroring: MirroringPods, verdict: list[Any]
) -> None:
    assert mii("deploy", "--image", FIRST, "--timeout", "30").exit_code == 0
    assert mii("deploy", "--image", SECOND, "--shadow", "--timeout", "30").exit_code == 0
    assert mii("deploy", "--image", SECOND, "--canary", "--timeout", "30").exit_code == 0
    promoted = mii("promote", "--timeout", "30")
    assert promoted.exit_code == 0, promoted.output
    assert "the canary and the shadow are gone" in " ".join(promoted.output.split())


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--shadow", "--canary"], "--shadow and --canary (or --analysis) are two ways"),
        (["--shadow", "--analysis"], "--shadow and --canary (or --analysis) are two ways"),
        (["--shadow"], f"there is no deployment {APP_NAME} in namespace {NAMESPACE} to run a shadow beside"),
    ],
)
def test_a_shadow_deploy_that_cannot_be_is_one_error(
    kubeconfig: FakeApiServer, flags: list[str], message: str
) -> None:
    result = mii("deploy", "--image", SECOND, *flags)
    assert result.exit_code == 2
    assert f"Error: {message}" in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not kubeconfig.methods("PATCH")


def test_the_mirror_percent_is_checked_before_the_cluster_is_touched(kubeconfig: FakeApiServer) -> None:
    for percent in ("0", "101"):
        result = mii("deploy", "--image", SECOND, "--shadow", "--mirror-percent", percent)
        assert result.exit_code == 2
        assert "--mirror-percent" in result.output
    assert not kubeconfig.requests
