"""新しいモデルを安全に出す決め手: デプロイの関門と戻し、canary、promote、rollback、history。

クラスタは HTTP の境界の代役、Pod の確かめは tests/unit/conftest.py の代役。

代役の Deployment コントローラは版（ReplicaSet）を本物と同じ規則で決める。ロールアウトが終わらない版は
`become_ready(stuck=...)`、Ready になっても確かめを通らない Pod は `pod_checks.failing` で作る。
"""

from __future__ import annotations

from typing import Any

import pytest

from mii_cli.errors import CheckFailed, ClusterError, ConfigError
from mii_cli.image.record import ImageRecord, record_from_labels
from mii_cli.kube import (
    APP_NAME,
    CANARY_NAME,
    MIRROR_NAME,
    MODEL_SHA256_ANNOTATION,
    SERVICE_LABEL_KEY,
    SHADOW_NAME,
)
from mii_cli.kube.cluster import ClusterInfo
from mii_cli.kube.revisions import revisions
from mii_cli.probe.compare import Verdict
from mii_cli.workflows import deploy as deploying
from mii_cli.workflows import release
from mii_cli.workflows.steps import StepStatus
from tests.fakes.kube_api import FakeApiServer
from tests.fakes.kube_objects import NAMESPACE, become_ready
from tests.fakes.mirroring_pods import MirroringPods

DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
GOOD, NEXT, BROKEN = "model-in-image:0.1.0-good", "model-in-image:0.1.0-next", "model-in-image:0.1.0-broken"
SHA = {GOOD: "a" * 64, NEXT: "b" * 64, BROKEN: "c" * 64}


@pytest.fixture
def cluster(fake_api: FakeApiServer, monkeypatch: pytest.MonkeyPatch) -> FakeApiServer:
    """版を決めるコントローラの代役（BROKEN の版は Ready にならない）。イメージのラベルは SHA から。"""

    def stuck(deployment: dict[str, Any]) -> bool:
        return bool(deployment["spec"]["template"]["spec"]["containers"][0]["image"] == BROKEN)

    def labels(image: str, reference: str) -> ImageRecord:
        return record_from_labels(
            reference,
            {
                "io.mii.model.sha256": SHA[image],
                "io.mii.model.file": "iris.onnx",
                "io.mii.model.sample-answer": "[1]",
            },
        )

    fake_api.on_apply.append(become_ready(fake_api, stuck=stuck))
    monkeypatch.setattr(deploying, "read_record", labels)
    return fake_api


def deploy(fake: FakeApiServer, info: ClusterInfo, image: str, **options: Any) -> deploying.DeployResult:
    report = options.pop("report", None)
    request = deploying.DeployRequest(namespace=NAMESPACE, image=image, timeout=30, **options)
    return deploying.deploy(request, client=fake.client(), info=info, report=report)


def running_image(fake: FakeApiServer, name: str = APP_NAME) -> str:
    deployment = fake.objects[f"{DEPLOYMENTS}/{name}"]
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


# --- デプロイの関門と戻し -----------------------------------------------------------------------------


def test_a_deploy_records_the_model_on_the_pod_template_and_checks_the_new_pods(
    cluster: FakeApiServer, docker_desktop: ClusterInfo, pod_checks: Any
) -> None:
    result = deploy(cluster, docker_desktop, GOOD)
    template = cluster.objects[f"{DEPLOYMENTS}/{APP_NAME}"]["spec"]["template"]
    assert template["metadata"]["annotations"][MODEL_SHA256_ANNOTATION] == SHA[GOOD]
    # 確かめたのは新しい版の Pod そのもので、期待はイメージのラベルの sha256 とサンプルの答え
    (names, sha, answer) = pod_checks.calls[-1]
    assert names == [f"{APP_NAME}-{i}" for i in range(4)]
    assert (sha, answer) == (SHA[GOOD], [1])
    assert result.revision == 1
    assert result.pods_check is not None
    assert result.pods_check.passed


