"""スモークテストの計画（純粋な関数）・URL の確かめ方・結果の合否と JSON の単体テスト。"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from mii_cli.errors import ConfigError
from mii_cli.probe import smoke_test as smoke
from mii_cli.probe.smoke_test import CheckResult, SmokeReport, smoke_plan
from mii_cli.results import to_json

SIMPLE_API_ENDPOINTS = {
    ("GET", "/health"),
    ("GET", "/metadata"),
    ("GET", "/label"),
    ("GET", "/predict/test"),
    ("GET", "/predict/test/label"),
    ("POST", "/predict"),
    ("POST", "/predict/label"),
}


def _by_name() -> dict[str, smoke.Check]:
    return {check.name: check for check in smoke_plan()}


def test_plan_is_pure_and_sends_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("smoke_plan() must not open a socket")

    monkeypatch.setattr(socket, "socket", no_network)
    first = smoke_plan()
    assert first == smoke_plan()
    assert first is not smoke_plan()


def test_plan_covers_the_seven_endpoints_of_the_simple_api() -> None:
    plan = smoke_plan()
    assert {(c.method, c.path) for c in plan} >= SIMPLE_API_ENDPOINTS
    assert ("GET", "/health/ready") in {(c.method, c.path) for c in plan}


def test_every_check_has_a_unique_name_a_verifier_and_an_expectation() -> None:
    plan = smoke_plan()
    names = [c.name for c in plan]
    assert len(names) == len(set(names))
    assert set(names) == set(smoke.VERIFIERS)
    assert all(c.expected for c in plan)
    assert all(c.method in {"GET", "POST"} for c in plan)
    # 本文は POST だけに付く
    assert all((c.body is not None) == (c.method == "POST") for c in plan)


def test_order_gathers_facts_before_they_are_compared() -> None:
    names = [c.name for c in smoke_plan()]
    assert names.index("metadata") < names.index("label") < names.index("predict-test")
    assert names.index("predict-test") < names.index("predict-test-label") < names.index("predict")
    assert names.index("predict") < names.index("predict-batch") < names.index("predict-batch-order")


def test_request_bodies() -> None:
    checks = _by_name()
    assert json.loads(checks["predict"].body or b"") == {"data": [[5.1, 3.5, 1.4, 0.2]]}
    batch = json.loads(checks["predict-batch"].body or b"")["data"]
    assert len(batch) == 3
    assert batch[0] == [5.1, 3.5, 1.4, 0.2]
    assert json.loads(checks["predict-batch-order"].body or b"")["data"] == batch[::-1]
    assert checks["reject-nan"].body == b'{"data": [[NaN, 1, 2, 3]]}'
    assert json.loads(checks["reject-empty-data"].body or b"") == {"data": []}
    assert "data" not in json.loads(checks["reject-missing-data"].body or b"")
    rows = json.loads(checks["reject-wrong-row-length"].body or b"")["data"]
    assert [len(row) for row in rows] == [4, 3]


def test_too_large_body_is_one_byte_over_one_mib_and_valid_json() -> None:
    body = _by_name()["reject-too-large"].body
    assert body is not None
    assert len(body) == 1024 * 1024 + 1
    assert json.loads(body) == {"data": [[5.1, 3.5, 1.4, 0.2]]}


def test_check_repr_leaves_out_the_body() -> None:
    check = _by_name()["reject-too-large"]
    assert len(repr(check)) < 300
    assert check.request == "POST /predict"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000"),
        (" https://example.test ", "https://example.test"),
    ],
)
def test_normalize_url(url: str, expected: str) -> None:
    assert smoke.normalize_url(url) == expected


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "ftp://host", "http://", ""])
def test_normalize_url_refuses_what_is_not_http(url: str) -> None:
    with pytest.raises(ConfigError, match="--url must be an http"):
        smoke.normalize_url(url)


def _result(name: str, ok: bool, detail: str = "fine") -> CheckResult:
    return CheckResult(
        name=name,
        method="GET",
        path="/" + name,
        expected="something",
        ok=ok,
        detail=detail,
        elapsed_ms=1.234,
        status=200,
        served_by="pod-a",
    )


def test_one_failed_check_fails_the_report() -> None:
    report = SmokeReport("http://x", [_result("a", True), _result("b", False, "bad")])
    assert not report.passed
    assert [c.name for c in report.failed] == ["b"]
    assert report.summary == {"total": 2, "passed": 1, "failed": 1}


def test_all_passed_checks_pass_the_report() -> None:
    assert SmokeReport("http://x", [_result("a", True)]).passed


def test_a_report_without_checks_does_not_pass() -> None:
    assert not SmokeReport("http://x", []).passed


def test_an_unreachable_service_does_not_pass() -> None:
    assert not SmokeReport("http://x", [_result("a", True)], unreachable="down").passed


def test_the_json_has_the_url_the_verdict_the_summary_and_every_check() -> None:
    report = SmokeReport("http://x", [_result("a", True), _result("b", False, "bad")], ["pod-a"], "f" * 64)
    data = to_json(report)
    assert set(data) == {"url", "passed", "unreachable", "served_by", "model_sha256", "summary", "checks"}
    assert (data["url"], data["passed"], data["summary"]["failed"]) == ("http://x", False, 1)
    assert data["checks"][1] == {
        "name": "b",
        "method": "GET",
        "path": "/b",
        "expected": "something",
        "ok": False,
        "detail": "bad",
        "elapsed_ms": 1.234,
        "status": 200,
        "served_by": "pod-a",
    }
