"""ロールアウトが進まない理由の説明（公式クライアントのモデルの Pod とイベントから。クラスタに触れない）。"""

from __future__ import annotations

import pytest
from kubernetes.client import V1ObjectMeta, V1Pod

from mii_cli.kube import explain as ex
from tests.fakes.kube_objects import IMAGE, event, pod


def test_healthy_pods_have_no_problem() -> None:
    assert ex.explain([pod("a"), pod("b")], []) == []


def test_a_pod_without_status_has_no_problem_yet() -> None:
    assert ex.explain_pod(V1Pod(metadata=V1ObjectMeta(name="x")), []) is None


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull"])
def test_image_not_in_the_cluster(reason: str) -> None:
    problem = ex.explain_pod(
        pod("a", phase="Pending", ready=False, waiting=(reason, "pull access denied")),
        [],
        image_hint="load it",
    )
    assert problem is not None
    assert (problem.reason, problem.hint) == (reason, "load it")
    assert IMAGE in problem.message
    assert "pull access denied" in problem.message
    assert problem.fatal is (reason != "ErrImagePull")


def test_crash_loop_shows_the_last_log_lines() -> None:
    crashing = pod("a", ready=False, waiting=("CrashLoopBackOff", "back-off"), last=("Error", 1), restarts=4)
    problem = ex.explain_pod(crashing, [], logs="error: invalid configuration: PORT=0")
    assert problem is not None
    assert problem.fatal
    assert "keeps crashing (exit code 1, restarts: 4)" in problem.message
    assert problem.details == "error: invalid configuration: PORT=0"
    assert "logs a --previous" in problem.hint
    assert ex.needs_logs(crashing)
    assert not ex.needs_logs(pod("b"))


def test_oom_killed() -> None:
    problem = ex.explain_pod(
        pod("a", ready=False, waiting=("CrashLoopBackOff", ""), last=("OOMKilled", 137)), []
    )
    assert problem is not None
    assert problem.reason == "OOMKilled"
    assert problem.fatal
    assert "memory" in problem.hint
    running_after_oom = ex.explain_pod(pod("b", ready=False, terminated="OOMKilled"), [])
    assert running_after_oom is not None
    assert not running_after_oom.fatal


def test_pending_for_lack_of_cpu_suggests_a_bigger_minikube() -> None:
    message = "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available"
    problem = ex.explain_pod(pod("a", phase="Pending", ready=False, scheduled=("Unschedulable", message)), [])
    assert problem is not None
    assert problem.reason == "Unschedulable"
    assert not problem.fatal
    assert "Insufficient cpu" in problem.message
    assert "minikube start --cpus 4 --memory 8g" in problem.hint


def test_pending_for_other_reasons_reads_the_events() -> None:
    unschedulable = pod("a", phase="Pending", ready=False, scheduled=("Unschedulable", ""))
    events = [event("a", "FailedScheduling", "0/1 nodes are available: 1 node(s) had untolerated taint")]
    problem = ex.explain_pod(unschedulable, events)
    assert problem is not None
    assert "untolerated taint" in problem.message
    assert "describe nodes" in problem.hint
    mounting = pod("b", phase="Pending", ready=False, scheduled=("Other", ""))
    found = ex.explain_pod(mounting, [event("b", "FailedMount", "volume tmp: no space")])
    assert found is not None
    assert "no space" in found.message
    assert ex.explain_pod(mounting, []) is None


def test_readiness_never_reached_quotes_the_probe_event() -> None:
    events = [
        event(
            "a",
            "Unhealthy",
            "Readiness probe failed: HTTP probe failed with statuscode: 503",
            "2025-01-01T00:01Z",
        ),
        event("a", "Unhealthy", "older", "2025-01-01T00:00:00Z"),
        event("other", "Unhealthy", "not this pod"),
    ]
    problem = ex.explain_pod(pod("a", ready=False), events)
    assert problem is not None
    assert problem.reason == "NotReady"
    assert "statuscode: 503" in problem.message
    assert problem.fatal is False


def test_container_config_errors_are_fatal() -> None:
    problem = ex.explain_pod(
        pod(
            "a",
            phase="Pending",
            ready=False,
            waiting=("CreateContainerConfigError", "runAsNonRoot and image will run as root"),
        ),
        [],
    )
    assert problem is not None
    assert problem.fatal
    assert "run as root" in problem.message
