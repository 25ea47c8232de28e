"""`mii doctor`: 何かが動かないときに最初に走らせる点検。

Docker エンジン・ベースイメージ・ビルドのネットワーク（`mii build`・`mii run` に必須）と、
kube context・ビルドの行き先（docker-env）・metrics API・イメージの渡し方・wrk・ポート 8000
（使うコマンドだけに要る、助言）を確かめ、
点検ごとに名前・合否・詳細・対処（`DoctorCheck`）を返す。描くのは CLI の層。

点検は `Probe`（Docker への接続、クラスタへの接続、PATH の検索、ポート）を通して外を見るので、
テストでは相手を差し替えられる。どの点検も待ち時間に上限がある。
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from mii_cli.errors import MiiError
from mii_cli.image.daemon import DockerDaemon, current_daemon, stray_profile, unset_hint
from mii_cli.image.delivery import check_daemon
from mii_cli.image.docker import (
    DockerClient,
    docker_client,
    engine_version,
    local_image,
    network_exists,
    pull_problem,
)
from mii_cli.references import check_reference
from mii_cli.results import Result, hidden
from service.constants import DEFAULT_PORT

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from mii_cli.kube.cluster import ClusterInfo

# クラスタへの接続: kube context の名前（None は今のもの） -> (API クライアント, クラスタの情報)
Connect = Callable[[str | None], "tuple[ApiClient, ClusterInfo]"]

# Docker エンジンとレジストリに尋ねるときの待ち時間の上限（秒）
DOCKER_TIMEOUT = 30.0
REGISTRY_TIMEOUT = 5.0


@dataclass(frozen=True)
class DoctorCheck(Result):
    """1 つの点検の結果。`required` の点検が通らなければ `mii doctor` は失敗する（JSON には出さない）。"""

    name: str
    ok: bool
    detail: str
    hint: str | None = None
    required: bool = hidden(default=False)


@dataclass(frozen=True)
class DoctorReport(Result):
    """すべての点検の結果。"""

    checks: list[DoctorCheck]

    @property
    def passed(self) -> bool:
        """必須の点検がすべて通ったか（助言の点検は合否に数えない）。"""
        return all(check.ok for check in self.checks if check.required)

    @property
    def problems(self) -> list[DoctorCheck]:
        """通らなかった必須の点検。"""
        return [check for check in self.checks if check.required and not check.ok]


def _connect_docker() -> DockerClient:
    """Docker エンジンに接続する（点検では長く待たない）。"""
    return docker_client(timeout=DOCKER_TIMEOUT)


def _connect_cluster(context: str | None) -> tuple[ApiClient, ClusterInfo]:
    """今の（または指定の）kube context のクラスタに接続する。"""
    from mii_cli.kube.cluster import connect

    return connect(context)


@dataclass
class Probe:
    """点検する相手。Docker とクラスタへの接続は 1 度だけ試し、結果（または失敗）を覚えておく。

    ベースイメージ・ビルドのネットワーク・レジストリは、CLI の層が設定から埋めて渡す。
    """

    base_image: str
    build_network: str | None
    registry: str | None
    context: str | None = None
    docker: Callable[[], DockerClient] = _connect_docker
    connect: Connect = _connect_cluster
    which: Callable[[str], str | None] = shutil.which
    port: int = DEFAULT_PORT
    # Docker の呼び出しが届くエンジン（DOCKER_HOST・minikube の docker-env）と、DOCKER_HOST の無いまま
    # 残った MINIKUBE_ACTIVE_DOCKERD
    daemon: DockerDaemon = field(default_factory=current_daemon)
    stray_profile: str | None = field(default_factory=stray_profile)
    _docker: Any = field(default=None, init=False, repr=False)
    _cluster: Any = field(default=None, init=False, repr=False)

    def docker_engine(self) -> DockerClient:
        """Docker エンジンのクライアント（届かなければ MiiError。2 度目も同じ失敗）。"""
        if self._docker is None:
            self._docker = _attempt(self.docker)
        return _outcome(self._docker)

    def cluster(self) -> tuple[ApiClient, ClusterInfo]:
        """クラスタの API クライアントと ClusterInfo（届かなければ MiiError）。"""
        if self._cluster is None:
            self._cluster = _attempt(lambda: self.connect(self.context))
        client, info = _outcome(self._cluster)
        return client, info


def _attempt(action: Callable[[], Any]) -> tuple[Any, MiiError | None]:
    """action を 1 度だけ実行し、(結果, 失敗) を返す。"""
    try:
        return action(), None
    except MiiError as error:
        return None, error


def _outcome(attempt: tuple[Any, MiiError | None]) -> Any:
    """覚えておいた結果を返すか、覚えておいた失敗を投げ直す。"""
    value, error = attempt
    if error is not None:
        raise error
    return value


def _failed(name: str, error: MiiError, *, required: bool, prefix: str = "") -> DoctorCheck:
    """MiiError を点検の失敗にする。"""
    return DoctorCheck(name=name, ok=False, detail=prefix + error.message, hint=error.hint, required=required)


# --- 必須: Docker でイメージを作り、動かすのに要るもの ----------------------------------------


def check_docker(probe: Probe) -> DoctorCheck:
    """Docker エンジンに届き、版が読めるか。"""
    try:
        client = probe.docker_engine()
        version = engine_version(client)
    except MiiError as error:
        return _failed("docker", error, required=True, prefix=f"{probe.daemon.describe()}: ")
    return DoctorCheck(
        name="docker", ok=True, detail=f"{probe.daemon.describe()}: Docker {version}", required=True
    )


def check_base_image(probe: Probe) -> DoctorCheck:
    """ベースイメージがローカルにあるか、無ければエンジンがレジストリから取れそうか。"""
    from mii_cli.image.build import LOCAL_BASE_HINT

    base = probe.base_image
    try:
        check_reference(base, "MII_BASE_IMAGE")
        client = probe.docker_engine()
        image = local_image(client, base)
    except MiiError as error:
        return _failed("base-image", error, required=True, prefix=f"cannot look for {base}: ")
    if image is not None:
        size = int(image.attrs.get("Size", 0)) / 1e6
        return DoctorCheck(
            name="base-image", ok=True, detail=f"{base} is present locally ({size:.0f} MB)", required=True
        )
    problem = pull_problem(client, base)
    if problem is None:
        return DoctorCheck(
            name="base-image",
            ok=True,
            detail=f"{base} is not local; the engine can pull it from its registry",
            required=True,
        )
    return DoctorCheck(
        name="base-image",
        ok=False,
        detail=f"{base} is not local and the engine cannot pull it: {problem}",
        hint=f"without a registry, {LOCAL_BASE_HINT}",
        required=True,
    )


def check_build_network(probe: Probe) -> DoctorCheck:
    """ビルドの RUN のネットワーク（MII_BUILD_NETWORK）がエンジンにあるか（無ければ既定のネットワーク）。"""
    network = probe.build_network
    if network is None:
        return DoctorCheck(
            name="build-network",
            ok=True,
            detail="RUN steps use the engine's default network (MII_BUILD_NETWORK is not set)",
            required=True,
        )
    try:
        exists = network_exists(probe.docker_engine(), network)
    except MiiError as error:
        return _failed("build-network", error, required=True, prefix=f"cannot look for network {network}: ")
    if exists:
        return DoctorCheck(
            name="build-network",
            ok=True,
            detail=f"RUN steps use the {network} network (MII_BUILD_NETWORK)",
            required=True,
        )
    return DoctorCheck(
        name="build-network",
        ok=False,
        detail=f"MII_BUILD_NETWORK={network} is not a network of the Docker engine",
        hint="use MII_BUILD_NETWORK=host, or unset it (see `docker network ls`)",
        required=True,
    )


# --- 助言: 使うコマンドだけに要るもの --------------------------------------------------------


def check_kube_context(probe: Probe) -> DoctorCheck:
    """kube context のクラスタに届くか、その版と種類（minikube・kind・その他）。"""
    try:
        _, info = probe.cluster()
    except MiiError as error:
        return _failed("kube-context", error, required=False)
    return DoctorCheck(
        name="kube-context",
        ok=True,
        detail=f"{info.context} ({info.flavor}) at {info.server}, Kubernetes {info.version}",
    )


def check_build_target(probe: Probe) -> DoctorCheck:
    """ビルドがどのエンジンへ行き、今のクラスタがそのイメージを見るか（minikube の docker-env）。"""
    name = "build-target"
    daemon = probe.daemon
    if probe.stray_profile is not None:
        return DoctorCheck(
            name=name,
            ok=False,
            detail=f"MINIKUBE_ACTIVE_DOCKERD={probe.stray_profile} is set but DOCKER_HOST is not, "
            "so builds go to the local engine, not the node's",
            hint=f"set both again: eval $(minikube -p {probe.stray_profile} docker-env); "
            f"or clear both: {unset_hint(probe.stray_profile)}",
        )
    try:
        _, info = probe.cluster()
    except MiiError:
        return DoctorCheck(
            name=name, ok=True, detail=f"builds go to {daemon.describe()} (no cluster to compare)"
        )
    try:
        check_daemon(info, daemon)
    except MiiError as error:
        return _failed(name, error, required=False)
    if daemon.docker_env:
        seen = f"the cluster of {info.context} uses them without a load"
    elif info.flavor in ("minikube", "kind"):
        seen = f"mii deploy loads them into the {info.flavor} nodes ({info.name})"
    elif info.flavor == "docker-desktop":
        seen = f"the cluster of {info.context} uses the local engine's images"
    else:
        seen = f"the cluster of {info.context} sees them only through a registry (MII_REGISTRY)"
    return DoctorCheck(name=name, ok=True, detail=f"builds go to {daemon.describe()}; {seen}")


def check_metrics_api(probe: Probe) -> DoctorCheck:
    """metrics API（metrics-server）が答えるか（HPA が CPU 使用率を読むのに要る）。"""
    from mii_cli.workflows.deploy import METRICS_PATH, metrics_api_available, metrics_hint

    try:
        client, info = probe.cluster()
        served = metrics_api_available(client)
    except MiiError as error:
        return _failed("metrics-api", error, required=False, prefix="no cluster to ask: ")
    if served:
        return DoctorCheck(
            name="metrics-api", ok=True, detail=f"{METRICS_PATH} is served (the HPA reads CPU)"
        )
    return DoctorCheck(
        name="metrics-api",
        ok=False,
        detail=f"{METRICS_PATH} is not served, so the HPA cannot read CPU usage",
        hint=f"enable it with: {metrics_hint(info)}",
    )


def registry_problem(registry: str, *, timeout: float = REGISTRY_TIMEOUT) -> str | None:
    """レジストリが `GET /v2/` に答えるか（200 か 401 なら答えている）。答えなければ理由。

    ループバックのレジストリは Docker と同じく http、それ以外は https で尋ねる。
    """
    host = registry.strip().rstrip("/").split("/", 1)[0]
    loopback = urlsplit(f"//{host}").hostname in ("localhost", "127.0.0.1", "::1")
    url = f"{'http' if loopback else 'https'}://{host}/v2/"
    try:
        status = httpx.get(url, timeout=timeout).status_code
    except httpx.HTTPError as error:
        return f"{url}: {type(error).__name__}: {error}"
    if status in (200, 401):
        return None
    return f"{url} answered HTTP {status}, not the registry API"


def check_image_loader(probe: Probe) -> DoctorCheck:
    """イメージをクラスタへ渡す手段: MII_REGISTRY のレジストリ、または minikube・kind のコマンド。"""
    registry = probe.registry
    if registry:
        problem = registry_problem(registry)
        if problem is None:
            return DoctorCheck(
                name="image-loader", ok=True, detail=f"push to MII_REGISTRY={registry} (answers /v2/)"
            )
        return DoctorCheck(
            name="image-loader",
            ok=False,
            detail=f"MII_REGISTRY={registry} does not answer: {problem}",
            hint="start the registry, or point MII_REGISTRY at one the cluster pulls from",
        )
    try:
        _, info = probe.cluster()
    except MiiError as error:
        return _failed("image-loader", error, required=False, prefix="no cluster to load into: ")
    daemon = probe.daemon
    if daemon.docker_env and info.flavor == "minikube" and info.name == daemon.minikube_profile:
        return DoctorCheck(
            name="image-loader",
            ok=True,
            detail=f"none needed: builds go into minikube {info.name}'s node (docker-env)",
        )
    if info.flavor in ("minikube", "kind"):
        path = probe.which(info.flavor)
        if path is not None:
            return DoctorCheck(name="image-loader", ok=True, detail=f"load into {info.flavor} with {path}")
        return DoctorCheck(
            name="image-loader",
            ok=False,
            detail=f"the context is {info.flavor}, but {info.flavor} is not on PATH",
            hint=f"install {info.flavor}, or set MII_REGISTRY to a registry the cluster pulls from",
        )
    if info.flavor == "docker-desktop":
        return DoctorCheck(
            name="image-loader", ok=True, detail="the cluster uses the local Docker engine's images"
        )
    return DoctorCheck(
        name="image-loader",
        ok=False,
        detail=f"context {info.context} is neither minikube nor kind and MII_REGISTRY is not set",
        hint="set MII_REGISTRY to a registry the cluster pulls from (the test cluster serves 127.0.0.1:5000)",
    )


def check_wrk(probe: Probe) -> DoctorCheck:
    """wrk（`mii benchmark` の負荷生成器）が PATH にあるか。"""
    path = probe.which("wrk")
    if path is not None:
        return DoctorCheck(name="wrk", ok=True, detail=f"{path} (for mii benchmark)")
    return DoctorCheck(
        name="wrk",
        ok=False,
        detail="wrk is not on PATH, so mii benchmark cannot run",
        hint="install it: `sudo apt-get install wrk`",
    )


def port_problem(port: int, host: str = "127.0.0.1") -> str | None:
    """ポートで待ち受けられるか（使われていれば理由）。"""
    try:
        with socket.create_server((host, port)):
            return None
    except OSError as error:
        return error.strerror or str(error)


def check_port(probe: Probe) -> DoctorCheck:
    """127.0.0.1 のポート（既定 8000。`mii serve`・`mii run` が使う）が空いているか。"""
    name = f"port-{probe.port}"
    problem = port_problem(probe.port)
    if problem is None:
        return DoctorCheck(name=name, ok=True, detail=f"127.0.0.1:{probe.port} is free (mii serve, mii run)")
    return DoctorCheck(
        name=name,
        ok=False,
        detail=f"127.0.0.1:{probe.port} is in use ({problem})",
        hint="stop what listens there (`mii stop` for mii's own container), or pass --port to mii serve/run",
    )


Check = Callable[[Probe], DoctorCheck]

# 表に出す順（必須の点検が先）
CHECKS: tuple[Check, ...] = (
    check_docker,
    check_base_image,
    check_build_network,
    check_kube_context,
    check_build_target,
    check_metrics_api,
    check_image_loader,
    check_wrk,
    check_port,
)


def diagnose(probe: Probe, checks: Sequence[Check] = CHECKS) -> DoctorReport:
    """すべての点検を順に行う。"""
    return DoctorReport(checks=[check(probe) for check in checks])
