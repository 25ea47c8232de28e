"""`mii benchmark`: イメージを Pod と同じ制限で動かし、性能の目標に照らして測る。

負荷は wrk（Debian の `wrk`）で掛ける。Python の負荷生成器ではサーバーより先に詰まるため。
測るもの: 1 行の POST /predict と 1 行の V2 推論（JSON）の最大スループット、200・1,000 req/s に
固定したときの p50/p99、コンテナ起動から ready までの時間、負荷中のメモリ、ベースに対して増えた
イメージの大きさ。

req/s はマシンの速さと混み具合で大きく変わるので、天井も同じ実行の中で測る: 同じイメージから
同じ制限で何もしない ASGI アプリ（`python -m service.ceiling`、同じ uvicorn の設定）を起動し、
サービスと交互に（ceiling → /predict → V2 を `rounds` 回）測る。

share は「コンテナが使った CPU 1 秒あたりのリクエスト数」の比（サービス ÷ 天井、それぞれ中央値）。
両方が 0.5 CPU を使い切れば req/s の比と同じだが、ほかのプロセスと CPU を取り合うマシンでは、その回に
コンテナが実際に得た CPU が回ごとに変わり、req/s の比はそれに振り回される。CPU 時間（cgroup の
cpuacct、Docker の stats）で割ると、その揺れが消える。req/s の比も `rps_share` として出す。
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mii_cli.errors import ConfigError, DockerError
from mii_cli.image.container import RunSpec, start_container
from mii_cli.image.docker import DockerClient, local_image, remove_container
from mii_cli.results import Result

BODY = '{"data": [[5.1, 3.5, 1.4, 0.2]]}'
V2_BODY = (
    '{"inputs": [{"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}'
)
PREDICT_PATH = "/predict"
V2_PATH = "/v2/models/iris_svc/infer"

# 性能の目標: 指標 -> (比較, 値)
TARGETS: dict[str, tuple[str, float]] = {
    "max_rps": (">=", 2500.0),
    "share": (">=", 0.50),
    "v2_share": (">=", 0.45),
    "p99_ms_at_200": ("<=", 10.0),
    "p99_ms_at_1000": ("<=", 25.0),
    "ready_seconds": ("<=", 1.5),
    "memory_mib": ("<=", 60.0),
    "image_added_mb": ("<=", 150.0),
}


@dataclass
class WrkResult:
    """wrk の 1 回分の結果。"""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int


@dataclass
class BenchmarkReport(Result):
    """ベンチマークの結果と目標に対する判定（JSON には目標と合否も出す）。"""

    computed = ("targets", "passed")

    image: str
    measurements: dict[str, float]
    verdicts: dict[str, bool] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def targets(self) -> dict[str, tuple[str, float]]:
        """比べた目標。"""
        return TARGETS

    @property
    def passed(self) -> bool:
        """すべての目標を満たしたか。"""
        return all(self.verdicts.values())


def wrk_milliseconds(value: str) -> float:
    """wrk の時間表記（12.3us・4.5ms・1.2s）をミリ秒にする。"""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value.strip())
    if not match:
        raise ValueError(f"cannot read wrk time {value!r}")
    number, unit = float(match.group(1)), match.group(2)
    return number * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(output: str) -> WrkResult:
    """wrk --latency の出力から req/s・p50・p99・エラー数を読む。"""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    total = re.search(r"(\d+) requests in", output)
    if not (rps and p50 and p99 and total):
        raise DockerError("cannot read the wrk output", details=output[-2000:])
    errors = 0
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket_errors:
        errors += sum(int(v) for v in socket_errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    return WrkResult(
        float(rps.group(1)),
        wrk_milliseconds(p50.group(1)),
        wrk_milliseconds(p99.group(1)),
        errors,
        int(total.group(1)),
    )


def wrk_script(rate: float | None, connections: int, body: str = BODY) -> str:
    """POST の Lua スクリプト。rate を渡すと接続ごとの待ちで全体をその req/s に揃える。"""
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = '{body}'",
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    if rate:
        lines.append(f"function delay() return {connections * 1000.0 / rate:.3f} end")
    return "\n".join(lines) + "\n"


def wrk_command(
    url: str, script: Path, *, seconds: int, connections: int, threads: int, path: str = PREDICT_PATH
) -> list[str]:
    """wrk のコマンド行。"""
    return [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(script),
        f"{url}{path}",
    ]


def judge(measurements: dict[str, float]) -> dict[str, bool]:
    """測定値を目標と比べる。"""
    verdicts = {}
    for name, (op, target) in TARGETS.items():
        value = measurements.get(name)
        if value is None:
            continue
        verdicts[name] = {"<=": value <= target, ">=": value >= target, "<": value < target}[op]
    return verdicts


def run_wrk(
    url: str,
    *,
    seconds: int,
    connections: int,
    threads: int,
    rate: float | None,
    path: str = PREDICT_PATH,
    body: str = BODY,
) -> WrkResult:
    """wrk を 1 回走らせて結果を読む。"""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(wrk_script(rate, connections, body))
        command = wrk_command(
            url, script, seconds=seconds, connections=connections, threads=threads, path=path
        )
        completed = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if completed.returncode != 0:
        raise DockerError("wrk failed", details=completed.stderr[-2000:] or completed.stdout[-2000:])
    return parse_wrk(completed.stdout)


def _memory_mib(container: Any) -> float:
    """コンテナのメモリ使用量（ページキャッシュを除く）を MiB で返す。"""
    stats = container.stats(stream=False)["memory_stats"]
    usage = float(stats.get("usage", 0))
    cache = float(
        stats.get("stats", {}).get("inactive_file", stats.get("stats", {}).get("total_inactive_file", 0))
    )
    return (usage - cache) / (1024 * 1024)


def share(service: list[float], ceiling: list[float]) -> float:
    """サービスの値の中央値 ÷ 天井の値の中央値（req/s、または CPU 1 秒あたりのリクエスト数）。"""
    return statistics.median(service) / statistics.median(ceiling)


def _cpu_seconds(container: Any) -> float:
    """コンテナがこれまでに使った CPU 時間（秒）。"""
    stats = container.stats(stream=False, one_shot=True)
    return float(stats["cpu_stats"]["cpu_usage"]["total_usage"]) / 1e9


# 交互に測る対象: 天井、1 行の /predict、1 行の V2 推論
TARGET_NAMES = ("ceiling", "predict", "v2")


@dataclass
class Peaks:
    """最大スループットを交互に測った結果（対象ごとに回の数だけ）と、負荷中のメモリ。"""

    results: dict[str, list[WrkResult]] = field(default_factory=lambda: {n: [] for n in TARGET_NAMES})
    per_cpu: dict[str, list[float]] = field(default_factory=lambda: {n: [] for n in TARGET_NAMES})
    memory: list[float] = field(default_factory=list)

    @property
    def rps(self) -> dict[str, list[float]]:
        """対象ごとの req/s。"""
        return {name: [r.requests_per_second for r in results] for name, results in self.results.items()}


def run_benchmark(
    client: DockerClient,
    *,
    image: str,
    base_image: str,
    port: int,
    seconds: int = 10,
    connections: int = 64,
    rates: tuple[float, ...] = (200.0, 1000.0),
    rounds: int = 3,
    address: str = "127.0.0.1",
) -> BenchmarkReport:
    """サービスと天井のコンテナを起動し、交互に測り、止めて、結果を返す（ポートは `address` に公開）。"""
    if shutil.which("wrk") is None:
        raise ConfigError("wrk is not installed", hint="install it: `sudo apt-get install wrk`")
    # 大きさは測る前に確かめる（数分測ってから、ベースイメージが無いと分かることのないように）
    added_mb = _added_mb(client, image, base_image)
    spec = RunSpec(image=image, name=f"mii-bench-{port}", port=port, address=address)
    ceiling_spec = RunSpec(image=image, name=f"mii-bench-ceiling-{port + 1}", port=port + 1, address=address)
    started = time.monotonic()
    # 起動から ready までを 5 ms 刻みで測る（start_container は失敗時にコンテナを消す）
    ready = start_container(client, spec, timeout=30, interval=0.005).ready_seconds
    ready_wall = time.monotonic() - started
    try:
        start_container(client, ceiling_spec, timeout=30, entrypoint=["python", "-m", "service.ceiling"])
        container = client.containers.get(spec.name)
        targets = {
            "ceiling": (client.containers.get(ceiling_spec.name), ceiling_spec.url, PREDICT_PATH, BODY),
            "predict": (container, spec.url, PREDICT_PATH, BODY),
            "v2": (container, spec.url, V2_PATH, V2_BODY),
        }
        _warm_up(targets, connections)
        peaks = _measure_peaks(targets, seconds=seconds, connections=connections, rounds=rounds)
        fixed = _measure_fixed_rates(spec.url, rates, seconds)
    finally:
        remove_container(client, spec.name, grace=5)
        remove_container(client, ceiling_spec.name, grace=1)
    measurements = _measurements(peaks, fixed, ready_seconds=ready, image_added_mb=added_mb)
    report = BenchmarkReport(image=image, measurements=measurements)
    report.verdicts = judge(measurements)
    all_results = [r for results in peaks.results.values() for r in results] + list(fixed.values())
    report.details = {
        "seconds": seconds,
        "connections": connections,
        "rounds": rounds,
        "memory_samples_mib": [round(m, 1) for m in peaks.memory],
        "rps": {name: [round(v, 1) for v in values] for name, values in peaks.rps.items()},
        "requests_per_cpu_second": {
            name: [round(v, 1) for v in values] for name, values in peaks.per_cpu.items()
        },
        "ready_wall_seconds": round(ready_wall, 3),
        "errors": sum(r.errors for r in all_results),
        "requests": sum(r.requests for r in all_results),
        "limits": {"cpus": spec.cpus, "memory": spec.memory, "read_only": spec.read_only},
    }
    return report


def _added_mb(client: DockerClient, image: str, base_image: str) -> float:
    """イメージがベースイメージに足した大きさ（MB）。どちらかが手元に無ければ ConfigError。"""
    found = local_image(client, image)
    if found is None:
        raise ConfigError(f"image {image} is not in the local Docker engine", hint="build it: `mii build`")
    if not base_image:
        return float(found.attrs["Size"]) / 1e6
    base = local_image(client, base_image)
    if base is None:
        raise ConfigError(
            f"base image {base_image} is not in the local Docker engine, so the added size is unknown",
            hint="pass the base the image was built from: --base-image or MII_BASE_IMAGE",
        )
    return (float(found.attrs["Size"]) - float(base.attrs["Size"])) / 1e6


def _warm_up(targets: dict[str, tuple[Any, str, str, str]], connections: int) -> None:
    """測る前に各対象へ 2 秒ずつ負荷をかける（初回の遅さを測定に入れない）。"""
    for _, url, path, body in targets.values():
        run_wrk(url, seconds=2, connections=connections, threads=2, rate=None, path=path, body=body)


def _sample_memory(container: Any, seconds: int, into: list[float]) -> threading.Thread:
    """負荷の 3 か所でメモリを測るスレッドを始める（中央値を使い、一時的な山を拾わない）。"""

    def sample() -> None:
        for _ in range(3):
            time.sleep(max(0.3, seconds / 4))
            into.append(_memory_mib(container))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    return sampler


def _measure_peaks(
    targets: dict[str, tuple[Any, str, str, str]], *, seconds: int, connections: int, rounds: int
) -> Peaks:
    """天井 → /predict → V2 を rounds 回交互に測り、req/s と CPU 1 秒あたりのリクエスト数を集める。

    メモリは最初の回の /predict の負荷中に測る。
    """
    peaks = Peaks()
    for round_index in range(rounds):
        for name, (box, url, path, body) in targets.items():
            sampler = None
            if name == "predict" and round_index == 0:
                sampler = _sample_memory(box, seconds, peaks.memory)
            before = _cpu_seconds(box)
            result = run_wrk(
                url, seconds=seconds, connections=connections, threads=2, rate=None, path=path, body=body
            )
            used = _cpu_seconds(box) - before
            peaks.results[name].append(result)
            peaks.per_cpu[name].append(result.requests / used if used > 0 else float("nan"))
            if sampler is not None:
                sampler.join(timeout=5)
    return peaks


def _measure_fixed_rates(url: str, rates: tuple[float, ...], seconds: int) -> dict[float, WrkResult]:
    """要求の速さを固定して（200・1,000 req/s）遅延を測る。"""
    return {
        rate: run_wrk(url, seconds=seconds, connections=max(4, int(rate // 20)), threads=1, rate=rate)
        for rate in rates
    }


def _measurements(
    peaks: Peaks, fixed: dict[float, WrkResult], *, ready_seconds: float, image_added_mb: float
) -> dict[str, float]:
    """測った値を、目標と比べる指標の名前にまとめる。"""
    rps = peaks.rps
    measurements = {
        "max_rps": round(statistics.median(rps["predict"]), 1),
        "v2_rps": round(statistics.median(rps["v2"]), 1),
        "ceiling_rps": round(statistics.median(rps["ceiling"]), 1),
        "share": round(share(peaks.per_cpu["predict"], peaks.per_cpu["ceiling"]), 3),
        "v2_share": round(share(peaks.per_cpu["v2"], peaks.per_cpu["ceiling"]), 3),
        "rps_share": round(share(rps["predict"], rps["ceiling"]), 3),
        "v2_rps_share": round(share(rps["v2"], rps["ceiling"]), 3),
        "ready_seconds": round(ready_seconds, 3),
        "memory_mib": round(statistics.median(peaks.memory), 1) if peaks.memory else float("nan"),
        "image_added_mb": round(image_added_mb, 1),
    }
    for rate, result in fixed.items():
        measurements[f"p50_ms_at_{int(rate)}"] = round(result.p50_ms, 2)
        measurements[f"p99_ms_at_{int(rate)}"] = round(result.p99_ms, 2)
        measurements[f"achieved_rps_at_{int(rate)}"] = round(result.requests_per_second, 1)
    return measurements
