"""`mii status` の集め方（クラスタは HTTP の境界の代役）: Deployment・Pod・Service・HPA・NetworkPolicy。"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes.client import (
    V2HorizontalPodAutoscaler,
    V2HorizontalPodAutoscalerStatus,
    V2MetricStatus,
    V2MetricValueStatus,
    V2ResourceMetricStatus,
)

from mii_cli.errors import ClusterError
from mii_cli.kube.status import NetworkPolicyState, collect_status
from tests.fakes.kube_api import FakeApiServer, to_dict
from tests.fakes.kube_objects import IMAGE, NAMESPACE

HPA = f"/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers/model-in-image"
MANAGED = {"app.kubernetes.io/managed-by": "mii"}


def scaling(fake: FakeApiServer, *, current: int, desired: int, cpu: int) -> None:
    """HPA のコントローラの代わりに、計測した CPU とレプリカ数を status に書く。"""
    scaler = V2HorizontalPodAutoscaler.from_dict(fake.objects[HPA])
    assert scaler is not None
    metric = V2MetricStatus(
        type="Resource",
        resource=V2ResourceMetricStatus(name="cpu", current=V2MetricValueStatus(average_utilization=cpu)),
    )
    scaler.status = V2HorizontalPodAutoscalerStatus(
        current_replicas=current, desired_replicas=desired, current_metrics=[metric]
    )
    fake.put(HPA, to_dict(scaler))


def test_the_deployment_shows_its_image_and_ready_pods(deployed_api: FakeApiServer) -> None:
    deployment = collect_status(deployed_api.client(), NAMESPACE).deployment
    assert deployment is not None
    assert (deployment.image, deployment.desired, deployment.ready) == (IMAGE, 4, 4)


def test_the_pods_are_listed_by_name_with_their_age(deployed_api: FakeApiServer) -> None:
    now = datetime(2025, 1, 1, 2, 5, tzinfo=UTC)  # 2 時間 5 分後
    pods = collect_status(deployed_api.client(), NAMESPACE, now=now).pods
    assert [p.name for p in pods] == [f"model-in-image-{i}" for i in range(4)]
    assert {(p.ready, p.state, p.age, p.node) for p in pods} == {(True, "Running", "2h", "node-1")}


def test_the_service_shows_its_cluster_ip_and_port(deployed_api: FakeApiServer) -> None:
    service = collect_status(deployed_api.client(), NAMESPACE).service
    live = deployed_api.objects[f"/api/v1/namespaces/{NAMESPACE}/services/model-in-image"]
    assert service is not None
    assert (service.type, service.cluster_ip, service.ports) == (
        "ClusterIP",
        live["spec"]["clusterIP"],
        ["8000/TCP"],
    )


def test_the_hpa_shows_measured_cpu_and_replicas(deployed_api: FakeApiServer) -> None:
    scaling(deployed_api, current=4, desired=5, cpu=63)
    hpa = collect_status(deployed_api.client(), NAMESPACE).hpa
    assert hpa is not None
    assert (hpa.current_replicas, hpa.desired_replicas, hpa.cpu_current, hpa.cpu_target) == (4, 5, 63, 50)
    assert (hpa.min, hpa.max) == (3, 10)


def test_missing_objects_are_none(fake_api: FakeApiServer) -> None:
    fake_api.put(f"/api/v1/namespaces/{NAMESPACE}", {"metadata": {"name": NAMESPACE, "labels": MANAGED}})
    status = collect_status(fake_api.client(), NAMESPACE)
    assert (status.deployment, status.service, status.hpa, status.pods) == (None, None, None, [])
    assert status.network_policies == []


def test_without_the_namespace_nothing_is_deployed(fake_api: FakeApiServer) -> None:
    with pytest.raises(ClusterError, match="nothing is deployed") as error:
        collect_status(fake_api.client(), NAMESPACE)
    assert error.value.hint == "mii deploy"


def test_the_network_policies_show_the_pods_they_select_and_what_they_allow(
    deployed_api: FakeApiServer,
) -> None:
    policies = collect_status(deployed_api.client(), NAMESPACE).network_policies
    assert policies == [
        NetworkPolicyState(
            name="model-in-image",
            pod_selector="app.kubernetes.io/name=model-in-image",
            ingress="8000/TCP",
            egress="none",
        ),
        NetworkPolicyState(
            name="model-in-image-checks",
            pod_selector="app.kubernetes.io/component=check",
            ingress="none",
            egress="app.kubernetes.io/name=model-in-image:8000/TCP",
        ),
    ]


def _state(fake: FakeApiServer, spec: dict[str, Any]) -> NetworkPolicyState:
    """NetworkPolicy を 1 つだけ置いた Namespace の状態から、そのポリシーの要約を読む。"""
    fake.put(f"/api/v1/namespaces/{NAMESPACE}", {"metadata": {"name": NAMESPACE, "labels": MANAGED}})
    fake.put(
        f"/apis/networking.k8s.io/v1/namespaces/{NAMESPACE}/networkpolicies/p",
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "p"},
            "spec": spec,
        },
    )
    (state,) = collect_status(fake.client(), NAMESPACE).network_policies
    return state


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        # policyTypes が無ければ API サーバーと同じ既定: Ingress だけを制限する
        ({"podSelector": {}}, ("", "none", "unrestricted")),
        (
            {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]},
            ("", "unrestricted", "all"),
        ),
        (
            {
                "podSelector": {
                    "matchLabels": {"tier": "web", "app": "shop"},
                    "matchExpressions": [
                        {"key": "track", "operator": "In", "values": ["stable", "canary"]},
                        {"key": "legacy", "operator": "DoesNotExist"},
                        {"key": "zone", "operator": "NotIn", "values": ["a"]},
                        {"key": "gpu", "operator": "Exists"},
                    ],
                },
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]},
                    {"from": [{"namespaceSelector": {"matchLabels": {"team": "x"}}}]},
                ],
                "egress": [
                    {
                        "to": [
                            {
                                "namespaceSelector": {},
                                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                            }
                        ],
                        "ports": [{"port": 53, "protocol": "UDP"}, {"port": "dns-tcp"}],
                    },
                    {"ports": [{"port": 30000, "endPort": 32767}, {"protocol": "SCTP"}]},
                ],
            },
            (
                "app=shop,tier=web,track in (stable,canary),!legacy,zone notin (a),gpu",
                "10.0.0.0/8 except 10.1.0.0/16, all pods in namespaces team=x",
                "k8s-app=kube-dns in all namespaces:53/UDP, k8s-app=kube-dns in all namespaces:dns-tcp/TCP, "
                "30000-32767/TCP, all/SCTP",
            ),
        ),
    ],
    ids=["default-types", "egress-only", "everything"],
)
def test_network_policy_summaries(
    fake_api: FakeApiServer, spec: dict[str, Any], expected: tuple[str, str, str]
) -> None:
    state = _state(fake_api, spec)
    assert (state.pod_selector, state.ingress, state.egress) == expected
