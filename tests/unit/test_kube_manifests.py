"""マニフェストの描画・順序と、公式スキーマ（オフライン）と意味の検証。"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from mii_cli.errors import ConfigError
from mii_cli.kube import (
    APP_NAME,
    CHECK_LABEL_KEY,
    CHECK_LABEL_VALUE,
    MIRROR_KEY,
    MIRROR_NAME,
    NAMESPACE,
    SERVICE_LABEL_KEY,
    SHADOW_NAME,
)
from mii_cli.kube import render as r
from mii_cli.probe.in_cluster import check_job
from service import constants
from tests.support import MANIFESTS, load_job

IMAGE_REPOSITORY = "model-in-image"

# 今の minikube（v1.37: Kubernetes 1.34）と kind（v0.30: 1.34、v0.31: 1.35）が使う版と、その前後
K8S_VERSIONS = ["1.33", "1.34", "1.35"]
IMAGE = "model-in-image:0.1.0-0123456789ab-fedcba987654"


def manifest_files() -> list[Path]:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    return [MANIFESTS / name for name in kustomization["resources"]]


def rendered(namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    return r.render(IMAGE, namespace, MANIFESTS)


# --- 描画と順序 ---


def test_every_yaml_file_is_listed_in_the_kustomization() -> None:
    on_disk = {p.name for p in MANIFESTS.glob("*.yml")}
    assert on_disk == {p.name for p in manifest_files()}
    assert on_disk == {
        "namespace.yml",
        "networkpolicy.yml",
        "deployment.yml",
        "service.yml",
        "hpa.yml",
        "pdb.yml",
    }


def test_render_orders_objects_for_apply() -> None:
    objects = rendered()
    kinds = [o["kind"] for o in objects]
    assert kinds == [
        "Namespace",
        "NetworkPolicy",
        "NetworkPolicy",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    ]
    # NetworkPolicy は Deployment より先（Pod が守られないまま動き出さない）
    assert kinds.index("NetworkPolicy") < kinds.index("Deployment")
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "NetworkPolicy"] == [
        "model-in-image",
        "model-in-image-checks",
    ]


def test_unknown_kinds_go_last() -> None:
    objects = [{"kind": "Widget"}, {"kind": "HorizontalPodAutoscaler"}, {"kind": "Namespace"}]
    assert [o["kind"] for o in r.apply_order(objects)] == ["Namespace", "HorizontalPodAutoscaler", "Widget"]


def test_render_sets_image_and_namespace_without_touching_the_files() -> None:
    before = {p: p.read_text() for p in manifest_files()}
    objects = rendered("staging")
    deployment = r.find(objects, "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    assert r.find(objects, "Namespace")["metadata"]["name"] == "staging"
    assert all(o["metadata"]["namespace"] == "staging" for o in objects if o["kind"] != "Namespace")
    assert before == {p: p.read_text() for p in manifest_files()}


def test_render_is_deterministic() -> None:
    assert r.to_yaml(rendered()) == r.to_yaml(rendered())


def test_constants_match_the_manifests() -> None:
    objects = r.load_manifests(MANIFESTS)
    deployment = r.find(objects, "Deployment")
    assert r.find(objects, "Namespace")["metadata"]["name"] == NAMESPACE
    others = [o for o in objects if o["kind"] not in ("Namespace", "NetworkPolicy")]
    assert {o["metadata"]["name"] for o in others} == {APP_NAME}
    policies = {o["metadata"]["name"] for o in objects if o["kind"] == "NetworkPolicy"}
    assert policies == {APP_NAME, f"{APP_NAME}-checks"}
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"{IMAGE_REPOSITORY}:{constants.SERVICE_VERSION}"


def test_missing_kustomization_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"kustomization\.yaml is missing"):
        r.load_manifests(tmp_path)


def test_documents_that_are_not_objects_are_refused(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: [a.yml, b.yml]\n")
    (tmp_path / "a.yml").write_text("---\n---\nkind: Namespace\napiVersion: v1\nmetadata: {name: x}\n")
    (tmp_path / "b.yml").write_text("just: text\n")
    with pytest.raises(ConfigError, match="not a Kubernetes object"):
        r.load_manifests(tmp_path)
    (tmp_path / "b.yml").write_text("a: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot read manifest"):
        r.load_manifests(tmp_path)


def test_deployment_without_the_app_container_is_refused() -> None:
    deployment = {
        "metadata": {"name": "x"},
        "spec": {"template": {"spec": {"containers": [{"name": "other"}]}}},
    }
    with pytest.raises(ConfigError, match="no container named model-in-image"):
        r.set_image(deployment, IMAGE)
    with pytest.raises(ConfigError, match="has no Deployment"):
        r.find([], "Deployment")


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_builds_the_same_objects() -> None:
    output = subprocess.run(
        ["kubectl", "kustomize", str(MANIFESTS)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    built = list(yaml.safe_load_all(output))
    by_kustomize = {(o["kind"], o["metadata"]["name"]): o for o in built}
    ours = r.render(f"{IMAGE_REPOSITORY}:0.1.0", NAMESPACE)
    assert by_kustomize == {(o["kind"], o["metadata"]["name"]): o for o in ours}
    # kubectl apply -k も mii deploy と同じ順に適用する
    # （kustomization.yaml の sortOptions: fifo。NetworkPolicy が Deployment より先）
    assert [(o["kind"], o["metadata"]["name"]) for o in built] == [
        (o["kind"], o["metadata"]["name"]) for o in ours
    ]


# --- 公式スキーマ（オフライン） ---


def all_objects() -> list[tuple[str, dict[str, Any]]]:
    files = [(p.name, doc) for p in manifest_files() for doc in yaml.safe_load_all(p.read_text())]
    sent = [(f"rendered {o['kind']}", o) for o in rendered()]
    job = [
        ("lb-check Job", check_job(IMAGE, NAMESPACE, "http://10.96.0.10:8000/predict/test")),
        (
            "e2e load Job",
            load_job(
                IMAGE,
                NAMESPACE,
                "http://10.96.0.10:8000/predict",
                seconds=60,
                parallelism=3,
                body='{"data": [[5.1, 3.5, 1.4, 0.2]]}',
                cpu_limit="500m",
            ),
        ),
    ]
    shadow = [
        (f"shadow {o['kind']} {o['metadata']['name']}", o) for o in r.shadow_objects(rendered(), NAMESPACE)
    ]
    return files + sent + job + shadow


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(("name", "obj"), all_objects(), ids=[name for name, _ in all_objects()])
def test_objects_validate_against_the_official_schema(version: str, name: str, obj: dict[str, Any]) -> None:
    assert kubernetes_validate.validate(obj, version, strict=True) == version


def test_the_schema_check_catches_a_broken_object() -> None:
    broken = r.find(rendered(), "Deployment")
    broken["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = [1]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


# --- 意味の検証 ---


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = r.find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return container


def test_selector_matches_the_template_labels_and_the_service_selector() -> None:
    objects = rendered()
    deployment = r.find(objects, "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= template_labels.items()
    assert r.find(objects, "Service")["spec"]["selector"].items() <= template_labels.items()
    assert (
        r.find(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items()
        <= template_labels.items()
    )
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
    assert spread["labelSelector"]["matchLabels"].items() <= template_labels.items()


def test_service_port_reaches_the_container_port_of_the_service() -> None:
    objects = rendered()
    ports = {p["name"]: p["containerPort"] for p in _container(objects)["ports"]}
    (service_port,) = r.find(objects, "Service")["spec"]["ports"]
    target = service_port["targetPort"]
    resolved = ports[target] if isinstance(target, str) else target
    assert resolved == constants.DEFAULT_PORT
    assert service_port["port"] == constants.DEFAULT_PORT
    assert r.find(objects, "Service")["spec"]["type"] == "ClusterIP"


def test_hpa_targets_the_deployment() -> None:
    objects = rendered()
    hpa, deployment = r.find(objects, "HorizontalPodAutoscaler"), r.find(objects, "Deployment")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", APP_NAME)
    assert deployment["metadata"]["name"] == APP_NAME
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 50
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 60
    assert hpa["spec"]["minReplicas"] <= deployment["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]


def test_probe_paths_are_routes_of_the_service() -> None:
    from service.app.app import create_app

    paths = {getattr(route, "path", None) for route in create_app().routes}
    container = _container(rendered())
    probes = {
        name: container[name]["httpGet"] for name in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    assert probes["readinessProbe"]["path"] == "/health/ready"
    assert probes["livenessProbe"]["path"] == "/health/live"
    for probe in probes.values():
        assert probe["path"] in paths
        assert probe["port"] in {p["name"] for p in container["ports"]}


def test_production_settings_of_the_deployment() -> None:
    deployment = r.find(rendered(), "Deployment")
    spec, pod = deployment["spec"], deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert spec["replicas"] == 4
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    assert (
        container["resources"]["requests"]
        == container["resources"]["limits"]
        == {"cpu": "500m", "memory": "300Mi", "ephemeral-storage": "256Mi"}
    )
    # /tmp の emptyDir とログ（10Mi × 5）が収まる大きさ
    # 影への写しの設定は ConfigMap のファイル（無くても起動する）。サーバーはそのパスを MIRROR_CONFIG で読む
    assert pod["volumes"] == [
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        {"name": "mirror", "configMap": {"name": MIRROR_NAME, "optional": True}},
    ]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "mirror")
    assert mount["readOnly"] is True
    assert {e["name"]: e.get("value") for e in container["env"]}["MIRROR_CONFIG"] == (
        f"{mount['mountPath']}/{MIRROR_KEY}"
    )
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert "command" not in container
    assert "args" not in container
    assert pod["enableServiceLinks"] is False
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert {"LOG_LEVEL", "LOG_FORMAT", "GRACEFUL_SHUTDOWN_SECONDS"} <= env.keys()
    grace = int(env["GRACEFUL_SHUTDOWN_SECONDS"]["value"])
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pre_stop + grace
    assert pod["topologySpreadConstraints"][0]["whenUnsatisfiable"] == "ScheduleAnyway"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/tmp"] in {v["name"] for v in pod["volumes"] if "emptyDir" in v}


@pytest.mark.parametrize(
    "pod_spec",
    [
        r.find(r.render(IMAGE, NAMESPACE, MANIFESTS), "Deployment")["spec"]["template"]["spec"],
        check_job(IMAGE, NAMESPACE, "http://10.96.0.10:8000/predict/test")["spec"]["template"]["spec"],
    ],
    ids=["deployment", "lb-check-job"],
)
def test_pods_meet_the_restricted_pod_security_standard(pod_spec: dict[str, Any]) -> None:
    pod_context = pod_spec["securityContext"]
    assert pod_context["runAsNonRoot"] is True
    assert pod_context["runAsUser"] != 0
    assert pod_context["seccompProfile"]["type"] == "RuntimeDefault"
    for container in pod_spec["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"]["drop"] == ["ALL"]
        assert "add" not in context["capabilities"]
    assert pod_spec["automountServiceAccountToken"] is False


def test_namespace_enforces_the_restricted_standard() -> None:
    labels = r.find(rendered(), "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_pdb_keeps_most_pods_up() -> None:
    pdb = r.find(rendered(), "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1


# --- NetworkPolicy: 受けるのはポート 8000 だけ、出ていく通信は無い。確認の Job はアプリの Pod へだけ ---


def _policy(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (policy,) = [o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == name]
    return policy


def _job_pod_labels(kind: str) -> dict[str, str]:
    url = "http://10.96.0.10:8000/predict/test"
    if kind == "check":
        job = check_job(IMAGE, NAMESPACE, url)
    else:
        job = load_job(IMAGE, NAMESPACE, url, name="mii-load", seconds=60, parallelism=3, body="{}")
    labels: dict[str, str] = job["spec"]["template"]["metadata"]["labels"]
    return labels


def test_the_model_pods_accept_only_port_8000_and_send_nothing() -> None:
    objects = rendered()
    spec = _policy(objects, APP_NAME)["spec"]
    # 安定版と canary の両方の Pod（Service と同じラベル）を選ぶ
    assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "model-in-image"}}
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    # 出ていく通信は何も許さない（DNS も）
    assert spec["egress"] == []
    # 送り元は限らず（プローブ・Service・port-forward）、ポート 8000/TCP だけ
    assert spec["ingress"] == [{"ports": [{"protocol": "TCP", "port": constants.DEFAULT_PORT}]}]
    # 選ぶのは Deployment の Pod（テンプレートのラベルに含まれる）
    template_labels = r.find(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert spec["podSelector"]["matchLabels"].items() <= template_labels.items()
    # 許すポートはコンテナのポート
    assert constants.DEFAULT_PORT in {p["containerPort"] for p in _container(objects)["ports"]}


def test_the_check_jobs_may_only_reach_the_model_pods_on_port_8000() -> None:
    objects = rendered()
    spec = _policy(objects, f"{APP_NAME}-checks")["spec"]
    assert spec["podSelector"] == {"matchLabels": {CHECK_LABEL_KEY: CHECK_LABEL_VALUE}}
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == []
    (rule,) = spec["egress"]
    # namespaceSelector も ipBlock も無い: 同じ Namespace のアプリの Pod だけ
    assert rule["to"] == [{"podSelector": _policy(objects, APP_NAME)["spec"]["podSelector"]}]
    assert rule["ports"] == [{"protocol": "TCP", "port": constants.DEFAULT_PORT}]


@pytest.mark.parametrize(("kind", "name"), [("check", "mii-lb-check"), ("load", "mii-load")])
def test_the_check_job_pods_carry_the_label_of_the_checks_policy_only(kind: str, name: str) -> None:
    objects = rendered()
    labels = _job_pod_labels(kind)
    checks = _policy(objects, f"{APP_NAME}-checks")["spec"]["podSelector"]["matchLabels"]
    model = _policy(objects, APP_NAME)["spec"]["podSelector"]["matchLabels"]
    assert checks.items() <= labels.items()
    # アプリのポリシー（と Service）には選ばれない: 選ばれると出ていく通信を止められてしまう
    assert not model.items() <= labels.items()
    assert "app" not in labels
    assert not r.find(objects, "Service")["spec"]["selector"].items() <= labels.items()
    # 前からのラベルも残る
    assert labels["app.kubernetes.io/name"] == name
    assert labels["app.kubernetes.io/part-of"] == APP_NAME


def test_the_policies_follow_the_namespace() -> None:
    for policy in (o for o in rendered("staging") if o["kind"] == "NetworkPolicy"):
        assert policy["metadata"]["namespace"] == "staging"
        # 宛先は Namespace を名指ししない（同じ Namespace の Pod）ので、-n で変えても正しいまま
        assert "namespaceSelector" not in str(policy["spec"])


def test_the_schema_check_catches_a_broken_policy() -> None:
    broken = _policy(rendered(), APP_NAME)
    broken["spec"]["ingress"][0]["ports"][0]["protocol"] = ["TCP"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


# --- 影（shadow）: 利用者に選ばれず、写しを受けるだけ。安定版から影のポート 8000 へだけ出てよい ---


def _labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_the_shadow_pods_are_chosen_by_no_user_facing_object() -> None:
    stable = rendered()
    shadow = r.shadow_objects(stable, NAMESPACE)
    deployment = r.find(shadow, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["metadata"]["name"] == SHADOW_NAME
    assert deployment["spec"]["replicas"] == 1
    assert SERVICE_LABEL_KEY not in labels
    # 利用者の Service・PDB・安定版の NetworkPolicy・安定版の Deployment のどれも、影の Pod を選ばない
    assert not _labels_match(r.find(stable, "Service")["spec"]["selector"], labels)
    assert not _labels_match(r.find(stable, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"], labels)
    assert not _labels_match(_policy(stable, APP_NAME)["spec"]["podSelector"]["matchLabels"], labels)
    assert not _labels_match(r.find(stable, "Deployment")["spec"]["selector"]["matchLabels"], labels)
    # 影の Service は影の Pod だけを選ぶ
    service = r.find(shadow, "Service")
    assert service["metadata"]["name"] == SHADOW_NAME
    assert _labels_match(service["spec"]["selector"], labels)
    assert not _labels_match(
        service["spec"]["selector"], r.find(stable, "Deployment")["spec"]["template"]["metadata"]["labels"]
    )
    assert {o["metadata"]["namespace"] for o in shadow} == {NAMESPACE}


def test_neither_the_shadow_nor_the_canary_mirrors() -> None:
    stable = rendered()
    for deployment in (
        r.find(r.shadow_objects(stable, NAMESPACE), "Deployment"),
        r.canary_deployment(stable, 1),
    ):
        pod = deployment["spec"]["template"]["spec"]
        assert "MIRROR_CONFIG" not in {e["name"] for e in pod["containers"][0]["env"]}
        assert MIRROR_NAME not in {(v.get("configMap") or {}).get("name") for v in pod["volumes"]}
        assert "mirror" not in {m["name"] for m in pod["containers"][0]["volumeMounts"]}
    # 安定版は写しの設定を持ったまま（描き直しても消えない）
    assert "MIRROR_CONFIG" in {e["name"] for e in _container(stable)["env"]}


def test_the_shadow_sends_nothing_and_the_stable_pods_may_reach_only_the_shadow_on_8000() -> None:
    stable = rendered()
    shadow = r.shadow_objects(stable, NAMESPACE)
    shadow_labels = r.find(shadow, "Deployment")["spec"]["template"]["metadata"]["labels"]
    stable_labels = r.find(stable, "Deployment")["spec"]["template"]["metadata"]["labels"]
    own = _policy(shadow, SHADOW_NAME)["spec"]
    assert _labels_match(own["podSelector"]["matchLabels"], shadow_labels)
    assert own["policyTypes"] == ["Ingress", "Egress"]
    assert own["egress"] == []
    assert own["ingress"] == [{"ports": [{"protocol": "TCP", "port": constants.DEFAULT_PORT}]}]
    mirror = _policy(shadow, f"{APP_NAME}-mirror")["spec"]
    # 選ぶのは安定版の Pod だけ（canary は写さない）
    assert _labels_match(mirror["podSelector"]["matchLabels"], stable_labels)
    canary_labels = r.canary_deployment(stable, 1)["spec"]["template"]["metadata"]["labels"]
    assert not _labels_match(mirror["podSelector"]["matchLabels"], canary_labels)
    assert mirror["policyTypes"] == ["Egress"]
    (rule,) = mirror["egress"]
    (peer,) = rule["to"]
    assert _labels_match(peer["podSelector"]["matchLabels"], shadow_labels)
    assert "namespaceSelector" not in peer
    assert rule["ports"] == [{"protocol": "TCP", "port": constants.DEFAULT_PORT}]
    # 適用の順: NetworkPolicy は Deployment より先
    kinds = [o["kind"] for o in shadow]
    assert kinds.index("NetworkPolicy") < kinds.index("Deployment")
