"""`mii load-test`: 本物のサーバー（127.0.0.1）に対する短い負荷試験。

locust は import 時に gevent の monkeypatch を行うため、pytest のプロセスの中では動かさず、
`python -m mii_cli load-test` を子プロセスで実行する（カバレッジは子プロセスでも集める）。
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.http import asgi_server
from tests.fakes.services import flaky_service
from tests.support import ROOT, free_port


def _load_test(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mii_cli", "load-test", *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _json(process: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert process.stdout, process.stderr
    payload: dict[str, Any] = json.loads(process.stdout)
    return payload


def test_short_run_passes_against_mii_serve(live_server: str) -> None:
    process = _load_test(
        "--url", live_server, "--duration", "2s", "--users", "4", "--spawn-rate", "4", "--json"
    )
    assert process.returncode == 0, process.stderr
    result = _json(process)
    assert result["passed"] is True
    assert result["failures"] == 0
    assert result["requests"] > 200
    assert result["requests_per_s"] > 100
    latency = result["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    assert latency["p99"] < 100
    assert result["served_by"] == {"live-server": result["requests"]}
    assert result["by_endpoint"] == {"POST /predict": result["requests"]}
    assert 2.0 <= result["elapsed_s"] < 5.0
    assert "load test PASSED" in process.stderr
    assert "Traceback" not in process.stderr


def test_locust_patches_before_ssl_is_imported(live_server: str) -> None:
    # gevent の monkeypatch が ssl より後だと警告が出て、urllib3 が先なら RecursionError で落ちる
    process = _load_test("--url", live_server, "--duration", "1s", "--users", "1", "--json")
    assert process.returncode == 0, process.stderr
    assert "MonkeyPatchWarning" not in process.stderr


def test_rate_cap_below_the_target_fails_the_verdict(live_server: str) -> None:
    process = _load_test(
        "--url",
        live_server,
        "--duration",
        "2s",
        "--users",
        "2",
        "--rate",
        "30",
        "--endpoint",
        "mixed",
        "--json",
    )
    assert process.returncode == 6, process.stderr
    result = _json(process)
    assert result["passed"] is False
    assert result["failures"] == 0
    # 上限 30 requests/s（ユーザーごとに 15/s）を守っている
    assert 20 <= result["requests"] <= 75
    assert set(result["by_endpoint"]) == {"POST /predict", "POST /predict/label"}
    assert result["reasons"][0].startswith("throughput: ")
    assert "--rate 30 is not above the throughput target of 100" in process.stderr
    assert "Error: load test FAILED: throughput:" in process.stderr


def test_human_output_shows_the_table(live_server: str) -> None:
    process = _load_test(
        "--url", live_server, "--duration", "1s", "--users", "2", "--endpoint", "predict-label"
    )
    assert process.returncode == 0, process.stderr
    for text in ("Load test result", "requests/s", "p50 ms", "p95 ms", "p99 ms", "failures", "PASS"):
        assert text in process.stderr
    assert process.stdout == ""


def test_unreachable_url_is_one_message() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    process = _load_test("--url", url, "--duration", "1s")
    assert process.returncode == 6
    errors = [line for line in process.stderr.splitlines() if line.startswith(("Error:", "Hint:"))]
    assert errors[0].startswith(f"Error: cannot reach {url}")
    assert errors[1].startswith("Hint: start the service with `mii serve`")
    assert "Traceback" not in process.stderr


@pytest.fixture(scope="module")
def failing_server() -> Iterator[str]:
    """/health には答えるが、推論は 3 回に 1 回 500 を返すサービス。"""
    with asgi_server(flaky_service()) as url:
        yield url


def test_failed_requests_fail_the_verdict_and_are_listed(failing_server: str) -> None:
    process = _load_test("--url", failing_server, "--duration", "1s", "--users", "2", "--json")
    assert process.returncode == 6, process.stderr
    result = _json(process)
    assert result["passed"] is False
    assert 0 < result["failures"] < result["requests"]
    assert [c["name"] for c in result["criteria"] if not c["ok"]] == ["failed requests"]
    assert any("500" in message for message in result["errors"])
    assert "Error: load test FAILED: failed requests:" in process.stderr


def test_a_url_that_is_not_the_service_is_one_message(failing_server: str) -> None:
    process = _load_test("--url", failing_server + "/elsewhere", "--duration", "1s")
    assert process.returncode == 6
    assert f"Error: {failing_server}/elsewhere/health answered HTTP 404" in process.stderr
