"""デプロイするイメージの決定と、クラスタへの渡し方（minikube・kind への読み込み、レジストリへの push）。"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mii_cli import references
from mii_cli.errors import ClusterError, ConfigError, DockerError
from mii_cli.image import delivery as im
from mii_cli.image.daemon import DockerDaemon
from mii_cli.kube import cluster as c
from tests.fakes.cluster_tools import FakeClusterTools
from tests.fakes.docker_engine import FakeDockerEngine
from tests.fakes.kube_api import write_kubeconfig
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
    assert (
        im.registry_reference("ghcr.io/me", "model-in-image@sha256:" + "c" * 64)
        == "ghcr.io/me/model-in-image:latest"
    )
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
        "--daemon",
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
    assert f"minikube -p dev image load {IMAGE} --daemon" in im.missing_image_hint(
        info("minikube", "dev"), IMAGE
    )
    assert "Docker Desktop" in im.missing_image_hint(info("docker-desktop"), IMAGE)
    assert "--registry" in im.missing_image_hint(info("other"), IMAGE)


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_docker: FakeDockerEngine) -> FakeClusterTools:
    """PATH の先頭に置く偽の minikube（v1.38.1）と kind（v0.30.0）。

    ローカルの Docker は代役のエンジン（DOCKER_HOST）で、`tools.local_images` はそこにもイメージを足す。
    """
    fake = FakeClusterTools(tmp_path / "bin", engine=fake_docker)
    monkeypatch.setenv("PATH", f"{fake.folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_HOST", fake_docker.url)
    return fake


LOADED = f"docker.io/library/{IMAGE}"


# --- minikube ---


def test_minikube_loads_from_the_daemon_and_checks_the_image_list(tools: FakeClusterTools) -> None:
    tools.local_images(IMAGE)
    tools.minikube_profile("dev")
    assert im.ensure_in_cluster(info("minikube", "dev"), IMAGE) == IMAGE
    assert tools.calls("minikube") == [
        ["-p", "dev", "image", "load", IMAGE, "--daemon"],
        ["-p", "dev", "image", "ls", "--format", "json"],
    ]
    assert LOADED in tools.minikube_images("dev")
    assert tools.state()["hub_lookups"] == []


def test_a_missing_image_is_refused_before_a_load_that_would_load_nothing(tools: FakeClusterTools) -> None:
    """イメージがローカルに無ければ、minikube は警告だけ出して 0 で終わる。mii はその前に止まる。"""
    tools.minikube_profile("dev")
    tools.hub_images(IMAGE)
    with pytest.raises(DockerError) as error:
        im.ensure_in_cluster(info("minikube", "dev"), IMAGE)
    assert error.value.message == (
        f"image {IMAGE} is not in the local Docker engine, so minikube image load would load nothing "
        "(it exits 0 all the same)"
    )
    assert "mii build" in (error.value.hint or "")
    assert "docker image ls model-in-image" in (error.value.hint or "")
    # ノードの一覧を見ただけで、読み込み（と Docker Hub への問い合わせ）はしない
    assert tools.calls("minikube") == [["-p", "dev", "image", "ls", "--format", "json"]]
    assert tools.state()["hub_lookups"] == []


def test_an_image_only_in_the_node_is_not_loaded_over(tools: FakeClusterTools) -> None:
    """docker-env の下で作り、ノードにだけあるイメージは、変数の無いまま読み込むと消える: 読み込まない。"""
    tools.minikube_profile("dev")
    tools.node_images("dev", IMAGE)
    with pytest.raises(ClusterError) as error:
        im.ensure_in_cluster(info("minikube", "dev"), IMAGE)
    assert error.value.message.startswith(
        f"{IMAGE} is only in minikube dev's node (built there under docker-env)"
    )
    assert "minikube image load would remove it from the node" in error.value.message
    assert "eval $(minikube -p dev docker-env)" in (error.value.hint or "")
    assert "--no-load" in (error.value.hint or "")
    assert [call[3] for call in tools.calls("minikube")] == ["ls"]
    assert LOADED in tools.minikube_images("dev")


def test_a_stopped_minikube_runtime_is_an_error(tools: FakeClusterTools) -> None:
    """コンテナランタイムが止まっていると、minikube は何も出さずに 0 で終わり、一覧は空になる。"""
    tools.local_images(IMAGE)
    tools.minikube_profile("dev", running=False)
    with pytest.raises(ClusterError, match=f"did not load {IMAGE}") as error:
        im.ensure_in_cluster(info("minikube", "dev"), IMAGE)
    details = error.value.details or ""
    assert "minikube printed nothing and exited 0" in details
    assert "the profile's image list is empty" in details
    assert len(tools.calls("minikube")) == 2


def test_an_unknown_minikube_profile_shows_minikubes_message(tools: FakeClusterTools) -> None:
    tools.local_images(IMAGE)
    tools.minikube_profile("dev")
    with pytest.raises(ClusterError, match="failed with exit code 14") as error:
        im.ensure_in_cluster(info("minikube", "nope"), IMAGE)
    assert error.value.message.startswith(f"minikube -p nope image load {IMAGE} --daemon")
    assert 'X Exiting due to MK_USAGE: loading profile: cluster "nope" does not exist' in (
        error.value.details or ""
    )
    assert "minikube profile list" in (error.value.hint or "")
    assert [call[3] for call in tools.calls("minikube")] == ["load"]


def test_a_failing_minikube_image_list_is_an_error(tools: FakeClusterTools) -> None:
    tools.local_images(IMAGE)
    tools.minikube_profile("dev")
    tools.override_image_ls(code=80, stderr="X Exiting due to GUEST_IMAGE_LIST: Failed to list images")
    with pytest.raises(ClusterError, match="image ls --format json failed with exit code 80") as error:
        im.ensure_in_cluster(info("minikube", "dev"), IMAGE)
    assert "GUEST_IMAGE_LIST" in (error.value.details or "")


@pytest.mark.parametrize("printed", ["E1205 12:00:00 klog line\n[]", '{"repoTags": []}', "[1, 2]", ""])
def test_an_unreadable_minikube_image_list_is_an_error(tools: FakeClusterTools, printed: str) -> None:
    tools.local_images(IMAGE)
    tools.minikube_profile("dev")
    tools.override_image_ls(stdout=printed)
    with pytest.raises(ClusterError, match="printed something that is not an image list") as error:
        im.ensure_in_cluster(info("minikube", "dev"), IMAGE)
    assert error.value.details == (printed.strip() or "(no output)")


def test_a_null_minikube_image_list_means_no_images(tools: FakeClusterTools) -> None:
    tools.local_images(IMAGE)
    tools.minikube_profile("dev")
    tools.override_image_ls(stdout="null")
    with pytest.raises(ClusterError, match="did not load") as error:
        im.ensure_in_cluster(info("minikube", "dev"), IMAGE)
    assert "the profile's image list is empty" in (error.value.details or "")


@pytest.mark.parametrize(
    ("tags", "digests", "image", "held"),
    [
        ([LOADED], [], IMAGE, True),
        ([IMAGE], [], IMAGE, True),
        (["docker.io/library/model-in-image:0.1.0"], [], IMAGE, False),
        (["docker.io/me/iris:1"], [], "me/iris:1", True),
        (["docker.io/library/iris:latest"], [], "iris", True),
        ([], ["docker.io/library/iris@sha256:" + "e" * 64], "iris@sha256:" + "e" * 64, True),
    ],
)
def test_holds_image_compares_normalized_references(
    tags: list[str], digests: list[str], image: str, held: bool
) -> None:
    listed = [{"id": "1", "repoDigests": digests, "repoTags": tags, "size": "1"}]
    assert im.holds_image(listed, image) is held


def test_a_renamed_minikube_context_still_loads_into_its_profile(
    tools: FakeClusterTools, tmp_path: Path
) -> None:
    """`kubectl config rename-context dev dev-laptop` の後も、プロファイルはクラスタの項目の名前（dev）。"""
    path = write_kubeconfig(
        tmp_path / "config",
        "https://127.0.0.1:6443",
        context="dev-laptop",
        cluster_name="dev",
        extensions=[{"name": "cluster_info", "extension": {"provider": "minikube.sigs.k8s.io"}}],
    )
    _, renamed = c.connect(config_file=str(path), check=False)
    tools.local_images(IMAGE)
    tools.minikube_profile("dev")
    im.ensure_in_cluster(renamed, IMAGE)
    assert [call[:2] for call in tools.calls("minikube")] == [["-p", "dev"], ["-p", "dev"]]
    assert LOADED in tools.minikube_images("dev")


# --- kind ---


def test_kind_loads_the_docker_image(tools: FakeClusterTools, engine: FakeDockerEngine) -> None:
    tools.local_images(IMAGE)
    tools.kind_cluster("ci")
    assert im.ensure_in_cluster(info("kind", "ci"), IMAGE, client=engine.client()) == IMAGE
    assert tools.calls("kind") == [["load", "docker-image", IMAGE, "--name", "ci"]]
    assert tools.kind_images("ci") == [LOADED]
    assert engine.saves == []


def test_a_renamed_kind_context_still_loads_into_its_cluster(tools: FakeClusterTools, tmp_path: Path) -> None:
    path = write_kubeconfig(
        tmp_path / "config", "https://127.0.0.1:6443", context="laptop", cluster_name="kind-ci"
    )
    _, renamed = c.connect(config_file=str(path), check=False)
    tools.local_images(IMAGE)
    tools.kind_cluster("ci")
    im.ensure_in_cluster(renamed, IMAGE)
    assert tools.calls("kind") == [["load", "docker-image", IMAGE, "--name", "ci"]]


@pytest.mark.parametrize(
    ("local", "cluster", "says"),
    [
        (False, True, f'image: "{IMAGE}" not present locally'),
        (True, False, 'no nodes found for cluster "ci"'),
    ],
)
def test_kind_failures_other_than_the_import_do_not_fall_back(
    tools: FakeClusterTools, engine: FakeDockerEngine, local: bool, cluster: bool, says: str
) -> None:
    if local:
        tools.local_images(IMAGE)
    if cluster:
        tools.kind_cluster("ci", containerd_store=True)
    with pytest.raises(ClusterError, match="failed with exit code 1") as error:
        im.ensure_in_cluster(info("kind", "ci"), IMAGE, client=engine.client())
    assert says in (error.value.details or "")
    assert [call[1] for call in tools.calls("kind")] == ["docker-image"]
    assert engine.saves == []


ARM64 = {"os": "linux", "architecture": "arm64", "variant": "v8"}
AMD64 = {"os": "linux", "architecture": "amd64"}


@pytest.fixture
def multi_platform(fake_docker: FakeDockerEngine, tools: FakeClusterTools) -> FakeDockerEngine:
    """linux/amd64 と linux/arm64/v8 の index を持ち、ローカルには arm64 だけがあるイメージ。

    kind のクラスタは Docker の containerd イメージストアの下にあり、kind load docker-image が失敗する。
    """
    fake_docker.images = [
        {
            "Id": "sha256:" + "f" * 64,
            "RepoTags": [IMAGE],
            "Created": "2025-06-01T00:00:00Z",
            "Os": "linux",
            "Architecture": "arm64",
            "Variant": "v8",
            "_platforms": [AMD64, ARM64],
        }
    ]
    tools.local_images(IMAGE)
    tools.kind_cluster("ci", containerd_store=True)
    return fake_docker


def test_kind_falls_back_to_a_single_platform_archive(
    tools: FakeClusterTools, multi_platform: FakeDockerEngine
) -> None:
    """API 1.48 以上: containerd のイメージストアでの失敗の後、自身のプラットフォームの tar を読み込む。"""
    multi_platform.api_version = "1.48"
    multi_platform.containerd_store = True
    assert im.ensure_in_cluster(info("kind", "ci"), IMAGE, client=multi_platform.client()) == IMAGE
    calls = tools.calls("kind")
    assert calls[0] == ["load", "docker-image", IMAGE, "--name", "ci"]
    assert calls[1][:2] == ["load", "image-archive"]
    assert calls[1][2].endswith("image.tar")
    assert calls[1][3:] == ["--name", "ci"]
    assert multi_platform.saves == [{"name": IMAGE, "platform": ARM64}]
    assert any(call.startswith(f"GET /v1.48/images/{IMAGE}/get?platform=") for call in multi_platform.calls)
    [archive] = tools.kind_archives("ci")
    assert (archive["images"], archive["platforms"]) == ([IMAGE], ["linux/arm64/v8"])
    assert tools.kind_images("ci") == [LOADED]


def test_kind_falls_back_to_a_plain_save_on_an_older_engine(
    tools: FakeClusterTools, multi_platform: FakeDockerEngine
) -> None:
    """API 1.41（Docker 20.10、グラフドライバのストア）: platform を送らずに保存する（tar は 1 つ）。"""
    multi_platform.api_version = "1.41"
    assert im.ensure_in_cluster(info("kind", "ci"), IMAGE, client=multi_platform.client()) == IMAGE
    assert multi_platform.saves == [{"name": IMAGE, "platform": None}]
    assert not any("platform=" in call for call in multi_platform.calls)
    [archive] = tools.kind_archives("ci")
    assert (archive["images"], archive["platforms"]) == ([IMAGE], ["linux/arm64/v8"])


def test_a_multi_platform_archive_cannot_be_imported(
    tools: FakeClusterTools, multi_platform: FakeDockerEngine
) -> None:
    """containerd のイメージストアで API 1.47 以下なら、tar は全プラットフォームを指して読み込めない。

    エラーは tar の読み込みの失敗で、details に最初の kind load docker-image の失敗も添える。
    """
    multi_platform.api_version = "1.47"
    multi_platform.containerd_store = True
    with pytest.raises(ClusterError, match=r"kind load image-archive .* failed with exit code 1") as error:
        im.ensure_in_cluster(info("kind", "ci"), IMAGE, client=multi_platform.client())
    details = error.value.details or ""
    assert details.count("ctr: content digest sha256:") == 2
    assert f"before that, kind load docker-image {IMAGE} --name ci failed with exit code 1" in details
    assert multi_platform.saves == [{"name": IMAGE, "platform": None}]
    assert tools.kind_archives("ci") == []


def test_an_archive_of_a_missing_image_says_build_it(
    tools: FakeClusterTools, engine: FakeDockerEngine
) -> None:
    with pytest.raises(DockerError, match="not in the local Docker engine") as error:
        im.load_archive(info("kind", "ci"), "model-in-image:missing", engine.client())
    assert "mii build" in (error.value.hint or "")
    assert tools.calls("kind") == []


# --- 道具が無い・終わらない ---


@pytest.mark.parametrize("flavor", ["minikube", "kind"])
def test_a_missing_tool_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, flavor: str) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ClusterError, match=f"{flavor} is not installed") as error:
        im.ensure_in_cluster(info(flavor), IMAGE)
    assert "--registry" in (error.value.hint or "")


def test_a_hanging_tool_times_out(tools: FakeClusterTools) -> None:
    tools.hang("kind")
    with pytest.raises(ClusterError, match="did not finish in 1s"):
        im.run_load(["kind", "load", "docker-image", IMAGE], timeout=1.0)


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
        (
            "other",
            IMAGE,
            "127.0.0.1:5000",
            "push",
            f"127.0.0.1:5000/{IMAGE}",
            "by the digest the push reports",
        ),
        ("other", f"127.0.0.1:5000/{IMAGE}", "127.0.0.1:5000", "use", f"127.0.0.1:5000/{IMAGE}", "already"),
        ("other", f"127.0.0.1:5000/{IMAGE}", None, "use", f"127.0.0.1:5000/{IMAGE}", "names its registry"),
        ("minikube", IMAGE, None, "load", IMAGE, f"minikube -p x image load {IMAGE} --daemon"),
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
    assert im.latest_local_image("model-in-image", engine.client()) == IMAGE
    assert any("/images/json" in call for call in engine.calls)


def test_no_local_image_says_build_it(fake_docker: FakeDockerEngine) -> None:
    with pytest.raises(ConfigError, match="no local image model-in-image") as error:
        im.latest_local_image("model-in-image", fake_docker.client())
    assert "mii build" in (error.value.hint or "")


def test_an_unreachable_docker_is_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{free_port()}")
    with pytest.raises(DockerError, match="cannot reach the Docker engine"):
        im.latest_local_image("model-in-image")


def test_the_default_image_is_the_newest_unique_tag_of_the_given_repository(
    fake_docker: FakeDockerEngine,
) -> None:
    fake_docker.images = [
        {
            "Id": "sha256:" + "c" * 64,
            "RepoTags": ["team/iris:0.1.0", "team/iris:0.1.0-abc-def"],
            "Created": "2026",
        },
        {"Id": "sha256:" + "d" * 64, "RepoTags": [IMAGE], "Created": "2027"},
    ]
    assert im.latest_local_image("team/iris", fake_docker.client()) == "team/iris:0.1.0-abc-def"


def test_pushing_tags_the_image_for_the_registry_and_pushes_it(engine: FakeDockerEngine) -> None:
    reference = im.ensure_in_cluster(info("other"), IMAGE, registry="localhost:5000", client=engine.client())
    # push が知らせたダイジェストで固定した参照（タグは読みやすさのために残る）
    digest = FakeDockerEngine.digest_of(engine.images[1])
    assert reference == f"localhost:5000/{IMAGE}@{digest}"
    tag_call = next(call for call in engine.calls if "/tag?" in call)
    assert "repo=localhost%3A5000%2Fmodel-in-image" in tag_call
    assert any("/images/localhost:5000/model-in-image/push" in call for call in engine.calls)
    # 本物と同じく、エンジンは push したダイジェストをイメージに記録する
    assert f"localhost:5000/model-in-image@{digest}" in engine.images[1]["RepoDigests"]


def test_push_returns_the_digest_the_engine_reports(engine: FakeDockerEngine) -> None:
    digest = im.push(IMAGE, "ghcr.io/me/model-in-image:1", engine.client())
    assert digest == FakeDockerEngine.digest_of(engine.images[1])
    assert references.is_digest(digest)
    # 同じイメージをもう一度 push しても同じダイジェスト
    assert im.push(IMAGE, "ghcr.io/me/model-in-image:1", engine.client()) == digest


@pytest.mark.parametrize(
    "lines",
    [
        [{"status": "Pushed"}],  # ダイジェストを知らせない
        [
            {"status": "1: digest: sha256:abc size: 1"},
            {"aux": {"Tag": "1", "Digest": "sha256:abc", "Size": 1}},
        ],
        [{"progressDetail": {}, "aux": {"Tag": "other", "Digest": "sha256:" + "c" * 64, "Size": 1}}],
    ],
    ids=["no-aux", "malformed-digest", "another-tag"],
)
def test_a_push_without_a_digest_for_the_tag_is_an_error(
    engine: FakeDockerEngine, lines: list[dict[str, object]]
) -> None:
    engine.push_lines = lines
    with pytest.raises(DockerError, match=r"push of ghcr.io/me/model-in-image:1 reported .*digest") as error:
        im.push(IMAGE, "ghcr.io/me/model-in-image:1", engine.client())
    assert "docker push ghcr.io/me/model-in-image:1" in (error.value.hint or "")


def test_the_digest_is_read_from_the_aux_line_of_the_tag() -> None:
    digest = "sha256:" + "c" * 64
    assert (
        im.pushed_digest({"progressDetail": {}, "aux": {"Tag": "1", "Digest": digest, "Size": 9}}, "1")
        == digest
    )
    assert im.pushed_digest({"aux": {"Digest": digest}}, "1") == digest
    assert im.pushed_digest({"status": f"1: digest: {digest} size: 9"}, "1") is None
    assert im.pushed_digest({"aux": {"ID": digest}}, "1") is None
    assert im.pushed_digest("text", "1") is None


def test_a_digest_reference_with_a_registry_is_kept() -> None:
    pinned = f"127.0.0.1:5000/{IMAGE}@sha256:" + "c" * 64
    for registry in (None, "127.0.0.1:5000"):
        plan = im.plan_image(info("other"), pinned, registry=registry)
        assert (plan.action, plan.reference) == ("use", pinned)
        assert im.ensure_in_cluster(info("other"), pinned, registry=registry) == pinned


def test_a_local_digest_reference_is_pushed_by_its_tag() -> None:
    local = f"{IMAGE}@sha256:" + "c" * 64
    plan = im.plan_image(info("other"), local, registry="127.0.0.1:5000")
    assert (plan.action, plan.reference) == ("push", f"127.0.0.1:5000/{IMAGE}")


def test_a_refused_push_says_to_log_in(engine: FakeDockerEngine) -> None:
    engine.push_lines = [{"error": "denied: requested access is denied"}]
    with pytest.raises(DockerError, match="denied") as error:
        im.push(IMAGE, "ghcr.io/me/model-in-image:1", engine.client())
    assert "docker login" in (error.value.hint or "")


def test_pushing_a_missing_image_says_build_it(engine: FakeDockerEngine) -> None:
    with pytest.raises(DockerError, match="not in the local Docker engine"):
        im.push("model-in-image:missing", "ghcr.io/me/model-in-image", engine.client())


# --- minikube の docker-env ---


def docker_env(profile: str, host: str = "tcp://192.168.49.2:2376") -> DockerDaemon:
    return DockerDaemon(host=host, minikube_profile=profile)


def test_docker_env_for_the_context_s_profile_skips_the_load(tools: FakeClusterTools) -> None:
    """docker-env の下で作ったイメージはノードのエンジンにある: `image load` は走らせない（消してしまう）。"""
    tools.minikube_profile("dev")
    tools.local_images(IMAGE)  # docker-env の下では、Docker SDK の「ローカル」はノードのエンジン
    plan = im.plan_image(info("minikube", "dev"), IMAGE, daemon=docker_env("dev"))
    assert (plan.action, plan.reference) == ("docker-env", IMAGE)
    assert plan.detail == (
        f"{IMAGE} is in minikube dev's Docker engine (docker-env), where the kubelet finds it: no image load"
    )
    assert im.carry_out(info("minikube", "dev"), IMAGE, plan) == IMAGE
    assert tools.calls("minikube") == []


def test_docker_env_without_the_image_is_one_error(tools: FakeClusterTools) -> None:
    tools.minikube_profile("dev")
    with pytest.raises(DockerError) as error:
        im.ensure_in_cluster(info("minikube", "dev"), IMAGE, daemon=docker_env("dev"))
    assert error.value.message == f"image {IMAGE} is not in minikube dev's Docker engine (docker-env)"
    assert "eval $(minikube -p dev docker-env)" in (error.value.hint or "")
    assert tools.calls("minikube") == []


@pytest.mark.parametrize(
    ("flavor", "name", "says", "fix"),
    [
        ("minikube", "prod", "is minikube profile 'prod'", "eval $(minikube -p prod docker-env)"),
        ("kind", "ci", "is a kind cluster", None),
        ("other", "x", "is a other cluster", None),
        ("docker-desktop", "docker-desktop", "is a docker-desktop cluster", None),
    ],
)
def test_docker_env_for_another_cluster_is_one_error(
    tools: FakeClusterTools, flavor: str, name: str, says: str, fix: str | None
) -> None:
    with pytest.raises(ConfigError) as error:
        im.plan_image(info(flavor, name), IMAGE, daemon=docker_env("dev"))
    assert error.value.message == (
        f"the Docker variables point at minikube profile 'dev' (MINIKUBE_ACTIVE_DOCKERD), but the kube "
        f"context 'ctx-{name}' {says}"
    )
    assert "eval $(minikube -p dev docker-env --unset)" in (error.value.hint or "")
    if fix:
        assert fix in (error.value.hint or "")
    # push もその Docker からなので同じく止まる
    with pytest.raises(ConfigError):
        im.plan_image(info(flavor, name), IMAGE, registry="127.0.0.1:5000", daemon=docker_env("dev"))
    assert tools.calls("minikube") == tools.calls("kind") == []


def test_docker_env_does_not_matter_for_what_the_engine_does_not_carry() -> None:
    """レジストリの参照と --no-load は Docker のエンジンを使わない。"""
    pinned = f"ghcr.io/me/{IMAGE}"
    assert im.plan_image(info("kind", "ci"), pinned, daemon=docker_env("dev")).action == "use"
    assert im.plan_image(info("kind", "ci"), IMAGE, load=False, daemon=docker_env("dev")).action == "use"


def test_docker_env_with_a_registry_pushes_from_the_node() -> None:
    plan = im.plan_image(info("minikube", "dev"), IMAGE, registry="127.0.0.1:5000", daemon=docker_env("dev"))
    assert (plan.action, plan.reference) == ("push", f"127.0.0.1:5000/{IMAGE}")


def test_the_plan_is_a_result_for_json() -> None:
    from mii_cli.results import to_json

    plan = im.plan_image(info("minikube", "dev"), IMAGE, daemon=docker_env("dev"))
    assert to_json(plan) == {"action": "docker-env", "reference": IMAGE, "detail": plan.detail}
