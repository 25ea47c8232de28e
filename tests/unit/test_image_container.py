"""`mii run` の起動条件: Pod（manifests/deployment.yml）と同じ制限、127.0.0.1 だけへの公開、
ready の待ち方。
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from docker.utils import parse_bytes

from mii_cli.commands.requests import run_spec
from mii_cli.errors import DockerError, WaitTimeout
from mii_cli.image.container import CONTAINER_PORT, LogFollower, RunSpec, wait_ready
from mii_cli.kube.render import cpu_millicores, find, load_manifests, memory_bytes
from tests.fakes.http import HttpStandIn


def _app_container() -> dict[str, Any]:
    deployment = find(load_manifests(), "Deployment")
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def test_the_default_limits_are_the_limits_of_the_pod() -> None:
    limits = _app_container()["resources"]["limits"]
    kwargs = run_spec(port=18001).docker_kwargs()
    assert kwargs["nano_cpus"] == cpu_millicores(limits["cpu"]) * 1_000_000
    assert parse_bytes(kwargs["mem_limit"]) == memory_bytes(limits["memory"])
    assert kwargs["memswap_limit"] == kwargs["mem_limit"]


def test_the_root_is_read_only_with_a_writable_tmp_like_the_pod() -> None:
    container = _app_container()
    kwargs = run_spec(port=18001).docker_kwargs()
    assert kwargs["read_only"] is container["securityContext"]["readOnlyRootFilesystem"]
    # 書き込める場所は Pod の書き込めるボリューム（/tmp）と同じ。読み取り専用のもの（影への写しの設定の
    # ConfigMap）は Kubernetes の中だけ
    writable = [m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")]
    assert writable == list(kwargs["tmpfs"])


def test_the_container_port_is_the_port_of_the_pod() -> None:
    (port,) = _app_container()["ports"]
    assert f"{port['containerPort']}/{port.get('protocol', 'TCP').lower()}" == CONTAINER_PORT


def test_the_port_is_published_on_loopback_only() -> None:
    spec = RunSpec(image="img", name="n", port=18001)
    assert spec.docker_kwargs()["ports"] == {CONTAINER_PORT: ("127.0.0.1", 18001)}
    assert spec.url == "http://127.0.0.1:18001"


def test_under_minikube_docker_env_the_port_is_published_on_the_node(monkeypatch: pytest.MonkeyPatch) -> None:
    """docker-env の下のコンテナはノードの中で動く: ノードの 127.0.0.1 にはこのマシンから届かない。"""
    monkeypatch.setenv("DOCKER_HOST", "tcp://192.168.49.2:2376")
    monkeypatch.setenv("MINIKUBE_ACTIVE_DOCKERD", "minikube")
    spec = run_spec(port=18001)
    assert spec.docker_kwargs()["ports"] == {CONTAINER_PORT: ("192.168.49.2", 18001)}
    assert spec.url == "http://192.168.49.2:18001"


def test_a_node_behind_a_forwarded_port_is_refused_before_anything_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from mii_cli.cli import app

    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:55003")
    monkeypatch.setenv("MINIKUBE_ACTIVE_DOCKERD", "minikube")
    result = CliRunner().invoke(app, ["run", "--detach"])
    assert result.exit_code == 4
    lines = result.output.splitlines()
    assert lines[0].startswith("Error: the Docker variables point at minikube minikube's engine")
    assert "docker-env --unset" in result.output


def test_the_user_option_replaces_the_image_user() -> None:
    assert RunSpec(image="img", name="n", port=1, user="12345").docker_kwargs()["user"] == "12345"
    assert "user" not in RunSpec(image="img", name="n", port=1).docker_kwargs()


def test_options_win_over_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from mii_cli.settings import get_cli_settings

    monkeypatch.setenv("MII_CONTAINER_NAME", "from-settings")
    get_cli_settings.cache_clear()
    assert run_spec(port=1).name == "from-settings"
    assert run_spec(port=1, name="from-option").name == "from-option"


@pytest.fixture
def not_ready() -> Any:
    """/health/ready に 503 で答えるサービス。"""
    server = HttpStandIn({"/health/ready": 503})
    yield server
    server.close()


def test_waiting_for_readiness_ends_when_the_service_is_ready(not_ready: HttpStandIn) -> None:
    def become_ready(_: float) -> None:
        not_ready.routes = {"/health/ready": 200}

    seconds = wait_ready(not_ready.url, timeout=10, is_alive=lambda: True, logs=str, sleep=become_ready)
    assert seconds >= 0
    assert not_ready.requests == ["/health/ready", "/health/ready"]


def test_waiting_for_readiness_is_bounded(not_ready: HttpStandIn) -> None:
    ticks = itertools.count(0.0, 1.0)
    with pytest.raises(WaitTimeout, match="not ready after 3 s") as error:
        wait_ready(
            not_ready.url,
            timeout=3,
            is_alive=lambda: True,
            logs=lambda: "last log line",
            clock=lambda: next(ticks),
            sleep=lambda _: None,
        )
    assert error.value.details == "last log line"


def test_a_container_that_exits_while_starting_shows_its_log(not_ready: HttpStandIn) -> None:
    with pytest.raises(DockerError, match="exited before it became ready") as error:
        wait_ready(not_ready.url, timeout=10, is_alive=lambda: False, logs=lambda: "model check failed")
    assert error.value.details == "model check failed"


class _LogStream:
    """Docker SDK のログのストリーム（CancellableStream）の代わり: 閉じられた回数を数える。"""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = iter(chunks)
        self.closes = 0

    def __iter__(self) -> _LogStream:
        return self

    def __next__(self) -> bytes:
        return next(self.chunks)

    def close(self) -> None:
        self.closes += 1


def _client_with_logs(stream: _LogStream) -> Any:
    container = type("Container", (), {"logs": lambda self, **kwargs: stream})()
    containers = type("Containers", (), {"get": lambda self, name: container})()
    return type("Client", (), {"containers": containers})()


def test_closing_the_log_follower_ends_the_reading_loop_and_the_stream() -> None:
    # シグナルハンドラが close() を呼んだ後、読んでいる側の繰り返しは次の行で終わり、接続は 1 度だけ閉じる
    stream = _LogStream([b"line 1\n", b"line 2\n", b"line 3\n"])
    logs = LogFollower(_client_with_logs(stream), "mii-local")
    read = []
    for line in logs:
        read.append(line)
        logs.close()
    assert read == ["line 1"]
    assert stream.closes == 1


def test_the_log_follower_closes_the_stream_when_the_container_stops() -> None:
    stream = _LogStream([b"line 1\n"])
    assert list(LogFollower(_client_with_logs(stream), "mii-local")) == ["line 1"]
    assert stream.closes == 1
