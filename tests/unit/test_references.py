"""イメージの参照: 分け方、タグとダイジェスト、レジストリ、正規化（minikube の image ls と同じ形）。"""

from __future__ import annotations

import pytest

from mii_cli import references
from tests.fakes.cluster_tools import normalize

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
    assert references.split_reference(reference) == expected


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
    assert references.tag_of(reference) == tag
    assert references.split_digest(reference)[1] == digest


def test_a_pinned_reference_keeps_the_tag_and_replaces_any_digest() -> None:
    assert references.pinned_reference("r:5000/x:1", DIGEST) == f"r:5000/x:1@{DIGEST}"
    assert references.pinned_reference("r:5000/x:1@sha256:" + "0" * 64, DIGEST) == f"r:5000/x:1@{DIGEST}"


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
    assert references.repo_digest(repo_digests, reference) == expected


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
    assert references.registry_of(reference) == registry


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
    assert references.normalized_reference(reference) == normalized


@pytest.mark.parametrize(
    "reference", ["model-in-image:0.1.0-abc", "me/x:1", "team/sub/x:2", "x", "ghcr.io/a/b:1"]
)
def test_normalized_reference_agrees_with_minikube(reference: str) -> None:
    """mii の正規化は、偽の minikube が写した minikube v1.38.1 の AddDockerIO（と :latest）と同じ形になる。"""
    assert references.normalized_reference(reference) == normalize(reference)
