"""`mii deploy` の処理（クラスタは HTTP の境界の代役）: 適用・待機・イベント・metrics API・Namespace。"""

from __future__ import annotations

from typing import Any

import pytest

from mii_cli.errors import ClusterError, DockerError
from mii_cli.kube.cluster import ClusterInfo
from mii_cli.kube.render import find, render
from mii_cli.kube.status import collect_status
from mii_cli.workflows import deploy as deploying
from mii_cli.workflows.steps import StepStatus
from tests.fakes.docker_engine import FakeDockerEngine
from tests.fakes.kube_api import FakeApiServer
from tests.fakes.kube_objects import IMAGE, NAMESPACE, become_ready

MANAGED = {"app.kubernetes.io/managed-by": "mii"}
NAMESPACE_PATH = f"/api/v1/namespaces/{NAMESPACE}"


def run(fake: FakeApiServer, info: ClusterInfo, report: Any = None, **options: Any) -> deploying.DeployResult:
    """要求（`options` は DeployRequest のフィールド）を作ってデプロイする。"""
    request = deploying.DeployRequest(**{"namespace": NAMESPACE, **options})
    return deploying.deploy(request, client=fake.client(), info=info, report=report)


def deploy(fake: FakeApiServer, info: ClusterInfo, **options: Any) -> deploying.DeployResult:
    return run(fake, info, **{"image": IMAGE, **options})


def test_deploy_applies_every_object_and_waits_for_the_pods(
    fake_api: FakeApiServer, docker_desktop: ClusterInfo
) -> None:
    fake_api.on_apply.append(become_ready(fake_api))
    result = deploy(fake_api, docker_desktop, timeout=30)
    assert result.image == IMAGE
    assert [(a.kind, a.action) for a in result.applied] == [
        (obj["kind"], "created") for obj in render(IMAGE, NAMESPACE)
    ]
    assert result.rollout is not None
    assert (result.rollout.ready, result.rollout.desired) == (4, 4)


def test_deploy_reports_its_steps_through_one_callback_in_order(
    fake_api: FakeApiServer, docker_desktop: ClusterInfo
) -> None:
    fake_api.on_apply.append(become_ready(fake_api))
    seen: list[StepStatus] = []
    deploy(fake_api, docker_desktop, timeout=30, report=seen.append)
    steps = [(s.step, s.state) for s in seen if s.state != "progress"]
    assert steps == [
        ("cluster", "info"),
        ("image", "info"),
        ("image", "done"),
        *[("apply", "done")] * 7,
        ("metrics", "warn"),
        ("rollout", "done"),
        ("pods", "start"),
        *[("pods", "done")] * 4,
    ]
    assert seen[2].message == f"image: {IMAGE}"
    assert seen[3].message == f"Namespace/{NAMESPACE} created"
    (progress, *_) = [s.progress for s in seen if s.state == "progress"]
    assert progress is not None
    assert [pod.name for pod in progress.pods] == [f"model-in-image-{i}" for i in range(4)]


def test_the_steps_follow_the_request() -> None:
    """待たなければロールアウトの前で終わり、canary なら比べて終わる（手順を足すのは並びだけ）。"""
    names = [step.__name__ for step in deploying.steps_for(deploying.DeployRequest(namespace="n"))]
    assert names == [
        "plan_delivery",
        "check_namespace",
        "read_stable",
        "check_fit",
        "deliver_image",
        "apply_objects",
        "check_metrics_api",
        "wait_and_check",
    ]
    assert deploying.steps_for(deploying.DeployRequest(namespace="n", wait=False)) == [
        step
        for step in deploying.steps_for(deploying.DeployRequest(namespace="n"))
        if step.__name__ != "wait_and_check"
    ]
    canary = deploying.steps_for(deploying.DeployRequest(namespace="n", canary=True))
    assert canary[-1] is deploying.compare_canary
    assert deploying.DeployRequest(namespace="n", canary=True).deployment == "model-in-image-canary"


def test_a_missing_metrics_api_is_reported_with_how_to_enable_it(
    fake_api: FakeApiServer, docker_desktop: ClusterInfo
) -> None:
    seen: list[StepStatus] = []
    result = deploy(fake_api, docker_desktop, wait=False, report=seen.append)
    (missing,) = [s for s in seen if s.step == "metrics"]
    assert result.metrics_api is False
    assert missing.state == "warn"
    assert f"the metrics API ({deploying.METRICS_PATH}) is not served" in missing.message
    assert "enable it with: kubectl apply -f" in missing.message


