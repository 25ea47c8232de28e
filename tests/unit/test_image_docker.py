"""Docker エンジンのアダプタ: 届かないエンジン、mii のコンテナだけを止めること。"""

from __future__ import annotations

from typing import Any

import pytest

from mii_cli.errors import DockerError
from mii_cli.image import docker as docker_engine
from tests.fakes.docker_engine import FakeDockerEngine
from tests.support import free_port


def test_an_unreachable_engine_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{free_port()}")
    with pytest.raises(DockerError, match="cannot reach the Docker engine") as error:
        docker_engine.docker_client()
    assert "DOCKER_HOST" in (error.value.hint or "")


def test_the_engine_version_names_the_engine_and_the_api(fake_docker: FakeDockerEngine) -> None:
    assert docker_engine.engine_version(fake_docker.client()) == "28.0.0-fake, API 1.43"
    fake_docker.api_version = "1.48"
    assert docker_engine.engine_version(fake_docker.client()) == "28.0.0-fake, API 1.48"


def test_the_fake_engine_refuses_a_client_newer_than_itself(fake_docker: FakeDockerEngine) -> None:
    """代役も本物と同じく、エンジンより新しい API の版の要求を 400 で断る。"""
    import docker

    fake_docker.api_version = "1.41"
    with pytest.raises(docker.errors.APIError, match=r"client version 1\.48 is too new"):
        docker.DockerClient(base_url=fake_docker.url, version="1.48").images.list()


def test_a_missing_local_image_is_none(fake_docker: FakeDockerEngine) -> None:
    assert docker_engine.local_image(fake_docker.client(), "python:3.13-slim") is None


def test_a_pull_that_cannot_reach_the_registry_says_why(fake_docker: FakeDockerEngine) -> None:
    problem = docker_engine.pull_problem(fake_docker.client(), "python:3.13-slim")
    assert problem is not None
    assert "no such host" in problem


def test_a_pullable_image_has_no_problem(fake_docker: FakeDockerEngine) -> None:
    fake_docker.pullable.add("python:3.13-slim")
    assert docker_engine.pull_problem(fake_docker.client(), "python:3.13-slim") is None


def test_networks_are_found_by_their_exact_name(fake_docker: FakeDockerEngine) -> None:
    fake_docker.networks = ["host", "hostile"]
    client = fake_docker.client()
    assert docker_engine.network_exists(client, "host")
    assert not docker_engine.network_exists(client, "hos")


@pytest.mark.parametrize(
    ("failing", "ask", "message"),
    [
        ("/version", lambda client: docker_engine.engine_version(client), "did not tell its version"),
        (
            "/networks",
            lambda client: docker_engine.network_exists(client, "host"),
            "cannot list the Docker networks",
        ),
        (
            "/images/x:1/json",
            lambda client: docker_engine.local_image(client, "x:1"),
            "cannot look up image x:1",
        ),
    ],
    ids=["version", "networks", "image"],
)
def test_a_broken_engine_is_one_docker_error(
    fake_docker: FakeDockerEngine, failing: str, ask: Any, message: str
) -> None:
    fake_docker.failing.add(failing)
    with pytest.raises(DockerError, match=message) as error:
        ask(fake_docker.client())
    assert "the engine is broken" in error.value.message
