"""Pod がどれかのノードに入るか（ノードの allocatable と比べる。API サーバーは HTTP の境界の代役）。"""

from __future__ import annotations

import pytest

from mii_cli.errors import ConfigError
from mii_cli.kube.nodes import check_pod_fits, node_rooms
from tests.fakes.kube_api import FakeApiServer
from tests.fakes.kube_objects import node


@pytest.fixture
def two_nodes(fake_api: FakeApiServer) -> FakeApiServer:
    fake_api.put("/api/v1/nodes/small", node("small", "1930m", "3Gi"))
    fake_api.put("/api/v1/nodes/big", node("big", "2", "24105380Ki"))
    fake_api.put("/api/v1/nodes/down", node("down", "64", "1Ti", ready=False))
    fake_api.put("/api/v1/nodes/cordoned", node("cordoned", "64", "1Ti", unschedulable=True))
    return fake_api


def test_only_schedulable_nodes_count(two_nodes: FakeApiServer) -> None:
    rooms = node_rooms(two_nodes.client())
    assert rooms is not None
    assert {(r.name, r.cpu_millicores, r.memory_bytes) for r in rooms} == {
        ("small", 1930, 3 * 2**30),
        ("big", 2000, 24105380 * 1024),
    }


def test_a_pod_that_fits_a_node_passes(two_nodes: FakeApiServer) -> None:
    check_pod_fits(two_nodes.client(), 500, 300 * 2**20)
    check_pod_fits(two_nodes.client(), 2000, 20 * 2**30)


@pytest.mark.parametrize(
    ("cpu", "memory", "says"),
    [
        (500, 2**40, "1024.0Gi of memory (the most a node has is 23.0Gi)"),
        (4000, 300 * 2**20, "4000m of CPU (the most a node has is 2000m)"),
        (
            4000,
            2**40,
            "4000m of CPU (the most a node has is 2000m) and "
            "1024.0Gi of memory (the most a node has is 23.0Gi)",
        ),
        (2000, 4 * 2**30 - 1, None),
    ],
)
def test_a_pod_no_node_can_hold_is_one_error(
    two_nodes: FakeApiServer, cpu: int, memory: int, says: str | None
) -> None:
    if says is None:
        check_pod_fits(two_nodes.client(), cpu, memory)  # big: 2000m と 23Gi
        return
    with pytest.raises(ConfigError) as error:
        check_pod_fits(two_nodes.client(), cpu, memory)
    assert error.value.message == f"no node of the cluster can give one pod {says}"
    assert "--cpu/--memory" in (error.value.hint or "")


def test_cpu_and_memory_on_different_nodes_is_not_enough(fake_api: FakeApiServer) -> None:
    fake_api.put("/api/v1/nodes/cpu", node("cpu", "8", "1Gi"))
    fake_api.put("/api/v1/nodes/memory", node("memory", "1", "64Gi"))
    with pytest.raises(ConfigError, match=r"4000m of CPU and 8\.0Gi of memory on the same node"):
        check_pod_fits(fake_api.client(), 4000, 8 * 2**30)


def test_without_the_right_to_read_nodes_nothing_is_checked(fake_api: FakeApiServer) -> None:
    fake_api.routes[("GET", "/api/v1/nodes")] = (403, {"kind": "Status", "message": "forbidden"})
    assert node_rooms(fake_api.client()) is None
    check_pod_fits(fake_api.client(), 10**6, 2**60)
