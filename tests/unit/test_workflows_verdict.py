"""`mii verdict` の処理（クラスタは HTTP の境界の代役）: 両方の側の Pod の /metrics を API サーバー越しに。"""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import generate_latest
from typer.testing import CliRunner

from mii_cli import cli
from mii_cli.commands.options import thresholds_from
from mii_cli.errors import CheckFailed, ConfigError, MiiError
from mii_cli.kube import APP_NAME, CANARY_NAME
from mii_cli.probe.analysis import Thresholds
from mii_cli.probe.compare import OutputDifference, Verdict
from mii_cli.workflows import verdict as v
from service.app.metrics import Metrics
from tests.fakes.kube_api import FakeApiServer
from tests.fakes.kube_objects import NAMESPACE, pod, put_pods

DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"


def metrics_text(ok: int, errors: int, seconds: float) -> str:
    metrics = Metrics()
    for _ in range(ok):
        metrics.observe_request("POST", "/predict", 200, seconds)
    for _ in range(errors):
        metrics.observe_request("POST", "/predict", 500, seconds)
    return generate_latest(metrics.registry).decode()


def proxy(fake: FakeApiServer, name: str, answer: tuple[int, Any]) -> None:
    fake.routes[("GET", f"/api/v1/namespaces/{NAMESPACE}/pods/{name}:8000/proxy/metrics")] = answer


