"""Prometheus のメトリクス定義。

アプリごとに独立したレジストリを持つ（テストで複数のアプリを作っても衝突しない）。
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

# 推論 API の遅延に合わせたバケット（秒）
_LATENCY_BUCKETS = (
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


class Metrics:
    """リクエスト数・遅延・推論数・推論行数のメトリクス。"""

    def __init__(self) -> None:
        """専用レジストリにメトリクスを登録する。"""
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mii_http_requests_total",
            "HTTP requests by method, route and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mii_http_request_duration_seconds",
            "HTTP request latency in seconds by method and route.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "mii_predictions_total",
            "Successful prediction requests by endpoint.",
            ["endpoint"],
            registry=self.registry,
        )
        self.rows = Counter(
            "mii_prediction_rows_total",
            "Rows predicted (a batch request counts each row).",
            registry=self.registry,
        )
        self.body_timeouts = Counter(
            "mii_request_body_timeouts_total",
            "Requests whose body did not arrive within BODY_TIMEOUT_SECONDS (answered 408).",
            registry=self.registry,
        )
        # ラベル付きの子メトリクスは作成コストがあるのでキャッシュする
        self._request_children: dict[tuple[str, str, int], Any] = {}
        self._latency_children: dict[tuple[str, str], Any] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """1 リクエストの結果を記録する。"""
        key = (method, route, status)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self.requests.labels(method, route, str(status))
        counter.inc()
        histogram = self._latency_children.get((method, route))
        if histogram is None:
            histogram = self._latency_children[(method, route)] = self.latency.labels(method, route)
        histogram.observe(seconds)

    def observe_prediction(self, endpoint: str, rows: int) -> None:
        """成功した推論を記録する。"""
        self.predictions.labels(endpoint).inc()
        self.rows.inc(rows)
