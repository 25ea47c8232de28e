"""Service の ClusterIP の読み出し（mii_cli/kube/services.py）: 影の写し先のアドレス。"""

from __future__ import annotations

import pytest

from mii_cli.errors import ClusterError
from mii_cli.kube.apply import apply_one
from mii_cli.kube.render import find, render, shadow_objects
from mii_cli.kube.services import cluster_ip
from tests.fakes.kube_api import FakeApiServer, status_body
from tests.fakes.kube_objects import IMAGE, NAMESPACE

SERVICES = f"/api/v1/namespaces/{NAMESPACE}/services"


def test_the_cluster_ip_is_the_one_the_api_server_gave_the_service(fake_api: FakeApiServer) -> None:
    client = fake_api.client()
    service = find(shadow_objects(render(IMAGE, NAMESPACE), NAMESPACE), "Service")
    name = service["metadata"]["name"]
    assert cluster_ip(client, NAMESPACE, name) is None  # まだ無い
    apply_one(client, service)
    address = cluster_ip(client, NAMESPACE, name)
    assert address is not None
    assert address == fake_api.objects[f"{SERVICES}/{name}"]["spec"]["clusterIP"]


@pytest.mark.parametrize("spec", [{"clusterIP": "None"}, {"clusterIP": ""}, {}])
def test_a_headless_service_or_one_without_an_address_has_no_cluster_ip(
    fake_api: FakeApiServer, spec: dict[str, str]
) -> None:
    fake_api.put(f"{SERVICES}/s", {"metadata": {"name": "s"}, "spec": spec})
    assert cluster_ip(fake_api.client(), NAMESPACE, "s") is None


def test_a_refused_read_is_a_cluster_error(fake_api: FakeApiServer) -> None:
    fake_api.routes[("GET", f"{SERVICES}/s")] = (403, status_body(403, 'services "s" is forbidden'))
    with pytest.raises(ClusterError, match=r"reading service s failed \(403\): services \"s\" is forbidden"):
        cluster_ip(fake_api.client(), NAMESPACE, "s")
