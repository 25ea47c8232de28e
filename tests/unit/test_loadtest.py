"""負荷試験の判定・時間の解釈・百分位・集計・表示の単体テスト（locust は動かさない）。"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import pytest
from rich.console import Console
from typer.testing import CliRunner

from mii_cli import cli, loadtest
from mii_cli.errors import ConfigError
from mii_cli.loadtest import LoadTestOptions, LoadTestResult, judge, parse_duration, percentile
from tests.conftest import ROOT

runner = CliRunner()


def _verdict(**overrides: object) -> loadtest.Verdict:
    values: dict[str, object] = {"requests": 5000, "failures": 0, "requests_per_s": 500.0, "p99_ms": 12.0}
    values.update(overrides)
    return judge(**values)  # type: ignore[arg-type]


def test_judge_passes_when_every_target_is_met() -> None:
    verdict = _verdict()
    assert verdict.passed
    assert [c.name for c in verdict.criteria] == ["throughput", "p99 latency", "failed requests"]
    assert verdict.reasons == []


@pytest.mark.parametrize(
    ("overrides", "failed"),
    [
        ({"requests_per_s": 100.0}, "throughput"),  # 「100 を超える」なのでちょうど 100 は不合格
        ({"requests_per_s": 99.9}, "throughput"),
        ({"p99_ms": 100.0}, "p99 latency"),  # 「100 ms 未満」なのでちょうど 100 は不合格
        ({"p99_ms": 250.0}, "p99 latency"),
        ({"failures": 1}, "failed requests"),
    ],
)
def test_judge_fails_on_each_threshold(overrides: dict[str, float], failed: str) -> None:
    verdict = _verdict(**overrides)
    assert not verdict.passed
    assert [c.name for c in verdict.criteria if not c.ok] == [failed]
    assert verdict.reasons[0].startswith(f"{failed}: ")


def test_judge_just_inside_the_thresholds_passes() -> None:
    assert _verdict(requests_per_s=100.1, p99_ms=99.9).passed


def test_judge_with_no_requests_fails_everything() -> None:
    verdict = judge(requests=0, failures=0, requests_per_s=0.0, p99_ms=None)
    assert not verdict.passed
    assert all(not c.ok for c in verdict.criteria)
    assert "p99 latency: no responses (target < 100 ms)" in verdict.reasons


def test_judge_with_custom_targets() -> None:
    assert not _verdict(min_rps=1000.0).passed
    assert not _verdict(max_p99_ms=10.0).passed


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("45", 45.0),
        ("2m", 120.0),
        ("1m30s", 90.0),
        ("1h", 3600.0),
        ("2.5s", 2.5),
        (" 10S ", 10.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "10x", "-5s", "0s", "0", "s"])
def test_parse_duration_refuses_nonsense(text: str) -> None:
    with pytest.raises(ConfigError, match="--duration"):
        parse_duration(text)


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.95) == 95.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([1.0, 2.0], 0.0) == 1.0
    assert percentile([], 0.5) is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"url": "localhost:8000"}, "--url must be an http"),
        ({"endpoint": "health"}, "unknown endpoint"),
        ({"duration_s": 0.0}, "--duration"),
        ({"users": 0}, "--users"),
        ({"spawn_rate": 0.0}, "--spawn-rate"),
        ({"rate": 0.0}, "--rate"),
    ],
)
def test_options_validate(changes: dict[str, object], message: str) -> None:
    options = LoadTestOptions(**{"url": "http://127.0.0.1:8000", **changes})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=message):
        options.validate()


def test_describe() -> None:
    options = LoadTestOptions(url="http://127.0.0.1:8000", endpoint="mixed", rate=200.0)
    text = loadtest.describe(options)
    assert "POST /predict + POST /predict/label" in text
    assert "capped at 200 requests/s" in text
    assert "no rate cap" in loadtest.describe(LoadTestOptions(url="http://127.0.0.1:8000"))


def test_collector_counts_times_failures_and_pods() -> None:
    collector = loadtest._Collector()
    ok = types.SimpleNamespace(headers={"X-Served-By": "pod-a"})
    collector.on_request("POST", "/predict", 2.0, 60, exception=None, response=ok)
    collector.on_request("POST", "/predict", 4.0, 60, exception=None, response=ok)
    collector.on_request("POST", "/predict/label", 9.0, 0, exception=ConnectionRefusedError("refused"))
    assert collector.times_ms == [2.0, 4.0, 9.0]
    assert collector.failures == 1
    assert collector.errors == {"refused": 1}
    assert collector.served_by == {"pod-a": 2}
    assert collector.by_endpoint == {"POST /predict": 2, "POST /predict/label": 1}
    count, failures, rps, p99 = collector.snapshot(2.0)
    assert (count, failures, rps, p99) == (3, 1, 1.5, 9.0)
    assert collector.snapshot(0.0)[2] == 0.0


def _result(passed: bool) -> LoadTestResult:
    p99 = 8.0 if passed else 150.0
    verdict = judge(requests=3000, failures=0, requests_per_s=1000.0, p99_ms=p99)
    return LoadTestResult(
        options=LoadTestOptions(url="http://127.0.0.1:8000", duration_s=3.0, users=5),
        elapsed_s=3.0,
        requests=3000,
        failures=0,
        requests_per_s=1000.0,
        latency_ms={"p50": 2.0, "p95": 5.0, "p99": p99, "max": 200.0, "mean": 2.5},
        verdict=verdict,
        served_by={"pod-a": 3000},
    )


def test_result_as_dict_is_json() -> None:
    data = _result(passed=False).as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["passed"] is False
    assert data["reasons"] == ["p99 latency: 150.0 ms (target < 100 ms)"]
    assert data["targets"] == {"min_requests_per_s": 100.0, "max_p99_ms": 100.0}
    assert data["latency_ms"]["p99"] == 150.0


def test_summary_table() -> None:
    console = Console(width=120, record=True)
    console.print(loadtest.summary_table(_result(passed=True)))
    text = console.export_text()
    assert "1,000.0" in text
    assert "< 100 ms" in text
    assert "pod-a (3,000)" in text
    assert "FAIL" not in text
    console = Console(width=120, record=True)
    console.print(loadtest.summary_table(_result(passed=False)))
    assert "FAIL" in console.export_text()


def test_importing_the_cli_does_not_import_locust_or_gevent() -> None:
    code = (
        "import sys, mii_cli.cli, mii_cli.loadtest\n"
        "print(sorted(m for m in ('locust', 'gevent') if m in sys.modules))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        # 計測中の coverage（gevent に対応する設定）がサブプロセスで gevent を読み込まないようにする
        env={k: v for k, v in os.environ.items() if "COV" not in k.upper()},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert output.strip() == "[]"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--duration", "soon"], "Error: --duration 'soon' is not a duration"),
        (["--users", "0"], "Invalid value for '--users'"),
        (["--endpoint", "health"], "Invalid value for '--endpoint'"),
    ],
)
def test_cli_refuses_bad_options_before_starting_locust(args: list[str], message: str) -> None:
    result = runner.invoke(cli.app, ["load-test", "--url", "http://127.0.0.1:9", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "locust" not in sys.modules


def test_cli_refuses_a_url_without_scheme() -> None:
    result = runner.invoke(cli.app, ["load-test", "--url", "127.0.0.1:8000"])
    assert result.exit_code == 2
    assert "Error: --url must be an http:// or https:// URL" in result.output
