"""Prometheus のメトリクス。

リクエストごとの記録は Python の整数を足すだけにし（イベントループは 1 本なのでロックは要らない）、
Prometheus の形にするのは `/metrics` が読まれたときだけ（自前の Collector）。prometheus_client の
Counter・Histogram はラベルの子を引くたびにロックと辞書を通り、1 リクエストに数 µs かかっていた。
名前・ラベル・バケットは以前と同じ。アプリごとに独立したレジストリを持つ（テストで複数作っても衝突しない）。
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

# 推論 API の遅延に合わせたバケット（秒）
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
_BUCKET_LABELS = [*(repr(float(b)) for b in LATENCY_BUCKETS), "+Inf"]


class RouteStats:
    """1 つの (メソッド, ルート) のステータス別の件数と遅延のヒストグラム。"""

    __slots__ = ("buckets", "count", "statuses", "sum")

    def __init__(self) -> None:
        """空の記録を作る。"""
        self.statuses: dict[int, int] = {}
        # バケットごとの件数（累積ではない。最後は +Inf）
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, status: int, seconds: float) -> None:
        """1 リクエストの結果を記録する。"""
        statuses = self.statuses
        statuses[status] = statuses.get(status, 0) + 1
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds
        self.count += 1


class ShadowStats:
    """影（shadow）への写しの数字: 割合・写した数・捨てた数・影の答え（ステータス別と遅延）・比べた結果。"""

    def __init__(self) -> None:
        """0 から数える（写しを切っている間の割合は 0）。"""
        self.percent = 0.0
        self.reset()

    def reset(self) -> None:
        """写し先が変わったとき、数字を 0 から数え直す（割合はそのまま）。"""
        self.mirrored = 0
        self.dropped = 0
        self.incomparable = 0
        self.compared_requests = 0
        self.agreed = 0
        self.rows = 0
        self.label_changes = 0
        self.max_difference = 0.0
        self.answers: dict[str, int] = {}
        self.latency = RouteStats()

    def answered(self, status: str, seconds: float) -> None:
        """影の答え 1 つ（ステータスか `timeout`・`unreachable`）とその遅延。"""
        self.answers[status] = self.answers.get(status, 0) + 1
        self.latency.observe(0, seconds)

    def compared(self, rows: int, label_changes: int, max_difference: float | None) -> None:
        """比べた 1 組の答え。"""
        self.compared_requests += 1
        self.rows += rows
        self.label_changes += label_changes
        if label_changes == 0:
            self.agreed += 1
        if max_difference is not None and max_difference > self.max_difference:
            self.max_difference = max_difference

    def families(self) -> Iterator[Any]:
        """Prometheus の形（`mii_shadow_*`）。"""
        yield GaugeMetricFamily(
            "mii_shadow_mirror_percent",
            "Share of predict requests copied to the shadow (0: off).",
            self.percent,
        )
        for name, help_text, value in (
            ("mirrored", "Requests copied to the shadow.", self.mirrored),
            ("dropped", "Copies dropped because the queue to the shadow was full.", self.dropped),
            ("compared", "Copies whose shadow answer was compared with ours.", self.compared_requests),
            ("agreed", "Compared copies whose labels all matched ours.", self.agreed),
            ("incomparable", "Shadow answers of another shape than ours.", self.incomparable),
            ("rows", "Rows in the compared copies.", self.rows),
            ("label_changes", "Rows (or label elements) whose label differed from ours.", self.label_changes),
        ):
            yield CounterMetricFamily(f"mii_shadow_{name}_total", help_text, value=value)
        yield GaugeMetricFamily(
            "mii_shadow_max_output_difference",
            "Largest absolute difference between an output value of the shadow and ours.",
            self.max_difference,
        )
        answers = CounterMetricFamily(
            "mii_shadow_answers_total",
            "Shadow answers by status code (timeout, unreachable: no answer).",
            labels=["status"],
        )
        for status, count in sorted(self.answers.items()):
            answers.add_metric([status], count)
        yield answers
        latency = HistogramMetricFamily(
            "mii_shadow_request_duration_seconds", "Round trip of a copy to the shadow in seconds."
        )
        latency.add_metric([], _cumulative(self.latency), self.latency.sum)
        yield latency


def _cumulative(stats: RouteStats) -> list[tuple[str, float]]:
    """バケットごとの件数を Prometheus の累積の形にする。"""
    cumulative = 0
    buckets = []
    for label, count in zip(_BUCKET_LABELS, stats.buckets, strict=True):
        cumulative += count
        buckets.append((label, float(cumulative)))
    return buckets


class Metrics:
    """リクエスト数・遅延・推論数・推論行数・本文の期限切れと、影への写しのメトリクス。"""

    def __init__(self) -> None:
        """専用レジストリに Collector を登録する。"""
        self.routes: dict[tuple[str, str], RouteStats] = {}
        self.predictions: dict[str, int] = {}
        self.rows = 0
        self.body_timeouts = 0
        self.shadow = ShadowStats()
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def route(self, method: str, route: str) -> RouteStats:
        """(メソッド, ルート) の記録（無ければ作る）。高速経路はルートごとに 1 度だけ引いて持っておく。"""
        stats = self.routes.get((method, route))
        if stats is None:
            stats = self.routes[(method, route)] = RouteStats()
        return stats

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """1 リクエストの結果を記録する。"""
        self.route(method, route).observe(status, seconds)

    def observe_prediction(self, endpoint: str, rows: int) -> None:
        """成功した推論を記録する。"""
        predictions = self.predictions
        predictions[endpoint] = predictions.get(endpoint, 0) + 1
        self.rows += rows

    def body_timeout(self) -> None:
        """本文の期限切れ（408）を 1 件記録する。"""
        self.body_timeouts += 1

    def collect(self) -> Iterator[Any]:
        """Prometheus の形にして返す（/metrics が読まれたときだけ呼ばれる）。"""
        requests = CounterMetricFamily(
            "mii_http_requests_total",
            "HTTP requests by method, route and status code.",
            labels=["method", "route", "status"],
        )
        latency = HistogramMetricFamily(
            "mii_http_request_duration_seconds",
            "HTTP request latency in seconds by method and route.",
            labels=["method", "route"],
        )
        for (method, route), stats in list(self.routes.items()):
            for status, count in sorted(stats.statuses.items()):
                requests.add_metric([method, route, str(status)], count)
            latency.add_metric([method, route], _cumulative(stats), stats.sum)
        predictions = CounterMetricFamily(
            "mii_predictions_total", "Successful prediction requests by endpoint.", labels=["endpoint"]
        )
        for endpoint, count in sorted(self.predictions.items()):
            predictions.add_metric([endpoint], count)
        yield requests
        yield latency
        yield predictions
        yield CounterMetricFamily(
            "mii_prediction_rows_total", "Rows predicted (a batch request counts each row).", value=self.rows
        )
        yield CounterMetricFamily(
            "mii_request_body_timeouts_total",
            "Requests whose body did not arrive within BODY_TIMEOUT_SECONDS (answered 408).",
            value=self.body_timeouts,
        )
        yield from self.shadow.families()
