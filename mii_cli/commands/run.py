"""`mii run` / `mii stop`: イメージを Pod と同じ制限で 127.0.0.1 に動かす／止める。"""

from __future__ import annotations

import signal
from typing import Annotated

import typer

from mii_cli.commands.options import JsonOption
from mii_cli.ui import console as out

NameOption = Annotated[
    str | None, typer.Option(help="Container name (default: mii-local, MII_CONTAINER_NAME).")
]


# ログの追跡を終わらせ、コンテナを止めて消すシグナル
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run(
    image: Annotated[
        str | None, typer.Option(help="Image to run (default: model-in-image:0.1.0, MII_IMAGE_*).")
    ] = None,
    port: Annotated[
        int,
        typer.Option(
            help="Port to publish on 127.0.0.1 (on the node's IP under minikube docker-env).",
            min=1,
            max=65535,
        ),
    ] = 8000,
    name: NameOption = None,
    cpus: Annotated[
        float | None, typer.Option(help="CPU limit (default: 0.5 like the pod, MII_CPUS).")
    ] = None,
    memory: Annotated[
        str | None, typer.Option(help="Memory limit (default: 300m like the pod, MII_MEMORY).")
    ] = None,
    user: Annotated[
        str | None, typer.Option(help="Run as this UID[:GID] instead of the image's user.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds to wait for readiness (default: 30, MII_READY_TIMEOUT).")
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Leave it running in the background.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Run the image locally with the pod's limits (0.5 CPU, 300 MiB, read-only root) on 127.0.0.1."""
    from mii_cli.commands.requests import run_spec
    from mii_cli.image import container as running
    from mii_cli.image.docker import docker_client, remove_container
    from mii_cli.settings import fill, get_cli_settings

    settings = get_cli_settings()
    spec = run_spec(image=image, name=name, port=port, cpus=cpus, memory=memory, user=user)
    client = docker_client()
    with out.console.status(f"Starting {spec.image} and waiting for /health/ready..."):
        result = running.start_container(client, spec, timeout=fill(timeout, settings.ready_timeout))
    if as_json:
        out.print_json(result)
    else:
        out.success(f"{result.image} is ready at {result.url} after {result.ready_seconds:.2f} s")
    if detach:
        stop_command = "mii stop" + (f" --name {spec.name}" if spec.name != settings.container_name else "")
        out.info(f"check it: `mii smoke-test --url {result.url}`; stop it: `{stop_command}`")
        return
    out.info("Ctrl-C stops and removes the container")
    # Ctrl-C（SIGINT）と SIGTERM（プロセスマネージャからの停止）は、ログの追跡を閉じて繰り返しを
    # 終わらせる。その後コンテナを止めて消す（その間の 2 回目の Ctrl-C は普通に中断する）
    logs = running.LogFollower(client, spec.name)
    handlers = {sig: signal.signal(sig, lambda _signum, _frame: logs.close()) for sig in _STOP_SIGNALS}
    try:
        for line in logs:
            out.console.print(line, markup=False)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        logs.close()
        remove_container(client, spec.name)
        out.success(f"stopped and removed {spec.name}")


def stop(name: NameOption = None) -> None:
    """Stop and remove the container started by `mii run` (nothing to stop is not an error)."""
    from mii_cli.image.docker import docker_client, remove_container
    from mii_cli.settings import fill, get_cli_settings

    target = fill(name, get_cli_settings().container_name)
    with out.console.status(f"Stopping {target}..."):
        removed = remove_container(docker_client(), target)
    out.success(f"stopped and removed {target}" if removed else f"no container named {target}")


def register(app: typer.Typer) -> None:
    """コマンドを登録する。"""
    app.command()(run)
    app.command()(stop)
