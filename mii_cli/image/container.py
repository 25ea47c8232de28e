"""`mii run`: イメージを Pod と同じ制限（0.5 CPU・300 MiB・読み取り専用のルート）でローカルに動かす。

コンテナのポートはこのマシンから届くアドレスにだけ公開する: ローカルのエンジンなら 127.0.0.1、
minikube の docker-env ならノードの IP（image/daemon.py の `publish_address`）。ready になるまで上限付きで
待ち、URL を返す。
`mii benchmark` も同じ起動のしかた（`start_container`）でサービスと天井を動かす。
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from mii_cli.errors import DockerError, WaitTimeout
from mii_cli.image.docker import MANAGED_LABEL, MANAGED_VALUE, DockerClient, local_image, remove_container
from mii_cli.results import Result

CONTAINER_PORT = "8000/tcp"


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
    # ポートを公開するアドレス（エンジンのあるマシンの上の。既定はループバック）
    address: str = "127.0.0.1"
    # 読み取り専用で結び付けるホストのディレクトリ（ホストのパス -> コンテナのパス）
    read_only_binds: dict[str, str] | None = None

    def docker_kwargs(self) -> dict[str, Any]:
        """Docker SDK の containers.run に渡す引数。"""
        kwargs: dict[str, Any] = {
            "name": self.name,
            "detach": True,
            "ports": {CONTAINER_PORT: (self.address, self.port)},
            "nano_cpus": int(self.cpus * 1_000_000_000),
            "mem_limit": self.memory,
            "memswap_limit": self.memory,
            "read_only": self.read_only,
            "tmpfs": {"/tmp": "rw,size=16m"},
            "labels": {MANAGED_LABEL: MANAGED_VALUE},
            "environment": dict(self.environment or {}),
        }
        if self.user is not None:
            kwargs["user"] = self.user
        if self.read_only_binds:
            kwargs["volumes"] = {
                host: {"bind": inside, "mode": "ro"} for host, inside in self.read_only_binds.items()
            }
        return kwargs

    @property
    def url(self) -> str:
        """公開した URL。"""
        return f"http://{self.address}:{self.port}"


@dataclass(frozen=True)
class RunResult(Result):
    """起動したコンテナの情報。"""

    container_id: str
    name: str
    image: str
    url: str
    ready_seconds: float


def wait_ready(
    url: str,
    *,
    timeout: float,
    is_alive: Callable[[], bool],
    logs: Callable[[], str],
    interval: float = 0.05,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """/health/ready が 200 になるまで待ち、かかった秒数を返す。"""
    start = clock()
    with httpx.Client(timeout=1.0) as http:
        while True:
            elapsed = clock() - start
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
            sleep(interval)


def start_container(
    client: DockerClient,
    spec: RunSpec,
    *,
    timeout: float,
    replace: bool = True,
    interval: float = 0.05,
    entrypoint: list[str] | None = None,
) -> RunResult:
    """コンテナを起動し、ready になるまで待つ（interval 秒ごとに /health/ready を確かめる）。

    待っている間の失敗・タイムアウト・Ctrl-C のどれでもコンテナを残さない。
    `entrypoint` を渡すと、同じイメージの別のプログラム（ベンチマークの天井など）を動かす。
    """
    from docker.errors import APIError

    if local_image(client, spec.image) is None:
        raise DockerError(
            f"image {spec.image} not found in the local Docker engine", hint="build it first with `mii build`"
        )
    if replace:
        remove_container(client, spec.name)
    extra = {"entrypoint": entrypoint} if entrypoint is not None else {}
    try:
        container = client.containers.run(spec.image, **spec.docker_kwargs(), **extra)
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
        remove_container(client, spec.name, grace=1)
        raise
    return RunResult(
        container_id=container.id,
        name=spec.name,
        image=spec.image,
        url=spec.url,
        ready_seconds=round(seconds, 3),
    )


class LogFollower:
    """コンテナのログを 1 かたまりずつ文字列で流し続ける（コンテナが止まるか、close() まで）。

    close() はシグナルハンドラからも呼べる: ログの接続のソケットを閉じ、読んでいる側の繰り返しを
    普通に終わらせる。Ctrl-C を KeyboardInterrupt として任意の位置（接続プールのロックの中など）に
    投げ込まないので、後の停止・削除の要求が確実に動く。読みかけの接続がプールへ戻ることもない。
    """

    def __init__(self, client: DockerClient, name: str) -> None:
        """ログの追跡を始める（Docker SDK の CancellableStream）。"""
        self._stream = client.containers.get(name).logs(stream=True, follow=True)
        self._closed = False

    def __iter__(self) -> Iterator[str]:
        """ログを流す。close() の後、またはコンテナが止まったら終わる。"""
        try:
            for chunk in self._stream:
                if self._closed:
                    return
                yield bytes(chunk).decode(errors="replace").rstrip()
        except (OSError, ValueError):
            # 別の経路（シグナルハンドラ）でソケットが閉じられた後の読み取り
            if not self._closed:
                raise
        finally:
            self.close()

    def close(self) -> None:
        """ログの接続を閉じる（何度呼んでもよい）。"""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._stream.close()
