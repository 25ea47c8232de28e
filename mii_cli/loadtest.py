"""`mii load-test`: locust をライブラリとしてヘッドレスで動かす負荷試験。

locust は import した時点で gevent による monkeypatch を行うため、このモジュールの先頭では
import しない（`mii --help` や他のコマンドに影響させない）。locust と gevent は負荷試験を
実行する `run_load_test()` の中でだけ読み込む。

判定（`judge()`）と時間の解釈（`parse_duration()`）、百分位（`percentile()`）は純粋な関数で、
仕様書 8.4 節の目標（スループット 100 requests/s 超、p99 100 ms 未満）に失敗リクエスト 0 件を
加えた基準で合否を決める。
"""

from __future__ import annotations

import math
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.table import Table

from mii_cli.errors import CheckFailed, ConfigError
from mii_cli.smoke import BATCH_ROWS, normalize_url
from service import constants

# 負荷に使う行はスモークテストのバッチと同じ（Iris の 3 品種から 1 行ずつ。ユーザーごとに順に回す）
LOAD_ROWS = BATCH_ROWS

# 仕様書 8.4 節の目標
TARGET_MIN_RPS = 100.0
TARGET_MAX_P99_MS = 100.0

# エンドポイントの選択肢と、送るリクエスト（メソッド・パス）
ENDPOINTS: dict[str, list[str]] = {
    "predict": ["/predict"],
    "predict-label": ["/predict/label"],
    "mixed": ["/predict", "/predict/label"],
}


_DURATION = re.compile(r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s?)?$")


def parse_duration(text: str) -> float:
    """`30s`・`2m`・`1m30s`・`1h`・`45`（秒）を秒数にする。不正なら ConfigError。"""
    value = text.strip().lower()
    match = _DURATION.match(value)
    if not value or match is None or not any(match.groupdict().values()):
        raise ConfigError(
            f"--duration {text!r} is not a duration",
            hint="use seconds or units, for example 30s, 2m, 1m30s",
        )
    parts = {unit: float(number) for unit, number in match.groupdict().items() if number}
    seconds = parts.get("h", 0.0) * 3600 + parts.get("m", 0.0) * 60 + parts.get("s", 0.0)
    if seconds <= 0:
        raise ConfigError(f"--duration {text!r} must be longer than 0 s", hint="for example --duration 30s")
    return seconds


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """昇順に並んだ値の百分位（nearest-rank 法）。値が無ければ None。"""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True)
class LoadTestOptions:
    """負荷試験の条件。"""

    url: str
    duration_s: float = 30.0
    users: int = 20
    spawn_rate: float = 20.0
    rate: float | None = None
    endpoint: str = "predict"
    timeout_s: float = 10.0

    def validate(self) -> None:
        """値の範囲を確かめる。不正なら ConfigError。"""
        normalize_url(self.url)
        if self.endpoint not in ENDPOINTS:
            raise ConfigError(
                f"unknown endpoint {self.endpoint!r}", hint=f"choose one of {', '.join(ENDPOINTS)}"
            )
        if self.duration_s <= 0:
            raise ConfigError("--duration must be longer than 0 s")
        if self.users < 1:
            raise ConfigError("--users must be at least 1")
        if self.spawn_rate <= 0:
            raise ConfigError("--spawn-rate must be more than 0 users/s")
        if self.rate is not None and self.rate <= 0:
            raise ConfigError("--rate must be more than 0 requests/s", hint="leave it out for no cap")


@dataclass(frozen=True)
class Criterion:
    """合否の基準 1 つと、その測定値・結果。"""

    name: str
    target: str
    measured: str
    ok: bool


@dataclass(frozen=True)
class Verdict:
    """負荷試験の合否。"""

    passed: bool
    criteria: list[Criterion]

    @property
    def reasons(self) -> list[str]:
        """満たさなかった基準の説明。"""
        return [f"{c.name}: {c.measured} (target {c.target})" for c in self.criteria if not c.ok]


def judge(
    *,
    requests: int,
    failures: int,
    requests_per_s: float,
    p99_ms: float | None,
    min_rps: float = TARGET_MIN_RPS,
    max_p99_ms: float = TARGET_MAX_P99_MS,
) -> Verdict:
    """測定値を目標と比べて合否を決める（純粋な関数）。

    目標: スループット min_rps を超える、p99 が max_p99_ms 未満、失敗したリクエストが 0 件。
    1 件も完了しなければ不合格。
    """
    criteria = [
        Criterion(
            "throughput",
            f"> {min_rps:g} requests/s",
            f"{requests_per_s:.1f} requests/s",
            requests > 0 and requests_per_s > min_rps,
        ),
        Criterion(
            "p99 latency",
            f"< {max_p99_ms:g} ms",
            "no responses" if p99_ms is None else f"{p99_ms:.1f} ms",
            p99_ms is not None and p99_ms < max_p99_ms,
        ),
        Criterion(
            "failed requests",
            "0",
            f"{failures} of {requests}",
            requests > 0 and failures == 0,
        ),
    ]
    return Verdict(passed=all(c.ok for c in criteria), criteria=criteria)


