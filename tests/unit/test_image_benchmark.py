"""ベンチマークの純粋な部分（wrk の出力の読み取り・目標の判定・スクリプト）のテスト。"""

from __future__ import annotations

import pytest

from mii_cli.errors import DockerError
from mii_cli.image import benchmark as bench
from mii_cli.results import to_json

WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:18000/predict
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    14.99ms    8.11ms  96.41ms   71.77%
    Req/Sec     2.16k   228.14     2.76k    71.00%
  Latency Distribution
     50%  812.00us
     75%   20.19ms
     90%   25.82ms
     99%    1.20s
  43133 requests in 10.01s, 10.64MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   4309.56
Transfer/sec:      1.06MB
"""


def test_parse_wrk() -> None:
    result = bench.parse_wrk(WRK_OUTPUT)
    assert result.requests_per_second == pytest.approx(4309.56)
    assert result.p50_ms == pytest.approx(0.812)
    assert result.p99_ms == pytest.approx(1200.0)
    assert result.errors == 7
    assert result.requests == 43133


def test_unreadable_wrk_output() -> None:
    with pytest.raises(DockerError, match="cannot read the wrk output"):
        bench.parse_wrk("wrk: connection refused")


def test_judge_against_the_targets() -> None:
    good = {
        "max_rps": 4000.0,
        "share": 0.55,
        "v2_share": 0.47,
        "p99_ms_at_200": 4.0,
        "p99_ms_at_1000": 9.0,
        "ready_seconds": 0.9,
        "memory_mib": 55.0,
        "image_added_mb": 149.0,
        "ceiling_rps": 8000.0,
    }
    assert all(bench.judge(good).values())
    assert len(bench.judge(good)) == 8  # ceiling_rps は目標の無い測定値
    bad = {**good, "max_rps": 2499.0, "memory_mib": 60.5, "share": 0.49, "v2_share": 0.44}
    verdicts = bench.judge(bad)
    assert verdicts["max_rps"] is False
    assert verdicts["memory_mib"] is False
    assert verdicts["share"] is False
    assert verdicts["v2_share"] is False
    assert verdicts["ready_seconds"] is True
    report = bench.BenchmarkReport(image="x", measurements=bad, verdicts=verdicts)
    assert report.passed is False


def test_the_report_json_has_the_targets_and_the_verdict() -> None:
    report = bench.BenchmarkReport(image="x", measurements={"max_rps": 3000.0}, verdicts={"max_rps": True})
    data = to_json(report)
    assert set(data) == {"image", "measurements", "verdicts", "details", "targets", "passed"}
    assert data["targets"]["max_rps"] == [">=", 2500.0]
    assert data["passed"] is True


def test_share_is_the_ratio_of_the_medians() -> None:
    assert bench.share([2000.0, 3000.0, 9000.0], [6000.0, 5000.0, 7000.0]) == pytest.approx(0.5)
    assert bench.share([100.0], [400.0]) == pytest.approx(0.25)


def test_v2_script_posts_the_open_inference_protocol_body() -> None:
    import json

    script = bench.wrk_script(None, 8, bench.V2_BODY)
    body = json.loads(bench.V2_BODY)
    assert body["inputs"][0]["name"] == "float_input"
    assert body["inputs"][0]["shape"] == [1, 4]
    assert f"wrk.body = '{bench.V2_BODY}'" in script
    from pathlib import Path

    command = bench.wrk_command(
        "http://h:1", Path("/s.lua"), seconds=1, connections=1, threads=1, path=bench.V2_PATH
    )
    assert command[-1] == "http://h:1/v2/models/iris_svc/infer"


def test_wrk_script_paces_connections() -> None:
    script = bench.wrk_script(200.0, 10)
    assert 'wrk.method = "POST"' in script
    assert "function delay() return 50.000 end" in script
    assert "delay" not in bench.wrk_script(None, 10)


def test_wrk_command() -> None:
    from pathlib import Path

    command = bench.wrk_command("http://127.0.0.1:1", Path("/tmp/s.lua"), seconds=5, connections=8, threads=2)
    assert command == [
        "wrk",
        "-t2",
        "-c8",
        "-d5s",
        "--latency",
        "-s",
        "/tmp/s.lua",
        "http://127.0.0.1:1/predict",
    ]


@pytest.mark.parametrize(("text", "ms"), [("12us", 0.012), ("3.5ms", 3.5), ("2s", 2000.0), ("1m", 60000.0)])
def test_wrk_times(text: str, ms: float) -> None:
    assert bench.wrk_milliseconds(text) == pytest.approx(ms)