def test_a_rollout_that_never_finishes_is_rolled_back_to_the_revision_before(
    cluster: FakeApiServer, docker_desktop: ClusterInfo
) -> None:
    deploy(cluster, docker_desktop, GOOD)
    seen: list[StepStatus] = []
    with pytest.raises(ClusterError) as error:
        deploy(cluster, docker_desktop, BROKEN, report=seen.append)
    assert error.value.message.endswith(f"; rolled back to revision 1 ({GOOD})")
    assert "keeps crashing" in error.value.message
    assert running_image(cluster) == GOOD
    assert [(r.image, r.current) for r in revisions(cluster.client(), NAMESPACE, APP_NAME)] == [
        (BROKEN, False),
        (GOOD, True),
    ]
    assert [(s.step, s.state) for s in seen[-3:]] == [
        ("rollback", "warn"),
        ("rollback", "start"),
        ("rollback", "done"),
    ]
    assert seen[-1].message == f"deployment/{APP_NAME} is back on revision 1 ({GOOD})"


def test_ready_pods_that_fail_the_check_are_rolled_back(
    cluster: FakeApiServer, docker_desktop: ClusterInfo, pod_checks: Any
) -> None:
    deploy(cluster, docker_desktop, GOOD)
    pod_checks.failing = {APP_NAME}
    with pytest.raises(CheckFailed) as error:
        deploy(cluster, docker_desktop, NEXT)
    assert error.value.message.startswith(f"the new pods of {APP_NAME} failed the check: pod {APP_NAME}-0")
    assert error.value.message.endswith(f"; rolled back to revision 1 ({GOOD})")
    assert running_image(cluster) == GOOD


def test_no_rollback_leaves_the_failed_revision_for_inspection(
    cluster: FakeApiServer, docker_desktop: ClusterInfo
) -> None:
    deploy(cluster, docker_desktop, GOOD)
    with pytest.raises(ClusterError, match=r"left as it is \(--no-rollback\): mii rollback undoes it"):
        deploy(cluster, docker_desktop, BROKEN, rollback_on_failure=False)
    assert running_image(cluster) == BROKEN


def test_a_failed_first_deploy_has_nothing_to_roll_back_to(
    cluster: FakeApiServer, docker_desktop: ClusterInfo
) -> None:
    with pytest.raises(ClusterError, match="first deploy: nothing to roll back to"):
        deploy(cluster, docker_desktop, BROKEN)
    assert running_image(cluster) == BROKEN


# --- canary ------------------------------------------------------------------------------------


