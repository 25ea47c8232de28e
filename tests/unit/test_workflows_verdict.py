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
from mii_cli.kube import APP_NAME, CANARY_NAME, SHADOW_NAME
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


# --- 影（shadow）: 安定版の Pod が写した生のリクエストの数字 -----------------------------------------


def stable_text(
    ok: int,
    *,
    percent: float,
    mirrored: int,
    dropped: int = 0,
    compared: list[tuple[int, int, float | None]],
    answers: list[tuple[str, float]],
) -> str:
    """安定版の Pod の /metrics（本物のサービスの Metrics）: 推論のリクエストと、影への写しの数字。"""
    metrics = Metrics()
    for _ in range(ok):
        metrics.observe_request("POST", "/predict", 200, 0.0008)
    shadow = metrics.shadow
    shadow.percent, shadow.mirrored, shadow.dropped = percent, mirrored, dropped
    for rows, changes, difference in compared:
        shadow.compared(rows, changes, difference)
    for status, seconds in answers:
        shadow.answered(status, seconds)
    return generate_latest(metrics.registry).decode()


@pytest.fixture
def shadow_running(fake_api: FakeApiServer) -> FakeApiServer:
    """安定版の Ready な Pod 2 つ（と Ready でない 1 つ）、影の Pod 1 つと、それぞれの /metrics。

    stable-a: 8 つ比べて 1 つのラベルが変わり（差 0.25）、1 つは期限切れ。stable-b: 10 比べて 1 つのラベルが
    変わり（差 0.5）、影は 1 つに 500 で答え、1 つは届かなかった。影は 60 件のうち 3 件に 500。
    """
    for name in (APP_NAME, SHADOW_NAME):
        fake_api.put(f"{DEPLOYMENTS}/{name}", {"metadata": {"name": name, "namespace": NAMESPACE}})
    put_pods(
        fake_api,
        pod("stable-a", labels={"app": APP_NAME}),
        pod("stable-b", labels={"app": APP_NAME}),
        pod("stable-c", labels={"app": APP_NAME}, ready=False),
        pod("shadow-a", labels={"app": SHADOW_NAME}),
    )
    proxy(
        fake_api,
        "stable-a",
        (
            200,
            stable_text(
                90,
                percent=10,
                mirrored=9,
                compared=[(1, 1, 0.25), *[(1, 0, 0.01)] * 7],
                answers=[*[("200", 0.002)] * 8, ("timeout", 1.0)],
            ),
        ),
    )
    proxy(
        fake_api,
        "stable-b",
        (
            200,
            stable_text(
                110,
                percent=10,
                mirrored=11,
                dropped=1,
                compared=[(1, 1, 0.5), *[(1, 0, None)] * 9],
                answers=[*[("200", 0.002)] * 10, ("500", 0.003), ("unreachable", 0.0)],
            ),
        ),
    )
    proxy(fake_api, "shadow-a", (200, metrics_text(57, 3, 0.0008)))
    return fake_api


def test_the_shadow_verdict_adds_up_the_stable_pods_mirror_numbers(shadow_running: FakeApiServer) -> None:
    result = v.shadow_verdict(shadow_running.client(), NAMESPACE)
    assert isinstance(result, v.ShadowVerdict)
    assert (result.stable.deployment, result.stable.pods) == (APP_NAME, ["stable-a", "stable-b"])
    assert (result.stable.traffic.requests, result.stable.traffic.errors) == (200, 0)
    assert (result.shadow.deployment, result.shadow.pods) == (SHADOW_NAME, ["shadow-a"])
    # 影自身の 60 件（5xx は 3）に、写した側が数えた答えの無い写し 2 件（timeout・unreachable）を足す
    assert (result.shadow.traffic.requests, result.shadow.traffic.errors) == (62, 5)
    assert result.mirror.unanswered == 2
    mirror = result.mirror
    assert (mirror.percent, mirror.mirrored, mirror.dropped) == (10.0, 20, 1)
    assert (mirror.compared, mirror.agreed, mirror.rows, mirror.label_changes) == (18, 16, 18, 2)
    assert mirror.largest_difference == 0.5  # 最大（足さない）
    # 影のエラー: 5xx と、答えの無かった写し（期限切れ・届かない）
    assert mirror.errors_by_status == {"500": 1, "timeout": 1, "unreachable": 1}
    assert (mirror.answered, mirror.errors) == (21, 3)
    assert mirror.error_rate == pytest.approx(3 / 21)
    assert mirror.p50_ms is not None
    assert 1.0 < mirror.p50_ms <= 2.5
    assert result.judgement is None
    assert v.judgement_error(result) is None
    # 安定版の Pod の /metrics は 1 度だけ読む（推論の数字と写しの数字の両方に）
    reads = [r.path for r in shadow_running.methods("GET") if r.path.endswith("/proxy/metrics")]
    assert sorted(reads) == sorted(
        f"/api/v1/namespaces/{NAMESPACE}/pods/{name}:8000/proxy/metrics"
        for name in ("stable-a", "stable-b", "shadow-a")
    )


