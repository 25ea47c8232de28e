"""`mii benchmark`: イメージを Pod と同じ制限で動かし、wrk で性能の目標と比べる。"""

from __future__ import annotations

from typing import Annotated

import typer

from mii_cli.commands.options import JsonOption
from mii_cli.errors import CheckFailed
from mii_cli.ui import console as out


def benchmark(
    image: Annotated[
        str | None, typer.Option(help="Image to measure (default: model-in-image:0.1.0, MII_IMAGE_*).")
    ] = None,
    base_image: Annotated[
        str | None, typer.Option(help="Base image, to report the size added (default: MII_BASE_IMAGE).")
    ] = None,
    duration: Annotated[int, typer.Option(help="Seconds per load phase.", min=1, max=600)] = 10,
    connections: Annotated[
        int, typer.Option(help="Connections for the maximum-throughput phase.", min=1)
    ] = 64,
    port: Annotated[
        int,
        typer.Option(
            help="Port to publish on 127.0.0.1, or on the node under minikube docker-env "
            "(the ceiling app uses the next one, the shadow of the mirroring measurement the one after).",
            min=1,
            max=65533,
        ),
    ] = 18000,
    rounds: Annotated[
        int, typer.Option(help="Rounds of ceiling, /predict and V2, measured in turn.", min=1, max=20)
    ] = 3,
    mirror: Annotated[
        bool,
        typer.Option(
            help="Also measure the p99 at 200 req/s with 10% of the requests mirrored to a shadow "
            "container, against the p99 without (max(3, rounds) pairs, local engine only).",
        ),
    ] = True,
    as_json: JsonOption = False,
) -> None:
    """Measure the image at 0.5 CPU / 300 MiB with wrk: share of the ASGI ceiling, p50/p99, memory, size.

    The ceiling is a bare ASGI app started from the same image under the same limits and measured in
    turn with the service, so that the share (service req/s / ceiling req/s) compares across machines.
    The service runs with a mirror configuration that is off for all of these; then a shadow started
    from the same image receives 10% of a fixed 200 req/s load, and the p99 with mirroring is compared
    with the p99 without, in alternating rounds.
    """
    from mii_cli.image import benchmark as bench
    from mii_cli.image.daemon import current_daemon
    from mii_cli.image.docker import docker_client
    from mii_cli.settings import fill, get_cli_settings
    from mii_cli.ui.tables import benchmark_table

    settings = get_cli_settings()
    target = fill(image, settings.default_image)
    daemon = current_daemon()
    address = daemon.publish_address()
    seconds = (3 * rounds + 2) * duration + 15
    if mirror:
        # 組ごとに 2 回の負荷と、入り切りの待ち（約 2 秒）、影の起動と温め
        seconds += max(bench.MIRROR_PAIRS_MIN, rounds) * (2 * duration + 3) + 5
    with out.console.status(f"Benchmarking {target} (about {seconds} s)..."):
        report = bench.run_benchmark(
            docker_client(),
            image=target,
            base_image=fill(base_image, settings.base_image),
            port=port,
            seconds=duration,
            connections=connections,
            rounds=rounds,
            address=address,
            mirror=mirror,
            local_engine=daemon.is_local,
        )
    if as_json:
        out.print_json(report)
    else:
        out.console.print(benchmark_table(report))
        out.info(f"errors: {report.details['errors']} of {report.details['requests']} requests")
    if not report.passed:
        raise CheckFailed("the image misses a performance target", hint="see the table above")


def register(app: typer.Typer) -> None:
    """コマンドを登録する。"""
    app.command()(benchmark)
