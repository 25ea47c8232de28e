"""Docker の呼び出しが届くエンジンの見分け方（DOCKER_HOST と minikube の docker-env）。"""

from __future__ import annotations

import pytest

from mii_cli.errors import DockerError
from mii_cli.image.daemon import DockerDaemon, current_daemon, stray_profile

# minikube v1.38.1 の docker-env（docker ドライバー、Linux）が設定するもの
DOCKER_ENV = {
    "DOCKER_TLS_VERIFY": "1",
    "DOCKER_HOST": "tcp://192.168.49.2:2376",
    "DOCKER_CERT_PATH": "/home/me/.minikube/certs",
    "MINIKUBE_ACTIVE_DOCKERD": "minikube",
}


def test_no_variables_is_the_local_engine() -> None:
    daemon = current_daemon({})
    assert daemon == DockerDaemon(host="", minikube_profile=None)
    assert not daemon.docker_env
    assert daemon.is_local
    assert daemon.publish_address() == "127.0.0.1"
    assert daemon.describe() == "the local Docker engine"


def test_docker_env_names_the_profile_and_publishes_on_the_node() -> None:
    daemon = current_daemon(DOCKER_ENV)
    assert daemon.docker_env
    assert daemon.minikube_profile == "minikube"
    assert not daemon.is_local
    assert daemon.address == "192.168.49.2"
    # ノードのループバックにはこのマシンから届かないので、ノードの IP に公開する
    assert daemon.publish_address() == "192.168.49.2"
    assert daemon.describe() == "minikube minikube's Docker engine at tcp://192.168.49.2:2376 (docker-env)"


@pytest.mark.parametrize("host", ["tcp://127.0.0.1:55003", "ssh://docker@127.0.0.1:55002"])
def test_docker_env_through_a_forwarded_port_cannot_publish(host: str) -> None:
    """macOS・Windows や --ssh-host: ノードへはループバックの転送で届くが、公開したポートには届かない。"""
    daemon = current_daemon({**DOCKER_ENV, "DOCKER_HOST": host})
    with pytest.raises(DockerError, match="cannot reach") as error:
        daemon.publish_address()
    assert "eval $(minikube -p minikube docker-env --unset)" in (error.value.hint or "")


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("unix:///var/run/docker.sock", True),
        ("unix:///run/user/1000/docker.sock", True),
        ("tcp://127.0.0.1:2375", True),
        ("tcp://localhost:2375", True),
        ("tcp://[::1]:2375", True),
        ("tcp://10.0.0.5:2376", False),
        ("ssh://me@build-host", False),
    ],
)
def test_docker_host_without_docker_env(host: str, local: bool) -> None:
    daemon = current_daemon({"DOCKER_HOST": host})
    assert not daemon.docker_env
    assert daemon.is_local is local
    if local:
        assert daemon.publish_address() == "127.0.0.1"
    else:
        with pytest.raises(DockerError, match="another machine's Docker engine") as error:
            daemon.publish_address()
        assert "unset DOCKER_HOST" in (error.value.hint or "")


def test_a_profile_without_docker_host_is_not_docker_env() -> None:
    """MINIKUBE_ACTIVE_DOCKERD だけが残っても、Docker SDK はこのマシンのエンジンへ行く。"""
    environ = {"MINIKUBE_ACTIVE_DOCKERD": "dev"}
    assert not current_daemon(environ).docker_env
    assert stray_profile(environ) == "dev"
    assert stray_profile(DOCKER_ENV) is None
    assert stray_profile({}) is None
