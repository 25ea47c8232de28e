"""Pod の見え方（`mii status` とロールアウトの表示が共有する）: Ready、状態、再起動、経過時間。"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mii_cli.kube.pods import age, is_ready, pod_row, pod_state
from tests.fakes.kube_api import FakeApiServer
from tests.fakes.kube_objects import NAMESPACE, pod, put_pods

NOW = datetime(2025, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("elapsed", "shown"),
    [
        (timedelta(seconds=45), "45s"),
        (timedelta(minutes=3, seconds=59), "3m"),
        (timedelta(hours=2), "2h"),
        (timedelta(days=1, hours=5), "1d"),
        (timedelta(seconds=-5), "0s"),  # 時計のずれで未来の時刻でも負にしない
    ],
)
def test_age_is_short(elapsed: timedelta, shown: str) -> None:
    assert age(NOW - elapsed, NOW) == shown


def test_age_without_a_timestamp_is_a_dash() -> None:
    assert age(None, NOW) == "-"


def test_a_waiting_container_shows_its_reason() -> None:
    assert pod_state(pod("a", ready=False, waiting=("ContainerCreating", ""))) == "ContainerCreating"


def test_a_running_pod_shows_its_phase() -> None:
    assert pod_state(pod("a")) == "Running"


def test_a_terminating_pod_is_neither_ready_nor_shown_as_running() -> None:
    terminating = pod("a")
    terminating.metadata.deletion_timestamp = NOW  # type: ignore[assignment]
    assert pod_state(terminating) == "Terminating"
    assert not is_ready(terminating)


def test_a_row_holds_what_the_tables_show() -> None:
    row = pod_row(pod("a", restarts=2, created="2025-01-01T00:00:00Z"), NOW)
    assert (row.name, row.ready, row.state, row.restarts, row.node, row.ip, row.age) == (
        "a",
        True,
        "Running",
        2,
        "node-1",
        "10.0.0.1",
        "1d",
    )


def test_annotate_pods_annotates_only_the_selected_pods_that_are_not_terminating(
    fake_api: FakeApiServer,
) -> None:
    from mii_cli.kube.pods import annotate_pods

    terminating = pod("stable-c", labels={"app": "model-in-image"})
    terminating.metadata.deletion_timestamp = NOW  # type: ignore[assignment]
    put_pods(
        fake_api,
        pod("stable-b", labels={"app": "model-in-image"}, annotations={"io.mii/model-sha256": "a" * 64}),
        pod("stable-a", labels={"app": "model-in-image"}, ready=False),
        terminating,
        pod("canary-a", labels={"app": "model-in-image-canary", "app.kubernetes.io/name": "model-in-image"}),
        pod("shadow-a", labels={"app": "model-in-image-shadow"}),
    )
    names = annotate_pods(fake_api.client(), NAMESPACE, "app=model-in-image", "io.mii/mirror", "42")
    # Ready でない Pod にも付ける（起きれば設定のファイルを読む）。消えかけの Pod には付けない
    assert names == ["stable-a", "stable-b"]
    patched = sorted(r.path.rsplit("/", 1)[-1] for r in fake_api.methods("PATCH"))
    assert patched == ["stable-a", "stable-b"]
    (request, *_) = fake_api.methods("PATCH")
    assert request.headers["Content-Type"] == "application/apply-patch+yaml"
    assert request.param("fieldManager") == "mii"
    assert request.body["metadata"] == {
        "name": "stable-a",
        "namespace": NAMESPACE,
        "annotations": {"io.mii/mirror": "42"},
    }
    pods = f"/api/v1/namespaces/{NAMESPACE}/pods"
    stable_b = fake_api.objects[f"{pods}/stable-b"]
    # 部分的な適用: 前からの注釈・ラベル・spec・status は残る
    assert stable_b["metadata"]["annotations"] == {"io.mii/model-sha256": "a" * 64, "io.mii/mirror": "42"}
    assert stable_b["metadata"]["labels"] == {"app": "model-in-image"}
    assert stable_b["status"]["phase"] == "Running"
    for other in ("stable-c", "canary-a", "shadow-a"):
        assert "io.mii/mirror" not in (
            fake_api.objects[f"{pods}/{other}"]["metadata"].get("annotations") or {}
        )


def test_annotate_pods_with_no_pod_annotates_nothing(fake_api: FakeApiServer) -> None:
    from mii_cli.kube.pods import annotate_pods

    assert annotate_pods(fake_api.client(), NAMESPACE, "app=model-in-image", "io.mii/mirror", "1") == []
    assert not fake_api.methods("PATCH")
