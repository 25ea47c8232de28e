"""影への写しの数字の読み（mii_cli/probe/mirror.py）: 本物のサービスの Metrics（ShadowStats）の本文から。

生成したテスト（hypothesis）: サービスの写しの数字を `generate_latest` で本文にし、読んで数字に戻すと、
元の数字そのものになる（Pod をいくつ合わせても、足し算と最大で）。
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest

from mii_cli.probe import mirror as m
from service.app.metrics import LATENCY_BUCKETS, Metrics

STATUSES = ("200", "400", "413", "500", "503", "timeout", "unreachable")


def shadow_text(
    *,
    percent: float = 0.0,
    mirrored: int = 0,
    dropped: int = 0,
    incomparable: int = 0,
    compared: list[tuple[int, int, float | None]] | None = None,
    answers: list[tuple[str, float]] | None = None,
    requests: int = 0,
) -> str:
    """サービスの Metrics に写しの数字（と推論のリクエスト）を記録し、/metrics と同じ本文にする。"""
    metrics = Metrics()
    shadow = metrics.shadow
    shadow.percent = percent
    shadow.mirrored, shadow.dropped, shadow.incomparable = mirrored, dropped, incomparable
    for rows, changes, difference in compared or []:
        shadow.compared(rows, changes, difference)
    for status, seconds in answers or []:
        shadow.answered(status, seconds)
    for _ in range(requests):
        metrics.observe_request("POST", "/predict", 200, 0.001)
    return generate_latest(metrics.registry).decode()


def test_the_numbers_of_one_pod_are_read_from_the_service_s_own_metrics() -> None:
    text = shadow_text(
        percent=12.5,
        mirrored=5,
        dropped=2,
        incomparable=1,
        compared=[(4, 1, 0.25), (2, 0, 0.125), (1, 0, None)],
        answers=[("200", 0.002), ("200", 0.003), ("200", 0.004), ("500", 0.01), ("timeout", 1.0)],
        requests=40,
    )
    numbers = m.mirror_numbers(m.parse_mirror(text))
    assert numbers.percent == 12.5
    assert (numbers.mirrored, numbers.dropped, numbers.incomparable) == (5, 2, 1)
    assert (numbers.compared, numbers.agreed, numbers.rows, numbers.label_changes) == (3, 2, 7, 1)
    assert numbers.largest_difference == 0.25
    # 影のエラーは 2xx 以外の答えと、答えの無かった写し（timeout・unreachable）
    assert (numbers.answered, numbers.errors) == (5, 2)
    assert numbers.errors_by_status == {"500": 1, "timeout": 1}
    assert numbers.error_rate == pytest.approx(0.4)
    assert numbers.same_inputs
    # 遅延は影の答え（往復）の分布から: 5 つのうち 3 つが 2.5〜5 ms
    assert numbers.p50_ms is not None
    assert 2.5 <= numbers.p50_ms <= 5.0
    assert numbers.p99_ms is not None
    assert numbers.p99_ms > 500.0


def test_a_server_that_does_not_mirror_has_no_percent_and_nothing_counted() -> None:
    # 写しを知らないサーバー（mii_shadow_* の無い本文）
    reading = m.parse_mirror('mii_http_requests_total{method="POST",route="/predict",status="200"} 3.0\n')
    assert reading == m.MirrorReading()
    numbers = m.mirror_numbers(reading)
    assert (numbers.percent, numbers.mirrored, numbers.answered, numbers.error_rate) == (None, 0, 0, None)
    assert (numbers.p50_ms, numbers.p99_ms) == (None, None)
    # 写しを切っているサーバーは 0 % を名乗る
    assert m.parse_mirror(shadow_text()).percents == [0.0]


def test_an_unreadable_body_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"\w"):
        m.parse_mirror("mii_shadow_mirrored_total{status=")


def test_pods_add_up_and_the_largest_difference_is_the_largest_of_any_pod() -> None:
    a = m.parse_mirror(shadow_text(percent=10, mirrored=3, compared=[(1, 0, 0.5)], answers=[("200", 0.001)]))
    b = m.parse_mirror(
        shadow_text(percent=10, mirrored=4, compared=[(2, 2, 0.125)], answers=[("unreachable", 0.0)])
    )
    numbers = m.mirror_numbers(m.total_mirror([a, b]))
    assert (numbers.percent, numbers.mirrored, numbers.rows, numbers.label_changes) == (10.0, 7, 3, 2)
    assert numbers.largest_difference == 0.5
    assert numbers.errors_by_status == {"unreachable": 1}
    assert numbers.error_rate == 0.5


def test_pods_that_disagree_on_the_percent_have_no_one_percent() -> None:
    switching = [m.parse_mirror(shadow_text(percent=p)) for p in (10.0, 10.0, 0.0)]
    assert m.mirror_numbers(m.total_mirror(switching)).percent is None
    assert m.mirror_numbers(m.total_mirror(switching[:2])).percent == 10.0
    assert m.mirror_numbers(m.total_mirror([])).percent is None


def test_a_shadow_that_refuses_with_4xx_does_not_take_the_same_inputs() -> None:
    refused = m.mirror_numbers(m.parse_mirror(shadow_text(answers=[("200", 0.001), ("422", 0.001)])))
    assert not refused.same_inputs
    assert refused.errors_by_status == {"422": 1}
    # 5xx と答えの無い写しは入力の違いではない
    failing = m.mirror_numbers(m.parse_mirror(shadow_text(answers=[("500", 0.001), ("timeout", 1.0)])))
    assert failing.same_inputs


def test_the_numbers_as_json_say_whether_the_inputs_are_the_same() -> None:
    from mii_cli.results import to_json

    numbers = m.mirror_numbers(m.parse_mirror(shadow_text(percent=5, answers=[("200", 0.001)])))
    data = to_json(numbers)
    assert data["same_inputs"] is True
    assert (data["percent"], data["answered"], data["errors_by_status"]) == (5.0, 1, {})


# --- 生成したテスト: サービスの本文を読んで戻すと元の数字 ---------------------------------------------

counts = st.integers(min_value=0, max_value=10**9)
differences = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)
COUNTED = ("mirrored", "dropped", "incomparable", "compared_requests", "agreed", "rows", "label_changes")


@dataclass(frozen=True)
class PodNumbers:
    """1 つの Pod の写しの数字（ShadowStats に入れる値）と、影の答え（ステータス, 秒）。"""

    percent: float
    counted: dict[str, int]
    max_difference: float
    answers: list[tuple[str, float]]


pod_numbers = st.builds(
    PodNumbers,
    percent=st.floats(min_value=0.0, max_value=100.0, allow_nan=False),
    counted=st.fixed_dictionaries({name: counts for name in COUNTED}),
    max_difference=differences,
    answers=st.lists(
        st.tuples(st.sampled_from(STATUSES), st.floats(min_value=0.0, max_value=10.0, allow_nan=False)),
        max_size=30,
    ),
)


def render(numbers: PodNumbers) -> str:
    """数字をサービスの ShadowStats に入れ、/metrics の本文にする。"""
    metrics = Metrics()
    shadow = metrics.shadow
    shadow.percent, shadow.max_difference = numbers.percent, numbers.max_difference
    for name, value in numbers.counted.items():
        setattr(shadow, name, value)
    for status, seconds in numbers.answers:
        shadow.answered(status, seconds)
    return generate_latest(metrics.registry).decode()


def expected_buckets(answers: list[tuple[str, float]]) -> dict[float, float]:
    """サービスのバケットの上限ごとの累積の数（`le` は上限を含む）。"""
    bounds = [*LATENCY_BUCKETS, math.inf]
    return {bound: float(sum(1 for _, seconds in answers if seconds <= bound)) for bound in bounds}


@settings(max_examples=80, deadline=None, derandomize=True)
@given(pod_numbers)
def test_one_pod_s_numbers_round_trip_through_the_service_s_exposition(numbers: PodNumbers) -> None:
    reading = m.parse_mirror(render(numbers))
    assert reading.percents == [numbers.percent]
    assert reading.max_difference == numbers.max_difference
    assert reading.buckets == expected_buckets(numbers.answers)
    result = m.mirror_numbers(reading)
    assert (
        result.mirrored,
        result.dropped,
        result.incomparable,
        result.compared,
        result.agreed,
        result.rows,
        result.label_changes,
    ) == tuple(numbers.counted[name] for name in COUNTED)
    assert result.percent == numbers.percent
    by_status: dict[str, int] = {}
    for status, _ in numbers.answers:
        by_status[status] = by_status.get(status, 0) + 1
    errors = {status: n for status, n in sorted(by_status.items()) if not status.startswith("2")}
    assert result.answered == len(numbers.answers)
    assert result.errors_by_status == errors
    assert result.errors == sum(errors.values())
    assert result.error_rate == (sum(errors.values()) / len(numbers.answers) if numbers.answers else None)
    assert result.same_inputs == (not any(status.startswith("4") for status in by_status))
    assert (result.p50_ms is None) == (not numbers.answers)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(pod_numbers, min_size=1, max_size=4))
def test_several_pods_add_up_through_the_service_s_exposition(pods: list[PodNumbers]) -> None:
    result = m.mirror_numbers(m.total_mirror(m.parse_mirror(render(numbers)) for numbers in pods))
    assert result.mirrored == sum(numbers.counted["mirrored"] for numbers in pods)
    assert result.rows == sum(numbers.counted["rows"] for numbers in pods)
    assert result.label_changes == sum(numbers.counted["label_changes"] for numbers in pods)
    assert result.largest_difference == max(numbers.max_difference for numbers in pods)
    assert result.answered == sum(len(numbers.answers) for numbers in pods)
    percents = {numbers.percent for numbers in pods}
    assert result.percent == (percents.pop() if len(percents) == 1 else None)
