"""デプロイするイメージの決定と、クラスタへの渡し方（minikube・kind への読み込み、レジストリへの push）。"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mii_cli.errors import ClusterError, ConfigError, DockerError
from mii_cli.kube import cluster as c
from mii_cli.kube import images as im
from tests.fakes.docker_engine import FakeDockerEngine
from tests.fakes.kube_objects import IMAGE
from tests.support import free_port


def test_pick_tag_prefers_the_unique_tag() -> None:
    tags = ["model-in-image:0.1.0", IMAGE, "registry.local/model-in-image:0.1.0-x-y", "other:1"]
    assert im.pick_tag(tags, "model-in-image") == IMAGE
    assert im.pick_tag(["model-in-image:0.1.0"], "model-in-image") == "model-in-image:0.1.0"
    assert im.pick_tag(["other:1"], "model-in-image") is None


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("model-in-image:0.1.0", False),
        ("library/python:3", False),
        ("ghcr.io/me/model-in-image:1", True),
        ("localhost:5000/model-in-image:1", True),
        ("localhost/model-in-image:1", True),
    ],
)
def test_has_registry(reference: str, expected: bool) -> None:
    assert im.has_registry(reference) is expected


def test_registry_reference() -> None:
    assert im.registry_reference("localhost:5000/", IMAGE) == f"localhost:5000/{IMAGE}"
    assert im.registry_reference("ghcr.io/me", "old.io/x/model-in-image:1") == "ghcr.io/me/model-in-image:1"
    with pytest.raises(ConfigError, match="invalid registry"):
        im.registry_reference(" ", IMAGE)


def info(flavor: str, name: str = "demo") -> c.ClusterInfo:
    return c.ClusterInfo(f"ctx-{name}", "https://127.0.0.1:6443", flavor, name)


def test_load_commands_per_cluster_kind() -> None:
    assert im.load_command(info("minikube", "dev"), IMAGE) == [
        "minikube",
        "-p",
        "dev",
        "image",
        "load",
        IMAGE,
    ]
    assert im.load_command(info("kind", "ci"), IMAGE) == [
        "kind",
        "load",
        "docker-image",
        IMAGE,
        "--name",
        "ci",
    ]
    assert im.load_command(info("other"), IMAGE) is None
    assert "minikube -p dev image load" in im.missing_image_hint(info("minikube", "dev"), IMAGE)
    assert "Docker Desktop" in im.missing_image_hint(info("docker-desktop"), IMAGE)
    assert "--registry" in im.missing_image_hint(info("other"), IMAGE)


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH の先頭に置く、引数を記録する偽の minikube と kind。"""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("minikube", "kind"):
        script = folder / name
        script.write_text(
            "#!/bin/sh\n"
            f'echo "$@" >> "{folder}/{name}.args"\n'
            'if [ "$MII_FAKE_FAIL" = 1 ]; then echo "boom: no such image" >&2; exit 3; fi\n'
        )
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return folder


def test_ensure_in_cluster_loads_into_minikube_and_kind(fake_bin: Path) -> None:
    assert im.ensure_in_cluster(info("minikube", "dev"), IMAGE) == IMAGE
    assert im.ensure_in_cluster(info("kind", "ci"), IMAGE) == IMAGE
    assert (fake_bin / "minikube.args").read_text() == f"-p dev image load {IMAGE}\n"
    assert (fake_bin / "kind.args").read_text() == f"load docker-image {IMAGE} --name ci\n"


def test_a_failed_load_shows_the_tool_output(fake_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MII_FAKE_FAIL", "1")
    with pytest.raises(ClusterError, match="failed with exit code 3") as error:
        im.ensure_in_cluster(info("minikube", "dev"), IMAGE)
    assert "boom: no such image" in (error.value.details or "")


def test_kind_falls_back_to_an_image_archive(fake_bin: Path, engine: FakeDockerEngine) -> None:
    """containerd のイメージストアで docker-image の読み込みが失敗したら、tar で読み込み直す。"""
    (fake_bin / "kind").write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{fake_bin}/kind.args"\n'
        'if [ "$2" = docker-image ]; then echo "ctr: content digest not found" >&2; exit 1; fi\n'
        f'cp "$3" "{fake_bin}/loaded.tar"\n'
    )
    assert im.ensure_in_cluster(info("kind", "ci"), IMAGE, client=engine.client()) == IMAGE
    calls = (fake_bin / "kind.args").read_text().splitlines()
    assert calls[0] == f"load docker-image {IMAGE} --name ci"
    assert calls[1].startswith("load image-archive ")
    assert calls[1].endswith("image.tar --name ci")
    assert (fake_bin / "loaded.tar").read_bytes() == engine.saved


def test_a_missing_tool_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ClusterError, match="minikube is not installed") as error:
        im.ensure_in_cluster(info("minikube"), IMAGE)
    assert "--registry" in (error.value.hint or "")


def test_a_hanging_tool_times_out(fake_bin: Path) -> None:
    (fake_bin / "kind").write_text("#!/bin/sh\nsleep 5\n")
    with pytest.raises(ClusterError, match="did not finish"):
        im.run_load(["kind", "load"], timeout=0.2)


