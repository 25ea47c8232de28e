"""`mii run`: イメージを Pod と同じ制限（0.5 CPU・300 MiB・読み取り専用のルート）でローカルに動かす。

コンテナのポートは 127.0.0.1 にだけ公開する。ready になるまで上限付きで待ち、URL を表示する。
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from mii_cli.errors import DockerError, WaitTimeout

CONTAINER_PORT = "8000/tcp"
_LABEL = "io.mii.managed-by"


@dataclass(frozen=True)
class RunSpec:
    """コンテナの起動条件（純粋なデータ）。"""

    image: str
    name: str
    port: int
    cpus: float = 0.5
    memory: str = "300m"
    read_only: bool = True
    user: str | None = None
    environment: dict[str, str] | None = None

    def docker_kwargs(self) -> dict[str, Any]:
        """Docker SDK の containers.run に渡す引数。"""
        kwargs: dict[str, Any] = {
            "name": self.name,
            "detach": True,
            "ports": {CONTAINER_PORT: ("127.0.0.1", self.port)},
            "nano_cpus": int(self.cpus * 1_000_000_000),
            "mem_limit": self.memory,
            "memswap_limit": self.memory,
            "read_only": self.read_only,
            "tmpfs": {"/tmp": "rw,size=16m"},
            "labels": {_LABEL: "mii"},
            "environment": dict(self.environment or {}),
        }
        if self.user is not None:
            kwargs["user"] = self.user
        return kwargs

    @property
    def url(self) -> str:
        """公開した URL。"""
        return f"http://127.0.0.1:{self.port}"


@dataclass
class RunResult:
    """起動したコンテナの情報。"""

    container_id: str
    name: str
    image: str
    url: str
    ready_seconds: float

    def as_dict(self) -> dict[str, Any]:
        """--json 用の辞書。"""
        return asdict(self)


def remove_container(client: Any, name: str, *, grace: int = 25) -> bool:
    """mii が起動した同名のコンテナを止めて消す。無ければ False（エラーにしない）。

    mii のラベルが無いコンテナ（他の人のもの）には触れず、DockerError にする。
    """
    from docker.errors import NotFound

    try:
        container = client.containers.get(name)
    except NotFound:
        return False
    if (container.labels or {}).get(_LABEL) != "mii":
        raise DockerError(
            f"container {name} was not started by mii; leaving it alone",
            hint="pick another name with --name, or remove it yourself with `docker rm -f`",
        )
    try:
        if container.status == "running":
            container.stop(timeout=grace)
        container.remove(force=True)
    except NotFound:
        return False
    return True


def wait_ready(
    url: str,
    *,
    timeout: float,
    is_alive: Callable[[], bool],
    logs: Callable[[], str],
    interval: float = 0.05,
) -> float:
    """/health/ready が 200 になるまで待ち、かかった秒数を返す。"""
    start = time.monotonic()
    with httpx.Client(timeout=1.0) as http:
        while True:
            elapsed = time.monotonic() - start
            try:
                if http.get(f"{url}/health/ready").status_code == 200:
                    return elapsed
            except httpx.TransportError:
                pass
            if not is_alive():
                raise DockerError(
                    "the container exited before it became ready",
                    hint="read its log above; `mii build` checks the model before baking it",
                    details=logs(),
                )
            if elapsed > timeout:
                raise WaitTimeout(
                    f"the container was not ready after {timeout:.0f} s",
                    hint="raise --timeout, or inspect it with `docker logs`",
                    details=logs(),
                )
            time.sleep(interval)


def start_container(
    client: Any, spec: RunSpec, *, timeout: float, replace: bool = True, interval: float = 0.05
) -> RunResult:
    """コンテナを起動し、ready になるまで待つ（interval 秒ごとに /health/ready を確かめる）。"""
    from docker.errors import APIError, ImageNotFound

    try:
        client.images.get(spec.image)
    except ImageNotFound:
        raise DockerError(
            f"image {spec.image} not found in the local Docker engine", hint="build it first with `mii build`"
        ) from None
    if replace:
        remove_container(client, spec.name)
    try:
        container = client.containers.run(spec.image, **spec.docker_kwargs())
    except APIError as error:
        raise DockerError(f"cannot start the container: {error.explanation or error}") from None

    def alive() -> bool:
        container.reload()
        return bool(container.status in ("created", "running"))

    def tail() -> str:
        return str(container.logs(tail=20).decode(errors="replace"))

    try:
        seconds = wait_ready(spec.url, timeout=timeout, is_alive=alive, logs=tail, interval=interval)
    except BaseException:
        # 待っている間の失敗・タイムアウト・Ctrl-C のどれでもコンテナを残さない
        remove_container(client, spec.name, grace=1)
        raise
    return RunResult(container.id, spec.name, spec.image, spec.url, round(seconds, 3))


def follow_logs(client: Any, name: str) -> Any:
    """コンテナのログを流し続けるイテレータ。"""
    return client.containers.get(name).logs(stream=True, follow=True)
