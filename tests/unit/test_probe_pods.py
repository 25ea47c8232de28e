"""新しい Pod の確かめ（probe/pods.py）の、サーバーの要らない部分: 答えの比べ方、合否の読み方、
Ready でない Pod、新しい版の Pod の選び方、通らない確認の 1 行。

本物のサーバーに対する確かめは tests/integration/test_probe_pods.py。
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from mii_cli.probe.pods import PodCheck, PodsCheck, check_pods, check_service, new_pods, same_answer
from tests.fakes.http import HttpStandIn
from tests.fakes.kube_api import FakeApiServer
from tests.fakes.kube_objects import NAMESPACE, pod, put_pods

# --- same_answer -------------------------------------------------------------------------------

ANSWER = [0.9720988869667053, 0.01597398892045021, 0.011927163228392601]


@pytest.mark.parametrize(
    ("served", "expected"),
    [
        (ANSWER, ANSWER),
        ([*ANSWER[:2], ANSWER[2] + 5e-7], ANSWER),  # 許容差（1e-6）の中
        ([[1.0, 2.0], [3.0]], [[1.0, 2.0], [3.0]]),  # 入れ子のリスト
        (12.5, 12.5),
        (3, 3.0),  # 整数と浮動小数は数として比べる
        ("setosa", "setosa"),
        (None, None),
    ],
)
def test_answers_within_the_tolerance_are_the_same(served: Any, expected: Any) -> None:
    assert same_answer(served, expected)


@pytest.mark.parametrize(
    ("served", "expected"),
    [
        ([*ANSWER[:2], ANSWER[2] + 1e-4], ANSWER),  # 許容差の外
        ([*ANSWER[:2], ANSWER[2] + 0.01], ANSWER),
        (ANSWER[:2], ANSWER),  # 短い
        ([*ANSWER, 0.0], ANSWER),  # 長い
        ([[1.0, 2.0], [3.0]], [[1.0, 2.0], [3.5]]),  # 入れ子の中の違い
        ([[1.0, 2.0], [3.0]], [[1.0, 2.0], [3.0, 4.0]]),  # 入れ子の中の長さ
        (0.97, [0.97]),  # 数とリスト
        ([0.97], 0.97),  # リストと数
        ("0.97", 0.97),  # 文字列と数
        (None, ANSWER),  # 答えが無い
        ("setosa", "virginica"),
        (float("nan"), float("nan")),  # NaN は何とも同じでない
    ],
)
def test_answers_that_differ_are_not_the_same(served: Any, expected: Any) -> None:
    assert not same_answer(served, expected)


def test_the_tolerance_can_be_widened() -> None:
    assert not same_answer([1.0, 2.0], [1.0, 2.01])
    assert same_answer([1.0, 2.0], [1.0, 2.01], tolerance=0.05)


# --- PodsCheck ---------------------------------------------------------------------------------


def test_no_pods_is_not_a_pass() -> None:
    check = PodsCheck()
    assert not check.passed
    assert check.problem == "no new pod to check"


def test_all_pods_passing_is_a_pass_without_a_problem() -> None:
    check = PodsCheck(pods=[PodCheck("a", True, "fine"), PodCheck("b", True, "fine")])
    assert check.passed
    assert check.problem == ""


def test_the_problem_is_the_first_pod_that_failed() -> None:
    check = PodsCheck(
        pods=[PodCheck("a", True, "fine"), PodCheck("b", False, "not ready"), PodCheck("c", False, "other")]
    )
    assert not check.passed
    assert check.problem == "pod b: not ready"


def test_passed_is_in_the_json() -> None:
    from mii_cli.results import to_json

    assert to_json(PodsCheck(pods=[PodCheck("a", True, "fine")])) == {
        "pods": [{"pod": "a", "ok": True, "detail": "fine"}],
        "passed": True,
    }
    assert to_json(PodsCheck())["passed"] is False


# --- check_pods: Ready でない Pod ---------------------------------------------------------------


# ポートフォワードに渡るだけの API クライアント（check_pods はそれ自身では使わない）
CLIENT: Any = object()


class Forwards:
    """ポートフォワードの代わり: 呼ばれた Pod を記録し、`url` の forwarder を渡す。"""

    def __init__(self, url: str) -> None:
        self.url = url
        self.calls: list[tuple[Any, str, str, int]] = []

    @contextmanager
    def __call__(self, client: Any, namespace: str, name: str, port: int) -> Iterator[Any]:
        self.calls.append((client, namespace, name, port))
        yield self


def test_a_pod_that_is_not_ready_fails_without_forwarding() -> None:
    forward = Forwards("http://127.0.0.1:1")
    result = check_pods(
        CLIENT,
        NAMESPACE,
        [pod("model-in-image-new-1", ready=False)],
        model_sha256="a" * 64,
        sample_answer=ANSWER,
        forward=forward,
    )
    assert result.pods == [PodCheck(pod="model-in-image-new-1", ok=False, detail="not ready")]
    assert not result.passed
    assert result.problem == "pod model-in-image-new-1: not ready"
    assert forward.calls == []


def test_no_pods_to_check_is_a_failure() -> None:
    forward = Forwards("http://127.0.0.1:1")
    result = check_pods(CLIENT, NAMESPACE, [], model_sha256=None, sample_answer=None, forward=forward)
    assert result.pods == []
    assert not result.passed
    assert forward.calls == []


# --- check_service: 通らない確認と届かないサーバー -----------------------------------------------


def test_a_server_that_is_not_the_app_fails_the_checks_and_names_the_first(
    pod_stand_in: HttpStandIn,
) -> None:
    """どのパスにも 200 と `{"path": ...}` で答えるだけのサーバー: 確認の多くが通らない。"""
    ok, detail = check_service(pod_stand_in.url, model_sha256="a" * 64, sample_answer=ANSWER, timeout=2)
    assert not ok
    # 「N of M checks failed (最初の確認: 理由)」
    head, _, rest = detail.partition(" checks failed (")
    failed, _, total = head.partition(" of ")
    assert 0 < int(failed) <= int(total)
    assert rest.endswith(")")


def test_a_smoke_report_that_did_not_reach_the_server_is_unreachable() -> None:
    from mii_cli.probe.smoke_test import SmokeReport

    def smoke(url: str, *, timeout: float) -> SmokeReport:
        return SmokeReport(base_url=url, unreachable="connection refused")

    ok, detail = check_service("http://pod", model_sha256=None, sample_answer=None, smoke=smoke)
    assert (ok, detail) == (False, "unreachable: connection refused")


# --- new_pods: 今の版の Pod ----------------------------------------------------------------------


def test_new_pods_are_those_of_the_template_hash_that_are_not_being_deleted(fake_api: FakeApiServer) -> None:
    current, old = "abc123", "def456"
    leaving = pod("model-in-image-abc123-c", labels={"app": "model-in-image", "pod-template-hash": current})
    assert leaving.metadata is not None
    leaving.metadata.deletion_timestamp = datetime(2025, 1, 1, 0, 1, tzinfo=UTC)
    put_pods(
        fake_api,
        pod("model-in-image-abc123-a", labels={"app": "model-in-image", "pod-template-hash": current}),
        pod("model-in-image-abc123-b", labels={"app": "model-in-image", "pod-template-hash": current}),
        leaving,
        pod("model-in-image-def456-a", labels={"app": "model-in-image", "pod-template-hash": old}),
    )
    found = new_pods(fake_api.client(), NAMESPACE, current)
    assert sorted(p.metadata.name for p in found) == ["model-in-image-abc123-a", "model-in-image-abc123-b"]
    (listing,) = fake_api.methods("GET", f"/api/v1/namespaces/{NAMESPACE}/pods")
    assert listing.param("labelSelector") == f"pod-template-hash={current}"
