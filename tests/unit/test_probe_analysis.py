"""canary の分析の判定（mii_cli/probe/analysis.py）。"""

from __future__ import annotations

import pytest

from mii_cli.probe.analysis import P99_MIN_REQUESTS, Thresholds, judge, judged
from mii_cli.probe.compare import Verdict
from mii_cli.probe.mirror import MirrorNumbers
from mii_cli.probe.traffic import Traffic


def side(requests: int = 1000, errors: int = 0, p50: float = 1.2, p99: float = 4.0) -> Traffic:
    return Traffic(requests, errors, errors / requests if requests else None, p50, p99)


def test_the_same_model_as_fast_passes() -> None:
    assert judge(side(), side(p50=1.3, p99=4.5), Verdict(rows=5, label_changes=0), Thresholds()) == []


def test_a_slow_model_breaches_the_latency_ratio_with_its_numbers() -> None:
    (finding,) = judge(side(), side(p99=9.0), None, Thresholds())
    assert (finding.threshold, finding.measured, finding.limit) == ("max-latency-ratio", 2.25, 1.5)
    assert finding.message == "the canary's p99 9.00 ms is 2.25x the stable pods' 4.00 ms (limit 1.5x)"


def test_differences_within_the_bucket_width_are_not_latency_findings() -> None:
    # 0.3 ms と 0.6 ms は 2 倍でも、ヒストグラムでは見分けられない差（1 ms 未満）
    assert judge(side(p50=0.3, p99=0.6), side(p50=0.6, p99=1.2), None, Thresholds()) == []


def test_errors_and_label_changes_are_findings() -> None:
    findings = judge(
        side(), side(errors=30), Verdict(rows=10, label_changes=3), Thresholds(max_label_changes=1)
    )
    assert [f.threshold for f in findings] == ["max-label-changes", "max-error-rate"]
    assert findings[0].message == "3 of 10 compared rows changed their label (limit 1)"
    assert findings[1].message == "the canary answered 3.00% of its requests with 5xx (limit 1.00%)"


def test_a_regressor_has_no_label_changes_to_judge() -> None:
    assert judge(side(), side(), Verdict(rows=10, label_changes=None), Thresholds()) == []


def test_too_few_requests_cannot_be_judged() -> None:
    with pytest.raises(ValueError, match="too few requests to judge: stable 1000, canary 10"):
        judge(side(), side(requests=10), None, Thresholds())


def test_a_model_with_other_inputs_fails_before_anything_else() -> None:
    (finding,) = judge(side(), side(), Verdict(rows=1, label_changes=None, same_inputs=False), Thresholds())
    assert finding.threshold == "max-label-changes"
    assert "takes different inputs" in finding.message


def test_a_canary_that_refuses_what_the_stable_pods_answer_is_a_finding() -> None:
    refusing = Traffic(1000, 0, 0.0, 1.2, 4.0, rejected=200, rejected_rate=0.2)
    both = Traffic(1000, 0, 0.0, 1.2, 4.0, rejected=200, rejected_rate=0.2)
    (finding,) = judge(side(), refusing, None, Thresholds())
    assert finding.message.startswith(
        "the canary refused 20.00% of its requests with 4xx where the stable pods"
    )
    # 安定版も同じだけ断っているなら（利用者の誤り）、canary のせいではない
    assert judge(both, refusing, None, Thresholds()) == []


def test_p99_is_compared_only_with_enough_requests_on_both_sides() -> None:
    few = P99_MIN_REQUESTS - 1
    assert judge(side(requests=few), side(requests=few, p99=40.0), None, Thresholds()) == []
    (finding,) = judge(
        side(requests=P99_MIN_REQUESTS), side(requests=P99_MIN_REQUESTS, p99=40.0), None, Thresholds()
    )
    assert finding.message.startswith("the canary's p99 40.00 ms")


def mirrored(label_changes: int = 0, errors: dict[str, int] | None = None) -> MirrorNumbers:
    """安定版の Pod が影へ写した数字（判定が読むのは入力の違いとラベルの変わった行）。"""
    return MirrorNumbers(
        percent=10.0,
        mirrored=100,
        dropped=0,
        compared=100,
        agreed=100 - label_changes,
        incomparable=0,
        rows=100,
        label_changes=label_changes,
        largest_difference=0.0,
        answered=100,
        errors=sum((errors or {}).values()),
        error_rate=None,
        errors_by_status=errors or {},
        p50_ms=None,
        p99_ms=None,
    )


def test_the_shadow_is_judged_on_its_mirrored_answers_and_named_the_shadow() -> None:
    assert judge(side(), side(), mirrored(), Thresholds(), "shadow") == []
    findings = judge(side(), side(errors=30, p99=9.0), mirrored(label_changes=3), Thresholds(), "shadow")
    assert [f.threshold for f in findings] == ["max-label-changes", "max-error-rate", "max-latency-ratio"]
    assert findings[0].message == "3 of 100 compared rows changed their label (limit 0)"
    assert (
        findings[1].message
        == "the shadow failed 3.00% of the mirrored requests (5xx or no answer) (limit 1.00%)"
    )
    assert findings[2].message.startswith("the shadow's p99 9.00 ms is 2.25x")
    assert judge(side(), side(), mirrored(label_changes=3), Thresholds(max_label_changes=3), "shadow") == []
    with pytest.raises(ValueError, match="too few requests to judge: stable 1000, shadow 10"):
        judge(side(), side(requests=10), mirrored(), Thresholds(), "shadow")


def test_a_shadow_that_refuses_mirrored_requests_takes_other_inputs() -> None:
    (finding,) = judge(side(), side(), mirrored(errors={"400": 2}), Thresholds(), "shadow")
    assert (finding.threshold, finding.measured) == ("max-label-changes", 100)
    assert finding.message.startswith("the shadow's model takes different inputs")
    # 答えの無い写し（期限切れ・届かない）と 5xx は入力の違いではない
    assert judge(side(), side(), mirrored(errors={"timeout": 2, "500": 1}), Thresholds(), "shadow") == []


def test_judged_names_the_side_in_its_reason_not_to_judge() -> None:
    judgement = judged(side(), side(requests=10), mirrored(), Thresholds(), "shadow")
    assert judgement.undecided is not None
    assert "shadow 10" in judgement.undecided
    assert not judgement.passed