@dataclass
class LoadTestResult:
    """負荷試験の測定値と合否。"""

    options: LoadTestOptions
    elapsed_s: float
    requests: int
    failures: int
    requests_per_s: float
    latency_ms: dict[str, float | None]
    verdict: Verdict
    errors: dict[str, int] = field(default_factory=dict)
    served_by: dict[str, int] = field(default_factory=dict)
    by_endpoint: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """目標をすべて満たしたか。"""
        return self.verdict.passed

    def as_dict(self) -> dict[str, Any]:
        """JSON にできる辞書を返す（--json 用）。"""
        return {
            "url": self.options.url,
            "endpoint": self.options.endpoint,
            "duration_s": self.options.duration_s,
            "users": self.options.users,
            "spawn_rate": self.options.spawn_rate,
            "rate": self.options.rate,
            "elapsed_s": round(self.elapsed_s, 3),
            "requests": self.requests,
            "failures": self.failures,
            "requests_per_s": round(self.requests_per_s, 2),
            "latency_ms": {k: None if v is None else round(v, 3) for k, v in self.latency_ms.items()},
            "targets": {"min_requests_per_s": TARGET_MIN_RPS, "max_p99_ms": TARGET_MAX_P99_MS},
            "passed": self.passed,
            "criteria": [asdict(c) for c in self.verdict.criteria],
            "reasons": self.verdict.reasons,
            "errors": self.errors,
            "served_by": self.served_by,
            "by_endpoint": self.by_endpoint,
        }


@dataclass
class _Collector:
    """locust の request イベントから、応答時間・失敗・応答した Pod を集める。"""

    times_ms: list[float] = field(default_factory=list)
    failures: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    served_by: Counter[str] = field(default_factory=Counter)
    by_endpoint: Counter[str] = field(default_factory=Counter)

    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float,
        response_length: int,
        exception: BaseException | None = None,
        response: Any = None,
        **_: Any,
    ) -> None:
        """1 リクエストの結果を記録する（locust の events.request のリスナー）。"""
        self.times_ms.append(response_time)
        self.by_endpoint[f"{request_type} {name}"] += 1
        if exception is not None:
            self.failures += 1
            self.errors[str(exception).strip().splitlines()[0][:160] or type(exception).__name__] += 1
        headers = getattr(response, "headers", None)
        pod = headers.get(constants.SERVED_BY_HEADER) if headers is not None else None
        if pod:
            self.served_by[str(pod)] += 1

    def snapshot(self, elapsed_s: float) -> tuple[int, int, float, float | None]:
        """途中経過（件数・失敗・requests/s・p99）。"""
        count = len(self.times_ms)
        p99 = percentile(sorted(self.times_ms[-5000:]), 0.99)
        return count, self.failures, count / elapsed_s if elapsed_s > 0 else 0.0, p99


Progress = Callable[[float, int, int, float, float | None], None]


def _preflight(url: str, timeout: float) -> None:
    """負荷をかける前に /health に 1 回問い合わせ、届かなければ 1 つのエラーにする。"""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as error:
        raise CheckFailed(
            f"{url}/health answered HTTP {error.code}",
            hint="check that --url points at the inference service",
        ) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise CheckFailed(
            f"cannot reach {url} ({reason})",
            hint="start the service with `mii serve` (or `mii run`) or check --url",
        ) from None


