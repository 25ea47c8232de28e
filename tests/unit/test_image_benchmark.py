"""ベンチマークの純粋な部分（wrk の出力の読み取り・目標の判定・スクリプト・写しの測定の組み立て）のテスト。"""

from __future__ import annotations

from pathlib import Path

import pytest

from mii_cli.errors import ConfigError, DockerError, WaitTimeout
from mii_cli.image import benchmark as bench
from mii_cli.results import to_json
from tests.fakes.docker_engine import FakeDockerEngine

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
        "share": 0.70,
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
    bad = {**good, "max_rps": 2499.0, "memory_mib": 60.5, "share": 0.69, "v2_share": 0.44}
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


# --- 影（shadow）への写しの測定 --------------------------------------------------------------------


def _metrics_text(percent: float = 0.0, *, mirrored: int = 0, dropped: int = 0, answers: int = 0) -> str:
    """サービスの本物のメトリクス（service.app.metrics）が書く `/metrics` の本文。"""
    from prometheus_client import generate_latest

    from service.app.metrics import Metrics

    metrics = Metrics()
    shadow = metrics.shadow
    shadow.percent = percent
    shadow.mirrored, shadow.dropped = mirrored, dropped
    for _ in range(answers):
        shadow.answered("200", 0.002)
        shadow.compared(1, 0, 0.0)
    return generate_latest(metrics.registry).decode()


def test_parse_shadow_reads_the_service_metrics() -> None:
    reading = bench.parse_shadow(_metrics_text(10.0, mirrored=7, dropped=2, answers=5))
    assert reading == bench.ShadowReading(percent=10.0, mirrored=7, dropped=2, compared=5, answers={"200": 5})
    assert reading.answered == 5
    assert reading.settled is False
    assert bench.parse_shadow(_metrics_text(10.0, mirrored=5, answers=5)).settled is True
    assert bench.parse_shadow(_metrics_text()) == bench.ShadowReading(percent=0.0)


def test_an_image_without_mirroring_is_told_apart() -> None:
    with pytest.raises(DockerError, match="no mii_shadow_mirror_percent"):
        bench.parse_shadow("# HELP mii_prediction_rows_total x\n# TYPE mii_prediction_rows_total counter\n")


def test_a_reading_since_another_is_the_increase() -> None:
    before = bench.ShadowReading(10.0, mirrored=3, dropped=1, compared=2, answers={"200": 2, "timeout": 1})
    after = bench.ShadowReading(10.0, mirrored=10, dropped=1, compared=8, answers={"200": 8, "503": 1})
    assert after.since(before) == bench.ShadowReading(
        10.0, mirrored=7, dropped=0, compared=6, answers={"200": 6, "503": 1, "timeout": -1}
    )


def test_the_config_file_is_what_the_service_reads(tmp_path: Path) -> None:
    from service.app.mirror import parse_config

    path = bench.write_mirror_config(tmp_path, bench.mirror_config_text("172.17.0.3:8000"))
    assert path == tmp_path / "mirror.json"
    config = parse_config(path.read_bytes())
    assert config is not None
    assert (config.host, config.port, config.percent) == ("172.17.0.3", 8000, 10.0)
    # コンテナの利用者（10001）が読める
    assert path.stat().st_mode & 0o777 == 0o644
    # 切るのは `{}`（ファイルは同じパスのまま、書きかけのファイルは残らない）
    bench.write_mirror_config(tmp_path, bench.mirror_config_text(None))
    assert parse_config(path.read_bytes()) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mirror.json"]


def test_the_mirror_directory_is_readable_by_the_container_user() -> None:
    import shutil

    directory = bench.make_mirror_directory()
    try:
        assert directory.stat().st_mode & 0o777 == 0o755
        assert list(directory.iterdir()) == []  # 初めはファイルが無い: 写さない
    finally:
        shutil.rmtree(directory)


def test_the_service_gets_the_directory_read_only_and_the_file_in_its_environment() -> None:
    from mii_cli.image.container import RunSpec

    spec = RunSpec(image="i", name="n", port=1, **bench._mirror_spec(Path("/tmp/mii-bench-mirror-x")))
    kwargs = spec.docker_kwargs()
    assert kwargs["volumes"] == {"/tmp/mii-bench-mirror-x": {"bind": "/etc/mii/mirror", "mode": "ro"}}
    assert kwargs["environment"] == {"MIRROR_CONFIG": "/etc/mii/mirror/mirror.json"}
    assert kwargs["read_only"] is True
    # 写しを測らなければ、これまでと同じ起動
    assert "volumes" not in RunSpec(image="i", name="n", port=1, **bench._mirror_spec(None)).docker_kwargs()


