"""進み具合の表示（Rich）: ビルドの進捗バー、デプロイの行とロールアウトのライブ表示、待つ間のスピナー。

下の層は進み具合を値（`BuildProgress`・手順の `StepStatus` など）でコールバックに渡す。
ここのビューがそれを受けて描く。どのビューも `with` を抜けるとき（失敗したときも）表示を片付ける。
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Self

from rich.console import Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.status import Status
from rich.text import Text

from mii_cli.image.build import BuildProgress
from mii_cli.kube.rollout import RolloutProgress
from mii_cli.kube.teardown import NamespaceDeleting
from mii_cli.ui import console as out
from mii_cli.ui.tables import pod_table
from mii_cli.workflows.steps import StepStatus


@contextmanager
def build_progress() -> Iterator[Callable[[BuildProgress], None]]:
    """ビルドのステップを進捗バーで見せるコールバックを渡す（`with` を抜けると消える）。"""
    with Progress(
        TextColumn("[bold]Building[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=out.console,
        transient=True,
    ) as progress:
        task = progress.add_task("validating the model", total=None)

        def update(state: BuildProgress) -> None:
            progress.update(
                task, total=state.total or None, completed=state.current, description=state.description
            )

        yield update


def rollout_view(event: RolloutProgress) -> Group:
    """ロールアウトのライブ表示の中身（見出しと Pod の表）。"""
    title = Text.from_markup(
        f"Rolling out [bold]{event.deployment}[/bold]: ready {event.ready}/{event.desired}, "
        f"updated {event.updated}/{event.desired} [dim]({event.elapsed:.0f}s of {event.timeout:.0f}s)[/dim]"
    )
    return Group(title, pod_table(event.pods, name_header="pod", age=False))


class _Transient:
    """スピナーかライブ表示を 1 つだけ出しておき、次の表示の前と終わりに消す。"""

    def __init__(self) -> None:
        self._status: Status | None = None
        self._live: Live | None = None

    def spin(self, message: str) -> None:
        """スピナーを出す。"""
        self.clear()
        self._status = out.console.status(message)
        self._status.start()

    def show(self, renderable: Group) -> None:
        """ライブ表示を出すか、中身を差し替える。"""
        if self._live is None:
            self.clear()
            self._live = Live(renderable, console=out.console, transient=True, refresh_per_second=4)
            self._live.start()
        else:
            self._live.update(renderable)

    def clear(self) -> None:
        """出ているスピナーとライブ表示を消す。"""
        if self._status is not None:
            self._status.stop()
            self._status = None
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __enter__(self) -> Self:
        """表示を始める（まだ何も出さない）。"""
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        """表示を片付ける。"""
        self.clear()


class DeployView(_Transient):
    """`mii deploy`・`mii up`・`mii promote`・`mii rollback` の手順の知らせを描く。

    始めた手順はスピナー、途中経過はロールアウトのライブ表示、ほかは 1 行（状態で記号が決まる）。
    """

    def __call__(self, status: StepStatus) -> None:
        """知らせを 1 つ描く。"""
        if status.state == "progress":
            assert status.progress is not None
            self.show(rollout_view(status.progress))
            return
        self.clear()
        if status.state == "start":
            self.spin(status.message)
        else:
            LINES[status.state](status.message)


# 状態ごとの 1 行の出し方
LINES: dict[str, Callable[[str], None]] = {"info": out.info, "done": out.success, "warn": out.warn}


class TeardownView(_Transient):
    """`mii teardown` の待ち時間をスピナーで見せる。"""

    def __call__(self, event: NamespaceDeleting) -> None:
        """Namespace が消えるのを待つ間、スピナーを出す。"""
        self.spin(f"Waiting for namespace {event.namespace} to be deleted...")
