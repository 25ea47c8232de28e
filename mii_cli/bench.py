"""`mii benchmark`: イメージを Pod と同じ制限で動かし、性能の目標に照らして測る。

負荷は wrk（Debian の `wrk`）で掛ける。Python の負荷生成器ではサーバーより先に詰まるため。
測るもの: 1 行の POST /predict の最大スループット、200・1,000 req/s に固定したときの p50/p99、
コンテナ起動から ready までの時間、負荷中のメモリ、ベースに対して増えたイメージの大きさ。
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mii_cli.errors import ConfigError, DockerError
from mii_cli.run import RunSpec, remove_container, start_container

BODY = '{"data": [[5.1, 3.5, 1.4, 0.2]]}'

# 目標（issue 3 の 6 節）: (指標, 比較, 値)
TARGETS: dict[str, tuple[str, float]] = {
    "max_rps": (">=", 2500.0),
    "p99_ms_at_200": ("<=", 10.0),
    "p99_ms_at_1000": ("<=", 25.0),
    "ready_seconds": ("<=", 1.5),
    "memory_mib": ("<", 100.0),
    "image_added_mb": ("<=", 200.0),
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
class BenchmarkReport:
    """ベンチマークの結果と目標に対する判定。"""

    image: str
    measurements: dict[str, float]
    verdicts: dict[str, bool] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """すべての目標を満たしたか。"""
        return all(self.verdicts.values())

    def as_dict(self) -> dict[str, Any]:
        """--json 用の辞書。"""
        return {**asdict(self), "targets": TARGETS, "passed": self.passed}


def _milliseconds(value: str) -> float:
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
        _milliseconds(p50.group(1)),
        _milliseconds(p99.group(1)),
        errors,
        int(total.group(1)),
    )


def wrk_script(rate: float | None, connections: int) -> str:
    """POST /predict の Lua スクリプト。rate を渡すと接続ごとの待ちで全体をその req/s に揃える。"""
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = '{BODY}'",
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    if rate:
        lines.append(f"function delay() return {connections * 1000.0 / rate:.3f} end")
    return "\n".join(lines) + "\n"


def wrk_command(url: str, script: Path, *, seconds: int, connections: int, threads: int) -> list[str]:
    """wrk のコマンド行。"""
    return [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(script),
        f"{url}/predict",
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


def run_wrk(url: str, *, seconds: int, connections: int, threads: int, rate: float | None) -> WrkResult:
    """wrk を 1 回走らせて結果を読む。"""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "predict.lua"
        script.write_text(wrk_script(rate, connections))
        command = wrk_command(url, script, seconds=seconds, connections=connections, threads=threads)
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


def run_benchmark(
    client: Any,
    *,
    image: str,
    base_image: str,
    port: int,
    seconds: int = 10,
    connections: int = 64,
    rates: tuple[float, ...] = (200.0, 1000.0),
) -> BenchmarkReport:
    """コンテナを起動して測り、止めて、結果を返す。"""
    if shutil.which("wrk") is None:
        raise ConfigError("wrk is not installed", hint="install it: `sudo apt-get install wrk`")
    spec = RunSpec(image=image, name=f"mii-bench-{port}", port=port)
    started = time.monotonic()
    # 起動から ready までを 5 ms 刻みで測る（start_container は失敗時にコンテナを消す）
    ready = start_container(client, spec, timeout=30, interval=0.005).ready_seconds
    ready_wall = time.monotonic() - started
    container = client.containers.get(spec.name)
    try:
        # ウォームアップ
        run_wrk(spec.url, seconds=2, connections=connections, threads=2, rate=None)
        memory: list[float] = []

        def sample() -> None:
            time.sleep(max(1.0, seconds / 2))
            memory.append(_memory_mib(container))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        peak = run_wrk(spec.url, seconds=seconds, connections=connections, threads=2, rate=None)
        sampler.join(timeout=5)
        fixed = {
            rate: run_wrk(
                spec.url, seconds=seconds, connections=max(4, int(rate // 20)), threads=1, rate=rate
            )
            for rate in rates
        }
    finally:
        remove_container(client, spec.name, grace=5)
    size = float(client.images.get(image).attrs["Size"])
    base = float(client.images.get(base_image).attrs["Size"]) if base_image else 0.0
    measurements = {
        "max_rps": round(peak.requests_per_second, 1),
        "ready_seconds": round(ready, 3),
        "memory_mib": round(memory[0], 1) if memory else float("nan"),
        "image_added_mb": round((size - base) / 1e6, 1),
    }
    for rate, result in fixed.items():
        measurements[f"p50_ms_at_{int(rate)}"] = round(result.p50_ms, 2)
        measurements[f"p99_ms_at_{int(rate)}"] = round(result.p99_ms, 2)
        measurements[f"achieved_rps_at_{int(rate)}"] = round(result.requests_per_second, 1)
    report = BenchmarkReport(image=image, measurements=measurements)
    report.verdicts = judge(measurements)
    report.details = {
        "seconds": seconds,
        "connections": connections,
        "ready_wall_seconds": round(ready_wall, 3),
        "errors": peak.errors + sum(r.errors for r in fixed.values()),
        "requests": peak.requests + sum(r.requests for r in fixed.values()),
        "limits": {"cpus": spec.cpus, "memory": spec.memory, "read_only": spec.read_only},
    }
    return report