def test_a_served_metrics_api_is_recorded_and_nothing_waits_without_wait(
    fake_api: FakeApiServer, docker_desktop: ClusterInfo
) -> None:
    fake_api.routes[("GET", deploying.METRICS_PATH)] = (200, {"kind": "APIResourceList"})
    result = deploy(fake_api, docker_desktop, wait=False)
    assert result.metrics_api is True
    assert result.rollout is None


def test_deploy_waits_for_a_namespace_that_is_still_being_deleted(
    fake_api: FakeApiServer, docker_desktop: ClusterInfo
) -> None:
    fake_api.put(
        NAMESPACE_PATH,
        {"metadata": {"name": NAMESPACE, "labels": MANAGED}, "status": {"phase": "Terminating"}},
    )
    fake_api.terminating[NAMESPACE_PATH] = 1  # 1 度 Terminating と読まれた後に消える
    seen: list[StepStatus] = []
    deploy(fake_api, docker_desktop, wait=False, report=seen.append)
    applied = [s.message for s in seen if s.step == "apply"]
    assert StepStatus("namespace", "info", f"namespace {NAMESPACE} is still being deleted; waiting") in seen
    # 消えるのを待ってから作り直す（消えかけの Namespace には作れない）
    assert applied[0] == f"Namespace/{NAMESPACE} created"


def test_deploy_refuses_a_namespace_mii_did_not_create(
    fake_api: FakeApiServer, docker_desktop: ClusterInfo
) -> None:
    fake_api.put(NAMESPACE_PATH, {"metadata": {"name": NAMESPACE}})
    with pytest.raises(ClusterError, match="refusing to deploy into it"):
        deploy(fake_api, docker_desktop, wait=False)
    assert not fake_api.methods("PATCH")


def test_the_sizing_reaches_the_deployment(fake_api: FakeApiServer, docker_desktop: ClusterInfo) -> None:
    from mii_cli.kube.render import Sizing

    deploy(fake_api, docker_desktop, wait=False, sizing=Sizing(replicas=2, cpu="250m"))
    deployment = fake_api.objects[f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/model-in-image"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "250m"


def test_the_minikube_metrics_hint_names_the_profile() -> None:
    info = ClusterInfo("m", "", "minikube", "dev")
    assert deploying.metrics_hint(info) == "minikube -p dev addons enable metrics-server"


def test_the_kind_metrics_hint_allows_the_kubelet_certificate() -> None:
    assert "--kubelet-insecure-tls" in deploying.metrics_hint(ClusterInfo("kind-x", "", "kind", "x"))


def test_a_dry_run_uses_the_newest_local_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deploying, "latest_local_image", lambda repository: f"{repository}:0.1.0-a-b")
    plan = deploying.dry_run_objects(NAMESPACE, None, "model-in-image")
    assert plan.image == "model-in-image:0.1.0-a-b"
    monkeypatch.setattr(deploying, "latest_local_image", lambda repository: IMAGE)
    plan = deploying.dry_run_objects(NAMESPACE, None, "model-in-image")
    assert plan.image == IMAGE
    assert plan.note is None
    assert plan.objects == render(IMAGE, NAMESPACE)


