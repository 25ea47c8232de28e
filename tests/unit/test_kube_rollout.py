"""ロールアウトの待機（クラスタは HTTP の境界の代役）: 終わり方、途中経過、すぐ止める失敗、時間切れの説明。"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from kubernetes.client import V1Deployment, V1DeploymentCondition, V1DeploymentStatus

from mii_cli.errors import ClusterError, WaitTimeout
from mii_cli.kube import rollout as ro
from mii_cli.kube.render import find, render
from tests.fakes.kube_api import FakeApiServer, to_dict
from tests.fakes.kube_objects import IMAGE, NAMESPACE, event, pod, put_pods

NS = NAMESPACE
DEPLOYMENT = f"/apis/apps/v1/namespaces/{NS}/deployments/model-in-image"


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


def clock() -> Any:
    ticks = itertools.count(0.0, 10.0)
    return lambda: next(ticks)


def model(**kwargs: Any) -> V1Deployment:
    return V1Deployment.from_dict(deployment(**kwargs))


@pytest.mark.parametrize(
    ("changes", "done"),
    [
        ({}, True),
        ({"ready": 3}, False),
        ({"updated": 2, "total": 5}, False),  # 古い Pod が残っている
    ],
)
def test_rollout_is_done_when_every_new_pod_is_available(changes: dict[str, int], done: bool) -> None:
    assert ro.rollout_done(model(**changes)) is done


def test_a_rollout_the_controller_has_not_seen_is_not_done() -> None:
    stale = model()
    stale.status.observed_generation = 1  # type: ignore[union-attr]
    assert not ro.rollout_done(stale)


def test_a_deployment_without_status_is_not_done() -> None:
    body = deployment()
    del body["status"]
    assert not ro.rollout_done(V1Deployment.from_dict(body))


def test_wait_returns_when_all_pods_are_ready(fake_api: FakeApiServer) -> None:
    fake_api.put(DEPLOYMENT, deployment())
    put_pods(fake_api, *(pod(f"model-in-image-{i}") for i in range(4)))
    result = ro.wait_for_rollout(fake_api.client(), NS, timeout=60, sleep=lambda _: None)
    assert (result.deployment, result.ready, result.desired) == ("model-in-image", 4, 4)


def test_wait_polls_until_ready_and_reports_progress(fake_api: FakeApiServer) -> None:
    fake_api.put(DEPLOYMENT, deployment(ready=2))
    put_pods(fake_api, pod("model-in-image-0"), pod("model-in-image-1", ready=False, phase="Pending"))
    sleeps: list[float] = []
    seen: list[ro.RolloutProgress] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        fake_api.put(DEPLOYMENT, deployment())

    result = ro.wait_for_rollout(
        fake_api.client(), NS, timeout=60, poll=0.5, sleep=sleep, clock=clock(), on_progress=seen.append
    )
    assert result.ready == 4
    assert sleeps == [0.5]
    assert [(p.ready, p.desired, p.elapsed) for p in seen] == [(2, 4, 10.0), (4, 4, 20.0)]
    assert [(row.name, row.ready) for row in seen[0].pods] == [
        ("model-in-image-0", True),
        ("model-in-image-1", False),
    ]


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


def test_crashing_pods_of_a_template_being_replaced_do_not_fail_the_rollout(fake_api: FakeApiServer) -> None:
    """前の版に戻した直後: 消えていく版の Pod が CrashLoopBackOff でも、今のテンプレートの待ちは続く。"""
    from kubernetes.client import V1Container

    fake_api.put(DEPLOYMENT, deployment(ready=2))
    crashing = pod("bad-0", waiting=("CrashLoopBackOff", "back-off"), ready=False)
    crashing.spec.containers = [V1Container(name="model-in-image", image="model-in-image:bad")]
    terminating = pod("bad-1", waiting=("CrashLoopBackOff", "back-off"), ready=False)
    terminating.metadata.deletion_timestamp = "2025-01-01T00:00:05Z"
    put_pods(fake_api, crashing, terminating)
    polls: list[float] = []

    def sleep(_: float) -> None:
        polls.append(1)
        fake_api.put(DEPLOYMENT, deployment())  # 次の読み出しではロールアウトが終わっている

    result = ro.wait_for_rollout(fake_api.client(), NS, timeout=60, sleep=sleep, clock=clock())
    assert (result.ready, len(polls)) == (4, 1)


def test_a_crashing_pod_of_the_current_template_fails_at_once(fake_api: FakeApiServer) -> None:
    from kubernetes.client import V1Container

    fake_api.put(DEPLOYMENT, deployment(ready=2))
    crashing = pod("new-0", waiting=("CrashLoopBackOff", "back-off"), ready=False)
    crashing.spec.containers = [V1Container(name="model-in-image", image=IMAGE)]
    put_pods(fake_api, crashing)
    with pytest.raises(ClusterError, match="keeps crashing"):
        ro.wait_for_rollout(fake_api.client(), NS, timeout=60, sleep=lambda _: None, clock=clock())
