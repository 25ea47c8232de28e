"""`mii deploy --canary --analysis`（workflows/analysis.py）: 段ごとに生のトラフィックで決める。

クラスタは HTTP の境界の代役（tests/fakes/kube_api.py）。Pod の `/metrics` は API サーバーの Pod のプロキシの
パスに置いたサービスの本物の `Metrics` が答え、代わりの `sleep`（区間の待ち）が Pod ごとにトラフィックを足す。
同じ行での答えの比較（ポートフォワード）は代わり。
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import generate_latest
from typer.testing import CliRunner

from mii_cli import cli
from mii_cli.errors import ClusterError, MiiError
from mii_cli.image.record import ImageRecord, record_from_labels
from mii_cli.kube import APP_NAME, CANARY_NAME
from mii_cli.kube.cluster import ClusterInfo
from mii_cli.probe.analysis import Thresholds
from mii_cli.probe.compare import Verdict
from mii_cli.probe.traffic import Reading
from mii_cli.workflows import analysis as analysing
from mii_cli.workflows import deploy as deploying
from mii_cli.workflows import release
from mii_cli.workflows.steps import StepStatus
from service.app.metrics import Metrics
from tests.fakes.kube_api import FakeApiServer
from tests.fakes.kube_objects import NAMESPACE, become_ready

DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
GOOD, NEXT = "model-in-image:0.1.0-good", "model-in-image:0.1.0-next"
SHA = {GOOD: "a" * 64, NEXT: "b" * 64}
INTERVAL = 30.0


def record_of(image: str, reference: str) -> ImageRecord:
    """イメージのラベルの代わり: SHA の表のモデル（表に無いイメージは d…）。"""
    return record_from_labels(reference, {"io.mii.model.sha256": SHA.get(image, "d" * 64)})


@dataclass
class Traffic:
    """Pod ごとの累積のトラフィック（区間ごとに `sleep` が足す）と、側ごとの 1 区間の量と遅延。"""

    per_interval: dict[str, tuple[int, int, float]] = field(
        default_factory=lambda: {APP_NAME: (100, 0, 0.0008), CANARY_NAME: (100, 0, 0.0008)}
    )
    pods: dict[str, Metrics] = field(default_factory=dict)
    sleeps: list[float] = field(default_factory=list)
    now: float = 0.0

    def clock(self) -> float:
        return self.now

    def metrics(self, pod: str) -> Metrics:
        return self.pods.setdefault(pod, Metrics())

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        for pod in list(self.pods):
            side = CANARY_NAME if pod.startswith(CANARY_NAME) else APP_NAME
            ok, errors, latency = self.per_interval[side]
            for _ in range(ok):
                self.pods[pod].observe_request("POST", "/predict", 200, latency)
            for _ in range(errors):
                self.pods[pod].observe_request("POST", "/predict", 500, latency)


@pytest.fixture
def traffic(fake_api: FakeApiServer) -> Traffic:
    """各 Pod の /metrics を API サーバーの Pod のプロキシのパスで答える（Pod は代役が置く）。"""
    state = Traffic()
    for side in (APP_NAME, CANARY_NAME):
        for index in range(12):
            pod = f"{side}-{index}"

            def answer(request: Any, pod: str = pod) -> tuple[int, str]:
                return 200, generate_latest(state.metrics(pod).registry).decode()

            path = f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}:8000/proxy/metrics"
            fake_api.routes[("GET", path)] = answer
    return state


@pytest.fixture
def cluster(fake_api: FakeApiServer, monkeypatch: pytest.MonkeyPatch) -> FakeApiServer:
    """版を決めるコントローラの代役と、イメージのラベル（SHA から）。"""

    fake_api.on_apply.append(become_ready(fake_api))
    monkeypatch.setattr(deploying, "read_record", record_of)
    return fake_api


@pytest.fixture
def label_changes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """同じ行での比較の代わり: ラベルの変わった行の数（リストの値を変えれば変わる）。"""
    changes = [0]

    def compare(client: Any, namespace: str, rows: Any, status: Any) -> Verdict:
        return Verdict(rows=10, label_changes=changes[0], stable_model=SHA[GOOD], canary_model=SHA[NEXT])

    monkeypatch.setattr(deploying, "compare_with_stable", compare)
    return changes


def analysed(
    fake: FakeApiServer,
    info: ClusterInfo,
    traffic: Traffic,
    thresholds: Thresholds | None = None,
    **extra: Any,
) -> tuple[deploying.DeployResult, list[StepStatus]]:
    """安定版 GOOD（4 Pod）の横に NEXT を canary として出し、分析させる。"""
    deploying.deploy(
        deploying.DeployRequest(namespace=NAMESPACE, image=GOOD, timeout=30), client=fake.client(), info=info
    )
    reported: list[StepStatus] = []
    request = deploying.DeployRequest(
        namespace=NAMESPACE,
        image=NEXT,
        timeout=30,
        canary=True,
        analysis=deploying.AnalysisSettings(thresholds or Thresholds(), INTERVAL),
        **extra,
    )
    result = deploying.deploy(
        request,
        client=fake.client(),
        info=info,
        report=reported.append,
        sleep=traffic.sleep,
        clock=traffic.clock,
    )
    return result, reported


def running_image(fake: FakeApiServer, name: str = APP_NAME) -> str | None:
    deployment = fake.objects.get(f"{DEPLOYMENTS}/{name}")
    if deployment is None:
        return None
    image: str = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


def test_a_canary_as_good_as_the_stable_pods_is_grown_step_by_step_and_promoted(
    cluster: FakeApiServer, docker_desktop: ClusterInfo, traffic: Traffic, label_changes: list[int]
) -> None:
    result, reported = analysed(cluster, docker_desktop, traffic)
    analysis = result.analysis
    assert analysis is not None
    assert analysis.outcome == "promoted"
    # 安定版は 4 Pod: canary は 1・2・3・4 Pod の 4 段、それぞれ区間 1 つ
    assert [(s.step, s.canary_pods, s.stable_pods, s.passed) for s in analysis.steps] == [
        (1, 1, 4, True),
        (2, 2, 4, True),
        (3, 3, 4, True),
        (4, 4, 4, True),
    ]
    assert traffic.sleeps == [INTERVAL] * 4
    # 区間の数字は Pod ごとの増えの和（累積ではない）: 段 k の canary は k Pod × 100
    assert [s.canary.requests for s in analysis.steps] == [100, 200, 300, 400]
    assert all(s.stable.requests == 400 for s in analysis.steps)
    assert analysis.promotion is not None
    assert analysis.promotion.canary_removed
    assert (running_image(cluster), running_image(cluster, CANARY_NAME)) == (NEXT, None)
    lines = [r.message for r in reported if r.step == "analysis" and r.state == "done"]
    assert lines[0].startswith("step 1/4 (1 canary, 4 stable pods, 30s): stable 400 req, 5xx 0.00%")
    assert lines[0].endswith("within the thresholds")
    # 記録は mii history に
    (record,) = release.history(cluster.client(), NAMESPACE).analyses
    assert (record["outcome"], record["image"], len(record["steps"])) == ("promoted", NEXT, 4)
    assert "promotion" not in record


def test_a_slower_canary_is_removed_at_the_first_step_with_the_latency_it_showed(
    cluster: FakeApiServer, docker_desktop: ClusterInfo, traffic: Traffic, label_changes: list[int]
) -> None:
    traffic.per_interval[CANARY_NAME] = (100, 0, 0.02)
    with pytest.raises(analysing.AnalysisFailed) as failure:
        analysed(cluster, docker_desktop, traffic)
    message = failure.value.message
    assert message.startswith(
        "analysis step 1/4 (1 canary pods): the canary breaches --max-latency-ratio: the canary's p50"
    )
    assert message.endswith("; removed the canary")
    assert failure.value.exit_code == 6
    assert (running_image(cluster), running_image(cluster, CANARY_NAME)) == (GOOD, None)
    analysis = failure.value.analysis
    assert (analysis.outcome, len(analysis.steps)) == ("rolled back", 1)
    assert analysis.steps[0].canary.p50_ms is not None
    assert analysis.steps[0].canary.p50_ms > 10
    (record,) = release.history(cluster.client(), NAMESPACE).analyses
    assert record["outcome"] == "rolled back"
    assert record["reason"] == message.removesuffix("; removed the canary")


def test_a_canary_that_fails_some_requests_or_changes_labels_is_removed(
    cluster: FakeApiServer, docker_desktop: ClusterInfo, traffic: Traffic, label_changes: list[int]
) -> None:
    traffic.per_interval[CANARY_NAME] = (95, 5, 0.0008)
    with pytest.raises(
        analysing.AnalysisFailed, match=r"breaches --max-error-rate: the canary answered 5\.00%"
    ):
        analysed(cluster, docker_desktop, traffic)
    traffic.per_interval[CANARY_NAME] = (100, 0, 0.0008)
    label_changes[0] = 3
    with pytest.raises(
        analysing.AnalysisFailed, match=r"breaches --max-label-changes: 3 of 10 compared rows"
    ):
        analysed(cluster, docker_desktop, traffic)
    # 閾値を緩めれば通る
    result, _ = analysed(cluster, docker_desktop, traffic, Thresholds(max_label_changes=3))
    assert result.analysis is not None
    assert result.analysis.outcome == "promoted"
    outcomes = [r["outcome"] for r in release.history(cluster.client(), NAMESPACE).analyses]
    assert outcomes == ["promoted", "rolled back", "rolled back"]  # 新しい順


def test_without_traffic_nothing_is_promoted(
    cluster: FakeApiServer, docker_desktop: ClusterInfo, traffic: Traffic, label_changes: list[int]
) -> None:
    traffic.per_interval = {APP_NAME: (0, 0, 0.001), CANARY_NAME: (0, 0, 0.001)}
    with pytest.raises(analysing.AnalysisFailed) as failure:
        analysed(cluster, docker_desktop, traffic)
    assert failure.value.message == (
        "analysis step 1/4 (1 canary pods): too few requests to judge: stable 0, canary 0 "
        "(at least 50 each) in 30s; removed the canary"
    )
    assert "--interval" in (failure.value.hint or "")
    assert running_image(cluster, CANARY_NAME) is None


def test_the_record_keeps_the_newest_analyses(
    cluster: FakeApiServer, docker_desktop: ClusterInfo, traffic: Traffic, label_changes: list[int]
) -> None:
    label_changes[0] = 1
    for _ in range(analysing.KEPT_ANALYSES + 2):
        with pytest.raises(analysing.AnalysisFailed):
            analysed(cluster, docker_desktop, traffic)
    assert len(release.history(cluster.client(), NAMESPACE).analyses) == analysing.KEPT_ANALYSES
    # 壊れた記録は履歴を止めない
    cluster.objects[f"/api/v1/namespaces/{NAMESPACE}/configmaps/{release.ANALYSES_NAME}"]["data"] = {
        release.ANALYSES_KEY: "{not json"
    }
    assert release.history(cluster.client(), NAMESPACE).analyses == []


def test_a_step_whose_canary_pods_never_become_ready_removes_the_canary(
    fake_api: FakeApiServer,
    docker_desktop: ClusterInfo,
    traffic: Traffic,
    label_changes: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def stuck(deployment: dict[str, Any]) -> bool:
        return deployment["metadata"]["name"] == CANARY_NAME and deployment["spec"].get("replicas") == 2

    fake_api.on_apply.append(become_ready(fake_api, stuck=stuck))
    monkeypatch.setattr(deploying, "read_record", record_of)
    with pytest.raises(MiiError) as failure:
        analysed(fake_api, docker_desktop, traffic)
    assert failure.value.message.startswith("analysis step 2/4: ")
    assert failure.value.message.endswith("; removed the canary")
    assert running_image(fake_api, CANARY_NAME) is None
    assert running_image(fake_api) == GOOD
    (record,) = release.history(fake_api.client(), NAMESPACE).analyses
    assert (record["outcome"], len(record["steps"])) == ("rolled back", 1)


@pytest.mark.parametrize(
    ("canary", "stable", "plan"),
    [(1, 4, [1, 2, 3, 4]), (1, 1, [1]), (3, 2, [3]), (2, 30, list(range(2, 11))), (1, 0, [1])],
)
def test_the_step_plan_grows_the_canary_to_the_stable_count(
    canary: int, stable: int, plan: list[int]
) -> None:
    assert analysing.step_plan(canary, stable) == plan


def reading(ok: float, le_1ms: float) -> Reading:
    return Reading({"200": ok}, {0.001: le_1ms, float("inf"): ok})


def test_a_window_adds_each_pod_s_increase_counting_a_restart_from_zero_and_skipping_unseen_pods() -> None:
    # b は起き直した（10 から数え直す）、c は初めに読めなかった（累積の全部が区間に入るので数えない）
    before = {"a": reading(100, 100), "b": reading(50, 50), "gone": reading(7, 7)}
    after = {"a": reading(150, 150), "b": reading(10, 10), "c": reading(5000, 5000)}
    window = analysing.window(before, after)
    assert window.requests == 50 + 10


# --- コマンド -------------------------------------------------------------------------------------


def test_the_command_prints_each_step_and_json_on_failure_too(
    kubeconfig: FakeApiServer,
    traffic: Traffic,
    label_changes: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = kubeconfig
    fake.on_apply.append(become_ready(fake))

    monkeypatch.setattr(deploying, "read_record", record_of)
    sleep: Callable[[float], None] = traffic.sleep
    original = deploying.deploy

    def with_fake_sleep(*args: Any, **kwargs: Any) -> deploying.DeployResult:
        return original(*args, **kwargs, sleep=sleep)

    monkeypatch.setattr(deploying, "deploy", with_fake_sleep)
    runner = CliRunner()
    first = runner.invoke(cli.app, ["deploy", "-n", NAMESPACE, "--image", GOOD, "--json"])
    assert first.exit_code == 0, first.output
    # --analysis は --canary を含む
    promoted = runner.invoke(
        cli.app, ["deploy", "-n", NAMESPACE, "--image", NEXT, "--analysis", "--interval", "5", "--json"]
    )
    assert promoted.exit_code == 0, promoted.output
    data = json.loads(promoted.stdout)
    assert data["analysis"]["outcome"] == "promoted"
    assert data["analysis"]["interval"] == 5
    assert [step["passed"] for step in data["analysis"]["steps"]] == [True] * 4
    assert data["analysis"]["promotion"]["canary_removed"] is True
    # 人向けの出力: 段の表と、昇格した版
    again = runner.invoke(
        cli.app, ["deploy", "-n", NAMESPACE, "--image", GOOD, "--analysis", "--interval", "5"]
    )
    assert again.exit_code == 0, again.output
    assert "Analysis (5s per step): promoted" in again.output
    assert f"promoted {GOOD} after 4 analysis steps: deployment/{APP_NAME}" in again.output
    # 失敗: JSON に段ごとの数字を出し、終了コード 6
    label_changes[0] = 2
    refused = runner.invoke(
        cli.app,
        ["deploy", "-n", NAMESPACE, "--image", GOOD, "--analysis", "--max-label-changes", "1", "--json"],
    )
    assert refused.exit_code == 6, refused.output
    failed = json.loads(refused.stdout)
    assert failed["analysis"]["outcome"] == "rolled back"
    assert failed["analysis"]["steps"][0]["findings"][0]["threshold"] == "max-label-changes"
    assert failed["error"]["exit_code"] == 6
    assert failed["error"]["message"].startswith("analysis step 1/4 (1 canary pods): the canary breaches")
    assert "breaches --max-label-changes" in refused.output
    # 人向け: mii history に分析の表
    shown = runner.invoke(cli.app, ["history", "-n", NAMESPACE])
    assert shown.exit_code == 0, shown.output
    assert "analyses" in shown.output
    assert "rolled back" in shown.output
    # 閾値は分析のためのもの
    alone = runner.invoke(cli.app, ["deploy", "-n", NAMESPACE, "--image", GOOD, "--max-error-rate", "0.1"])
    assert alone.exit_code == 2
    assert "add --analysis" in alone.output


def test_a_promotion_that_fails_its_gate_also_removes_the_canary(
    fake_api: FakeApiServer,
    docker_desktop: ClusterInfo,
    traffic: Traffic,
    label_changes: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def stuck(deployment: dict[str, Any]) -> bool:
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        return deployment["metadata"]["name"] == APP_NAME and image == NEXT

    fake_api.on_apply.append(become_ready(fake_api, stuck=stuck))
    monkeypatch.setattr(deploying, "read_record", record_of)
    with pytest.raises(analysing.AnalysisFailed) as failure:
        analysed(fake_api, docker_desktop, traffic)
    assert failure.value.message.startswith("promotion: ")
    assert "rolled back to revision 1" in failure.value.message
    assert failure.value.message.endswith("; removed the canary")
    assert (running_image(fake_api), running_image(fake_api, CANARY_NAME)) == (GOOD, None)
    (record,) = release.history(fake_api.client(), NAMESPACE).analyses
    assert (record["outcome"], len(record["steps"])) == ("rolled back", 4)
    # 昇格の前に canary を最初の大きさ（1 Pod）に戻した: ノードに昇格の追加の Pod の場所を空ける
    patches = [
        r.body for r in fake_api.methods("PATCH", f"{DEPLOYMENTS}/{CANARY_NAME}") if isinstance(r.body, list)
    ]
    assert [p[0]["value"] for p in patches] == [2, 3, 4, 1]


def test_answers_that_cannot_be_compared_remove_the_canary_before_any_step(
    cluster: FakeApiServer, docker_desktop: ClusterInfo, traffic: Traffic, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(*_: Any) -> Verdict:
        raise ClusterError("port-forward to model-in-image-canary-0 failed")

    monkeypatch.setattr(deploying, "compare_with_stable", unreachable)
    with pytest.raises(analysing.AnalysisFailed) as failure:
        analysed(cluster, docker_desktop, traffic)
    assert failure.value.message == (
        "comparing the answers: port-forward to model-in-image-canary-0 failed; removed the canary"
    )
    assert failure.value.exit_code == ClusterError.exit_code
    assert traffic.sleeps == []
    assert running_image(cluster, CANARY_NAME) is None


def test_no_rollback_leaves_a_breaching_canary_for_inspection(
    cluster: FakeApiServer, docker_desktop: ClusterInfo, traffic: Traffic, label_changes: list[int]
) -> None:
    label_changes[0] = 1
    with pytest.raises(analysing.AnalysisFailed, match=r"the canary is left running \(--no-rollback\)"):
        analysed(cluster, docker_desktop, traffic, rollback_on_failure=False)
    assert running_image(cluster, CANARY_NAME) == NEXT
    assert release.history(cluster.client(), NAMESPACE).analyses[0]["outcome"] == "left running"


def test_a_record_that_cannot_be_written_does_not_change_the_outcome(
    cluster: FakeApiServer, docker_desktop: ClusterInfo, traffic: Traffic, label_changes: list[int]
) -> None:
    path = f"/api/v1/namespaces/{NAMESPACE}/configmaps/{release.ANALYSES_NAME}"
    cluster.routes[("PATCH", path)] = (500, {"kind": "Status", "code": 500, "message": "etcd is away"})
    result, reported = analysed(cluster, docker_desktop, traffic)
    assert result.analysis is not None
    assert result.analysis.outcome == "promoted"
    assert any("not recorded for mii history" in r.message for r in reported if r.state == "warn")
