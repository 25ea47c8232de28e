"""locust で負荷をかける部分（`mii load-test` の中でだけ読み込む）。

locust は import した時点で gevent による monkeypatch（ssl を含む）を行うので、このモジュールは
ssl・urllib3 を使うモジュールより先に読み込まなければならない。`mii_cli.probe.load_test.run_load_test()` が
最初に読み込む。判定と集計は loadtest.py にある。
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import gevent
from gevent import monkey

# urllib3 が ssl を当てる前に読み込まれていると、locust の読み込みが RecursionError で落ちる
# （urllib3 が元の SSLContext を掴んだまま残るため）。分かりにくい失敗の代わりに原因を言う。
if "urllib3" in sys.modules and not monkey.is_module_patched("ssl"):
    raise ImportError(
        "mii_cli.probe.locust_runner must be imported before urllib3 (locust's gevent monkeypatch covers ssl)"
    )

from locust import FastHttpUser, constant_throughput, task
from locust.env import Environment

# 途中経過を知らせる間隔（秒）
TICK_SECONDS = 5.0


@dataclass(frozen=True)
class LoadPlan:
    """1 回の負荷試験の条件: 送り先・送る本文・ユーザー数・全体の requests/s の上限。"""

    url: str
    paths: tuple[str, ...]
    bodies: tuple[str, ...]
    users: int
    rate: float | None
    timeout_s: float

    @property
    def user_rate(self) -> float | None:
        """1 ユーザーの上限 = 全体の上限 / ユーザー数（locust の constant_throughput はタスク単位）。"""
        return self.rate / self.users if self.rate else None

    @property
    def period(self) -> float:
        """1 ユーザーが 1 回送る周期（秒。上限が無ければ 0）。"""
        return self.users / self.rate if self.rate else 0.0


class LoadUser(FastHttpUser):
    """`plan` の本文を順に、`plan` のパスのどれかへ 1 行ずつ POST し続けるユーザー。"""

    abstract = True
    plan: ClassVar[LoadPlan]

    def __init__(self, environment: Any) -> None:
        """ユーザーごとに、送る行の位置を持つ。"""
        super().__init__(environment)
        self.row_index = -1

    def wait_time(self) -> float:
        """上限があれば周期に合わせて待ち、無ければ待たない。"""
        rate = self.plan.user_rate
        return 0.0 if rate is None else float(constant_throughput(rate)(self))

    def on_start(self) -> None:
        """上限があるときは最初の 1 回を周期内のランダムな時点にずらす。

        全ユーザーが同時に送る「波」は、サーバーではなく負荷のかけ方による遅延を p99 に加えてしまう。
        """
        if self.plan.period:
            gevent.sleep(random.uniform(0.0, self.plan.period))

    @task
    def post_row(self) -> None:
        """次の行を 1 つ送る。"""
        self.row_index = (self.row_index + 1) % len(self.plan.bodies)
        path = random.choice(self.plan.paths)
        self.client.post(
            path,
            data=self.plan.bodies[self.row_index],
            headers={"Content-Type": "application/json"},
            name=path,
        )


def user_class(plan: LoadPlan) -> type[LoadUser]:
    """この負荷試験の条件を持つユーザーのクラス。"""

    class PlannedUser(LoadUser):
        abstract = False
        host = plan.url
        network_timeout = plan.timeout_s
        connection_timeout = plan.timeout_s

    PlannedUser.plan = plan
    return PlannedUser


def _tick(start: float, on_tick: Callable[[float], None]) -> None:
    """約 5 秒ごとに経過秒数を知らせる（グリーンレットとして動かす）。"""
    while True:
        gevent.sleep(TICK_SECONDS)
        on_tick(time.monotonic() - start)


def run(
    plan: LoadPlan,
    *,
    spawn_rate: float,
    duration_s: float,
    on_request: Callable[..., None],
    on_tick: Callable[[float], None] | None = None,
) -> float:
    """locust をヘッドレスで duration_s 秒動かし、実際にかかった秒数を返す。

    リクエストごとに `on_request`（locust の events.request のリスナー）、約 5 秒ごとに `on_tick` を呼ぶ。
    """
    environment = Environment(user_classes=[user_class(plan)], host=plan.url)
    environment.events.request.add_listener(on_request)  # type: ignore[no-untyped-call]
    runner = environment.create_local_runner()
    start = time.monotonic()
    ticker = gevent.spawn(_tick, start, on_tick) if on_tick is not None else None
    runner.start(plan.users, spawn_rate=spawn_rate)
    gevent.spawn_later(duration_s, runner.quit)
    runner.greenlet.join()
    elapsed = time.monotonic() - start
    if ticker is not None:
        ticker.kill(block=False)
    return elapsed
