"""mii の Docker の呼び出しが届くエンジンはどれか、そこに作ったイメージをクラスタが見るか。

Docker SDK（`docker.from_env`）は DOCKER_HOST・DOCKER_TLS_VERIFY・DOCKER_CERT_PATH に従う。
`eval $(minikube -p P docker-env)` はこれらをノードの中の dockerd（docker ドライバーなら
`tcp://<ノードの IP>:2376`）に向け、`MINIKUBE_ACTIVE_DOCKERD=P` を足す。そのあいだ `mii build` は
ノードのエンジンへ直接ビルドし、kubelet はそのイメージをそのまま使える（読み込みは要らない）。

ここでは環境変数だけを読み、何にも接続しない。決めたことは `DockerDaemon` で返し、使い方
（読み込みを飛ばす、公開するアドレス、食い違いのエラー）は呼ぶ側が決める。
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from mii_cli.results import Result

# minikube の docker-env が設定する変数（cmd/minikube/cmd/docker-env.go の dockerEnvVars）
ACTIVE_DOCKERD = "MINIKUBE_ACTIVE_DOCKERD"
DOCKER_HOST = "DOCKER_HOST"

LOOPBACK = "127.0.0.1"


def unset_hint(profile: str) -> str:
    """docker-env を外すコマンド。"""
    return f"eval $(minikube -p {profile} docker-env --unset)"


def docker_env_hint(profile: str) -> str:
    """docker-env を設定するコマンド。"""
    return f"eval $(minikube -p {profile} docker-env)"


@dataclass(frozen=True)
class DockerDaemon(Result):
    """Docker の呼び出しが届くエンジン。

    `host` は DOCKER_HOST（空ならこのマシンの既定のソケット）。`minikube_profile` は docker-env が
    向けている minikube のプロファイル（MINIKUBE_ACTIVE_DOCKERD。docker-env でなければ None）。
    """

    host: str
    minikube_profile: str | None = None

    @property
    def docker_env(self) -> bool:
        """minikube の docker-env が有効か（変数が両方そろっているときだけ）。"""
        return self.minikube_profile is not None

    @property
    def address(self) -> str | None:
        """エンジンのあるマシンのアドレス（tcp:// と ssh:// の DOCKER_HOST のホスト。ソケットなら None）。"""
        if not self.host:
            return None
        parts = urlsplit(self.host)
        if parts.scheme not in ("tcp", "ssh", "http", "https"):
            return None
        return parts.hostname or None

    @property
    def is_local(self) -> bool:
        """このマシンのエンジンか（既定のソケット、unix:// か、ループバックの tcp://。docker-env は別）。"""
        if self.docker_env:
            return False
        address = self.address
        return address is None or _is_loopback(address)

    def describe(self) -> str:
        """1 行の説明（`mii doctor` と `mii build` が出す）。"""
        if self.docker_env:
            return f"minikube {self.minikube_profile}'s Docker engine at {self.host} (docker-env)"
        return f"the Docker engine at {self.host}" if self.host else "the local Docker engine"

    def publish_address(self) -> str:
        """`mii run`・`mii benchmark` がコンテナのポートを公開するアドレス（このマシンから届くもの）。

        ローカルのエンジンなら 127.0.0.1。docker-env なら、ノードのループバックにはこのマシンから
        届かないので、ノードの IP（DOCKER_HOST のホスト）。それが無い・ループバック（ポートを
        転送するドライバー）なら、届くアドレスが無いので DockerError。ほかのマシンのエンジンにも
        公開しない（そのマシンのネットワークにサービスを出すことになる）。
        """
        from mii_cli.errors import DockerError

        if self.is_local:
            return LOOPBACK
        address = self.address
        if self.docker_env and address is not None and not _is_loopback(address):
            return address
        if self.docker_env:
            raise DockerError(
                f"the Docker variables point at minikube {self.minikube_profile}'s engine ({self.host}), "
                "whose published ports this machine cannot reach",
                hint=f"run it on the local engine: {unset_hint(str(self.minikube_profile))}; "
                "or deploy it to the cluster with mii deploy",
            )
        raise DockerError(
            f"DOCKER_HOST={self.host} is another machine's Docker engine; mii publishes ports only "
            "where this machine can reach them",
            hint="unset DOCKER_HOST to use the local engine",
        )


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def current_daemon(environ: Mapping[str, str] = os.environ) -> DockerDaemon:
    """環境変数から、Docker の呼び出しが届くエンジンを決める。

    MINIKUBE_ACTIVE_DOCKERD があっても DOCKER_HOST が無ければ、Docker SDK はこのマシンのエンジンへ
    行くので docker-env とはみなさない（`mii doctor` がそう伝える）。
    """
    host = environ.get(DOCKER_HOST, "").strip()
    profile = environ.get(ACTIVE_DOCKERD, "").strip() or None
    return DockerDaemon(host=host, minikube_profile=profile if host else None)


def stray_profile(environ: Mapping[str, str] = os.environ) -> str | None:
    """MINIKUBE_ACTIVE_DOCKERD だけが残っている（DOCKER_HOST が無い）ときのプロファイル名。"""
    if environ.get(DOCKER_HOST, "").strip():
        return None
    return environ.get(ACTIVE_DOCKERD, "").strip() or None
