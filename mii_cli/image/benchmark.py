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

影（shadow）への写しの費用も測る（`mirror=False` で省く）。サービスは MIRROR_CONFIG に、ホストの一時
ディレクトリを読み取り専用で結び付けたディレクトリの中のファイルを渡されて起動する（1 つのファイルを
結び付けると、書き換えで結び付きが切れることがあるのでディレクトリ）。ファイルは初めは無い（写さない）ので、
share・最大スループット・固定レートの遅延は、これまでどおり写しを切った状態で測る。その後、同じイメージ・
同じ制限の 2 つ目のコンテナ（影）を既定のブリッジに起動し、200 req/s に固定した遅延を、写しを切った回と
10 % を写す回を交互に（ABBA の順で、少なくとも 3 組）測って、p99 の中央値の比（`mirror_p99_ratio`）を出す。
写しの入り切りはファイルの書き換えで、`/metrics` の `mii_shadow_mirror_percent` が変わるまで待つ。写した
回ごとに `mii_shadow_mirrored_total`・`_compared_total` が増えたことを確かめる（増えなければ測定は無効）。
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mii_cli.errors import ConfigError, DockerError, WaitTimeout
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
    "share": (">=", 0.70),
    "v2_share": (">=", 0.45),
    "p99_ms_at_200": ("<=", 10.0),
    "p99_ms_at_1000": ("<=", 25.0),
    "mirror_p99_ratio": ("<=", 1.10),
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
    mirror: bool = True,
    local_engine: bool = True,
) -> BenchmarkReport:
    """サービスと天井のコンテナを起動し、交互に測り、止めて、結果を返す（ポートは `address` に公開）。

    `mirror` なら続けて影のコンテナ（ポート `port + 2`）を起動し、写しの費用を測る。写しの設定は
    このマシンのディレクトリを結び付けて渡すので、エンジンがこのマシンのもの（`local_engine`）でなければ
    測る前に ConfigError。
    """
    if shutil.which("wrk") is None:
        raise ConfigError("wrk is not installed", hint="install it: `sudo apt-get install wrk`")
    if mirror and not local_engine:
        raise ConfigError(
            "the mirroring measurement binds a directory of this machine into the container, "
            "which this Docker engine cannot see",
            hint="run it on the local engine, or pass --no-mirror",
        )
    # 大きさは測る前に確かめる（数分測ってから、ベースイメージが無いと分かることのないように）
    added_mb, image_id = _added_mb(client, image, base_image)
    mirror_directory = make_mirror_directory() if mirror else None
    spec = RunSpec(
        image=image_id,
        name=f"mii-bench-{port}",
        port=port,
        address=address,
        **_mirror_spec(mirror_directory),
    )
    ceiling_spec = RunSpec(
        image=image_id, name=f"mii-bench-ceiling-{port + 1}", port=port + 1, address=address
    )
    shadow_spec = RunSpec(image=image_id, name=f"mii-bench-shadow-{port + 2}", port=port + 2, address=address)
    mirrored: MirrorRun | None = None
    try:
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
            if mirror_directory is not None:
                # 天井は写しの測定に要らない（何もしないコンテナも残さない）
                remove_container(client, ceiling_spec.name, grace=1)
                mirrored = _measure_mirroring(
                    client,
                    spec,
                    shadow_spec,
                    mirror_directory,
                    seconds=seconds,
                    pairs=max(MIRROR_PAIRS_MIN, rounds),
                )
        finally:
            remove_container(client, spec.name, grace=5)
            remove_container(client, ceiling_spec.name, grace=1)
            remove_container(client, shadow_spec.name, grace=1)
    finally:
        if mirror_directory is not None:
            shutil.rmtree(mirror_directory, ignore_errors=True)
    measurements = _measurements(peaks, fixed, ready_seconds=ready, image_added_mb=added_mb)
    if mirrored is not None:
        measurements.update(mirror_measurements(mirrored))
    report = BenchmarkReport(image=image, measurements=measurements)
    report.verdicts = judge(measurements)
    all_results = [r for results in peaks.results.values() for r in results] + list(fixed.values())
    if mirrored is not None:
        all_results += mirrored.off + mirrored.on
    report.details = {
        "image_id": image_id,
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
    if mirrored is not None:
        report.details["mirror"] = mirror_details(mirrored)
    return report


def _added_mb(client: DockerClient, image: str, base_image: str) -> tuple[float, str]:
    """イメージがベースイメージに足した大きさ（MB）と、イメージの ID。どちらかが手元に無ければ ConfigError。

    コンテナはこの ID から起動する: 測っている数分の間にタグが別のイメージへ移っても（同じタグで
    作り直すなど）、サービス・天井・影がすべて同じイメージのまま。
    """
    found = local_image(client, image)
    if found is None:
        raise ConfigError(f"image {image} is not in the local Docker engine", hint="build it: `mii build`")
    if not base_image:
        return float(found.attrs["Size"]) / 1e6, str(found.id)
    base = local_image(client, base_image)
    if base is None:
        raise ConfigError(
            f"base image {base_image} is not in the local Docker engine, so the added size is unknown",
            hint="pass the base the image was built from: --base-image or MII_BASE_IMAGE",
        )
    return (float(found.attrs["Size"]) - float(base.attrs["Size"])) / 1e6, str(found.id)


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


# --- 影（shadow）への写しの費用 -------------------------------------------------------------------

# コンテナの中の、写しの設定のディレクトリとファイル（ホストの一時ディレクトリを読み取り専用で結び付ける）
MIRROR_MOUNT = "/etc/mii/mirror"
MIRROR_FILE = "mirror.json"
# 写す割合（%）と、遅延を比べる固定レート（req/s）
MIRROR_PERCENT = 10
MIRROR_RATE = 200.0
# 写しを切った回・写す回の組の最小の数（`rounds` がこれより多ければ `rounds` 組）
MIRROR_PAIRS_MIN = 3
# `/metrics` の割合が変わるまで待つ上限（サービスは設定を 1 秒ごとに読み直す）と、確かめる間隔
MIRROR_SWITCH_SECONDS = 15.0
# 負荷の後、写しがすべて影に答えられるまで待つ上限（1 つの写しの期限は 2 秒）
MIRROR_SETTLE_SECONDS = 15.0
MIRROR_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class ShadowReading:
    """`/metrics` の `mii_shadow_*` の読み: 割合と、写した・捨てた・比べた数、影の答え（ステータス別）。"""

    percent: float
    mirrored: int = 0
    dropped: int = 0
    compared: int = 0
    answers: dict[str, int] = field(default_factory=dict)

    @property
    def answered(self) -> int:
        """影が答えた（期限切れ・届かなかったものも含め、結果の決まった）写しの数。"""
        return sum(self.answers.values())

    @property
    def settled(self) -> bool:
        """待ち行列に入れた写しが、すべて結果を得たか。"""
        return self.answered >= self.mirrored

    def since(self, before: ShadowReading) -> ShadowReading:
        """前の読みからの増え（割合は今のもの）。"""
        statuses = self.answers.keys() | before.answers.keys()
        return ShadowReading(
            percent=self.percent,
            mirrored=self.mirrored - before.mirrored,
            dropped=self.dropped - before.dropped,
            compared=self.compared - before.compared,
            answers={s: self.answers.get(s, 0) - before.answers.get(s, 0) for s in sorted(statuses)},
        )


def parse_shadow(text: str) -> ShadowReading:
    """サービスの `/metrics`（Prometheus のテキスト形式）から写しの数字を読む（読み方は probe/mirror.py）。

    `mii_shadow_mirror_percent` が無ければ、写しを持たないイメージなので DockerError。
    """
    from mii_cli.probe.mirror import parse_mirror

    reading = parse_mirror(text)
    if not reading.percents:
        raise DockerError(
            "the service's /metrics has no mii_shadow_mirror_percent: the image cannot mirror requests",
            hint="rebuild it with `mii build`, or pass --no-mirror",
        )
    counts = {name: round(reading.counts.get(name, 0.0)) for name in ("mirrored", "dropped", "compared")}
    answers = {status: round(count) for status, count in sorted(reading.answers.items())}
    return ShadowReading(percent=reading.percents[0], answers=answers, **counts)


def mirror_config_text(target: str | None, percent: float = MIRROR_PERCENT) -> str:
    """写しの設定の JSON（写し先が None なら `{}`: 写さない）。"""
    if target is None:
        return "{}"
    return json.dumps({"target": target, "percent": percent})


def make_mirror_directory() -> Path:
    """写しの設定を置くホストの一時ディレクトリ（コンテナの利用者 10001 が読めるように 0755）。"""
    directory = Path(tempfile.mkdtemp(prefix="mii-bench-mirror-"))
    directory.chmod(0o755)
    return directory


def write_mirror_config(directory: Path, text: str) -> Path:
    """設定のファイルを書き換える（同じディレクトリの一時ファイルから rename するので、読み手は
    古い中身か新しい中身のどちらかだけを見る）。ファイルのパスを返す。"""
    path = directory / MIRROR_FILE
    partial = directory / f".{MIRROR_FILE}.partial"
    partial.write_text(text)
    partial.chmod(0o644)
    os.replace(partial, path)
    return path


def _mirror_spec(directory: Path | None) -> dict[str, Any]:
    """サービスのコンテナに写しの設定を渡す RunSpec の引数（ディレクトリが無ければ何も足さない）。"""
    if directory is None:
        return {}
    return {
        "read_only_binds": {str(directory): MIRROR_MOUNT},
        "environment": {"MIRROR_CONFIG": f"{MIRROR_MOUNT}/{MIRROR_FILE}"},
    }


def bridge_address(attrs: dict[str, Any]) -> str:
    """`docker inspect` の中身から、既定のブリッジでのコンテナの IP アドレス（無ければ DockerError）。"""
    settings = attrs.get("NetworkSettings") or {}
    address = (settings.get("Networks") or {}).get("bridge", {}).get("IPAddress") or settings.get("IPAddress")
    if not address:
        raise DockerError("the shadow container has no address on the default bridge network")
    return str(address)


def mirror_plan(pairs: int) -> list[bool]:
    """写すか（True）を回の順に: 組ごとに 切→入、入→切 を入れ替える（ABBA、時間の流れの偏りを打ち消す）。"""
    plan: list[bool] = []
    for index in range(pairs):
        plan += [False, True] if index % 2 == 0 else [True, False]
    return plan


def wait_for_shadow(
    fetch: Callable[[], str],
    done: Callable[[ShadowReading], bool],
    *,
    timeout: float,
    what: str,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    interval: float = MIRROR_POLL_SECONDS,
) -> ShadowReading:
    """`/metrics` を読み直し、`done` が真になった読みを返す。`timeout` 秒を過ぎれば WaitTimeout。"""
    start = clock()
    while True:
        reading = parse_shadow(fetch())
        if done(reading):
            return reading
        if clock() - start > timeout:
            raise WaitTimeout(
                f"the service did not report {what} within {timeout:g} s "
                f"(mii_shadow_mirror_percent {reading.percent:g}, mirrored {reading.mirrored}, "
                f"answered {reading.answered})",
                hint="the service re-reads MIRROR_CONFIG every second; read its log with `docker logs`",
            )
        sleep(interval)


def reports_percent(percent: float) -> Callable[[ShadowReading], bool]:
    """`/metrics` の割合が `percent` になったかを確かめる関数（`wait_for_shadow` に渡す）。"""
    return lambda reading: reading.percent == percent


@dataclass
class MirrorRun:
    """写しを切った回と写した回の固定レートの結果、写した回ごとの写しの数（`/metrics` の増え）。

    `cpu_off`・`cpu_on` は回ごとの、サービスのコンテナが 1 リクエストあたりに使った CPU 時間（µs）。
    p99 は CPU を取り合うマシンでは揺れるが、こちらは写しの費用そのものを見せる。
    """

    off: list[WrkResult] = field(default_factory=list)
    on: list[WrkResult] = field(default_factory=list)
    copies: list[ShadowReading] = field(default_factory=list)
    cpu_off: list[float] = field(default_factory=list)
    cpu_on: list[float] = field(default_factory=list)


def check_copies(copies: list[ShadowReading]) -> None:
    """写した回のどれもが、写しを送り（mirrored > 0）影の答えと比べた（compared > 0）ことを確かめる。

    そうでなければ、写した回の遅延は写しの費用を含まないので DockerError（測定は無効）。
    """
    for index, copy in enumerate(copies, start=1):
        if copy.mirrored <= 0 or copy.compared <= 0:
            raise DockerError(
                f"the mirroring measurement is invalid: mirrored round {index} sent {copy.mirrored} copies "
                f"and compared {copy.compared} (shadow answers: {copy.answers or 'none'}, "
                f"dropped {copy.dropped})",
                hint="read the service's log with `docker logs`; pass --no-mirror to skip this measurement",
            )


def mirror_measurements(run: MirrorRun) -> dict[str, float]:
    """写しを切った回と写した回の p50/p99 の中央値と、p99 の比。"""
    off_p99 = statistics.median(r.p99_ms for r in run.off)
    on_p99 = statistics.median(r.p99_ms for r in run.on)
    suffix = f"mirror_{MIRROR_PERCENT}"
    return {
        "p50_ms_mirror_off": round(statistics.median(r.p50_ms for r in run.off), 2),
        f"p50_ms_{suffix}": round(statistics.median(r.p50_ms for r in run.on), 2),
        "p99_ms_mirror_off": round(off_p99, 2),
        f"p99_ms_{suffix}": round(on_p99, 2),
        "mirror_p99_ratio": round(on_p99 / off_p99, 3) if off_p99 > 0 else float("nan"),
    }


def mirror_details(run: MirrorRun) -> dict[str, Any]:
    """`--json` の details に出す写しの測定の中身（回ごとの p99、写した・捨てた・比べた数）。"""
    mirrored = sum(c.mirrored for c in run.copies)
    dropped = sum(c.dropped for c in run.copies)
    requests = sum(r.requests for r in run.on)
    answers: dict[str, int] = {}
    for copy in run.copies:
        for status, count in copy.answers.items():
            answers[status] = answers.get(status, 0) + count
    return {
        "percent": MIRROR_PERCENT,
        "rate": MIRROR_RATE,
        "pairs": len(run.on),
        "p99_ms_off": [round(r.p99_ms, 2) for r in run.off],
        "p99_ms_on": [round(r.p99_ms, 2) for r in run.on],
        "requests_mirrored_rounds": requests,
        "mirrored": mirrored,
        "dropped": dropped,
        "compared": sum(c.compared for c in run.copies),
        "shadow_answers": dict(sorted(answers.items())),
        "mirrored_share": round((mirrored + dropped) / requests, 4) if requests else 0.0,
        "cpu_us_per_request_off": _median_or_nan(run.cpu_off),
        "cpu_us_per_request_on": _median_or_nan(run.cpu_on),
    }


def _median_or_nan(values: list[float]) -> float:
    return round(statistics.median(values), 1) if values else float("nan")


def _measure_mirroring(
    client: DockerClient,
    spec: RunSpec,
    shadow_spec: RunSpec,
    directory: Path,
    *,
    seconds: int,
    pairs: int,
) -> MirrorRun:
    """影を起動し、200 req/s に固定した遅延を、写しを切った回と 10 % 写す回で交互に測る。"""
    import httpx

    start_container(client, shadow_spec, timeout=30)
    shadow = client.containers.get(shadow_spec.name)
    shadow.reload()
    target = f"{bridge_address(shadow.attrs)}:8000"
    # 影の初回の遅さ（接続・最初の推論）を、写した最初の回に入れない
    run_wrk(shadow_spec.url, seconds=2, connections=4, threads=1, rate=MIRROR_RATE)
    connections = max(4, int(MIRROR_RATE // 20))
    box = client.containers.get(spec.name)
    cpu: list[float] = []

    def measure() -> WrkResult:
        before = _cpu_seconds(box)
        result = run_wrk(spec.url, seconds=seconds, connections=connections, threads=1, rate=MIRROR_RATE)
        cpu.append((_cpu_seconds(box) - before) * 1e6 / result.requests if result.requests else float("nan"))
        return result

    with httpx.Client(timeout=5.0) as http:

        def fetch() -> str:
            answer = http.get(f"{spec.url}/metrics")
            answer.raise_for_status()
            return answer.text

        run = alternate_mirroring(
            pairs=pairs,
            fetch=fetch,
            configure=lambda on: write_mirror_config(directory, mirror_config_text(target if on else None)),
            measure=measure,
        )
    # 負荷は mirror_plan の順にかけた
    for on, used in zip(mirror_plan(pairs), cpu, strict=True):
        (run.cpu_on if on else run.cpu_off).append(used)
    check_copies(run.copies)
    return run


def alternate_mirroring(
    *,
    pairs: int,
    fetch: Callable[[], str],
    configure: Callable[[bool], object],
    measure: Callable[[], WrkResult],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> MirrorRun:
    """写しを切った回と写す回を `mirror_plan` の順に測る（初めは切れている）。

    `configure(on)` が設定のファイルを書き、`fetch()` がサービスの `/metrics` を読み、`measure()` が
    固定レートの負荷を 1 回かける。入り切りのたびに `/metrics` の割合が変わるまで待ち、写した回は負荷の後、
    写しがすべて結果を得るまで待ってから、その回の増え（写した・捨てた・比べた数）を取る。最後は切って戻る。
    """
    run = MirrorRun()
    mirroring = False
    try:
        for on in mirror_plan(pairs):
            percent = MIRROR_PERCENT if on else 0
            if on != mirroring:
                configure(on)
                mirroring = on
                wait_for_shadow(
                    fetch,
                    reports_percent(percent),
                    timeout=MIRROR_SWITCH_SECONDS,
                    what=f"mii_shadow_mirror_percent {percent}",
                    clock=clock,
                    sleep=sleep,
                )
            before = parse_shadow(fetch())
            if before.percent != percent:
                raise DockerError(
                    f"the service mirrors {before.percent:g}% of its requests, not {percent}%, "
                    f"before a {'mirrored' if on else 'plain'} round"
                )
            result = measure()
            if not on:
                run.off.append(result)
                continue
            after = wait_for_shadow(
                fetch,
                lambda reading: reading.settled,
                timeout=MIRROR_SETTLE_SECONDS,
                what="an answer from the shadow for every copy",
                clock=clock,
                sleep=sleep,
            )
            run.on.append(result)
            run.copies.append(after.since(before))
    finally:
        if mirroring:
            configure(False)
    return run