@pytest.fixture
def canary_running(fake_api: FakeApiServer, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """安定版の Pod 2 つと canary の Pod 1 つと、それぞれの /metrics。行の比較は代わり（行を記録）。"""
    for name in (APP_NAME, CANARY_NAME):
        fake_api.put(f"{DEPLOYMENTS}/{name}", {"metadata": {"name": name, "namespace": NAMESPACE}})
    put_pods(
        fake_api,
        pod("stable-a", labels={"app": APP_NAME}),
        pod("stable-b", labels={"app": APP_NAME}),
        pod("stable-c", labels={"app": APP_NAME}, ready=False),
        pod("canary-a", labels={"app": CANARY_NAME}),
    )
    proxy(fake_api, "stable-a", (200, metrics_text(90, 0, 0.0008)))
    proxy(fake_api, "stable-b", (200, metrics_text(110, 0, 0.0008)))
    proxy(fake_api, "canary-a", (200, metrics_text(45, 5, 0.02)))
    calls: list[Any] = []

    def compare(client: Any, namespace: str, rows: Any, status: Any) -> Verdict:
        calls.append(rows)
        return Verdict(
            rows=1 + len(rows or []),
            label_changes=1,
            differences=[OutputDifference("probabilities", 0.25), OutputDifference("label", None, "labels")],
        )

    monkeypatch.setattr(v, "compare_with_stable", compare)
    return calls


def test_the_verdict_adds_up_each_side_s_pods(fake_api: FakeApiServer, canary_running: list[Any]) -> None:
    result = v.canary_verdict(fake_api.client(), NAMESPACE, [[1.0, 2.0, 3.0, 4.0]])
    assert result.stable.pods == ["stable-a", "stable-b"]  # Ready でない Pod は読まない
    assert (result.stable.traffic.requests, result.stable.traffic.errors) == (200, 0)
    assert (result.canary.traffic.requests, result.canary.traffic.errors) == (50, 5)
    assert result.canary.traffic.error_rate == 0.1
    assert result.stable.traffic.p99_ms is not None
    assert result.stable.traffic.p99_ms <= 1.0
    assert result.canary.traffic.p50_ms is not None
    assert result.canary.traffic.p50_ms > 10.0
    assert (result.answers.rows, result.answers.label_changes, result.largest_difference) == (2, 1, 0.25)
    assert canary_running == [[[1.0, 2.0, 3.0, 4.0]]]
    # 読んだのは API サーバーの Pod のプロキシ
    assert {
        r.path for r in fake_api.methods("GET", f"/api/v1/namespaces/{NAMESPACE}/pods/") if "proxy" in r.path
    } == {
        f"/api/v1/namespaces/{NAMESPACE}/pods/{name}:8000/proxy/metrics"
        for name in ("stable-a", "stable-b", "canary-a")
    }


def test_a_pod_whose_metrics_cannot_be_read_is_named_and_left_out(
    fake_api: FakeApiServer, canary_running: list[Any]
) -> None:
    # 本物の API サーバーは届かない Pod に 503 の Status を返す
    proxy(
        fake_api,
        "stable-b",
        (
            503,
            {"kind": "Status", "status": "Failure", "message": "error trying to reach service", "code": 503},
        ),
    )
    result = v.canary_verdict(fake_api.client(), NAMESPACE)
    assert result.stable.traffic.requests == 90
    assert len(result.stable.unread) == 1
    assert result.stable.unread[0].startswith("stable-b: ")
    proxy(fake_api, "canary-a", (200, "not prometheus {"))
    assert v.canary_verdict(fake_api.client(), NAMESPACE).canary.unread[0].startswith("canary-a: ")


def test_without_a_canary_there_is_no_verdict(fake_api: FakeApiServer) -> None:
    with pytest.raises(ConfigError, match="there is no canary in namespace") as error:
        v.canary_verdict(fake_api.client(), NAMESPACE)
    assert "mii deploy --canary" in (error.value.hint or "")


def test_the_command_prints_both_sides_and_json(kubeconfig: FakeApiServer, canary_running: list[Any]) -> None:
    runner = CliRunner()
    shown = runner.invoke(cli.app, ["verdict", "-n", NAMESPACE])
    assert shown.exit_code == 0, shown.output
    assert "model-in-image-canary" in shown.output
    assert "10.00%" in shown.output  # canary の 5xx の割合
    as_json = runner.invoke(cli.app, ["verdict", "-n", NAMESPACE, "--json"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert data["canary"]["traffic"]["error_rate"] == 0.1
    assert data["stable"]["traffic"]["requests"] == 200
    assert data["answers"]["label_changes"] == 1
    assert data["largest_difference"] == 0.25
    assert {"p50_ms", "p99_ms"} <= set(data["stable"]["traffic"])


def test_judged_against_the_default_thresholds_every_breach_is_named(
    fake_api: FakeApiServer, canary_running: list[Any]
) -> None:
    result = v.canary_verdict(fake_api.client(), NAMESPACE, thresholds=Thresholds())
    assert result.judgement is not None
    assert not result.judgement.passed
    # 答え（ラベルの変わった行 1）、5xx 10%、遅延（p50 が安定版の 20 倍を超える）の順。p99 は canary が
    # 50 件なので比べない（P99_MIN_REQUESTS）
    assert [f.threshold for f in result.judgement.findings] == [
        "max-label-changes",
        "max-error-rate",
        "max-latency-ratio",
    ]
    error = v.judgement_error(result)
    assert isinstance(error, CheckFailed)
    assert error.message == (
        "the canary breaches --max-label-changes: 1 of 1 compared rows changed their label (limit 0) "
        "(2 more findings: max-error-rate, max-latency-ratio)"
    )
    assert "mii rollback" in (error.hint or "")


def test_too_few_requests_are_not_a_pass_or_a_breach(
    fake_api: FakeApiServer, canary_running: list[Any]
) -> None:
    result = v.canary_verdict(fake_api.client(), NAMESPACE, thresholds=Thresholds(min_requests=100))
    assert result.judgement is not None
    assert (result.judgement.passed, result.judgement.findings) == (False, [])
    assert (
        result.judgement.undecided == "too few requests to judge: stable 200, canary 50 (at least 100 each)"
    )
    error = v.judgement_error(result)
    assert type(error) is MiiError
    assert error.exit_code == 1
    assert error.message.startswith("cannot judge the canary yet: too few requests")


def test_without_thresholds_nothing_is_judged(fake_api: FakeApiServer, canary_running: list[Any]) -> None:
    result = v.canary_verdict(fake_api.client(), NAMESPACE)
    assert result.judgement is None
    assert v.judgement_error(result) is None


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((False, None, None, None, None), None),
        ((True, None, None, None, None), Thresholds()),
        ((False, 0.05, None, 3, None), Thresholds(max_error_rate=0.05, max_label_changes=3)),
        ((False, None, 2.0, None, 10), Thresholds(max_latency_ratio=2.0, min_requests=10)),
    ],
)
def test_any_threshold_option_turns_judging_on(args: tuple[Any, ...], expected: Thresholds | None) -> None:
    assert thresholds_from(*args) == expected


def test_the_command_s_exit_code_is_the_judgement(
    kubeconfig: FakeApiServer, canary_running: list[Any]
) -> None:
    runner = CliRunner()
    breached = runner.invoke(cli.app, ["verdict", "-n", NAMESPACE, "--judge"])
    assert breached.exit_code == CheckFailed.exit_code, breached.output
    assert "BREACHED" in breached.output
    assert "the canary breaches --max-label-changes" in breached.output
    assert "Traceback" not in breached.output
    # 限度を緩めれば通る（JSON には判定と使った閾値）
    relaxed = runner.invoke(
        cli.app,
        [
            *("verdict", "-n", NAMESPACE, "--json", "--max-error-rate", "0.2"),
            *("--max-latency-ratio", "100", "--max-label-changes", "1"),
        ],
    )
    assert relaxed.exit_code == 0, relaxed.output
    judgement = json.loads(relaxed.stdout)["judgement"]
    assert (judgement["passed"], judgement["findings"], judgement["undecided"]) == (True, [], None)
    assert judgement["thresholds"]["max_error_rate"] == 0.2
    assert judgement["thresholds"]["min_requests"] == Thresholds().min_requests
    # 件数が足りない: JSON は出し、終了コードは 1
    undecided = runner.invoke(cli.app, ["verdict", "-n", NAMESPACE, "--json", "--min-requests", "1000"])
    assert undecided.exit_code == 1
    assert json.loads(undecided.stdout)["judgement"]["undecided"].startswith("too few requests to judge")
    # 範囲の外の閾値は、クラスタに触れる前に使い方の誤り
    bad = runner.invoke(cli.app, ["verdict", "-n", NAMESPACE, "--max-error-rate", "2"])
    assert bad.exit_code == 2
