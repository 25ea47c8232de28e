"""`mii load-test`: 動いているサービスに locust で負荷をかけ、目標と比べる。"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from mii_cli.commands.options import JsonOption, LoadEndpoint
from mii_cli.errors import CheckFailed
from mii_cli.ui import console as out

if TYPE_CHECKING:
    from mii_cli.probe.load_test import LoadProgress


def show_progress(progress: LoadProgress) -> None:
    """途中経過を 1 行で出す。"""
    p99 = "-" if progress.p99_ms is None else f"{progress.p99_ms:.1f} ms"
    out.info(
        f"{progress.elapsed_s:5.1f} s  {progress.requests:,} requests  {progress.requests_per_s:,.1f}/s  "
        f"p99 {p99}  {progress.failures} failed"
    )


def load_test(
    url: Annotated[str, typer.Option(help="Base URL of a running service, e.g. http://127.0.0.1:8000.")],
    duration: Annotated[str, typer.Option(help="How long to run: 30s, 2m, 1m30s.")] = "30s",
    users: Annotated[int, typer.Option(help="Concurrent users.", min=1)] = 20,
    spawn_rate: Annotated[float, typer.Option(help="Users started per second.", min=0.1)] = 20.0,
    rate: Annotated[
        float | None,
        typer.Option(help="Cap on total requests/s (default: as fast as the users can go).", min=0.1),
    ] = None,
    endpoint: Annotated[
        LoadEndpoint, typer.Option(case_sensitive=False, help="What to call: one row per request.")
    ] = LoadEndpoint.predict,
    as_json: JsonOption = False,
) -> None:
    """Load-test a running service with locust; PASS needs > 100 requests/s and p99 < 100 ms."""
    # locust は import 時に gevent の monkeypatch（ssl を含む）を行う。ssl・urllib3 を読み込む
    # モジュール（kubernetes を使う表など）より先に当てないと、urllib3 が当てる前の SSLContext を
    # 掴んだまま残り、locust の読み込みが RecursionError で落ちる。loadtest は ssl を読み込まず、
    # run_load_test() が最初に locust を読み込むので、表は負荷をかけた後で読み込む。
    from mii_cli.probe import load_test as loadtest

    options = loadtest.LoadTestOptions(
        url=url,
        duration_s=loadtest.parse_duration(duration),
        users=users,
        spawn_rate=spawn_rate,
        rate=rate,
        endpoint=endpoint.value,
    )
    options.validate()
    out.info(loadtest.describe(options))
    if rate is not None and rate <= loadtest.TARGET_MIN_RPS:
        out.warn(f"--rate {rate:g} is not above the throughput target of {loadtest.TARGET_MIN_RPS:g}")
    result = loadtest.run_load_test(options, progress=show_progress)
    from mii_cli.ui.tables import load_test_table

    if as_json:
        out.print_json(result)
    else:
        out.console.print(load_test_table(result))
    for message, count in result.errors.items():
        out.warn(f"{count:,} × {message}")
    if not result.passed:
        raise CheckFailed(
            "load test FAILED: " + "; ".join(result.reasons),
            hint="compare with the targets of the specification (> 100 requests/s, p99 < 100 ms)",
        )
    out.success(
        f"load test PASSED: {result.requests_per_s:,.1f} requests/s, p99 {result.latency_ms['p99']:.1f} ms"
    )


def register(app: typer.Typer) -> None:
    """コマンドを登録する。"""
    app.command("load-test")(load_test)
