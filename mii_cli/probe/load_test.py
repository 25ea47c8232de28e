"""`mii load-test`: locust をライブラリとしてヘッドレスで動かす負荷試験。

locust は import した時点で gevent による monkeypatch を行うため、このモジュールは locust を
import しない（`mii --help` や他のコマンドに影響させない）。locust と gevent を使う部分は
`mii_cli.probe.locust_runner` にあり、`run_load_test()` の中で最初に読み込む。monkeypatch は
ssl・urllib3 より先に当てる必要があるので、このモジュール自身も ssl を読み込むもの（httpx を使う
smoke など）に依存しない。

判定（`judge()`）と時間の解釈（`parse_duration()`）、百分位（`percentile()`）は純粋な関数で、
目標（スループット 100 requests/s 超、p99 100 ms 未満）に失敗リクエスト 0 件を加えた基準で
合否を決める。
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mii_cli.errors import CheckFailed, ConfigError
from mii_cli.probe.targets import BATCH_ROWS, normalize_url
from mii_cli.results import Result
from service import constants

# 負荷に使う行はスモークテストのバッチと同じ（Iris の 3 品種から 1 行ずつ。ユーザーごとに順に回す）
LOAD_ROWS = BATCH_ROWS

# 負荷試験の目標: スループットと p99
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

    criteria: list[Criterion]

    @property
    def passed(self) -> bool:
        """すべての基準を満たしたか。"""
        return all(c.ok for c in self.criteria)

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
    return Verdict(criteria)


@dataclass(frozen=True)
class LoadTestResult(Result):
    """負荷試験の条件・測定値・合否（JSON には目標・合否・満たさなかった基準も出す）。

    時間と割合は JSON と同じ桁に丸めて持つ（経過秒は 3 桁、requests/s は 2 桁、応答時間は 3 桁）。
    """

    computed = ("targets", "passed", "reasons")

    url: str
    endpoint: str
    duration_s: float
    users: int
    spawn_rate: float
    rate: float | None
    elapsed_s: float
    requests: int
    failures: int
    requests_per_s: float
    latency_ms: dict[str, float | None]
    criteria: list[Criterion]
    errors: dict[str, int] = field(default_factory=dict)
    served_by: dict[str, int] = field(default_factory=dict)
    by_endpoint: dict[str, int] = field(default_factory=dict)

    @property
    def targets(self) -> dict[str, float]:
        """比べた目標。"""
        return {"min_requests_per_s": TARGET_MIN_RPS, "max_p99_ms": TARGET_MAX_P99_MS}

    @property
    def passed(self) -> bool:
        """目標をすべて満たしたか。"""
        return Verdict(self.criteria).passed

    @property
    def reasons(self) -> list[str]:
        """満たさなかった基準の説明。"""
        return Verdict(self.criteria).reasons


@dataclass(frozen=True)
class LoadProgress:
    """負荷試験の途中経過（約 5 秒ごと）。"""

    elapsed_s: float
    requests: int
    failures: int
    requests_per_s: float
    p99_ms: float | None


@dataclass
class Collector:
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

    def snapshot(self, elapsed_s: float) -> LoadProgress:
        """途中経過（件数・失敗・requests/s・直近 5,000 件の p99）。"""
        count = len(self.times_ms)
        return LoadProgress(
            elapsed_s=elapsed_s,
            requests=count,
            failures=self.failures,
            requests_per_s=count / elapsed_s if elapsed_s > 0 else 0.0,
            p99_ms=percentile(sorted(self.times_ms[-5000:]), 0.99),
        )


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


def run_load_test(
    options: LoadTestOptions, *, progress: Callable[[LoadProgress], None] | None = None
) -> LoadTestResult:
    """locust をヘッドレスで options.duration_s 秒動かし、測定値と合否を返す。

    手順: 条件を確かめる → /health に 1 回問い合わせる → locust で負荷をかける → 集計して判定する。
    progress を渡すと、約 5 秒ごとに途中経過で呼ぶ。
    """
    options.validate()
    url = normalize_url(options.url)
    # ここで初めて locust（と gevent の monkeypatch）を読み込む。ssl を読み込む _preflight より先に
    from mii_cli.probe import locust_runner

    _preflight(url, options.timeout_s)

    collector = Collector()
    plan = locust_runner.LoadPlan(
        url=url,
        paths=tuple(ENDPOINTS[options.endpoint]),
        bodies=tuple(f'{{"data": [[{", ".join(str(v) for v in row)}]]}}' for row in LOAD_ROWS),
        users=options.users,
        rate=options.rate,
        timeout_s=options.timeout_s,
    )
    elapsed_s = locust_runner.run(
        plan,
        spawn_rate=options.spawn_rate,
        duration_s=options.duration_s,
        on_request=collector.on_request,
        on_tick=None if progress is None else lambda elapsed: progress(collector.snapshot(elapsed)),
    )
    return summarize(options, collector, elapsed_s)


def summarize(options: LoadTestOptions, collector: Collector, elapsed_s: float) -> LoadTestResult:
    """集めた応答時間と失敗から測定値を求め、目標と比べた結果にする。"""
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
    verdict = judge(requests=requests, failures=collector.failures, requests_per_s=rps, p99_ms=latency["p99"])
    return LoadTestResult(
        url=options.url,
        endpoint=options.endpoint,
        duration_s=options.duration_s,
        users=options.users,
        spawn_rate=options.spawn_rate,
        rate=options.rate,
        elapsed_s=round(elapsed_s, 3),
        requests=requests,
        failures=collector.failures,
        requests_per_s=round(rps, 2),
        latency_ms={key: None if value is None else round(value, 3) for key, value in latency.items()},
        criteria=verdict.criteria,
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
