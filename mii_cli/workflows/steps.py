"""手順の知らせ方: どの手順も 1 つのコールバックに `StepStatus` を渡す（描くのは CLI の層）。

デプロイ・昇格・取り消しは小さな手順の並びで、手順はそれぞれ「始めた（待つ間のスピナー）」「知らせ」
「済んだ」「気をつけて」「途中経過（ロールアウトの表）」のどれかを、人が読む 1 行と一緒に知らせる。
手順を足しても知らせの種類は増えないので、描く側（ui/live.py）は状態ごとの 1 つの分岐で済む
（kind の `pkg/cluster/internal/create/actions/*` が `ctx.Status` に知らせるのと同じ形）。
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from mii_cli.kube.rollout import RolloutProgress

State = Literal["start", "info", "done", "warn", "progress"]


@dataclass(frozen=True)
class StepStatus:
    """手順の状態 1 つ: 手順の名前、状態、人が読む 1 行（英語）、途中経過（`progress` のときだけ）。"""

    step: str
    state: State
    message: str = ""
    progress: RolloutProgress | None = None


Report = Callable[[StepStatus], None]


def _ignore(status: StepStatus) -> None:
    """知らせを捨てる（コールバックが無いとき）。"""


class Status:
    """手順が状態を知らせる口。コールバックが無ければ何もしない。"""

    def __init__(self, report: Report | None = None) -> None:
        self.report: Report = report or _ignore

    def start(self, step: str, message: str) -> None:
        """時間のかかることを始めた（次の知らせまでスピナー）。"""
        self.report(StepStatus(step, "start", message))

    def info(self, step: str, message: str) -> None:
        """知らせ（済んだことではない）。"""
        self.report(StepStatus(step, "info", message))

    def done(self, step: str, message: str) -> None:
        """済んだ。"""
        self.report(StepStatus(step, "done", message))

    def warn(self, step: str, message: str) -> None:
        """続けるが、利用者が知っておくべきこと。"""
        self.report(StepStatus(step, "warn", message))

    def progress(self, step: str) -> Callable[[RolloutProgress], None]:
        """ロールアウトの途中経過を知らせるコールバック（`wait_for_rollout` の `on_progress` に渡す）。"""

        def report(progress: RolloutProgress) -> None:
            self.report(StepStatus(step, "progress", progress=progress))

        return report