def test_stable_pods_that_disagree_on_the_percent_show_no_percent(shadow_running: FakeApiServer) -> None:
    proxy(
        shadow_running,
        "stable-b",
        (200, stable_text(110, percent=0, mirrored=0, compared=[], answers=[])),
    )
    result = v.shadow_verdict(shadow_running.client(), NAMESPACE)
    assert result.mirror.percent is None  # 写しを切り替えている途中
    assert (result.mirror.mirrored, result.mirror.label_changes) == (9, 1)


def test_a_stable_pod_that_cannot_be_read_is_named_and_left_out_of_the_mirror_numbers(
    shadow_running: FakeApiServer,
) -> None:
    proxy(
        shadow_running,
        "stable-b",
        (
            503,
            {"kind": "Status", "status": "Failure", "message": "error trying to reach service", "code": 503},
        ),
    )
    result = v.shadow_verdict(shadow_running.client(), NAMESPACE)
    assert result.stable.pods == ["stable-a", "stable-b"]
    assert result.stable.unread[0].startswith("stable-b: ")
    assert (result.stable.traffic.requests, result.mirror.mirrored, result.mirror.largest_difference) == (
        90,
        9,
        0.25,
    )
    assert result.mirror.errors_by_status == {"timeout": 1}


def test_the_shadow_is_judged_as_the_shadow(shadow_running: FakeApiServer) -> None:
    result = v.shadow_verdict(shadow_running.client(), NAMESPACE, Thresholds())
    assert result.judgement is not None
    assert [f.threshold for f in result.judgement.findings] == ["max-label-changes", "max-error-rate"]
    assert result.judgement.findings[1].message == (
        "the shadow failed 8.06% of the mirrored requests (5xx or no answer) (limit 1.00%)"
    )
    error = v.judgement_error(result)
    assert isinstance(error, CheckFailed)
    assert error.message == (
        "the shadow breaches --max-label-changes: 2 of 18 compared rows changed their label (limit 0) "
        "(1 more finding: max-error-rate)"
    )
    assert error.hint == f"mii rollback -n {NAMESPACE} removes the shadow"
    # ラベルの変わった行が --max-label-changes まで、5xx が --max-error-rate までなら通る
    relaxed = v.shadow_verdict(
        shadow_running.client(), NAMESPACE, Thresholds(max_label_changes=2, max_error_rate=0.09)
    )
    assert relaxed.judgement is not None
    assert relaxed.judgement.passed
    breached = v.shadow_verdict(
        shadow_running.client(), NAMESPACE, Thresholds(max_label_changes=1, max_error_rate=0.09)
    )
    assert breached.judgement is not None
    assert [f.threshold for f in breached.judgement.findings] == ["max-label-changes"]


def test_too_few_shadow_requests_cannot_be_judged(shadow_running: FakeApiServer) -> None:
    result = v.shadow_verdict(shadow_running.client(), NAMESPACE, Thresholds(min_requests=100))
    assert result.judgement is not None
    assert result.judgement.undecided == (
        "too few requests to judge: stable 200, shadow 62 (at least 100 each)"
    )
    error = v.judgement_error(result)
    assert type(error) is MiiError
    assert error.message.startswith("cannot judge the shadow yet: too few requests")


def test_a_shadow_that_refuses_mirrored_requests_takes_other_inputs(shadow_running: FakeApiServer) -> None:
    proxy(
        shadow_running,
        "stable-b",
        (200, stable_text(110, percent=10, mirrored=5, compared=[], answers=[("422", 0.001)] * 5)),
    )
    result = v.shadow_verdict(shadow_running.client(), NAMESPACE, Thresholds(max_error_rate=0.5))
    assert result.judgement is not None
    (finding,) = result.judgement.findings
    assert finding.threshold == "max-label-changes"
    assert finding.message.startswith("the shadow's model takes different inputs")


def test_the_verdict_is_on_the_canary_if_there_is_one_else_on_the_shadow(
    fake_api: FakeApiServer, canary_running: list[Any], shadow_running: FakeApiServer
) -> None:
    assert isinstance(v.verdict(fake_api.client(), NAMESPACE), v.CanaryVerdict)
    del fake_api.objects[f"{DEPLOYMENTS}/{CANARY_NAME}"]
    assert isinstance(v.verdict(fake_api.client(), NAMESPACE), v.ShadowVerdict)


def test_without_a_canary_or_a_shadow_there_is_no_verdict(fake_api: FakeApiServer) -> None:
    fake_api.put(f"{DEPLOYMENTS}/{APP_NAME}", {"metadata": {"name": APP_NAME, "namespace": NAMESPACE}})
    with pytest.raises(ConfigError, match="there is no canary or shadow in namespace") as error:
        v.verdict(fake_api.client(), NAMESPACE)
    assert "mii deploy --shadow" in (error.value.hint or "")
    assert "mii deploy --canary" in (error.value.hint or "")


