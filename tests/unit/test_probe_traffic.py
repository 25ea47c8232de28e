"""Pod の `/metrics` の読み（mii_cli/probe/traffic.py）: 本物のサービスのメトリクスの本文から。"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest

from mii_cli.probe import traffic as t
from service.app.metrics import LATENCY_BUCKETS, Metrics


def metrics_text(observations: list[tuple[str, str, int, float]]) -> str:
    """サービスの Metrics に (メソッド, ルート, ステータス, 秒) を記録し、/metrics と同じ本文にする。"""
    metrics = Metrics()
    for method, route, status, seconds in observations:
        metrics.observe_request(method, route, status, seconds)
    return generate_latest(metrics.registry).decode()


def test_only_inference_requests_are_counted() -> None:
    text = metrics_text(
        [
            ("POST", "/predict", 200, 0.0008),
            ("POST", "/predict/label", 200, 0.0008),
            ("POST", "/v2/models/{model_name}/infer", 500, 0.0008),
            ("POST", "/predict", 422, 0.0008),
            ("GET", "/health", 200, 0.0001),
            ("GET", "/metrics", 200, 0.0001),
        ]
    )
    traffic = t.traffic(t.parse(text))
    assert (traffic.requests, traffic.errors) == (4, 1)  # 4xx は利用者の誤りで、モデルのエラーではない
    assert traffic.error_rate == 0.25


def test_p50_and_p99_fall_in_the_bucket_of_the_observations() -> None:
    text = metrics_text([("POST", "/predict", 200, 0.0007)] * 98 + [("POST", "/predict", 200, 0.02)] * 2)
    traffic = t.traffic(t.parse(text))
    assert traffic.p50_ms is not None
    assert 0.5 < traffic.p50_ms <= 1.0
    assert traffic.p99_ms is not None
    assert 10.0 < traffic.p99_ms <= 25.0


def test_the_quantile_interpolates_inside_a_bucket() -> None:
    buckets = {0.001: 50.0, 0.0025: 100.0, math.inf: 100.0}
    assert t.quantile(buckets, 0.5) == pytest.approx(0.001)
    assert t.quantile(buckets, 0.99) == pytest.approx(0.001 + 0.0015 * 49 / 50)
    assert t.quantile({0.001: 0.0, math.inf: 0.0}, 0.5) is None
    assert t.quantile({}, 0.5) is None
    # すべてが最後の有限の上限を超えれば、その上限
    assert t.quantile({2.5: 0.0, math.inf: 3.0}, 0.99) == 2.5


def test_a_window_is_the_difference_of_two_readings_and_pods_add_up() -> None:
    before = t.parse(metrics_text([("POST", "/predict", 200, 0.0007)] * 10))
    after = t.parse(
        metrics_text([("POST", "/predict", 200, 0.0007)] * 10 + [("POST", "/predict", 503, 0.3)] * 5)
    )
    window = t.traffic(after.since(before))
    assert (window.requests, window.errors) == (5, 5)
    assert window.p50_ms is not None
    assert 250.0 < window.p50_ms <= 500.0
    # 起き直した Pod（値が減った）は 0 から数え直す
    restarted = t.parse(metrics_text([("POST", "/predict", 200, 0.0007)] * 3))
    assert t.traffic(restarted.since(after)).requests == 3
    assert t.traffic(t.total([before, after, restarted])).requests == 28


def test_an_unreadable_body_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"\w"):
        t.parse("mii_http_requests_total{method=")


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.floats(min_value=0.0, max_value=5.0), min_size=1, max_size=200), st.floats(0.01, 0.99))
def test_any_quantile_lies_within_the_observed_buckets(seconds: list[float], q: float) -> None:
    text = metrics_text([("POST", "/predict", 200, s) for s in seconds])
    value = t.quantile(t.parse(text).buckets, q)
    assert value is not None
    # 観測は上限を含むバケットに入る（le）: 値は最小の観測のバケットの下限から、最大の観測のバケットの上限まで
    smallest, largest = min(seconds), max(seconds)
    lowest = min(max((b for b in (0.0, *LATENCY_BUCKETS) if b < smallest), default=0.0), LATENCY_BUCKETS[-1])
    highest = min((b for b in LATENCY_BUCKETS if b >= largest), default=LATENCY_BUCKETS[-1])
    assert lowest - 1e-12 <= value <= highest + 1e-12
