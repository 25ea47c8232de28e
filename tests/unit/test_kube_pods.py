"""Pod の見え方（`mii status` とロールアウトの表示が共有する）: Ready、状態、再起動、経過時間。"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mii_cli.kube.pods import age, is_ready, pod_row, pod_state
from tests.fakes.kube_objects import pod

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
