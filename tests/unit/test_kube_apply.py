"""サーバーサイドアプライ: 順序、冪等性、新しいイメージ、HPA と争わない replicas の扱い、エラー。"""

from __future__ import annotations

from typing import Any

import pytest

from mii_cli.errors import ClusterError
from mii_cli.kube import apply as ap
from mii_cli.kube.render import render
from tests.fakes.kube_api import FakeApiServer, status_body

IMAGE = "model-in-image:0.1.0-0123456789ab-fedcba987654"
NEW_IMAGE = "model-in-image:0.1.0-0123456789ab-111111111111"
NS = "model-in-image"
DEPLOYMENT = f"/apis/apps/v1/namespaces/{NS}/deployments/model-in-image"


def test_object_paths() -> None:
    objects = render(IMAGE, NS)
    assert [ap.object_path(o) for o in objects] == [
        f"/api/v1/namespaces/{NS}",
        f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/model-in-image",
        f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/model-in-image-checks",
        f"/api/v1/namespaces/{NS}/services/model-in-image",
        DEPLOYMENT,
        f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/model-in-image",
        f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers/model-in-image",
    ]
    with pytest.raises(ClusterError, match="cannot apply"):
        ap.object_path({"apiVersion": "x/v1", "kind": "Widget", "metadata": {"name": "w"}})


def test_first_apply_creates_in_order_with_the_mii_field_manager(fake_api: FakeApiServer) -> None:
    client = fake_api.client()
    applied = ap.apply_all(client, render(IMAGE, NS))
    assert [(a.kind, a.action) for a in applied] == [
        ("Namespace", "created"),
        ("NetworkPolicy", "created"),
        ("NetworkPolicy", "created"),
        ("Service", "created"),
        ("Deployment", "created"),
        ("PodDisruptionBudget", "created"),
        ("HorizontalPodAutoscaler", "created"),
    ]
    patches = fake_api.methods("PATCH")
    assert [p.body["kind"] for p in patches] == [a.kind for a in applied]
    for patch in patches:
        assert patch.param("fieldManager") == "mii"
        assert patch.param("force") == "true"
        assert patch.headers["Content-Type"] == "application/apply-patch+yaml"
    assert fake_api.objects[DEPLOYMENT]["spec"]["replicas"] == 4
    assert applied[0] == ap.ApplyResult(kind="Namespace", name=NS, action="created")


def test_the_network_policies_exist_before_the_deployment_is_applied(fake_api: FakeApiServer) -> None:
    policies = f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/"
    seen: list[str] = []

    def record(path: str, obj: dict[str, Any]) -> None:
        if obj["kind"] == "Deployment":
            seen.extend(sorted(p.removeprefix(policies) for p in fake_api.objects if p.startswith(policies)))

    fake_api.on_apply.append(record)
    ap.apply_all(fake_api.client(), render(IMAGE, NS))
    # Deployment の Pod が動き出すときには、もう両方のポリシーがある
    assert seen == ["model-in-image", "model-in-image-checks"]
    live = fake_api.objects[policies + "model-in-image"]
    assert live["apiVersion"] == "networking.k8s.io/v1"
    assert live["spec"]["policyTypes"] == ["Ingress", "Egress"]


def test_second_apply_of_the_same_image_changes_nothing(fake_api: FakeApiServer) -> None:
    client = fake_api.client()
    ap.apply_all(client, render(IMAGE, NS))
    ap.apply_all(client, render(IMAGE, NS))  # 初回の後の replicas の引き渡し
    versions = {path: obj["metadata"]["resourceVersion"] for path, obj in fake_api.objects.items()}
    applied = ap.apply_all(client, render(IMAGE, NS))
    assert {a.action for a in applied} == {"unchanged"}
    assert versions == {path: obj["metadata"]["resourceVersion"] for path, obj in fake_api.objects.items()}


def test_a_new_image_rolls_out_and_keeps_the_replicas_the_hpa_chose(fake_api: FakeApiServer) -> None:
    client = fake_api.client()
    ap.apply_all(client, render(IMAGE, NS))
    # HPA がスケールした（scale サブリソースの更新: mii は replicas の所有を失う）
    fake_api.objects[DEPLOYMENT]["spec"]["replicas"] = 7
    fake_api.objects[DEPLOYMENT]["metadata"]["managedFields"] = []
    applied = ap.apply_all(client, render(NEW_IMAGE, NS))
    actions = {a.kind: a.action for a in applied}
    assert actions["Deployment"] == "configured"
    assert actions["Service"] == "unchanged"
    live = fake_api.objects[DEPLOYMENT]
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == NEW_IMAGE
    assert live["spec"]["replicas"] == 7
    deployment_patches = [p for p in fake_api.methods("PATCH", DEPLOYMENT)]
    assert "replicas" not in deployment_patches[-1].body["spec"]


