"""`mii teardown` の処理（クラスタは HTTP の境界の代役）: 消して待つ、無ければ何もしない、
他人のものは消さない。
"""

from __future__ import annotations

import itertools

import pytest

from mii_cli.errors import ClusterError, WaitTimeout
from mii_cli.kube.teardown import NamespaceDeleting, TeardownResult, teardown
from tests.fakes.kube_api import FakeApiServer, status_body
from tests.fakes.kube_objects import NAMESPACE

PATH = f"/api/v1/namespaces/{NAMESPACE}"
MANAGED = {"app.kubernetes.io/managed-by": "mii"}


@pytest.fixture
def managed(fake_api: FakeApiServer) -> FakeApiServer:
    """mii が作った Namespace がある。"""
    fake_api.put(PATH, {"metadata": {"name": NAMESPACE, "labels": MANAGED}})
    return fake_api


def test_teardown_deletes_the_namespace_and_its_contents_and_waits(managed: FakeApiServer) -> None:
    managed.put(f"{PATH}/pods/p", {"metadata": {"name": "p"}})
    events: list[NamespaceDeleting] = []
    result = teardown(managed.client(), NAMESPACE, sleep=lambda _: None, on_event=events.append)
    assert (result.namespace, result.deleted) == (NAMESPACE, True)
    assert events == [NamespaceDeleting(NAMESPACE)]
    assert managed.methods("DELETE")[0].param("propagationPolicy") == "Foreground"
    assert not [path for path in managed.objects if path.startswith(PATH)]


def test_teardown_of_a_deployment_leaves_no_object_of_any_api_group(deployed_api: FakeApiServer) -> None:
    policies = f"/apis/networking.k8s.io/v1/namespaces/{NAMESPACE}/networkpolicies/"
    assert len([path for path in deployed_api.objects if path.startswith(policies)]) == 2
    result = teardown(deployed_api.client(), NAMESPACE, sleep=lambda _: None)
    assert result.deleted
    # Namespace ごと消すだけで、NetworkPolicy も Deployment も消える（個別に消すリクエストは無い）
    assert not [path for path in deployed_api.objects if f"/namespaces/{NAMESPACE}" in path]
    assert [r.path for r in deployed_api.methods("DELETE")] == [PATH]


def test_teardown_polls_until_the_namespace_is_gone(managed: FakeApiServer) -> None:
    managed.terminating[PATH] = 3  # 削除の前の確認を含めて 3 回読まれるまで残る
    polls: list[float] = []
    teardown(managed.client(), NAMESPACE, poll=0.1, sleep=polls.append)
    assert polls == [0.1, 0.1]


def test_nothing_to_delete_is_not_an_error(fake_api: FakeApiServer) -> None:
    result = teardown(fake_api.client(), NAMESPACE)
    assert result == TeardownResult(namespace=NAMESPACE, deleted=False, seconds=0.0)
    assert not fake_api.methods("DELETE")


def test_a_namespace_that_never_goes_is_a_timeout(managed: FakeApiServer) -> None:
    managed.routes[("DELETE", PATH)] = (200, {"kind": "Status"})  # 消し始めるが消えない
    ticks = itertools.count(0, 100)
    with pytest.raises(WaitTimeout, match="still exists after 150s") as error:
        teardown(managed.client(), NAMESPACE, timeout=150, sleep=lambda _: None, clock=lambda: next(ticks))
    assert "finalizers" in (error.value.hint or "")


def test_a_refused_delete_is_one_message(managed: FakeApiServer) -> None:
    managed.routes[("DELETE", PATH)] = (403, status_body(403, "forbidden"))
    with pytest.raises(ClusterError, match=r"deleting namespace model-in-image failed \(403\): forbidden"):
        teardown(managed.client(), NAMESPACE)


def test_teardown_refuses_a_namespace_mii_did_not_create(fake_api: FakeApiServer) -> None:
    fake_api.put(PATH, {"metadata": {"name": NAMESPACE, "labels": {"team": "x"}}})
    with pytest.raises(ClusterError, match="was not created by mii") as error:
        teardown(fake_api.client(), NAMESPACE)
    assert "--namespace" in (error.value.hint or "")
    assert not fake_api.methods("DELETE")
