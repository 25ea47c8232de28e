"""Docker エンジンのアダプタ: 参照の分け方、届かないエンジン、mii のコンテナだけを止めること。"""

from __future__ import annotations

from typing import Any

import pytest

from mii_cli.errors import DockerError
from mii_cli.image import docker as docker_engine
from tests.fakes.cluster_tools import normalize
from tests.fakes.docker_engine import FakeDockerEngine
from tests.support import free_port

DIGEST = "sha256:" + "d" * 64


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("model-in-image:0.1.0", ("model-in-image", "0.1.0")),
        ("model-in-image", ("model-in-image", "latest")),
        ("localhost:5000/team/mii:1", ("localhost:5000/team/mii", "1")),
        ("localhost:5000/mii", ("localhost:5000/mii", "latest")),
        # ダイジェストは除く（`python:3.13-slim@sha256:...` を `python:3.13-slim@sha256` と `...` に分けない）
        ("python:3.13-slim@" + DIGEST, ("python", "3.13-slim")),
        ("python@" + DIGEST, ("python", "latest")),
        ("localhost:5000/mii:1@" + DIGEST, ("localhost:5000/mii", "1")),
    ],
)
def test_split_reference(reference: str, expected: tuple[str, str]) -> None:
    assert docker_engine.split_reference(reference) == expected


@pytest.mark.parametrize(
    ("reference", "tag", "digest"),
    [
        ("127.0.0.1:5000/model-in-image:0.1.0-x@" + DIGEST, "0.1.0-x", DIGEST),
        ("127.0.0.1:5000/model-in-image@" + DIGEST, None, DIGEST),
        ("model-in-image:0.1.0", "0.1.0", None),
        ("localhost:5000/model-in-image", None, None),
    ],
)
def test_tag_and_digest_of_a_reference(reference: str, tag: str | None, digest: str | None) -> None:
    assert docker_engine.tag_of(reference) == tag
    assert docker_engine.split_digest(reference)[1] == digest


def test_a_pinned_reference_keeps_the_tag_and_replaces_any_digest() -> None:
    assert docker_engine.pinned_reference("r:5000/x:1", DIGEST) == f"r:5000/x:1@{DIGEST}"
    assert docker_engine.pinned_reference("r:5000/x:1@sha256:" + "0" * 64, DIGEST) == f"r:5000/x:1@{DIGEST}"


@pytest.mark.parametrize(
    ("repo_digests", "reference", "expected"),
    [
        ([f"python@{DIGEST}"], "python:3.13-slim", DIGEST),
        ([f"python@{DIGEST}"], "docker.io/library/python:3.13-slim", DIGEST),
        ([f"docker.io/library/python@{DIGEST}"], "python:3.13-slim", DIGEST),
        ([f"python@{DIGEST}"], "localhost/python:3.13-slim", None),
        ([], "localhost/python:3.13-slim", None),
        ([f"127.0.0.1:5000/x@{DIGEST}"], "127.0.0.1:5000/x:1", DIGEST),
        (
            [f"python@{DIGEST}", f"python@sha256:{'f' * 64}"],
            f"python@sha256:{'f' * 64}",
            f"sha256:{'f' * 64}",
        ),
        (["python@sha256:short"], "python:3", None),
    ],
)
def test_the_repo_digest_of_the_reference_repository(
    repo_digests: list[str], reference: str, expected: str | None
) -> None:
    assert docker_engine.repo_digest(repo_digests, reference) == expected


@pytest.mark.parametrize(
    ("reference", "registry"),
    [
        ("model-in-image:0.1.0", None),
        ("library/python:3", None),
        ("ghcr.io/me/model-in-image:1", "ghcr.io"),
        ("localhost:5000/model-in-image:1", "localhost:5000"),
        ("localhost/python:3.13-slim", "localhost"),
    ],
)
def test_registry_of_a_reference(reference: str, registry: str | None) -> None:
    assert docker_engine.registry_of(reference) == registry


@pytest.mark.parametrize(
    ("reference", "normalized"),
    [
        ("model-in-image:0.1.0-abc", "docker.io/library/model-in-image:0.1.0-abc"),
        ("me/x:1", "docker.io/me/x:1"),
        ("model-in-image", "docker.io/library/model-in-image:latest"),
        ("iris@sha256:" + "e" * 64, "docker.io/library/iris@sha256:" + "e" * 64),
        ("docker.io/library/x:1", "docker.io/library/x:1"),
        ("ghcr.io/me/x:1", "ghcr.io/me/x:1"),
        ("localhost:5000/x:1", "localhost:5000/x:1"),
        ("localhost/x:1", "localhost/x:1"),
    ],
)
def test_normalized_reference(reference: str, normalized: str) -> None:
    assert docker_engine.normalized_reference(reference) == normalized


@pytest.mark.parametrize(
    "reference", ["model-in-image:0.1.0-abc", "me/x:1", "team/sub/x:2", "x", "ghcr.io/a/b:1"]
)
def test_normalized_reference_agrees_with_minikube(reference: str) -> None:
    """mii の正規化は、偽の minikube が写した minikube v1.38.1 の AddDockerIO（と :latest）と同じ形になる。"""
    assert docker_engine.normalized_reference(reference) == normalize(reference)


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
