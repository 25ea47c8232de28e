"""`mii build` のベースイメージ: ダイジェスト付きの参照、ラベルのダイジェストとイメージ ID。"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from typer.testing import CliRunner

from mii_cli import cli
from mii_cli.errors import ConfigError, DockerError
from mii_cli.image import build as building
from tests.fakes.docker_engine import FakeDockerEngine
from tests.support import LABELS, MODEL, ROOT

runner = CliRunner()

DIGEST = "sha256:" + "d" * 64
OTHER_DIGEST = "sha256:" + "e" * 64
PULLED_ID = "sha256:" + "a" * 64
LOCAL_ID = "sha256:" + "b" * 64
# Docker Hub から取った python:3.13-slim（RepoDigests はリポジトリ python のマニフェストのダイジェスト）
PULLED = {"Id": PULLED_ID, "RepoTags": ["python:3.13-slim"], "RepoDigests": [f"python@{DIGEST}"]}
# ローカルで作った（または docker load した）ベース: レジストリのダイジェストは無い
LOCAL = {"Id": LOCAL_ID, "RepoTags": ["localhost/python:3.13-slim"], "RepoDigests": []}


@pytest.fixture
def engine(fake_docker: FakeDockerEngine) -> FakeDockerEngine:
    """取ってあるベースとローカルで作ったベースを持つエンジン。"""
    fake_docker.images = [json.loads(json.dumps(PULLED)), json.loads(json.dumps(LOCAL))]
    return fake_docker


@pytest.mark.parametrize(
    ("reference", "digest", "image_id"),
    [
        ("python:3.13-slim", DIGEST, PULLED_ID),  # タグ: そのリポジトリの RepoDigests
        (f"python:3.13-slim@{DIGEST}", DIGEST, PULLED_ID),  # タグとダイジェスト: ダイジェストで引く
        (f"python@{DIGEST}", DIGEST, PULLED_ID),
        ("localhost/python:3.13-slim", None, LOCAL_ID),  # ローカルのイメージ: イメージ ID だけ
    ],
)
def test_the_base_image_is_recorded_by_its_registry_digest_or_its_id(
    engine: FakeDockerEngine, reference: str, digest: str | None, image_id: str
) -> None:
    base = building.resolve_base_image(engine.client(), reference)
    assert base == building.BaseImage(reference=reference, digest=digest, image_id=image_id)
    assert not any("/images/create" in call for call in engine.calls)  # ローカルにあれば取らない


def test_a_digest_of_another_repository_is_not_the_base_digest(engine: FakeDockerEngine) -> None:
    # 取ってきた python:3.13-slim に localhost/... のタグを付けたもの: python のダイジェストは
    # localhost/python のものではない
    engine.images[0]["RepoTags"].append("localhost/python:3.13-slim-copy")
    base = building.resolve_base_image(engine.client(), "localhost/python:3.13-slim-copy")
    assert (base.digest, base.image_id) == (None, PULLED_ID)


def test_the_digest_given_is_preferred_among_several_of_the_repository(engine: FakeDockerEngine) -> None:
    engine.images[0]["RepoDigests"].append(f"python@{OTHER_DIGEST}")
    base = building.resolve_base_image(engine.client(), f"python@{OTHER_DIGEST}")
    assert base.digest == OTHER_DIGEST


def test_a_base_image_that_is_not_local_is_pulled_first(fake_docker: FakeDockerEngine) -> None:
    fake_docker.remote[f"python@{DIGEST}"] = PULLED
    seen: list[str] = []
    base = building.resolve_base_image(
        fake_docker.client(), f"python:3.13-slim@{DIGEST}", lambda p: seen.append(p.description)
    )
    assert (base.digest, base.image_id) == (DIGEST, PULLED_ID)
    pull = next(call for call in fake_docker.calls if "/images/create" in call)
    query = parse_qs(urlsplit(pull.split(" ", 1)[1]).query)
    assert query == {"fromImage": ["python"], "tag": [DIGEST]}  # ダイジェストで取る
    assert seen == [f"pulling the base image python:3.13-slim@{DIGEST}"[:70]]


def test_a_base_image_that_cannot_be_pulled_names_the_registry_less_settings(
    fake_docker: FakeDockerEngine,
) -> None:
    with pytest.raises(DockerError, match=r"cannot pull python:3\.13-slim: .*manifest unknown") as error:
        building.resolve_base_image(fake_docker.client(), "python:3.13-slim")
    assert "MII_BASE_IMAGE" in (error.value.hint or "")


def request(base_image: str, tag: str = "mii-unit:ci") -> building.BuildRequest:
    return building.BuildRequest(root=ROOT, model=MODEL, labels=LABELS, tag=tag, base_image=base_image)


@pytest.mark.parametrize(
    ("reference", "digest", "image_id"),
    [
        ("python:3.13-slim", DIGEST, PULLED_ID),
        (f"python:3.13-slim@{DIGEST}", DIGEST, PULLED_ID),
        ("localhost/python:3.13-slim", None, LOCAL_ID),
    ],
)
def test_the_build_passes_the_base_verbatim_and_labels_its_digest_and_id(
    engine: FakeDockerEngine, reference: str, digest: str | None, image_id: str
) -> None:
    result = building.build_image(request(reference), client=engine.client())
    build = engine.builds[-1]
    # FROM ${BASE_IMAGE} に指定の参照がそのまま渡る
    assert build["buildargs"]["BASE_IMAGE"] == reference
    # ラベルは本物の Dockerfile の LABEL を代役がビルド引数で埋めたもの
    assert result.labels["org.opencontainers.image.base.name"] == reference
    assert result.labels["org.opencontainers.image.base.digest"] == (digest or "")
    assert result.labels["io.mii.base-image.id"] == image_id
    assert (result.base_image, result.base_digest, result.base_image_id) == (reference, digest, image_id)
    assert result.unique_tag in result.tags
    assert "mii-unit:ci" in result.tags


@pytest.mark.parametrize(
    ("reference", "problem"),
    [
        ("python:3.13-slim@sha256:abc", "malformed digest 'sha256:abc'"),
        ("python@sha256:" + "D" * 64, "malformed digest"),  # 大文字の 16 進数は Docker も断る
        ("python@md5:" + "d" * 32, "malformed digest"),
        ("python@" + "d" * 64, "malformed digest"),
        ("@" + DIGEST, "is not an image reference"),
        (f"python@{DIGEST}@{DIGEST}", "is not an image reference"),
        ("python 3", "is not an image reference"),
        ("", "is not an image reference"),
    ],
)
def test_a_malformed_base_image_is_a_config_error(reference: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as error:
        request(reference)
    assert "sha256:" in (error.value.hint or "")


@pytest.fixture
def docker_host(engine: FakeDockerEngine, monkeypatch: pytest.MonkeyPatch) -> FakeDockerEngine:
    """mii build が代役のエンジンに接続する。"""
    monkeypatch.setenv("DOCKER_HOST", engine.url)
    monkeypatch.delenv("MII_BUILD_NETWORK", raising=False)
    return engine


def build(*args: str) -> Any:
    return runner.invoke(cli.app, ["build", "--tag", "mii-unit:ci", *args])


def test_build_json_shows_the_base_digest_and_id(docker_host: FakeDockerEngine) -> None:
    result = build("--base-image", f"python:3.13-slim@{DIGEST}", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["base_image"] == f"python:3.13-slim@{DIGEST}"
    assert (payload["base_digest"], payload["base_image_id"]) == (DIGEST, PULLED_ID)
    assert payload["labels"]["org.opencontainers.image.base.digest"] == DIGEST


def test_build_says_which_base_it_used(docker_host: FakeDockerEngine) -> None:
    pulled = build("--base-image", "python:3.13-slim")
    assert pulled.exit_code == 0, pulled.output
    assert f"• base image: python:3.13-slim, digest {DIGEST}, image id {PULLED_ID}" in pulled.output
    local = build("--base-image", "localhost/python:3.13-slim")
    assert local.exit_code == 0, local.output
    expected = (
        f"• base image: localhost/python:3.13-slim, no registry digest (a local image), image id {LOCAL_ID}"
    )
    assert expected in local.output


def test_build_refuses_a_malformed_digest_before_reaching_the_engine(
    docker_host: FakeDockerEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = build("--base-image", "python:3.13-slim@sha256:abc")
    assert result.exit_code == 2
    assert "malformed digest 'sha256:abc'" in result.output
    assert "Hint:" in result.output
    monkeypatch.setenv("MII_BASE_IMAGE", "python@sha256:abc")
    from mii_cli.settings import get_cli_settings

    get_cli_settings.cache_clear()
    assert build().exit_code == 2
    assert docker_host.calls == []
