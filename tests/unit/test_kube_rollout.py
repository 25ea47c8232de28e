"""ロールアウトの待機と、失敗の説明（公式クライアントのモデルの Pod とイベントから）。"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from kubernetes.client import (
    CoreV1Event,
    V1ContainerState,
    V1ContainerStateRunning,
    V1ContainerStateTerminated,
    V1ContainerStateWaiting,
    V1ContainerStatus,
    V1Deployment,
    V1DeploymentCondition,
    V1DeploymentStatus,
    V1ObjectMeta,
    V1ObjectReference,
    V1Pod,
    V1PodCondition,
    V1PodSpec,
    V1PodStatus,
)

from mii_cli.errors import ClusterError, WaitTimeout
from mii_cli.kube import explain as ex
from mii_cli.kube import rollout as ro
from mii_cli.kube.render import find, render
from tests.fakes.kube_api import FakeApiServer, to_dict

NS = "model-in-image"
IMAGE = "model-in-image:0.1.0-0123456789ab-fedcba987654"
DEPLOYMENT = f"/apis/apps/v1/namespaces/{NS}/deployments/model-in-image"


def pod(
    name: str,
    *,
    phase: str = "Running",
    ready: bool = True,
    waiting: tuple[str, str] | None = None,
    terminated: str | None = None,
    last: tuple[str, int] | None = None,
    restarts: int = 0,
    scheduled: tuple[str, str] | None = None,
) -> V1Pod:
    """状態を指定した Pod（公式のモデル）。"""
    state = V1ContainerState(running=V1ContainerStateRunning())
    if waiting:
        state = V1ContainerState(waiting=V1ContainerStateWaiting(reason=waiting[0], message=waiting[1]))
    if terminated:
        state = V1ContainerState(terminated=V1ContainerStateTerminated(reason=terminated, exit_code=137))
    last_state = None
    if last:
        last_state = V1ContainerState(
            terminated=V1ContainerStateTerminated(reason=last[0], exit_code=last[1])
        )
    conditions = [V1PodCondition(type="Ready", status="True" if ready else "False")]
    if scheduled:
        conditions = [
            V1PodCondition(type="PodScheduled", status="False", reason=scheduled[0], message=scheduled[1])
        ]
    statuses = [
        V1ContainerStatus(
            name="model-in-image",
            image=IMAGE,
            image_id="",
            ready=ready,
            restart_count=restarts,
            state=state,
            last_state=last_state,
        )
    ]
    return V1Pod(
        api_version="v1",
        kind="Pod",
        metadata=V1ObjectMeta(name=name, namespace=NS, labels={"app": "model-in-image"}),
        spec=V1PodSpec(containers=[], node_name=None if scheduled else "node-1"),
        status=V1PodStatus(
            phase=phase, conditions=conditions, container_statuses=None if scheduled else statuses
        ),
    )


def event(pod_name: str, reason: str, message: str, when: str = "2025-01-01T00:00:00Z") -> CoreV1Event:
    return CoreV1Event(
        metadata=V1ObjectMeta(name=f"{pod_name}.{reason}", namespace=NS),
        involved_object=V1ObjectReference(kind="Pod", name=pod_name, namespace=NS),
        reason=reason,
        message=message,
        last_timestamp=when,
    )


# --- 説明（純粋な関数） ---


def test_healthy_pods_have_no_problem() -> None:
    assert ex.explain([pod("a"), pod("b")], []) == []
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
    assert problem.as_dict()["fatal"] is False


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


def test_is_ready_ignores_terminating_pods() -> None:
    terminating = pod("a")
    terminating.metadata.deletion_timestamp = "2025-01-01T00:00:00Z"  # type: ignore[assignment]
    assert not ex.is_ready(terminating)
    assert ex.is_ready(pod("b"))


# --- ロールアウトの待機（HTTP の境界で置き換えたクラスタ） ---


def deployment(
    *, desired: int = 4, ready: int = 4, updated: int = 4, total: int | None = None, **extra: Any
) -> dict[str, Any]:
    body = find(render(IMAGE, NS), "Deployment")
    body["spec"]["replicas"] = desired
    body["metadata"]["generation"] = 2
    status = V1DeploymentStatus(
        observed_generation=2,
        replicas=updated if total is None else total,
        updated_replicas=updated,
        ready_replicas=ready,
        available_replicas=ready,
        conditions=extra.get("conditions"),
    )
    body["status"] = to_dict(status)
    return body


def put_pods(fake: FakeApiServer, *pods: V1Pod) -> None:
    for item in pods:
        fake.put(f"/api/v1/namespaces/{NS}/pods/{item.metadata.name}", item)


def clock() -> Any:
    ticks = itertools.count(0.0, 10.0)
    return lambda: next(ticks)


def test_rollout_done_rules() -> None:
    def model(**kwargs: Any) -> V1Deployment:
        return V1Deployment.from_dict(deployment(**kwargs))

    assert ro.rollout_done(model())
    assert not ro.rollout_done(model(ready=3))
    assert not ro.rollout_done(model(updated=2, total=5))
    stale = model()
    stale.status.observed_generation = 1  # type: ignore[union-attr]
    assert not ro.rollout_done(stale)
    no_status = deployment()
    del no_status["status"]
    assert not ro.rollout_done(V1Deployment.from_dict(no_status))


def test_wait_returns_when_all_pods_are_ready(fake_api: FakeApiServer) -> None:
    fake_api.put(DEPLOYMENT, deployment())
    put_pods(fake_api, *(pod(f"model-in-image-{i}") for i in range(4)))
    result = ro.wait_for_rollout(fake_api.client(), NS, timeout=60, sleep=lambda _: None)
    assert (result["ready"], result["desired"]) == (4, 4)


def test_wait_polls_until_ready(fake_api: FakeApiServer) -> None:
    fake_api.put(DEPLOYMENT, deployment(ready=2))
    put_pods(fake_api, pod("model-in-image-0"), pod("model-in-image-1", ready=False, phase="Pending"))
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        fake_api.put(DEPLOYMENT, deployment())

    result = ro.wait_for_rollout(fake_api.client(), NS, timeout=60, poll=0.5, sleep=sleep, clock=clock())
    assert result["ready"] == 4
    assert sleeps == [0.5]


def test_image_pull_failure_stops_at_once_with_the_fix(fake_api: FakeApiServer) -> None:
    fake_api.put(DEPLOYMENT, deployment(ready=0, updated=1, total=5))
    put_pods(
        fake_api,
        pod("model-in-image-new", phase="Pending", ready=False, waiting=("ImagePullBackOff", "Back-off")),
    )
    with pytest.raises(ClusterError, match="cannot pull image") as error:
        ro.wait_for_rollout(
            fake_api.client(), NS, timeout=60, image_hint="minikube image load X", sleep=lambda _: None
        )
    assert error.value.hint == "minikube image load X"


def test_crash_loop_reports_the_previous_log(fake_api: FakeApiServer) -> None:
    fake_api.put(DEPLOYMENT, deployment(ready=0))
    put_pods(
        fake_api, pod("p1", ready=False, waiting=("CrashLoopBackOff", ""), last=("Error", 1), restarts=3)
    )
    fake_api.logs["p1"] = "Traceback...\nerror: model file /x.onnx is not a valid ONNX model"
    with pytest.raises(ClusterError, match="keeps crashing") as error:
        ro.wait_for_rollout(fake_api.client(), NS, timeout=60, sleep=lambda _: None)
    assert "not a valid ONNX model" in (error.value.details or "")
    log_request = fake_api.methods("GET", f"/api/v1/namespaces/{NS}/pods/p1/log")[0]
    assert log_request.param("previous") == "true"


def test_timeout_explains_pending_pods(fake_api: FakeApiServer) -> None:
    fake_api.put(DEPLOYMENT, deployment(ready=3, updated=4))
    message = "0/1 nodes are available: 1 Insufficient memory."
    put_pods(
        fake_api,
        pod("ok"),
        pod("pending", phase="Pending", ready=False, scheduled=("Unschedulable", message)),
        pod("slow", ready=False),
    )
    fake_api.put(
        f"/api/v1/namespaces/{NS}/events/slow.1", event("slow", "Unhealthy", "Readiness probe failed: 503")
    )
    with pytest.raises(WaitTimeout, match="rollout not finished after 30s: pod pending is Pending") as error:
        ro.wait_for_rollout(fake_api.client(), NS, timeout=30, sleep=lambda _: None, clock=clock())
    assert "minikube start --cpus 4 --memory 8g" in (error.value.hint or "")
    assert "Readiness probe failed: 503" in (error.value.details or "")


def test_timeout_without_a_visible_reason(fake_api: FakeApiServer) -> None:
    fake_api.put(DEPLOYMENT, deployment(ready=0))
    with pytest.raises(WaitTimeout, match="rollout not finished after 5s") as error:
        ro.wait_for_rollout(fake_api.client(), NS, timeout=5, sleep=lambda _: None, clock=clock())
    assert "describe pods" in (error.value.hint or "")


def test_progress_deadline_exceeded(fake_api: FakeApiServer) -> None:
    condition = V1DeploymentCondition(
        type="Progressing",
        status="False",
        reason="ProgressDeadlineExceeded",
        message="ReplicaSet has timed out",
    )
    fake_api.put(DEPLOYMENT, deployment(ready=0, conditions=[condition]))
    with pytest.raises(ClusterError, match="ReplicaSet has timed out"):
        ro.wait_for_rollout(fake_api.client(), NS, timeout=600, sleep=lambda _: None)


def test_progress_view_lists_pods() -> None:
    from rich.console import Console

    view = ro.progress_view(
        V1Deployment.from_dict(deployment(ready=1)),
        [pod("a"), pod("b", ready=False, waiting=("ContainerCreating", ""))],
        3,
        300,
    )
    console = Console(width=120, record=True)
    console.print(view)
    text = console.export_text()
    assert "ready 1/4" in text
    assert "ContainerCreating" in text
    assert "node-1" in text