def test_the_command_without_a_canary_or_a_shadow_is_one_error(kubeconfig: FakeApiServer) -> None:
    result = CliRunner().invoke(cli.app, ["verdict", "-n", NAMESPACE, "--judge"])
    assert result.exit_code == ConfigError.exit_code
    lines = result.output.splitlines()
    assert [line for line in lines if line.startswith("Error:")] == [
        f"Error: there is no canary or shadow in namespace {NAMESPACE} to give a verdict on"
    ]
    assert "Traceback" not in result.output


def test_the_command_prints_the_shadow_and_its_mirrored_numbers_and_json(
    kubeconfig: FakeApiServer, shadow_running: FakeApiServer
) -> None:
    runner = CliRunner()
    shown = runner.invoke(cli.app, ["verdict", "-n", NAMESPACE])
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    for expected in (
        SHADOW_NAME,
        "Mirrored live requests (as the stable pods saw them)",
        "mirroring 10%",
        "mirrored 20",
        "dropped (queue full) 1",
        "compared 18 requests, 18 rows",
        "label changes (rows) 2",
        "largest output difference 0.5",
        "shadow errors 3 (14.29%): 500: 1, timeout: 1, unreachable: 1",
        "next: `mii deploy --analysis --image <the shadow's image>`",
    ):
        assert expected in text, expected
    assert "errors (5xx, no answer)" in text
    assert "8.06%" in text  # 影の 5xx と答えの無い写し: 5 / 62
    as_json = runner.invoke(cli.app, ["verdict", "-n", NAMESPACE, "--json"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert set(data) == {"namespace", "stable", "shadow", "mirror", "judgement"}
    assert (data["shadow"]["traffic"]["requests"], data["shadow"]["traffic"]["errors"]) == (62, 5)
    assert data["mirror"]["errors_by_status"] == {"500": 1, "timeout": 1, "unreachable": 1}
    assert (data["mirror"]["percent"], data["mirror"]["same_inputs"]) == (10.0, True)


def test_the_command_s_exit_code_is_the_shadow_s_judgement(
    kubeconfig: FakeApiServer, shadow_running: FakeApiServer
) -> None:
    runner = CliRunner()
    breached = runner.invoke(cli.app, ["verdict", "-n", NAMESPACE, "--judge"])
    assert breached.exit_code == CheckFailed.exit_code == 6, breached.output
    assert "BREACHED" in breached.output
    assert "the shadow breaches --max-label-changes" in " ".join(breached.output.split())
    assert "Traceback" not in breached.output
    # 判定を超えるのがラベルの変わった行だけでも（--max-label-changes の外）
    labels_only = runner.invoke(
        cli.app, ["verdict", "-n", NAMESPACE, "--max-error-rate", "0.09", "--max-label-changes", "1"]
    )
    assert labels_only.exit_code == 6, labels_only.output
    relaxed = runner.invoke(
        cli.app,
        ["verdict", "-n", NAMESPACE, "--json", "--max-error-rate", "0.09", "--max-label-changes", "2"],
    )
    assert relaxed.exit_code == 0, relaxed.output
    assert json.loads(relaxed.stdout)["judgement"]["passed"] is True
    undecided = runner.invoke(cli.app, ["verdict", "-n", NAMESPACE, "--min-requests", "1000"])
    assert undecided.exit_code == 1
    assert "cannot judge the shadow yet: too few requests to judge" in " ".join(undecided.output.split())


def test_an_unread_stable_pod_is_shown_under_the_shadow_tables(
    kubeconfig: FakeApiServer, shadow_running: FakeApiServer
) -> None:
    proxy(shadow_running, "stable-b", (200, "not prometheus {"))
    shown = CliRunner().invoke(cli.app, ["verdict", "-n", NAMESPACE])
    assert shown.exit_code == 0, shown.output
    assert "not read: stable-b: " in shown.output


def test_a_shadow_that_never_answers_is_a_breach_not_too_few_requests(shadow_running: FakeApiServer) -> None:
    # 止まった影: 影自身は何も数えず、写した側だけが期限切れを数える
    proxy(shadow_running, "shadow-a", (200, metrics_text(0, 0, 0.0008)))
    for name in ("stable-a", "stable-b"):
        proxy(
            shadow_running,
            name,
            (200, stable_text(100, percent=10, mirrored=30, compared=[], answers=[("timeout", 2.0)] * 30)),
        )
    result = v.shadow_verdict(shadow_running.client(), NAMESPACE, Thresholds())
    assert result.judgement is not None
    assert result.judgement.undecided is None
    (finding,) = result.judgement.findings
    assert finding.threshold == "max-error-rate"
    assert finding.message.startswith("the shadow failed 100.00% of the mirrored requests")
