"""mii の Namespace の読み取り（公式クライアントの型付き API）と phase。"""

from __future__ import annotations

import pytest

from mii_cli.errors import ClusterError
from mii_cli.kube.namespace import namespace_phase, read_namespace
from tests.fakes.kube_api import FakeApiServer, status_body
from tests.fakes.kube_objects import NAMESPACE

PATH = f"/api/v1/namespaces/{NAMESPACE}"


def test_a_missing_namespace_reads_as_none(fake_api: FakeApiServer) -> None:
    assert read_namespace(fake_api.client(), NAMESPACE) is None
    assert namespace_phase(fake_api.client(), NAMESPACE) is None


def test_a_namespace_without_a_phase_is_active(fake_api: FakeApiServer) -> None:
    fake_api.put(PATH, {"metadata": {"name": NAMESPACE}})
    assert namespace_phase(fake_api.client(), NAMESPACE) == "Active"


def test_a_deleted_namespace_is_terminating(fake_api: FakeApiServer) -> None:
    fake_api.put(PATH, {"metadata": {"name": NAMESPACE}, "status": {"phase": "Terminating"}})
    assert namespace_phase(fake_api.client(), NAMESPACE) == "Terminating"


def test_a_failed_read_is_one_message(fake_api: FakeApiServer) -> None:
    fake_api.routes[("GET", PATH)] = (500, status_body(500, "etcd is down"))
    with pytest.raises(ClusterError, match=r"reading namespace model-in-image failed \(500\): etcd is down"):
        namespace_phase(fake_api.client(), NAMESPACE)