def test_ensure_in_cluster_without_loading() -> None:
    assert im.ensure_in_cluster(info("other"), "ghcr.io/me/model-in-image:1") == "ghcr.io/me/model-in-image:1"
    assert im.ensure_in_cluster(info("kind"), IMAGE, load=False) == IMAGE
    assert im.ensure_in_cluster(info("docker-desktop"), IMAGE) == IMAGE
    with pytest.raises(ConfigError, match="cannot see local images") as error:
        im.ensure_in_cluster(info("other"), IMAGE)
    assert "--registry" in (error.value.hint or "")
    assert "MII_REGISTRY" in (error.value.hint or "")


@pytest.mark.parametrize(
    ("flavor", "image", "registry", "action", "reference", "says"),
    [
        ("other", IMAGE, "127.0.0.1:5000", "push", f"127.0.0.1:5000/{IMAGE}", "push"),
        ("other", f"127.0.0.1:5000/{IMAGE}", "127.0.0.1:5000", "use", f"127.0.0.1:5000/{IMAGE}", "already"),
        ("other", f"127.0.0.1:5000/{IMAGE}", None, "use", f"127.0.0.1:5000/{IMAGE}", "names its registry"),
        ("minikube", IMAGE, None, "load", IMAGE, "minikube -p x image load"),
        ("kind", IMAGE, None, "load", IMAGE, "kind load docker-image"),
        ("docker-desktop", IMAGE, None, "use", IMAGE, "local Docker engine"),
    ],
)
def test_the_image_plan_says_what_deploy_will_do(
    flavor: str, image: str, registry: str | None, action: str, reference: str, says: str
) -> None:
    plan = im.plan_image(info(flavor, "x"), image, registry=registry)
    assert (plan.action, plan.reference) == (action, reference)
    assert says in plan.detail


@pytest.fixture
def engine(fake_docker: FakeDockerEngine) -> FakeDockerEngine:
    """mii build の一意なタグのイメージが 2 つある Docker エンジン（新しい方が IMAGE）。"""
    fake_docker.images = [
        {
            "Id": "sha256:" + "a" * 64,
            "RepoTags": ["model-in-image:0.1.0-old-aaaa"],
            "Created": "2025-01-01T00:00:00Z",
        },
        {
            "Id": "sha256:" + "b" * 64,
            "RepoTags": ["model-in-image:0.1.0", IMAGE],
            "Created": "2025-06-01T00:00:00.123Z",
        },
    ]
    return fake_docker


def test_the_newest_unique_tag_is_the_default_image(engine: FakeDockerEngine) -> None:
    assert im.latest_local_image(engine.client()) == IMAGE
    assert any("/images/json" in call for call in engine.calls)


def test_no_local_image_says_build_it(fake_docker: FakeDockerEngine) -> None:
    with pytest.raises(ConfigError, match="no local image model-in-image") as error:
        im.latest_local_image(fake_docker.client())
    assert "mii build" in (error.value.hint or "")


def test_an_unreachable_docker_is_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{free_port()}")
    with pytest.raises(DockerError, match="cannot reach the Docker engine"):
        im.latest_local_image()


def test_the_default_image_follows_the_repository_setting(
    fake_docker: FakeDockerEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mii_cli.settings import get_cli_settings

    fake_docker.images = [
        {
            "Id": "sha256:" + "c" * 64,
            "RepoTags": ["team/iris:0.1.0", "team/iris:0.1.0-abc-def"],
            "Created": "2026",
        },
        {"Id": "sha256:" + "d" * 64, "RepoTags": [IMAGE], "Created": "2027"},
    ]
    monkeypatch.setenv("MII_IMAGE_REPOSITORY", "team/iris")
    get_cli_settings.cache_clear()
    assert im.latest_local_image(fake_docker.client()) == "team/iris:0.1.0-abc-def"


def test_pushing_tags_the_image_for_the_registry_and_pushes_it(engine: FakeDockerEngine) -> None:
    reference = im.ensure_in_cluster(info("other"), IMAGE, registry="localhost:5000", client=engine.client())
    assert reference == f"localhost:5000/{IMAGE}"
    tag_call = next(call for call in engine.calls if "/tag?" in call)
    assert "repo=localhost%3A5000%2Fmodel-in-image" in tag_call
    assert any("/images/localhost:5000/model-in-image/push" in call for call in engine.calls)


def test_a_refused_push_says_to_log_in(engine: FakeDockerEngine) -> None:
    engine.push_lines = [{"error": "denied: requested access is denied"}]
    with pytest.raises(DockerError, match="denied") as error:
        im.push(IMAGE, "ghcr.io/me/model-in-image:1", engine.client())
    assert "docker login" in (error.value.hint or "")


def test_pushing_a_missing_image_says_build_it(engine: FakeDockerEngine) -> None:
    with pytest.raises(DockerError, match="not in the local Docker engine"):
        im.push("model-in-image:missing", "ghcr.io/me/model-in-image", engine.client())
