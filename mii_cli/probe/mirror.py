"""安定版の Pod の `/metrics` から、影（shadow）への写しの数字（`mii_shadow_*`）を読む。

安定版の Pod は、写した推論のリクエストの影の答えを自分の答えと比べて数える。値は写し先が決まってからの
累積（写し先が変われば 0 から）。Pod ごとの読みを合わせ（いちばん大きな差は最大）、写した数・捨てた数・
比べた数・ラベルの変わった行・影のエラー（5xx と、答えの無かった `timeout`・`unreachable`）・影の遅延の
p50/p99（安定版から見た往復）にする。
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from mii_cli.probe.traffic import added, quantile
from mii_cli.results import Result

PREFIX = "mii_shadow_"
COUNTERS = ("mirrored", "dropped", "compared", "agreed", "incomparable", "rows", "label_changes")


@dataclass(frozen=True)
class MirrorReading:
    """1 つの Pod（か、合わせた Pod）の写しの読み: 割合（Pod ごと）・数・影の答え・遅延のバケット。"""

    percents: list[float] = field(default_factory=list)
    counts: dict[str, float] = field(default_factory=dict)
    max_difference: float = 0.0
    answers: dict[str, float] = field(default_factory=dict)
    buckets: dict[float, float] = field(default_factory=dict)

    def __add__(self, other: MirrorReading) -> MirrorReading:
        """2 つの Pod の読みを合わせる。"""
        return MirrorReading(
            [*self.percents, *other.percents],
            added(self.counts, other.counts),
            max(self.max_difference, other.max_difference),
            added(self.answers, other.answers),
            added(self.buckets, other.buckets),
        )


def parse_mirror(text: str) -> MirrorReading:
    """`/metrics` の本文から写しの読みを作る（写しを知らないサーバーなら割合の無い読み）。

    不正なら ValueError。
    """
    percents: list[float] = []
    counts: dict[str, float] = {}
    answers: dict[str, float] = {}
    buckets: dict[float, float] = {}
    largest = 0.0
    for family in text_string_to_metric_families(text):
        if not family.name.startswith(PREFIX):
            continue
        name = family.name.removeprefix(PREFIX)
        for sample in family.samples:
            if name == "mirror_percent":
                percents.append(sample.value)
            elif name == "max_output_difference":
                largest = max(largest, sample.value)
            elif name == "answers" and sample.name.endswith("_total"):
                status = sample.labels.get("status", "")
                answers[status] = answers.get(status, 0.0) + sample.value
            elif name in COUNTERS and sample.name.endswith("_total"):
                counts[name] = counts.get(name, 0.0) + sample.value
            elif name == "request_duration_seconds" and sample.name.endswith("_bucket"):
                bound = float(sample.labels.get("le", "nan"))
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return MirrorReading(percents, counts, largest, answers, buckets)


def total_mirror(readings: Iterable[MirrorReading]) -> MirrorReading:
    """いくつかの Pod の読みを合わせる。"""
    summed = MirrorReading()
    for reading in readings:
        summed = summed + reading
    return summed


@dataclass(frozen=True)
class MirrorNumbers(Result):
    """写しの数字（安定版の Pod を合わせたもの）。`label_changes` は比べた行のうちラベルの変わった行。"""

    computed = ("same_inputs",)

    percent: float | None
    mirrored: int
    dropped: int
    compared: int
    agreed: int
    incomparable: int
    rows: int
    label_changes: int
    largest_difference: float
    answered: int
    errors: int
    error_rate: float | None
    errors_by_status: dict[str, int]
    p50_ms: float | None
    p99_ms: float | None

    @property
    def unanswered(self) -> int:
        """答えの無かった写し（`timeout`・`unreachable`: ステータスの数字の無いもの）。"""
        return sum(count for status, count in self.errors_by_status.items() if not status.isdigit())

    @property
    def same_inputs(self) -> bool:
        """影が安定版と同じ入力を受けるか（4xx で断った写しがあれば違う）。"""
        return not any(status.startswith("4") for status in self.errors_by_status)


def mirror_numbers(reading: MirrorReading) -> MirrorNumbers:
    """読みを数字にする。影のエラーは 2xx 以外の答えと、答えの無かった写し。"""
    count = {name: round(reading.counts.get(name, 0.0)) for name in COUNTERS}
    answered = round(sum(reading.answers.values()))
    errors = {status: round(n) for status, n in sorted(reading.answers.items()) if not status.startswith("2")}
    failed = sum(errors.values())
    p50, p99 = quantile(reading.buckets, 0.5), quantile(reading.buckets, 0.99)
    percents = set(reading.percents)
    return MirrorNumbers(
        percent=percents.pop() if len(percents) == 1 else None,
        mirrored=count["mirrored"],
        dropped=count["dropped"],
        compared=count["compared"],
        agreed=count["agreed"],
        incomparable=count["incomparable"],
        rows=count["rows"],
        label_changes=count["label_changes"],
        largest_difference=reading.max_difference,
        answered=answered,
        errors=failed,
        error_rate=failed / answered if answered else None,
        errors_by_status=errors,
        p50_ms=None if p50 is None else round(p50 * 1000, 3),
        p99_ms=None if p99 is None else round(p99 * 1000, 3),
    )
