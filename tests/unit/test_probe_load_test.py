"""負荷試験の判定・時間の解釈・百分位・集計・結果の JSON の単体テスト（locust は動かさない）。"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import pytest

from mii_cli.errors import ConfigError
from mii_cli.probe import load_test as loadtest
from mii_cli.probe.load_test import (
    Collector,
    LoadProgress,
    LoadTestOptions,
    judge,
    parse_duration,
    percentile,
)
from mii_cli.results import to_json
from tests.support import ROOT


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


def _collected() -> Collector:
    """2 件成功（pod-a）・1 件失敗の集計。"""
    collector = Collector()
    ok = types.SimpleNamespace(headers={"X-Served-By": "pod-a"})
    collector.on_request("POST", "/predict", 2.0, 60, exception=None, response=ok)
    collector.on_request("POST", "/predict", 4.0, 60, exception=None, response=ok)
    collector.on_request("POST", "/predict/label", 9.0, 0, exception=ConnectionRefusedError("refused"))
    return collector


def test_the_collector_counts_times_failures_pods_and_endpoints() -> None:
    collector = _collected()
    assert collector.times_ms == [2.0, 4.0, 9.0]
    assert collector.failures == 1
    assert collector.errors == {"refused": 1}
    assert collector.served_by == {"pod-a": 2}
    assert collector.by_endpoint == {"POST /predict": 2, "POST /predict/label": 1}


def test_the_progress_is_a_snapshot_of_the_collector() -> None:
    assert _collected().snapshot(2.0) == LoadProgress(
        elapsed_s=2.0, requests=3, failures=1, requests_per_s=1.5, p99_ms=9.0
    )


def test_the_progress_at_the_start_has_no_rate() -> None:
    assert _collected().snapshot(0.0).requests_per_s == 0.0


def test_the_result_summarizes_the_collector_and_judges_it() -> None:
    options = LoadTestOptions(url="http://127.0.0.1:8000", duration_s=3.0, users=5)
    result = loadtest.summarize(options, _collected(), 2.0)
    assert (result.requests, result.failures, result.requests_per_s) == (3, 1, 1.5)
    assert result.latency_ms == {"p50": 4.0, "p95": 9.0, "p99": 9.0, "max": 9.0, "mean": 5.0}
    assert not result.passed
    assert [c.name for c in result.criteria if not c.ok] == ["throughput", "failed requests"]


def test_the_result_json_has_the_options_targets_and_verdict() -> None:
    options = LoadTestOptions(url="http://127.0.0.1:8000", duration_s=3.0, users=5, rate=200.0)
    data = to_json(loadtest.summarize(options, _collected(), 2.0))
    assert json.loads(json.dumps(data)) == data
    assert set(data) == {
        "url",
        "endpoint",
        "duration_s",
        "users",
        "spawn_rate",
        "rate",
        "elapsed_s",
        "requests",
        "failures",
        "requests_per_s",
        "latency_ms",
        "targets",
        "passed",
        "criteria",
        "reasons",
        "errors",
        "served_by",
        "by_endpoint",
    }
    assert data["targets"] == {"min_requests_per_s": 100.0, "max_p99_ms": 100.0}
    assert data["reasons"] == [
        "throughput: 1.5 requests/s (target > 100 requests/s)",
        "failed requests: 1 of 3 (target 0)",
    ]
    assert data["criteria"][0] == {
        "name": "throughput",
        "target": "> 100 requests/s",
        "measured": "1.5 requests/s",
        "ok": False,
    }


def test_importing_the_cli_does_not_import_locust_or_gevent() -> None:
    code = (
        "import sys, mii_cli.cli, mii_cli.probe.load_test\n"
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


def test_the_cli_and_loadtest_load_without_ssl() -> None:
    # locust の monkeypatch は ssl より先でなければならない: mii load-test が locust を読み込むまでに
    # 通る部分（CLI 全体と loadtest）は ssl も urllib3 も読み込まない
    process = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, mii_cli.cli, mii_cli.probe.load_test; "
            "print(sorted({'ssl', 'urllib3'} & set(sys.modules)))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode == 0, process.stderr
    assert process.stdout.strip() == "[]"


def test_locust_runner_refuses_to_load_after_urllib3() -> None:
    # urllib3 の後では locust の読み込みが RecursionError になるので、その前に原因を言って止まる
    process = subprocess.run(
        [sys.executable, "-c", "import urllib3, mii_cli.probe.locust_runner"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode != 0
    assert "must be imported before urllib3" in process.stderr
    assert "RecursionError" not in process.stderr