def run_load_test(options: LoadTestOptions, *, progress: Progress | None = None) -> LoadTestResult:
    """locust をヘッドレスで options.duration_s 秒動かし、測定値と合否を返す。

    progress を渡すと、約 5 秒ごとに（経過秒・件数・失敗・requests/s・p99）で呼ぶ。
    """
    options.validate()
    url = normalize_url(options.url)
    # ここで初めて locust（と gevent の monkeypatch）を読み込む
    import gevent
    from locust import FastHttpUser, constant, constant_throughput
    from locust.env import Environment

    _preflight(url, options.timeout_s)

    collector = _Collector()
    headers = {"Content-Type": "application/json"}
    bodies = [f'{{"data": [[{", ".join(str(v) for v in row)}]]}}' for row in LOAD_ROWS]
    paths = ENDPOINTS[options.endpoint]

    def make_task(path: str) -> Callable[[Any], None]:
        def call(user: Any) -> None:
            user.row_index = (getattr(user, "row_index", -1) + 1) % len(bodies)
            user.client.post(path, data=bodies[user.row_index], headers=headers, name=path)

        return call

    # 1 ユーザーの上限 = 全体の上限 / ユーザー数（locust の constant_throughput はタスク単位）
    wait = constant_throughput(options.rate / options.users) if options.rate else constant(0)
    period = options.users / options.rate if options.rate else 0.0

    def on_start(user: Any) -> None:
        # 上限があるときは最初の 1 回を周期内のランダムな時点にずらし、全ユーザーが同時に送る
        # 「波」を避ける（波はサーバーではなく負荷のかけ方による遅延を p99 に加えてしまう）
        if period:
            gevent.sleep(random.uniform(0.0, period))

    user_class = type(
        "MiiUser",
        (FastHttpUser,),
        {
            "host": url,
            "wait_time": wait,
            "tasks": [make_task(path) for path in paths],
            "on_start": on_start,
            "network_timeout": options.timeout_s,
            "connection_timeout": options.timeout_s,
        },
    )

    environment = Environment(user_classes=[user_class], host=url)
    environment.events.request.add_listener(collector.on_request)  # type: ignore[no-untyped-call]
    runner = environment.create_local_runner()

    start = time.monotonic()

    def report_progress() -> None:
        while True:
            gevent.sleep(5.0)
            if progress is not None:
                elapsed = time.monotonic() - start
                progress(elapsed, *collector.snapshot(elapsed))

    progress_greenlet = gevent.spawn(report_progress)
    runner.start(options.users, spawn_rate=options.spawn_rate)
    gevent.spawn_later(options.duration_s, runner.quit)
    runner.greenlet.join()
    elapsed_s = time.monotonic() - start
    progress_greenlet.kill(block=False)

    times = sorted(collector.times_ms)
    requests = len(times)
    rps = requests / elapsed_s if elapsed_s > 0 else 0.0
    latency: dict[str, float | None] = {
        "p50": percentile(times, 0.50),
        "p95": percentile(times, 0.95),
        "p99": percentile(times, 0.99),
        "max": times[-1] if times else None,
        "mean": math.fsum(times) / requests if requests else None,
    }
    verdict = judge(
        requests=requests,
        failures=collector.failures,
        requests_per_s=rps,
        p99_ms=latency["p99"],
    )
    return LoadTestResult(
        options=options,
        elapsed_s=elapsed_s,
        requests=requests,
        failures=collector.failures,
        requests_per_s=rps,
        latency_ms=latency,
        verdict=verdict,
        errors=dict(collector.errors.most_common(10)),
        served_by=dict(collector.served_by.most_common()),
        by_endpoint=dict(collector.by_endpoint),
    )


def describe(options: LoadTestOptions) -> str:
    """これから行う負荷試験を 1 行で説明する。"""
    paths = " + ".join(f"POST {p}" for p in ENDPOINTS[options.endpoint])
    rate = f"capped at {options.rate:g} requests/s" if options.rate else "no rate cap"
    return (
        f"load test: {paths} on {options.url} for {options.duration_s:g} s, "
        f"{options.users} users (spawn {options.spawn_rate:g}/s), {rate}"
    )


def summary_table(result: LoadTestResult) -> Table:
    """測定値と基準の Rich の表を返す。"""

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    lat = result.latency_ms
    table = Table(title="Load test result", title_justify="left", show_header=True)
    table.add_column("Measure", no_wrap=True)
    table.add_column("Value", justify="right")
    table.add_column("Target", justify="right")
    table.add_column("Result", no_wrap=True)
    by_name = {c.name: c for c in result.verdict.criteria}

    def mark(name: str) -> str:
        return "[green]PASS[/green]" if by_name[name].ok else "[bold red]FAIL[/bold red]"

    table.add_row("requests", f"{result.requests:,} in {result.elapsed_s:.1f} s", "", "")
    table.add_row(
        "requests/s",
        f"{result.requests_per_s:,.1f}",
        by_name["throughput"].target,
        mark("throughput"),
    )
    table.add_row("p50 ms", ms(lat["p50"]), "", "")
    table.add_row("p95 ms", ms(lat["p95"]), "", "")
    table.add_row("p99 ms", ms(lat["p99"]), by_name["p99 latency"].target, mark("p99 latency"))
    table.add_row("max ms", ms(lat["max"]), "", "")
    table.add_row("failures", f"{result.failures:,}", "0", mark("failed requests"))
    if result.served_by:
        pods = ", ".join(f"{pod} ({count:,})" for pod, count in result.served_by.items())
        table.add_row("served by", pods, "", "")
    return table
