"""Pod の `/metrics` から、推論のリクエストの件数・エラー・遅延を読む（Prometheus のサーバーは使わない）。

サービスの `/metrics` は、(メソッド, ルート) ごとのステータス別の件数（`mii_http_requests_total`）と遅延の
ヒストグラム（`mii_http_request_duration_seconds`）を持つ。推論のルートはどれも POST（`/predict`・
`/predict/label`・V2 の infer）なので、POST のものだけを合わせる。値は Pod が起きてからの累積なので、
区間の値は 2 回の読みの差（`Reading.since`）。p50・p99 はヒストグラムのバケットの中を線形に補う
（Prometheus の `histogram_quantile` と同じ考え。精度はバケットの幅まで）。
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families

from mii_cli.results import Result

REQUESTS = "mii_http_requests"
LATENCY = "mii_http_request_duration_seconds"
INFERENCE_METHOD = "POST"

K = TypeVar("K", str, float)


@dataclass(frozen=True)
class Reading:
    """推論のルートを合わせた読み（累積）: ステータス別の件数と、遅延のバケット（上限 → 累積の件数）。"""

    statuses: dict[str, float] = field(default_factory=dict)
    buckets: dict[float, float] = field(default_factory=dict)

    def __add__(self, other: Reading) -> Reading:
        """2 つの読み（別の Pod）を合わせる。"""
        return Reading(added(self.statuses, other.statuses), added(self.buckets, other.buckets))

    def since(self, before: Reading) -> Reading:
        """前の読みからの増え（Pod が起き直して減った値は 0 から数え直したとみなす）。"""
        return Reading(_since(self.statuses, before.statuses), _since(self.buckets, before.buckets))


def added(a: dict[K, float], b: dict[K, float]) -> dict[K, float]:
    """2 つの数の辞書をキーごとに足す（片方にしか無いキーは 0 と足す）。"""
    return {key: a.get(key, 0.0) + b.get(key, 0.0) for key in a.keys() | b.keys()}


def _since(after: dict[K, float], before: dict[K, float]) -> dict[K, float]:
    return {
        key: value - before.get(key, 0.0) if value >= before.get(key, 0.0) else value
        for key, value in after.items()
    }


def parse(text: str) -> Reading:
    """`/metrics` の本文（Prometheus のテキスト形式）から推論のルートの読みを作る。不正なら ValueError。"""
    statuses: dict[str, float] = {}
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in (REQUESTS, LATENCY):
            continue
        for sample in family.samples:
            if sample.labels.get("method") != INFERENCE_METHOD:
                continue
            if sample.name == f"{REQUESTS}_total":
                status = sample.labels.get("status", "")
                statuses[status] = statuses.get(status, 0.0) + sample.value
            elif sample.name == f"{LATENCY}_bucket":
                bound = float(sample.labels.get("le", "nan"))
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return Reading(statuses, buckets)


def total(readings: Iterable[Reading]) -> Reading:
    """いくつかの Pod の読みを合わせる。"""
    summed = Reading()
    for reading in readings:
        summed = summed + reading
    return summed


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """累積のバケットから q 分位の値（秒）。件数が 0 なら None。最後の有限の上限を超えればその上限。"""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = bound, count
    return lower


@dataclass(frozen=True)
class Traffic(Result):
    """1 つの側（安定版か canary）の推論のリクエスト: 件数、5xx の件数と割合、p50・p99（ミリ秒）。"""

    requests: int
    errors: int
    error_rate: float | None
    p50_ms: float | None
    p99_ms: float | None
    # 4xx（入力を断った）の件数と割合: 入力の形の違うモデルは 5xx ではなく 4xx で断る
    rejected: int = 0
    rejected_rate: float | None = None


def traffic(reading: Reading, unanswered: int = 0) -> Traffic:
    """読み（またはその差）を件数・エラー率・遅延にする。

    `unanswered` はその側へ送ったのに答えの無かった要求（影への写しの `timeout`・`unreachable`）: 側自身の
    `/metrics` には出ないが、送った側から見れば答えの無い誤りなので、件数と 5xx に足す（止まった側が「要求が
    足りない」に見えないように）。
    """
    requests = round(sum(reading.statuses.values())) + unanswered
    errors = unanswered + round(
        sum(value for status, value in reading.statuses.items() if status.startswith("5"))
    )
    rejected = round(sum(value for status, value in reading.statuses.items() if status.startswith("4")))
    p50, p99 = quantile(reading.buckets, 0.5), quantile(reading.buckets, 0.99)
    return Traffic(
        requests=requests,
        errors=errors,
        error_rate=errors / requests if requests else None,
        p50_ms=None if p50 is None else round(p50 * 1000, 3),
        p99_ms=None if p99 is None else round(p99 * 1000, 3),
        rejected=rejected,
        rejected_rate=rejected / requests if requests else None,
    )