def test_a_dry_run_without_docker_shows_the_manifests_image(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_docker(_repository: str) -> str:
        raise DockerError("cannot reach the Docker engine")

    monkeypatch.setattr(deploying, "latest_local_image", no_docker)
    plan = deploying.dry_run_objects(NAMESPACE, None, "model-in-image")
    image = find(plan.objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == plan.image == deploying.manifest_image()
    assert plan.note == f"cannot reach the Docker engine; showing the manifests' image {plan.image}"


# --- レジストリへ push したイメージはダイジェストでデプロイする ------------------------------------

DEPLOYMENT = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/model-in-image"
REGISTRY = "127.0.0.1:5000"


@pytest.fixture
def pushing(fake_docker: FakeDockerEngine, monkeypatch: pytest.MonkeyPatch) -> FakeDockerEngine:
    """mii deploy が push に使う Docker エンジン（IMAGE を持つ代役）。"""
    monkeypatch.setenv("DOCKER_HOST", fake_docker.url)
    fake_docker.images = [{"Id": "sha256:" + "b" * 64, "RepoTags": [IMAGE], "Created": "2026"}]
    return fake_docker


def push_deploy(fake: FakeApiServer, **options: Any) -> deploying.DeployResult:
    other = ClusterInfo("ctx-other", fake.url, "other", "other")
    return run(fake, other, **{"image": IMAGE, "registry": REGISTRY, **options})


def test_a_pushed_image_is_deployed_by_the_digest_the_push_reports(
    fake_api: FakeApiServer, pushing: FakeDockerEngine
) -> None:
    fake_api.on_apply.append(become_ready(fake_api))
    seen: list[StepStatus] = []
    result = push_deploy(fake_api, timeout=30, report=seen.append)
    digest = FakeDockerEngine.digest_of(pushing.images[0])
    pinned = f"{REGISTRY}/{IMAGE}@{digest}"
    assert result.image == pinned
    container = fake_api.objects[DEPLOYMENT]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == pinned
    # 計画はタグまで（ダイジェストは push の後に分かる）、使える参照はダイジェスト付き
    assert result.delivery is not None
    assert (result.delivery.action, result.delivery.reference) == ("push", f"{REGISTRY}/{IMAGE}")
    assert StepStatus("image", "start", f"Making {IMAGE} available to the cluster (push)...") in seen
    assert StepStatus("image", "done", f"image: {pinned}") in seen
    # mii status はタグとダイジェストを分けて示す
    deployment = collect_status(fake_api.client(), NAMESPACE).deployment
    assert deployment is not None
    assert (deployment.image, deployment.tag, deployment.digest) == (pinned, IMAGE.split(":")[1], digest)


def test_a_second_push_deploy_of_the_same_image_changes_nothing(
    fake_api: FakeApiServer, pushing: FakeDockerEngine
) -> None:
    first = push_deploy(fake_api, wait=False)
    second = push_deploy(fake_api, wait=False)
    assert second.image == first.image
    assert {a.action for a in second.applied} == {"unchanged"}
    # ダイジェスト付きの参照をそのままもう一度デプロイしても同じ（e2e の「2 回目は unchanged」と同じ道筋）
    again = push_deploy(fake_api, image=first.image, wait=False)
    assert again.image == first.image
    assert {a.action for a in again.applied} == {"unchanged"}
    assert sum("/push" in call for call in pushing.calls) == 2  # 3 回目は push しない


def test_a_push_that_reports_no_digest_applies_nothing(
    fake_api: FakeApiServer, pushing: FakeDockerEngine
) -> None:
    pushing.push_lines = [{"status": "Pushed"}]
    with pytest.raises(DockerError, match="reported no digest"):
        push_deploy(fake_api, wait=False)
    assert not fake_api.methods("PATCH")


# --- minikube の docker-env ---


def test_under_docker_env_the_newest_image_in_the_node_is_deployed_without_a_load(
    fake_api: FakeApiServer, pushing: FakeDockerEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docker-env の下の Docker（ここでは代役）はノードのエンジン: そこの最新のイメージを読み込まずに使う。"""
    monkeypatch.setenv("MINIKUBE_ACTIVE_DOCKERD", "dev")
    monkeypatch.setenv("PATH", "/nonexistent")  # minikube を呼べば失敗する
    fake_api.on_apply.append(become_ready(fake_api))
    seen: list[StepStatus] = []
    result = run(
        fake_api,
        ClusterInfo("dev", fake_api.url, "minikube", "dev"),
        repository="model-in-image",
        timeout=30,
        report=seen.append,
    )
    assert result.image == IMAGE
    assert result.delivery is not None
    assert result.delivery.action == "docker-env"
    assert not any(s.step == "image" and s.state == "start" for s in seen)


def test_docker_env_for_another_profile_stops_before_anything_is_applied(
    fake_api: FakeApiServer, pushing: FakeDockerEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mii_cli.errors import ConfigError

    monkeypatch.setenv("MINIKUBE_ACTIVE_DOCKERD", "old")
    with pytest.raises(ConfigError, match="point at minikube profile 'old'"):
        run(fake_api, ClusterInfo("dev", fake_api.url, "minikube", "dev"), repository="model-in-image")
    assert not fake_api.methods("PATCH")
    # イメージの一覧も尋ねない（別のノードのイメージを選ばない）
    assert not any("/images/json" in call for call in pushing.calls)


# --- ノードに入らない大きさ ---


def test_a_pod_no_node_can_hold_stops_deploy_before_the_image_is_carried(
    fake_api: FakeApiServer, pushing: FakeDockerEngine
) -> None:
    from mii_cli.errors import ConfigError
    from mii_cli.kube.render import Sizing
    from tests.fakes.kube_objects import node

    fake_api.put("/api/v1/nodes/vm", node("vm", "2", "23Gi"))
    with pytest.raises(ConfigError, match=r"no node of the cluster can give one pod 1024\.0Gi of memory"):
        push_deploy(fake_api, sizing=Sizing(memory="1Ti"))
    assert not any("/push" in call for call in pushing.calls)
    assert not fake_api.methods("PATCH")
