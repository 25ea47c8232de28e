"""進み具合の表示（CLI の層）: ロールアウトのライブ表示の中身と、デプロイのイベントの行。"""

from __future__ import annotations

import pytest
from rich.console import Console

from mii_cli.kube.pods import PodRow
from mii_cli.kube.rollout import RolloutProgress
from mii_cli.ui.live import DeployView, rollout_view
from mii_cli.workflows.steps import StepStatus


def progress() -> RolloutProgress:
    return RolloutProgress(
        deployment="model-in-image",
        ready=1,
        updated=2,
        desired=4,
        elapsed=3.0,
        timeout=300.0,
        pods=[
            PodRow(name="a", ready=True, state="Running", restarts=0, node="node-1", ip=None, age="1m"),
            PodRow(
                name="b", ready=False, state="ContainerCreating", restarts=0, node=None, ip=None, age="1s"
            ),
        ],
    )


def test_the_rollout_view_shows_the_counts_and_the_pods() -> None:
    console = Console(width=120, record=True)
    console.print(rollout_view(progress()))
    shown = console.export_text()
    assert "Rolling out model-in-image: ready 1/4, updated 2/4 (3s of 300s)" in shown
    assert "ContainerCreating" in shown
    assert "node-1" in shown


def test_the_deploy_view_draws_lines_and_clears_the_live_view(capsys: pytest.CaptureFixture[str]) -> None:
    with DeployView() as view:
        view(StepStatus("namespace", "info", "namespace model-in-image is still being deleted; waiting"))
        view(StepStatus("namespace", "start", "Waiting for namespace model-in-image to be deleted..."))
        view(StepStatus("rollout", "progress", progress=progress()))
        view(StepStatus("rollout", "done", "deployment/model-in-image: 4/4 pods ready"))
        view(StepStatus("pods", "warn", "pod model-in-image-1: no answer"))
    err = capsys.readouterr().err
    assert "• namespace model-in-image is still being deleted; waiting" in err
    assert "✓ deployment/model-in-image: 4/4 pods ready" in err
    assert "! pod model-in-image-1: no answer" in err
