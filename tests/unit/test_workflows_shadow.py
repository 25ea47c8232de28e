"""`mii deploy --shadow` と影の終わり（mii_cli/workflows/shadow.py）: クラスタは HTTP の境界の代役。

安定版の Pod の `/metrics` は tests/fakes/mirroring_pods.py の代役（本物のサービスの Metrics で答え、
ConfigMap の今の写しの設定を名乗る）。待つ時計と眠りは差し替える（本当には眠らない）。
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from mii_cli.errors import CheckFailed, ClusterError, ConfigError
from mii_cli.kube import (
    APP_NAME,
    MIRROR_ANNOTATION,
    MIRROR_KEY,
    MIRROR_NAME,
    SHADOW_LABEL,
    SHADOW_NAME,
)
from mii_cli.kube.apply import apply_all, object_path
from mii_cli.kube.cluster import ClusterInfo
from mii_cli.kube.render import render, shadow_objects
from mii_cli.results import to_json
from mii_cli.workflows import deploy as deploying
from mii_cli.workflows import shadow as sh
from mii_cli.workflows.steps import Status, StepStatus
from tests.fakes.kube_api import FakeApiServer
from tests.fakes.kube_objects import NAMESPACE, become_ready, pod, put_pods
from tests.fakes.mirroring_pods import MirroringPods

DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
PODS = f"/api/v1/namespaces/{NAMESPACE}/pods"
CONFIG_MAP = f"/api/v1/namespaces/{NAMESPACE}/configmaps/{MIRROR_NAME}"
SERVICE = f"/api/v1/namespaces/{NAMESPACE}/services/{SHADOW_NAME}"
GOOD, NEXT, BROKEN = "model-in-image:0.1.0-good", "model-in-image:0.1.0-next", "model-in-image:0.1.0-broken"
STABLE_PODS = [f"{APP_NAME}-{i}" for i in range(4)]


class Clock:
    """待つ手順の時計と眠りの代わり: 眠った分だけ進み、眠るたびに `on_sleep` を呼ぶ。"""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep: list[Any] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        for hook in self.on_sleep:
            hook(len(self.sleeps))


@pytest.fixture
def clock() -> Clock:
    return Clock()


def document(fake: FakeApiServer) -> str | None:
    """ConfigMap の写しの設定（ConfigMap が無ければ None）。"""
    config_map = fake.objects.get(CONFIG_MAP)
    return None if config_map is None else str(config_map["data"][MIRROR_KEY])


def written_documents(fake: FakeApiServer) -> list[str]:
    """ConfigMap に適用した写しの設定（順に）。"""
    return [r.body["data"][MIRROR_KEY] for r in fake.methods("PATCH", CONFIG_MAP)]


def annotation(fake: FakeApiServer, name: str) -> str | None:
    return (fake.objects[f"{PODS}/{name}"]["metadata"].get("annotations") or {}).get(MIRROR_ANNOTATION)


# --- set_mirroring: 設定を書き、安定版の Pod に注釈を付け、すべての Ready な Pod が名乗るまで待つ -----------


@pytest.fixture
def stable_pods(fake_api: FakeApiServer) -> MirroringPods:
    """安定版の Ready な Pod 2 つ（と Ready でない 1 つ）、canary と影の Pod（どれも設定を読む代役）。"""
    put_pods(
        fake_api,
        pod("stable-a", labels={"app": APP_NAME}),
        pod("stable-b", labels={"app": APP_NAME}),
        pod("stable-c", labels={"app": APP_NAME}, ready=False),
        pod("canary-a", labels={"app": f"{APP_NAME}-canary", "app.kubernetes.io/name": APP_NAME}),
        pod("shadow-a", labels={"app": SHADOW_NAME}),
    )
    return MirroringPods(fake_api, ["stable-a", "stable-b", "stable-c", "canary-a", "shadow-a"])


def test_set_mirroring_writes_the_document_and_annotates_only_the_stable_pods(
    fake_api: FakeApiServer, stable_pods: MirroringPods, clock: Clock
) -> None:
    pods = sh.set_mirroring(
        fake_api.client(), NAMESPACE, 12.5, "10.96.0.42:8000", clock=clock, sleep=clock.sleep
    )
    assert pods == ["stable-a", "stable-b"]  # Ready な安定版の Pod だけが名乗るのを待つ
    assert json.loads(document(fake_api) or "") == {"target": "10.96.0.42:8000", "percent": 12.5}
    assert document(fake_api) == sh.mirror_document("10.96.0.42:8000", 12.5)
    # 注釈は安定版の Pod だけ（Ready でない Pod にも: 起きれば読む）。canary と影は写さない
    annotated = {
        name
        for name in ["stable-a", "stable-b", "stable-c", "canary-a", "shadow-a"]
        if annotation(fake_api, name)
    }
    assert annotated == {"stable-a", "stable-b", "stable-c"}
    assert len({annotation(fake_api, name) for name in annotated}) == 1
    # 読んだのは Ready な安定版の Pod の /metrics だけで、すぐ名乗ったので眠らない
    assert set(stable_pods.reads) == {"stable-a", "stable-b"}
    assert clock.sleeps == []


def test_setting_the_percent_to_0_empties_the_document(
    fake_api: FakeApiServer, stable_pods: MirroringPods, clock: Clock
) -> None:
    client = fake_api.client()
    sh.set_mirroring(client, NAMESPACE, 10.0, "10.96.0.42:8000", clock=clock, sleep=clock.sleep)
    first = annotation(fake_api, "stable-a")
    assert sh.set_mirroring(client, NAMESPACE, 0.0, None, clock=clock, sleep=clock.sleep) == [
        "stable-a",
        "stable-b",
    ]
    assert document(fake_api) == "{}"
    # 注釈の値は書き換えるたびに変わる（kubelet がもう一度 Pod を同期する）
    assert annotation(fake_api, "stable-a") != first
    assert stable_pods.metrics["stable-a"].shadow.percent == 0.0


def test_set_mirroring_waits_until_every_ready_stable_pod_reports_the_percent(
    fake_api: FakeApiServer, stable_pods: MirroringPods, clock: Clock
) -> None:
    stable_pods.lagging = {"stable-b"}  # kubelet がまだファイルを書き換えていない
    clock.on_sleep.append(lambda count: stable_pods.lagging.clear() if count == 3 else None)
    pods = sh.set_mirroring(
        fake_api.client(), NAMESPACE, 10.0, "10.96.0.42:8000", clock=clock, sleep=clock.sleep
    )
    assert pods == ["stable-a", "stable-b"]
    assert clock.sleeps == [sh.POLL_SECONDS] * 3
    assert stable_pods.reads.count("stable-b") == 4


def test_set_mirroring_names_the_lagging_pods_at_the_deadline(
    fake_api: FakeApiServer, stable_pods: MirroringPods, clock: Clock
) -> None:
    stable_pods.lagging = {"stable-b"}
    stable_pods.unreachable = {"stable-a"}
    with pytest.raises(ClusterError) as error:
        sh.set_mirroring(
            fake_api.client(), NAMESPACE, 10.0, "10.96.0.42:8000", timeout=30, clock=clock, sleep=clock.sleep
        )
    assert error.value.message == (
        "the stable pods did not switch to mirroring 10% within 30s: stable-a (unread), stable-b (0%)"
    )
    assert f"kubectl -n {NAMESPACE} get configmap {MIRROR_NAME} -o yaml" in (error.value.hint or "")
    # 期限まで POLL_SECONDS ごとに読み直した（本当には眠らない）
    assert sum(clock.sleeps) == pytest.approx(30.0)
    assert set(clock.sleeps) == {sh.POLL_SECONDS}


def test_set_mirroring_without_a_ready_stable_pod_fails_at_the_deadline(
    fake_api: FakeApiServer, clock: Clock
) -> None:
    put_pods(fake_api, pod("stable-c", labels={"app": APP_NAME}, ready=False))
    with pytest.raises(ClusterError, match=r"within 4s: no ready stable pod$"):
        sh.set_mirroring(
            fake_api.client(), NAMESPACE, 10.0, "10.96.0.42:8000", timeout=4, clock=clock, sleep=clock.sleep
        )


def test_pod_percents_reads_each_ready_stable_pod_and_none_for_what_cannot_be_read(
    fake_api: FakeApiServer, stable_pods: MirroringPods
) -> None:
    client = fake_api.client()
    assert sh.pod_percents(client, NAMESPACE) == {"stable-a": 0.0, "stable-b": 0.0}
    stable_pods.unreachable = {"stable-a"}
    # 写しを知らない（古い）サーバーは割合を名乗らない
    fake_api.routes[("GET", f"{PODS}/stable-b:8000/proxy/metrics")] = (200, "mii_prediction_rows_total 3.0\n")
    assert sh.pod_percents(client, NAMESPACE) == {"stable-a": None, "stable-b": None}
    fake_api.routes[("GET", f"{PODS}/stable-b:8000/proxy/metrics")] = (200, "not prometheus {")
    assert sh.pod_percents(client, NAMESPACE)["stable-b"] is None


def test_the_stable_deployment_mirrors_only_with_mirror_config_in_its_template() -> None:
    stable = next(o for o in render(GOOD, NAMESPACE) if o["kind"] == "Deployment")
    assert sh.mirrors(stable)
    assert not sh.mirrors(next(o for o in shadow_objects([stable], NAMESPACE) if o["kind"] == "Deployment"))


# --- stop_shadow: 写しを止めてから影のオブジェクトを消す ----------------------------------------------


@pytest.fixture
def shadow_applied(fake_api: FakeApiServer, stable_pods: MirroringPods, clock: Clock) -> list[dict[str, Any]]:
    """安定版の NetworkPolicy と、影のオブジェクト（Pod 付き）と、影へ写している設定。"""
    fake_api.on_apply.append(become_ready(fake_api))
    stable = render(GOOD, NAMESPACE)
    apply_all(
        fake_api.client(), [o for o in stable if o["kind"] in ("Namespace", "NetworkPolicy", "Service")]
    )
    objects = shadow_objects(stable, NAMESPACE)
    apply_all(fake_api.client(), objects)
    sh.set_mirroring(fake_api.client(), NAMESPACE, 10.0, "10.96.0.42:8000", clock=clock, sleep=clock.sleep)
    return objects


def test_stop_shadow_stops_the_mirroring_then_deletes_the_shadow_objects(
    fake_api: FakeApiServer, shadow_applied: list[dict[str, Any]], clock: Clock
) -> None:
    seen: list[StepStatus] = []
    shadow = {object_path(o) for o in shadow_applied} | {CONFIG_MAP}
    stable_before = {
        path
        for path in fake_api.objects
        if path not in shadow and "/pods/" not in path and SHADOW_NAME not in path
    }
    assert sh.shadow_running(fake_api.client(), NAMESPACE)
    removed = sh.stop_shadow(
        fake_api.client(), NAMESPACE, timeout=30, status=Status(seen.append), clock=clock, sleep=clock.sleep
    )
    assert removed is True
    # 写しを止めた（空の設定を安定版の Pod が名乗った）後で消した
    assert written_documents(fake_api)[-1] == "{}"
    deletes = [r.path for r in fake_api.methods("DELETE")]
    assert sorted(deletes) == sorted(shadow)
    assert deletes[0] == f"{DEPLOYMENTS}/{SHADOW_NAME}"  # 作った順の逆（Deployment が先）
    assert all(r.param("propagationPolicy") == "Background" for r in fake_api.methods("DELETE"))
    assert not shadow & set(fake_api.objects)
    # 影の Pod も消えた。安定版のオブジェクト（NetworkPolicy・Service）と Pod は残る
    assert not [p for p in fake_api.objects if p.startswith(PODS) and "shadow" in p.rsplit("/", 1)[-1]]
    assert stable_before <= set(fake_api.objects)
    assert f"{PODS}/stable-a" in fake_api.objects
    assert [(s.step, s.state) for s in seen] == [("shadow", "start"), ("shadow", "start"), ("shadow", "done")]
    assert seen[-1].message == f"removed {SHADOW_NAME}; the stable pods mirror nothing"
    assert not sh.shadow_running(fake_api.client(), NAMESPACE)


def test_stop_shadow_without_a_shadow_does_nothing(
    fake_api: FakeApiServer, stable_pods: MirroringPods, clock: Clock
) -> None:
    seen: list[StepStatus] = []
    assert not sh.stop_shadow(
        fake_api.client(), NAMESPACE, timeout=30, status=Status(seen.append), clock=clock, sleep=clock.sleep
    )
    assert (seen, fake_api.methods("PATCH"), fake_api.methods("DELETE")) == ([], [], [])


def test_stop_shadow_warns_but_removes_the_shadow_when_the_mirroring_cannot_be_confirmed(
    fake_api: FakeApiServer, shadow_applied: list[dict[str, Any]], stable_pods: MirroringPods, clock: Clock
) -> None:
    stable_pods.unreachable = {"stable-b"}
    seen: list[StepStatus] = []
    assert sh.stop_shadow(
        fake_api.client(), NAMESPACE, timeout=20, status=Status(seen.append), clock=clock, sleep=clock.sleep
    )
    (warning,) = [s for s in seen if s.state == "warn"]
    assert warning.step == "shadow"
    assert warning.message == (
        "the stable pods did not switch to mirroring 0% within 20s: stable-b (unread); "
        "removing the shadow anyway"
    )
    assert not [path for path in fake_api.objects if SHADOW_NAME in path or path == CONFIG_MAP]
    assert seen[-1].state == "done"
    assert sum(clock.sleeps) == pytest.approx(20.0)


def test_a_shadow_service_left_without_its_deployment_is_still_removed(
    fake_api: FakeApiServer, shadow_applied: list[dict[str, Any]], clock: Clock
) -> None:
    from mii_cli.kube import api as kapi

    client = fake_api.client()
    assert kapi.request(client, "DELETE", f"{DEPLOYMENTS}/{SHADOW_NAME}")[0] == 200
    assert sh.shadow_running(client, NAMESPACE)
    assert sh.stop_shadow(client, NAMESPACE, timeout=30, status=Status(), clock=clock, sleep=clock.sleep)
    assert SERVICE not in fake_api.objects


# --- mii deploy --shadow: 安定版の横に影を置き、写しを始める -----------------------------------------


@pytest.fixture
def cluster(fake_api: FakeApiServer) -> MirroringPods:
    """版を決めるコントローラの代役（BROKEN の版は Ready にならない）と、安定版の Pod の /metrics の代役。"""

    def stuck(deployment: dict[str, Any]) -> bool:
        return bool(deployment["spec"]["template"]["spec"]["containers"][0]["image"] == BROKEN)

    fake_api.on_apply.append(become_ready(fake_api, stuck=stuck))
    return MirroringPods(fake_api, STABLE_PODS)


def deploy(
    fake: FakeApiServer, info: ClusterInfo, image: str, clock: Clock | None = None, **options: Any
) -> deploying.DeployResult:
    report = options.pop("report", None)
    request = deploying.DeployRequest(namespace=NAMESPACE, image=image, timeout=30, **options)
    timing = {} if clock is None else {"clock": clock, "sleep": clock.sleep}
    return deploying.deploy(request, client=fake.client(), info=info, report=report, **timing)


def running_image(fake: FakeApiServer, name: str = APP_NAME) -> str:
    deployment = fake.objects[f"{DEPLOYMENTS}/{name}"]
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


def shadow_left(fake: FakeApiServer) -> list[str]:
    """影のオブジェクトと写しの設定のうち、残っているもののパス。"""
    return sorted(path for path in fake.objects if SHADOW_NAME in path or path == CONFIG_MAP)


def test_the_shadow_steps_check_the_stable_pods_then_apply_wait_and_start_mirroring() -> None:
    request = deploying.DeployRequest(namespace="n", shadow=True)
    assert [step.__name__ for step in deploying.steps_for(request)] == [
        "plan_delivery",
        "check_namespace",
        "read_stable",
        "check_stable_mirrors",
        "check_fit",
        "deliver_image",
        "apply_shadow",
        "wait_and_check",
        "start_mirroring",
    ]
    unwaited = deploying.steps_for(deploying.DeployRequest(namespace="n", shadow=True, wait=False))
    assert [step.__name__ for step in unwaited][-1] == "apply_shadow"
    assert (request.deployment, request.beside, request.mirror_percent) == (SHADOW_NAME, True, 10.0)


def test_a_shadow_runs_beside_the_stable_pods_which_mirror_to_it(
    fake_api: FakeApiServer,
    cluster: MirroringPods,
    docker_desktop: ClusterInfo,
    clock: Clock,
    pod_checks: Any,
) -> None:
    deploy(fake_api, docker_desktop, GOOD)
    stable = fake_api.objects[f"{DEPLOYMENTS}/{APP_NAME}"]
    generation = stable["metadata"]["generation"]
    seen: list[StepStatus] = []
    result = deploy(fake_api, docker_desktop, NEXT, clock, shadow=True, mirror_percent=25, report=seen.append)
    # 影は 1 Pod の別の Deployment。安定版はそのまま（起き直さない）
    assert (running_image(fake_api), running_image(fake_api, SHADOW_NAME)) == (GOOD, NEXT)
    assert fake_api.objects[f"{DEPLOYMENTS}/{APP_NAME}"]["metadata"]["generation"] == generation
    assert fake_api.objects[f"{DEPLOYMENTS}/{SHADOW_NAME}"]["spec"]["replicas"] == 1
    assert [(a.kind, a.name, a.action) for a in result.applied] == [
        ("NetworkPolicy", SHADOW_NAME, "created"),
        ("NetworkPolicy", f"{APP_NAME}-mirror", "created"),
        ("Service", SHADOW_NAME, "created"),
        ("Deployment", SHADOW_NAME, "created"),
    ]
    assert pod_checks.calls[-1][0] == [f"{SHADOW_NAME}-0"]  # 確かめたのは影の Pod
    # 写し先は影の Service の ClusterIP。すべての安定版の Pod がその割合を名乗った
    address = fake_api.objects[SERVICE]["spec"]["clusterIP"]
    assert result.mirroring is not None
    assert (result.mirroring.target, result.mirroring.percent) == (f"{address}:8000", 25)
    assert result.mirroring.pods == STABLE_PODS
    assert json.loads(document(fake_api) or "") == {"target": f"{address}:8000", "percent": 25}
    assert {annotation(fake_api, name) is not None for name in STABLE_PODS} == {True}
    assert (result.deployment, result.revision) == (SHADOW_NAME, 1)
    assert [(s.step, s.state) for s in seen[-2:]] == [("mirror", "start"), ("mirror", "done")]
    assert seen[-1].message == (
        f"4 stable pods mirror 25% of predict requests to {SHADOW_NAME} ({address}:8000)"
    )
    assert to_json(result)["mirroring"] == {"target": f"{address}:8000", "percent": 25, "pods": STABLE_PODS}
    assert clock.sleeps == []


def test_a_shadow_needs_a_stable_deployment(
    fake_api: FakeApiServer, cluster: MirroringPods, docker_desktop: ClusterInfo
) -> None:
    with pytest.raises(ConfigError, match=r"no deployment model-in-image .* to run a shadow beside") as error:
        deploy(fake_api, docker_desktop, NEXT, shadow=True)
    assert error.value.hint == "deploy the first model without --shadow"
    assert not fake_api.methods("PATCH")


def test_a_shadow_needs_stable_pods_that_read_the_mirror_configuration(
    fake_api: FakeApiServer, cluster: MirroringPods, docker_desktop: ClusterInfo
) -> None:
    deploy(fake_api, docker_desktop, GOOD)
    # 古い mii でデプロイした安定版: テンプレートに MIRROR_CONFIG が無い
    for container in fake_api.objects[f"{DEPLOYMENTS}/{APP_NAME}"]["spec"]["template"]["spec"]["containers"]:
        container["env"] = [e for e in container["env"] if e["name"] != "MIRROR_CONFIG"]
    patches = len(fake_api.methods("PATCH"))
    with pytest.raises(ConfigError, match=r"do not read the mirror configuration \(MIRROR_CONFIG\)") as error:
        deploy(fake_api, docker_desktop, NEXT, shadow=True)
    assert "mii deploy" in (error.value.hint or "")
    assert len(fake_api.methods("PATCH")) == patches
    assert shadow_left(fake_api) == []


@pytest.mark.parametrize("options", [{"canary": True}, {"canary": True, "analysis": object()}])
def test_a_shadow_is_not_a_canary(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"--shadow and --canary \(or --analysis\) are two ways") as error:
        deploying.DeployRequest(namespace="n", shadow=True, **options)
    assert "mii deploy --analysis" in (error.value.hint or "")


@pytest.mark.parametrize("percent", [0.0, -1.0, 100.5])
def test_the_mirror_percent_is_from_above_0_to_100(percent: float) -> None:
    with pytest.raises(ConfigError, match=r"--mirror-percent .* is out of range"):
        deploying.DeployRequest(namespace="n", shadow=True, mirror_percent=percent)
    assert deploying.DeployRequest(namespace="n", shadow=True, mirror_percent=100).mirror_percent == 100


def test_a_shadow_whose_stable_pods_do_not_switch_is_removed(
    fake_api: FakeApiServer, cluster: MirroringPods, docker_desktop: ClusterInfo, clock: Clock
) -> None:
    deploy(fake_api, docker_desktop, GOOD)
    cluster.lagging = {f"{APP_NAME}-3"}  # この Pod は設定を読み直さない
    seen: list[StepStatus] = []
    with pytest.raises(ClusterError) as error:
        deploy(fake_api, docker_desktop, NEXT, clock, shadow=True, report=seen.append)
    assert error.value.message == (
        f"the stable pods did not switch to mirroring 10% within 150s: {APP_NAME}-3 (0%); removed the shadow"
    )
    assert error.value.hint is not None
    assert shadow_left(fake_api) == []
    assert running_image(fake_api) == GOOD
    assert ("mirror", "warn") in [(s.step, s.state) for s in seen]
    assert seen[-1] == StepStatus("shadow", "done", f"removed {SHADOW_NAME}; the stable pods mirror nothing")
    # 写しを止めてから消した
    assert written_documents(fake_api)[-1] == "{}"


def test_no_rollback_keeps_a_shadow_whose_stable_pods_do_not_switch(
    fake_api: FakeApiServer, cluster: MirroringPods, docker_desktop: ClusterInfo, clock: Clock
) -> None:
    deploy(fake_api, docker_desktop, GOOD)
    cluster.lagging = {f"{APP_NAME}-3"}
    with pytest.raises(ClusterError, match=r"; the shadow is left running \(--no-rollback\)$"):
        deploy(fake_api, docker_desktop, NEXT, clock, shadow=True, rollback_on_failure=False)
    assert running_image(fake_api, SHADOW_NAME) == NEXT
    assert SERVICE in fake_api.objects
    assert json.loads(document(fake_api) or "")["percent"] == 10.0
    assert not fake_api.methods("DELETE")


def test_a_shadow_service_without_a_cluster_ip_is_a_failure_that_removes_the_shadow(
    fake_api: FakeApiServer, cluster: MirroringPods, docker_desktop: ClusterInfo, clock: Clock
) -> None:
    deploy(fake_api, docker_desktop, GOOD)
    fake_api.routes[("GET", SERVICE)] = (200, {"kind": "Service", "spec": {"clusterIP": "None"}})
    with pytest.raises(
        ClusterError, match=f"^service {SHADOW_NAME} has no cluster IP to mirror to; removed the shadow$"
    ):
        deploy(fake_api, docker_desktop, NEXT, clock, shadow=True)
    assert written_documents(fake_api) == ["{}"]  # 写しは始めていない（止める空の設定だけ）
    assert f"{DEPLOYMENTS}/{SHADOW_NAME}" not in fake_api.objects


def test_an_ipv6_cluster_ip_is_written_in_brackets(
    fake_api: FakeApiServer, cluster: MirroringPods, docker_desktop: ClusterInfo, clock: Clock
) -> None:
    deploy(fake_api, docker_desktop, GOOD)
    fake_api.routes[("GET", SERVICE)] = (200, {"kind": "Service", "spec": {"clusterIP": "fd00:10:96::a"}})
    result = deploy(fake_api, docker_desktop, NEXT, clock, shadow=True)
    assert result.mirroring is not None
    assert result.mirroring.target == "[fd00:10:96::a]:8000"
    assert cluster.configs[f"{APP_NAME}-0"] is not None  # サーバーが読める写し先


def test_a_shadow_that_never_becomes_ready_is_removed(
    fake_api: FakeApiServer, cluster: MirroringPods, docker_desktop: ClusterInfo, clock: Clock
) -> None:
    deploy(fake_api, docker_desktop, GOOD)
    seen: list[StepStatus] = []
    with pytest.raises(ClusterError, match=r"; removed the shadow$") as error:
        deploy(fake_api, docker_desktop, BROKEN, clock, shadow=True, report=seen.append)
    assert "keeps crashing" in error.value.message
    assert shadow_left(fake_api) == []
    assert running_image(fake_api) == GOOD
    (warning,) = [s for s in seen if s.state == "warn" and s.step == "shadow"]
    assert warning.message.startswith(f"{SHADOW_NAME}: ")
    # 写しは始めていない
    assert [json.loads(d) for d in written_documents(fake_api)] == [{}]


def test_a_shadow_that_fails_its_check_is_removed_unless_no_rollback(
    fake_api: FakeApiServer,
    cluster: MirroringPods,
    docker_desktop: ClusterInfo,
    clock: Clock,
    pod_checks: Any,
) -> None:
    deploy(fake_api, docker_desktop, GOOD)
    pod_checks.failing = {SHADOW_NAME}
    with pytest.raises(CheckFailed, match=r"; the shadow is left running \(--no-rollback\)$"):
        deploy(fake_api, docker_desktop, NEXT, clock, shadow=True, rollback_on_failure=False)
    assert running_image(fake_api, SHADOW_NAME) == NEXT
    assert document(fake_api) is None  # 写しは始めていない
    with pytest.raises(CheckFailed, match=r"; removed the shadow$"):
        deploy(fake_api, docker_desktop, NEXT, clock, shadow=True)
    assert shadow_left(fake_api) == []


def test_a_new_shadow_image_starts_its_numbers_from_zero(
    fake_api: FakeApiServer, cluster: MirroringPods, docker_desktop: ClusterInfo, clock: Clock
) -> None:
    """影を別のイメージで出し直すと、前の影の答えで数えた数字は残らない（写し先のアドレスは同じでも）。"""
    deploy(fake_api, docker_desktop, GOOD)
    first = deploy(fake_api, docker_desktop, NEXT, clock, shadow=True)
    for name in STABLE_PODS:
        cluster.metrics[name].shadow.compared(3, 2, 0.5)  # 前の影の答え
    seen: list[StepStatus] = []
    second = deploy(fake_api, docker_desktop, GOOD, clock, shadow=True, report=seen.append)
    assert second.mirroring is not None
    assert first.mirroring is not None
    assert second.mirroring.target == first.mirroring.target
    assert running_image(fake_api, SHADOW_NAME) == GOOD
    # 新しい影を適用する前に写しを止め、それから写しを始めた: 安定版の Pod は数字を 0 から数え直す
    assert [json.loads(d).get("percent") for d in written_documents(fake_api)] == [10.0, None, 10.0]
    steps = [(s.step, s.state) for s in seen]
    assert steps.index(("mirror", "done")) < steps.index(("apply", "done"))
    for name in STABLE_PODS:
        assert (
            cluster.metrics[name].shadow.compared_requests,
            cluster.metrics[name].shadow.label_changes,
        ) == (0, 0)


def test_a_new_shadow_is_applied_even_if_the_old_mirroring_cannot_be_confirmed_stopped(
    fake_api: FakeApiServer, cluster: MirroringPods, docker_desktop: ClusterInfo, clock: Clock
) -> None:
    deploy(fake_api, docker_desktop, GOOD)
    deploy(fake_api, docker_desktop, NEXT, clock, shadow=True)
    cluster.lagging = {f"{APP_NAME}-1"}  # 10 % のまま
    seen: list[StepStatus] = []
    result = deploy(fake_api, docker_desktop, GOOD, clock, shadow=True, report=seen.append)
    (warning,) = [s for s in seen if s.state == "warn" and s.step == "mirror"]
    assert warning.message.endswith(f"{APP_NAME}-1 (10%); the new shadow's numbers may include the old one's")
    assert result.mirroring is not None
    assert running_image(fake_api, SHADOW_NAME) == GOOD


def test_deploy_shadow_without_waiting_applies_the_shadow_and_mirrors_nothing(
    fake_api: FakeApiServer, cluster: MirroringPods, docker_desktop: ClusterInfo
) -> None:
    deploy(fake_api, docker_desktop, GOOD)
    result = deploy(fake_api, docker_desktop, NEXT, shadow=True, wait=False)
    assert (result.mirroring, result.rollout) == (None, None)
    assert running_image(fake_api, SHADOW_NAME) == NEXT
    assert document(fake_api) is None


def test_the_shadow_pods_are_found_by_the_shadow_label(
    fake_api: FakeApiServer, cluster: MirroringPods, docker_desktop: ClusterInfo, clock: Clock
) -> None:
    from kubernetes.client import CoreV1Api

    deploy(fake_api, docker_desktop, GOOD)
    deploy(fake_api, docker_desktop, NEXT, clock, shadow=True)
    found = CoreV1Api(fake_api.client()).list_namespaced_pod(NAMESPACE, label_selector=SHADOW_LABEL).items
    assert [p.metadata.name for p in found] == [f"{SHADOW_NAME}-0"]