def test_the_shadow_is_reached_by_its_bridge_address() -> None:
    attrs = {"NetworkSettings": {"IPAddress": "", "Networks": {"bridge": {"IPAddress": "172.17.0.4"}}}}
    assert bench.bridge_address(attrs) == "172.17.0.4"
    assert bench.bridge_address({"NetworkSettings": {"IPAddress": "172.17.0.5"}}) == "172.17.0.5"
    with pytest.raises(DockerError, match="no address on the default bridge"):
        bench.bridge_address({"NetworkSettings": {"Networks": {}}})


def test_the_plan_alternates_in_abba_order() -> None:
    assert bench.mirror_plan(3) == [False, True, True, False, False, True]
    plan = bench.mirror_plan(5)
    assert plan.count(True) == plan.count(False) == 5


def _wrk(p99_ms: float, requests: int = 2000) -> bench.WrkResult:
    return bench.WrkResult(200.0, 0.8, p99_ms, 0, requests)


def test_the_ratio_is_of_the_median_p99s_and_has_a_target() -> None:
    run = bench.MirrorRun(
        off=[_wrk(2.0), _wrk(9.0), _wrk(2.2)],
        on=[_wrk(2.4), _wrk(2.3), _wrk(30.0)],
        copies=[bench.ShadowReading(10.0, mirrored=200, dropped=1, compared=199, answers={"200": 200})] * 3,
        cpu_off=[210.0, 220.0, 205.0],
        cpu_on=[260.0, 240.0, 250.0],
    )
    measured = bench.mirror_measurements(run)
    assert measured["p99_ms_mirror_off"] == 2.2
    assert measured["p99_ms_mirror_10"] == 2.4
    assert measured["mirror_p99_ratio"] == pytest.approx(2.4 / 2.2, abs=0.001)
    assert bench.TARGETS["mirror_p99_ratio"] == ("<=", 1.10)
    assert bench.judge({"mirror_p99_ratio": 1.10}) == {"mirror_p99_ratio": True}
    assert bench.judge({"mirror_p99_ratio": 1.11}) == {"mirror_p99_ratio": False}
    details = bench.mirror_details(run)
    assert (details["mirrored"], details["dropped"], details["compared"]) == (600, 3, 597)
    assert details["shadow_answers"] == {"200": 600}
    assert details["mirrored_share"] == pytest.approx(603 / 6000, abs=0.0001)
    assert details["p99_ms_on"] == [2.4, 2.3, 30.0]
    assert (details["cpu_us_per_request_off"], details["cpu_us_per_request_on"]) == (210.0, 250.0)


@pytest.mark.parametrize(
    ("mirrored", "compared"), [(0, 0), (20, 0)], ids=["nothing-sent", "nothing-compared"]
)
def test_a_mirrored_round_without_copies_makes_the_measurement_invalid(mirrored: int, compared: int) -> None:
    good = bench.ShadowReading(10.0, mirrored=20, compared=20, answers={"200": 20})
    bad = bench.ShadowReading(10.0, mirrored=mirrored, compared=compared, answers={"unreachable": mirrored})
    bench.check_copies([good, good])
    with pytest.raises(DockerError, match="mirroring measurement is invalid: mirrored round 2"):
        bench.check_copies([good, bad])


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_waiting_for_the_percent_is_bounded() -> None:
    clock = FakeClock()
    with pytest.raises(WaitTimeout, match="did not report mii_shadow_mirror_percent 10 within 15 s"):
        bench.wait_for_shadow(
            lambda: _metrics_text(0.0),
            bench.reports_percent(10),
            timeout=15.0,
            what="mii_shadow_mirror_percent 10",
            clock=clock,
            sleep=clock.sleep,
        )
    assert 15.0 < clock.now < 15.5


class FakeMirroringService:
    """設定のファイルを 2 回目の `/metrics` の読みで当て、写した回の写しに 1 回の読みの後で答えるサービス。"""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.percent = 0.0
        self.pending_reads = 0
        self.mirrored = self.answered = 0
        self.configured: list[bool] = []
        self.load: list[float] = []

    def configure(self, on: bool) -> None:
        bench.write_mirror_config(self.directory, bench.mirror_config_text("172.17.0.3:8000" if on else None))
        self.configured.append(on)
        self.pending_reads = 2

    def fetch(self) -> str:
        from service.app.mirror import parse_config

        self.pending_reads -= 1
        if self.pending_reads == 0:
            config = parse_config((self.directory / "mirror.json").read_bytes())
            # 写しを入れるたびに数え直す（service.app.mirror と同じ）
            if config is not None and self.percent == 0:
                self.mirrored = self.answered = 0
            self.percent = config.percent if config is not None else 0.0
        text = _metrics_text(self.percent, mirrored=self.mirrored, answers=self.answered)
        self.answered = self.mirrored  # 写しの答えは 1 回の読みの後に揃う
        return text

    def measure(self) -> bench.WrkResult:
        self.load.append(self.percent)
        if self.percent:
            self.mirrored += 200
            return _wrk(2.5)
        return _wrk(2.0)