@pytest.fixture
def verdicts(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """canary と安定版の比較（2 つの Pod へのポートフォワード）の代わり。呼ばれた行を記録する。"""
    calls: list[Any] = []

    def compare(client: Any, namespace: str, rows: Any, emit: Any) -> Verdict:
        calls.append(rows)
        return Verdict(
            rows=1 + len(rows or []), label_changes=0, stable_model=SHA[GOOD], canary_model=SHA[NEXT]
        )

    monkeypatch.setattr(deploying, "compare_with_stable", compare)
    return calls


def test_a_canary_runs_beside_the_stable_pods_and_is_compared_with_them(
    cluster: FakeApiServer, docker_desktop: ClusterInfo, verdicts: list[Any]
) -> None:
    deploy(cluster, docker_desktop, GOOD)
    result = deploy(cluster, docker_desktop, NEXT, canary=True, canary_replicas=1, compare_rows=[[1.0, 2.0]])
    assert running_image(cluster) == GOOD  # 安定版はそのまま
    assert running_image(cluster, CANARY_NAME) == NEXT
    canary = cluster.objects[f"{DEPLOYMENTS}/{CANARY_NAME}"]
    assert canary["spec"]["replicas"] == 1
    assert canary["spec"]["selector"] == {"matchLabels": {"app": CANARY_NAME}}
    # Service・PDB・NetworkPolicy が選ぶラベルは安定版と同じ
    assert canary["spec"]["template"]["metadata"]["labels"][SERVICE_LABEL_KEY] == APP_NAME
    assert [a.kind for a in result.applied] == ["Deployment"]
    assert (result.deployment, verdicts) == (CANARY_NAME, [[[1.0, 2.0]]])
    assert result.verdict is not None
    assert result.verdict.canary_model == SHA[NEXT]


def test_a_canary_takes_the_stable_sizing_unless_given(
    cluster: FakeApiServer, docker_desktop: ClusterInfo, verdicts: list[Any]
) -> None:
    from mii_cli.kube.render import Sizing

    deploy(cluster, docker_desktop, GOOD, sizing=Sizing(cpu="250m", memory="256Mi"))
    deploy(cluster, docker_desktop, NEXT, canary=True)
    resources = cluster.objects[f"{DEPLOYMENTS}/{CANARY_NAME}"]["spec"]["template"]["spec"]["containers"][0][
        "resources"
    ]
    assert resources["limits"] == {"cpu": "250m", "memory": "256Mi", "ephemeral-storage": "256Mi"}


def test_a_canary_needs_a_stable_deployment(cluster: FakeApiServer, docker_desktop: ClusterInfo) -> None:
    with pytest.raises(ConfigError, match=r"no deployment model-in-image .* to run a canary beside"):
        deploy(cluster, docker_desktop, NEXT, canary=True)


def test_a_canary_that_fails_its_check_is_removed(
    cluster: FakeApiServer, docker_desktop: ClusterInfo, pod_checks: Any, verdicts: list[Any]
) -> None:
    deploy(cluster, docker_desktop, GOOD)
    pod_checks.failing = {CANARY_NAME}
    with pytest.raises(CheckFailed, match=r"; removed the canary$"):
        deploy(cluster, docker_desktop, NEXT, canary=True)
    assert f"{DEPLOYMENTS}/{CANARY_NAME}" not in cluster.objects
    assert running_image(cluster) == GOOD
    assert verdicts == []


def test_a_canary_left_from_an_earlier_run_is_replaced(
    cluster: FakeApiServer, docker_desktop: ClusterInfo, verdicts: list[Any]
) -> None:
    deploy(cluster, docker_desktop, GOOD)
    deploy(cluster, docker_desktop, NEXT, canary=True)
    deploy(cluster, docker_desktop, GOOD, canary=True)
    assert running_image(cluster, CANARY_NAME) == GOOD
    assert [r.number for r in revisions(cluster.client(), NAMESPACE, CANARY_NAME)] == [1, 2]


# --- promote・rollback・history ----------------------------------------------------------------------


def test_promote_rolls_the_stable_pods_to_the_canary_and_removes_it(
    cluster: FakeApiServer, docker_desktop: ClusterInfo, verdicts: list[Any], pod_checks: Any
) -> None:
    deploy(cluster, docker_desktop, GOOD)
    deploy(cluster, docker_desktop, NEXT, canary=True)
    result = release.promote(cluster.client(), NAMESPACE, timeout=30)
    assert running_image(cluster) == NEXT
    assert f"{DEPLOYMENTS}/{CANARY_NAME}" not in cluster.objects
    assert (result.image, result.model_sha256, result.revision, result.canary_removed) == (
        NEXT,
        SHA[NEXT],
        2,
        True,
    )
    # 昇格した Pod も確かめる（期待はカナリアのテンプレートに記録したモデル）
    assert pod_checks.calls[-1][1:] == (SHA[NEXT], [1])


def test_promote_without_a_canary_is_refused(cluster: FakeApiServer, docker_desktop: ClusterInfo) -> None:
    deploy(cluster, docker_desktop, GOOD)
    with pytest.raises(ConfigError, match=r"no canary .* to promote"):
        release.promote(cluster.client(), NAMESPACE)


def test_a_promotion_that_fails_its_check_is_rolled_back_and_keeps_the_canary(
    cluster: FakeApiServer, docker_desktop: ClusterInfo, verdicts: list[Any], pod_checks: Any
) -> None:
    deploy(cluster, docker_desktop, GOOD)
    deploy(cluster, docker_desktop, NEXT, canary=True)
    # 安定版の Pod の名前は model-in-image-N、canary は model-in-image-canary-N: 安定版だけを落とす
    pod_checks.failing = {f"{APP_NAME}-{i}" for i in range(4)}
    with pytest.raises(CheckFailed, match=f"rolled back to revision 1 \\({GOOD}\\)"):
        release.promote(cluster.client(), NAMESPACE, timeout=30)
    assert running_image(cluster) == GOOD
    assert running_image(cluster, CANARY_NAME) == NEXT


def test_rollback_removes_the_canary_first(
    cluster: FakeApiServer, docker_desktop: ClusterInfo, verdicts: list[Any]
) -> None:
    deploy(cluster, docker_desktop, GOOD)
    deploy(cluster, docker_desktop, NEXT)
    deploy(cluster, docker_desktop, GOOD, canary=True)
    with pytest.raises(ConfigError, match="a canary is running"):
        release.roll_back(cluster.client(), NAMESPACE, to_revision=1)
    result = release.roll_back(cluster.client(), NAMESPACE)
    assert (result.canary_removed, result.revision) == (True, None)
    assert running_image(cluster) == NEXT  # 安定版はそのまま


def test_rollback_without_a_canary_goes_to_the_previous_revision(
    cluster: FakeApiServer, docker_desktop: ClusterInfo
) -> None:
    deploy(cluster, docker_desktop, GOOD)
    deploy(cluster, docker_desktop, NEXT)
    result = release.roll_back(cluster.client(), NAMESPACE, timeout=30)
    assert result.revision is not None
    assert (result.canary_removed, result.revision.number, result.revision.image) == (False, 1, GOOD)
    assert running_image(cluster) == GOOD


def test_history_lists_the_revisions_with_their_models(
    cluster: FakeApiServer, docker_desktop: ClusterInfo, verdicts: list[Any]
) -> None:
    deploy(cluster, docker_desktop, GOOD)
    deploy(cluster, docker_desktop, NEXT)
    deploy(cluster, docker_desktop, GOOD, canary=True)
    found = release.history(cluster.client(), NAMESPACE)
    assert [(r.number, r.image, r.model_sha256, r.current) for r in found.stable] == [
        (1, GOOD, SHA[GOOD], False),
        (2, NEXT, SHA[NEXT], True),
    ]
    assert [(r.deployment, r.image) for r in found.canary] == [(CANARY_NAME, GOOD)]


def test_a_rollback_that_does_not_finish_either_is_said(
    fake_api: FakeApiServer, docker_desktop: ClusterInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken_cluster: list[bool] = []
    fake_api.on_apply.append(become_ready(fake_api, stuck=lambda deployment: bool(broken_cluster)))
    deploy(fake_api, docker_desktop, GOOD)
    broken_cluster.append(True)  # 以後どの版も Ready にならない（ノードが壊れたなど）
    with pytest.raises(ClusterError) as error:
        deploy(fake_api, docker_desktop, NEXT)
    assert "; rolling back to revision 1 did not finish either: " in error.value.message
    assert running_image(fake_api) == GOOD  # 戻しは適用した（待ちが終わらなかった）


# --- 影（shadow）: rollback が消し、promote も済んだ後に消す -------------------------------------------


@pytest.fixture
def mirroring(cluster: FakeApiServer) -> MirroringPods:
    """安定版の Pod（model-in-image-0〜3）の /metrics の代役: ConfigMap の写しの割合を名乗る。"""
    return MirroringPods(cluster, [f"{APP_NAME}-{i}" for i in range(4)])


def shadow_left(fake: FakeApiServer) -> list[str]:
    """影のオブジェクトと写しの設定のうち、残っているもの。"""
    return sorted(path for path in fake.objects if SHADOW_NAME in path or path.endswith(f"/{MIRROR_NAME}"))


def test_rollback_stops_the_mirroring_and_removes_the_shadow(
    cluster: FakeApiServer, docker_desktop: ClusterInfo, mirroring: MirroringPods
) -> None:
    deploy(cluster, docker_desktop, GOOD)
    deploy(cluster, docker_desktop, NEXT, shadow=True)
    assert {m.shadow.percent for m in mirroring.metrics.values()} == {10.0}
    with pytest.raises(ConfigError, match="a shadow is running: mii rollback removes it first"):
        release.roll_back(cluster.client(), NAMESPACE, to_revision=1)
    seen: list[StepStatus] = []
    result = release.roll_back(cluster.client(), NAMESPACE, timeout=30, report=seen.append)
    assert (result.canary_removed, result.shadow_removed, result.revision) == (False, True, None)
    assert shadow_left(cluster) == []
    assert {m.shadow.percent for m in mirroring.metrics.values()} == {0.0}
    assert running_image(cluster) == GOOD  # 安定版はそのまま
    assert seen[-1] == StepStatus("shadow", "done", f"removed {SHADOW_NAME}; the stable pods mirror nothing")
    # もう一度: 影も canary も無いので、安定版を前の版へ（ここでは初めの版なので戻せない）
    with pytest.raises(ConfigError, match="no earlier revision"):
        release.roll_back(cluster.client(), NAMESPACE, timeout=30)


def test_rollback_removes_a_canary_and_a_shadow_together(
    cluster: FakeApiServer, docker_desktop: ClusterInfo, mirroring: MirroringPods, verdicts: list[Any]
) -> None:
    deploy(cluster, docker_desktop, GOOD)
    deploy(cluster, docker_desktop, NEXT, shadow=True)
    deploy(cluster, docker_desktop, NEXT, canary=True)
    result = release.roll_back(cluster.client(), NAMESPACE, timeout=30)
    assert (result.canary_removed, result.shadow_removed) == (True, True)
    assert f"{DEPLOYMENTS}/{CANARY_NAME}" not in cluster.objects
    assert shadow_left(cluster) == []
    assert running_image(cluster) == GOOD


def test_promote_also_ends_a_running_shadow(
    cluster: FakeApiServer, docker_desktop: ClusterInfo, mirroring: MirroringPods, verdicts: list[Any]
) -> None:
    """影で試したイメージを canary で確かめて昇格すると、影はもう要らない。"""
    deploy(cluster, docker_desktop, GOOD)
    deploy(cluster, docker_desktop, NEXT, shadow=True)
    deploy(cluster, docker_desktop, NEXT, canary=True)
    result = release.promote(cluster.client(), NAMESPACE, timeout=30)
    assert (result.image, result.canary_removed, result.shadow_removed) == (NEXT, True, True)
    assert running_image(cluster) == NEXT
    assert shadow_left(cluster) == []
    # 昇格した安定版も写しの設定を読む（次の影のため）が、今は何も写さない
    assert {m.shadow.percent for m in mirroring.metrics.values()} == {0.0}


def test_promote_without_a_shadow_says_none_was_removed(
    cluster: FakeApiServer, docker_desktop: ClusterInfo, verdicts: list[Any]
) -> None:
    deploy(cluster, docker_desktop, GOOD)
    deploy(cluster, docker_desktop, NEXT, canary=True)
    result = release.promote(cluster.client(), NAMESPACE, timeout=30)
    assert (result.canary_removed, result.shadow_removed) == (True, False)
    assert not cluster.methods("DELETE", f"/api/v1/namespaces/{NAMESPACE}/services/")