def test_replicas_are_handed_over_before_mii_stops_sending_them(fake_api: FakeApiServer) -> None:
    client = fake_api.client()
    ap.apply_all(client, render(IMAGE, NS))
    assert ap.owns_replicas(fake_api.objects[DEPLOYMENT])
    ap.apply_all(client, render(NEW_IMAGE, NS))
    # 代役のサーバーは、誰も所有しない replicas を消す（本物と同じ）。引き渡したので 4 のまま
    live = fake_api.objects[DEPLOYMENT]
    assert live["spec"]["replicas"] == 4
    assert not ap.owns_replicas(live)
    managers = [p.param("fieldManager") for p in fake_api.methods("PATCH", DEPLOYMENT)]
    assert managers == ["mii", ap.HANDOVER_MANAGER, "mii"]
    handover = fake_api.methods("PATCH", DEPLOYMENT)[1]
    assert handover.body["spec"] == {"replicas": 4}
    # 文書の手順どおり、引き渡しは force なし（HPA が先に持っていれば競合で終わる）
    assert handover.param("force") == "false"
    assert [p.param("force") for p in fake_api.methods("PATCH", DEPLOYMENT)] == ["true", "false", "true"]


def test_a_handover_conflict_means_the_hpa_already_owns_replicas(fake_api: FakeApiServer) -> None:
    client = fake_api.client()
    ap.apply_all(client, render(IMAGE, NS))

    def conflict(request: Any) -> tuple[int, Any]:
        if request.param("fieldManager") == ap.HANDOVER_MANAGER:
            return 409, status_body(
                409, "Apply failed with 1 conflict: conflict with kube-controller-manager"
            )
        return fake_api._apply(request)

    fake_api.routes[("PATCH", DEPLOYMENT)] = conflict
    applied = ap.apply_all(client, render(NEW_IMAGE, NS))
    assert {a.kind: a.action for a in applied}["Deployment"] == "configured"
    live = fake_api.objects[DEPLOYMENT]
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == NEW_IMAGE


def test_status_writes_by_others_are_not_changes(fake_api: FakeApiServer) -> None:
    client = fake_api.client()
    ap.apply_all(client, render(IMAGE, NS))
    ap.apply_all(client, render(IMAGE, NS))
    # HPA のコントローラが status を書き、resourceVersion が進んだ
    hpa = next(path for path in fake_api.objects if "horizontalpodautoscalers" in path)
    fake_api.objects[hpa]["status"] = {"currentReplicas": 4, "desiredReplicas": 4}
    fake_api.objects[hpa]["metadata"]["resourceVersion"] = "999"
    applied = ap.apply_all(client, render(IMAGE, NS))
    assert {a.action for a in applied} == {"unchanged"}


def test_deployment_body_rules() -> None:
    deployment = next(o for o in render(IMAGE, NS) if o["kind"] == "Deployment")
    assert ap.deployment_body(deployment, None) is deployment
    body = ap.deployment_body(deployment, {"spec": {"replicas": 9}})
    assert "replicas" not in body["spec"]
    assert deployment["spec"]["replicas"] == 4
    live: dict[str, Any] = {"metadata": {"managedFields": [{"manager": "mii", "operation": "Update"}]}}
    assert not ap.owns_replicas(live)


@pytest.mark.parametrize(
    ("code", "message", "hint"),
    [
        (403, "namespace model-in-image is being terminated", "still being deleted"),
        (403, "forbidden: user cannot patch", "kubectl auth can-i"),
        (422, "Deployment.apps is invalid: spec.template.metadata.labels: Invalid value", None),
        (
            500,
            "failed to create typed patch object (ns/model-in-image; apps/v1, Kind=Deployment): "
            ".spec.bogus: field not declared in schema",
            "unknown to this cluster's Kubernetes version",
        ),
    ],
)
def test_apply_errors_are_one_message(
    fake_api: FakeApiServer, code: int, message: str, hint: str | None
) -> None:
    fake_api.routes[("PATCH", DEPLOYMENT)] = (code, status_body(code, message))
    with pytest.raises(
        ClusterError, match=f"applying Deployment/model-in-image failed \\({code}\\)"
    ) as error:
        ap.apply_all(fake_api.client(), render(IMAGE, NS))
    assert message in error.value.message
    if hint:
        assert hint in (error.value.hint or "")


def test_read_errors(fake_api: FakeApiServer) -> None:
    fake_api.routes[("GET", f"/api/v1/namespaces/{NS}")] = (500, status_body(500, "etcd is down"))
    with pytest.raises(ClusterError, match="etcd is down"):
        ap.apply_all(fake_api.client(), render(IMAGE, NS))


def test_delete_object_deletes_in_the_background_and_says_whether_there_was_one(
    fake_api: FakeApiServer,
) -> None:
    client = fake_api.client()
    service = next(o for o in render(IMAGE, NS) if o["kind"] == "Service")
    ap.apply_one(client, service)
    assert ap.delete_object(client, service) is True
    (request,) = fake_api.methods("DELETE")
    assert (request.path, request.param("propagationPolicy")) == (ap.object_path(service), "Background")
    assert ap.object_path(service) not in fake_api.objects
    assert ap.delete_object(client, service) is False  # もう無い（404）


def test_a_refused_delete_is_one_cluster_error(fake_api: FakeApiServer) -> None:
    service = next(o for o in render(IMAGE, NS) if o["kind"] == "Service")
    fake_api.routes[("DELETE", ap.object_path(service))] = (
        403,
        status_body(403, 'services "model-in-image" is forbidden: User "u" cannot delete resource'),
    )
    with pytest.raises(ClusterError, match=r"deleting Service/model-in-image failed \(403\): services"):
        ap.delete_object(fake_api.client(), service)