def test_alternate_mirroring_waits_for_each_switch_and_counts_each_mirrored_round(tmp_path: Path) -> None:
    service = FakeMirroringService(tmp_path)
    clock = FakeClock()
    run = bench.alternate_mirroring(
        pairs=3,
        fetch=service.fetch,
        configure=service.configure,
        measure=service.measure,
        clock=clock,
        sleep=clock.sleep,
    )
    # 負荷はどれも、割合が /metrics に出てからかけた
    assert service.load == [0.0, 10.0, 10.0, 0.0, 0.0, 10.0]
    # ABBA: 入れる・切る・入れる、最後に切って戻る
    assert service.configured == [True, False, True, False]
    assert [r.p99_ms for r in run.off] == [2.0, 2.0, 2.0]
    assert [r.p99_ms for r in run.on] == [2.5, 2.5, 2.5]
    # 続けて写した 2 回目の回も、その回の増えだけ
    assert [(c.mirrored, c.compared) for c in run.copies] == [(200, 200)] * 3
    bench.check_copies(run.copies)
    assert bench.mirror_measurements(run)["mirror_p99_ratio"] == 1.25


def test_the_mirroring_measurement_needs_the_local_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """写しの設定はこのマシンのディレクトリを結び付けるので、ほかのエンジンでは何も起動する前に断る。"""
    monkeypatch.setattr(bench.shutil, "which", lambda _name: "/usr/bin/wrk")
    with pytest.raises(ConfigError, match="binds a directory of this machine") as caught:
        bench.run_benchmark(object(), image="i", base_image="b", port=18000, local_engine=False)  # type: ignore[arg-type]
    assert "--no-mirror" in str(caught.value.hint)


def test_the_table_tells_how_many_copies_were_sent() -> None:
    from rich.console import Console

    from mii_cli.ui.tables import benchmark_table

    run = bench.MirrorRun(
        off=[_wrk(2.0)], on=[_wrk(2.1)], copies=[bench.ShadowReading(10.0, 200, 0, 200, {"200": 200})]
    )
    measured = bench.mirror_measurements(run)
    report = bench.BenchmarkReport(image="x", measurements=measured, verdicts=bench.judge(measured))
    report.details["mirror"] = bench.mirror_details(run)
    console = Console(width=200, record=True)
    console.print(benchmark_table(report))
    text = " ".join(console.export_text().split())  # 表の幅で折り返した見出しも 1 行にして探す
    assert "mirror_p99_ratio" in text
    assert "<= 1.1" in text
    assert "200 copies sent, 0 dropped, 200 compared" in text
    # --no-mirror: 写しの行も見出しの下の 1 行も無い
    plain = bench.BenchmarkReport(image="x", measurements={"max_rps": 3000.0}, verdicts={"max_rps": True})
    console = Console(width=200, record=True)
    console.print(benchmark_table(plain))
    shown = console.export_text()
    assert "max_rps" in shown
    assert "mirror" not in shown


def test_the_containers_start_from_the_image_id_not_the_tag(fake_docker: FakeDockerEngine) -> None:
    """測る数分の間に同じタグで作り直されても、サービス・天井・影は最初に引いたイメージで動く。"""
    image_id, base_id = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    fake_docker.images = [
        {"Id": image_id, "RepoTags": ["model-in-image:0.1.0"], "RepoDigests": [], "Size": 300_000_000},
        {"Id": base_id, "RepoTags": ["localhost/python:3.13-slim"], "RepoDigests": [], "Size": 186_000_000},
    ]
    added, pinned = bench._added_mb(
        fake_docker.client(), "model-in-image:0.1.0", "localhost/python:3.13-slim"
    )
    assert (added, pinned) == (114.0, image_id)
    with pytest.raises(ConfigError, match="image model-in-image:9 is not in the local Docker engine"):
        bench._added_mb(fake_docker.client(), "model-in-image:9", "")
