"""偽の minikube（v1.38.1）と kind（v0.30.0）そのもののテスト: 本物と同じ終了コードと出力を返すこと。

mii のテストはこの偽物を相手にするので、偽物が本物の癖（何も読み込まなくても 0 で終わる、など）を
失えば mii のテストは意味を失う。ここではプログラムを直接呼んで、その癖を確かめる。
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.fakes.cluster_tools import FakeClusterTools, add_docker_io
from tests.fakes.kube_objects import IMAGE


@pytest.fixture
def tools(tmp_path: Path) -> FakeClusterTools:
    return FakeClusterTools(tmp_path / "bin")


def run(tools: FakeClusterTools, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{tools.folder}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=60, check=False)


@pytest.mark.parametrize(
    ("name", "normalized"),
    [
        ("model-in-image:1", "docker.io/library/model-in-image:1"),
        ("me/x:1", "docker.io/me/x:1"),
        ("ghcr.io/me/x:1", "ghcr.io/me/x:1"),
        ("localhost:5000/x:1", "localhost:5000/x:1"),
        # minikube は「localhost を含む」で判断する（Docker の正規化とは違う）
        ("mylocalhost/x:1", "mylocalhost/x:1"),
    ],
)
def test_add_docker_io_follows_minikube(name: str, normalized: str) -> None:
    assert add_docker_io(name) == normalized


def test_minikube_exits_0_when_the_image_is_missing(tools: FakeClusterTools) -> None:
    tools.minikube_profile("dev")
    result = run(tools, "minikube", "-p", "dev", "image", "load", IMAGE, "--daemon")
    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr == f"! The image '{IMAGE}' was not found; unable to add it to cache.\n"
    listed = json.loads(run(tools, "minikube", "-p", "dev", "image", "ls", "--format", "json").stdout)
    assert {tag for item in listed for tag in item["repoTags"]} == {
        "registry.k8s.io/pause:3.10",
        "gcr.io/k8s-minikube/storage-provisioner:v5",
    }
    assert set(listed[0]) == {"id", "repoDigests", "repoTags", "size"}


def test_minikube_without_daemon_asks_docker_hub(tools: FakeClusterTools) -> None:
    """--daemon が無いと短い名前はまず Docker Hub に尋ね、ローカルに無ければ Docker Hub から読み込む。"""
    tools.minikube_profile("dev")
    tools.hub_images(IMAGE)
    assert run(tools, "minikube", "-p", "dev", "image", "load", IMAGE).returncode == 0
    assert tools.state()["hub_lookups"]
    assert f"docker.io/library/{IMAGE}" in tools.minikube_images("dev")


def test_minikube_overwrite_removes_an_image_only_in_the_node(tools: FakeClusterTools) -> None:
    """docker-env の下で作ったイメージを変数の無いまま `image load` すると、ノードから消えて 0 で終わる。"""
    tools.minikube_profile("dev")
    tools.node_images("dev", IMAGE)
    result = run(tools, "minikube", "-p", "dev", "image", "load", IMAGE, "--daemon")
    assert (result.returncode, result.stderr) == (
        0,
        f"! The image '{IMAGE}' was not found; unable to add it to cache.\n",
    )
    assert f"docker.io/library/{IMAGE}" not in tools.minikube_images("dev")


def test_minikube_without_overwrite_keeps_the_node_image(tools: FakeClusterTools) -> None:
    tools.minikube_profile("dev")
    tools.node_images("dev", IMAGE)
    result = run(tools, "minikube", "-p", "dev", "image", "load", IMAGE, "--daemon", "--overwrite=false")
    assert result.returncode == 0
    assert f"docker.io/library/{IMAGE}" in tools.minikube_images("dev")


def test_local_images_also_go_into_a_linked_engine(tmp_path: Path) -> None:
    from tests.fakes.docker_engine import FakeDockerEngine

    engine = FakeDockerEngine()
    try:
        tools = FakeClusterTools(tmp_path / "bin", engine=engine)
        tools.local_images(IMAGE, IMAGE)
        assert [image["RepoTags"] for image in engine.images] == [[IMAGE]]
        assert engine.client().images.get(IMAGE).tags == [IMAGE]
    finally:
        engine.close()


def test_a_stopped_minikube_runtime_says_nothing(tools: FakeClusterTools) -> None:
    tools.local_images(IMAGE)
    tools.minikube_profile("dev", running=False)
    result = run(tools, "minikube", "-p", "dev", "image", "load", IMAGE, "--daemon")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    listed = run(tools, "minikube", "-p", "dev", "image", "ls", "--format", "json")
    assert (listed.returncode, listed.stdout) == (0, "[]\n")


def test_an_unknown_minikube_profile_exits_14(tools: FakeClusterTools) -> None:
    for command in (["image", "load", IMAGE, "--daemon"], ["image", "ls", "--format", "json"]):
        result = run(tools, "minikube", "-p", "nope", *command)
        assert result.returncode == 14
        assert 'X Exiting due to MK_USAGE: loading profile: cluster "nope" does not exist\n' in result.stderr


def test_kind_import_fails_under_the_containerd_image_store(tools: FakeClusterTools) -> None:
    tools.local_images(IMAGE)
    tools.kind_cluster("ci", containerd_store=True)
    result = run(tools, "kind", "load", "docker-image", IMAGE, "--name", "ci")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0].endswith('not yet present on node "ci-control-plane", loading...')
    assert lines[1] == (
        'ERROR: failed to load image: command "docker exec --privileged -i ci-control-plane ctr '
        '--namespace=k8s.io images import --all-platforms --digests --snapshotter=overlayfs -" '
        "failed with error: exit status 1"
    )
    assert lines[2] == ""
    assert lines[3].startswith("Command Output: ctr: content digest sha256:")
    assert lines[3].endswith(": not found")
    assert tools.kind_images("ci") == []


def test_kind_refuses_a_missing_archive_and_a_missing_cluster(
    tools: FakeClusterTools, tmp_path: Path
) -> None:
    missing = run(tools, "kind", "load", "image-archive", str(tmp_path / "none.tar"), "--name", "ci")
    assert (missing.returncode, missing.stderr) == (
        1,
        f"ERROR: stat {tmp_path / 'none.tar'}: no such file or directory\n",
    )
    (tmp_path / "image.tar").write_bytes(b"not a tar")
    no_cluster = run(tools, "kind", "load", "image-archive", str(tmp_path / "image.tar"), "--name", "ci")
    assert (no_cluster.returncode, no_cluster.stderr) == (1, 'ERROR: no nodes found for cluster "ci"\n')
    tools.kind_cluster("ci")
    broken = run(tools, "kind", "load", "image-archive", str(tmp_path / "image.tar"), "-n", "ci")
    assert broken.returncode == 1
    assert broken.stderr.endswith("Command Output: ctr: unrecognized image format\n")
