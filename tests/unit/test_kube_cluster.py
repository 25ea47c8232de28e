"""クラスタの種類の判定、kube config からの接続、イメージの決定とクラスタへの読み込み。"""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker
import pytest

from mii_cli.errors import ClusterError, ConfigError, DockerError
from mii_cli.kube import cluster as c
from mii_cli.kube import images as im
from tests.fakes.kube_api import FakeApiServer, write_kubeconfig

MINIKUBE_EXTENSION = [
    {"name": "cluster_info", "extension": {"provider": "minikube.sigs.k8s.io", "version": "v1.37.0"}}
]
IMAGE = "model-in-image:0.1.0-0123456789ab-fedcba987654"


# --- 種類の判定 ---


@pytest.mark.parametrize(
    ("context", "cluster", "extensions", "expected"),
    [
        ("minikube", "minikube", None, ("minikube", "minikube")),
        ("dev", "dev", MINIKUBE_EXTENSION, ("minikube", "dev")),
        ("kind-kind", "kind-kind", None, ("kind", "kind")),
        ("ci", "kind-ci", None, ("kind", "ci")),
        ("docker-desktop", "docker-desktop", None, ("docker-desktop", "docker-desktop")),
        ("gke_proj_zone_prod", "gke_proj_zone_prod", None, ("other", "gke_proj_zone_prod")),
        (
            "arn:aws:eks:x",
            "arn:aws:eks:x",
            [{"name": "x", "extension": "opaque"}],
            ("other", "arn:aws:eks:x"),
        ),
    ],
)
def test_detect_flavor(context: str, cluster: str, extensions: Any, expected: tuple[str, str]) -> None:
    assert c.detect_flavor(context, cluster, "https://127.0.0.1:6443", extensions) == expected


def test_connect_reads_the_kubeconfig_and_asks_the_server(fake_api: FakeApiServer, tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "config", fake_api.url, context="kind-demo")
    client, info = c.connect(config_file=str(path))
    assert info == c.ClusterInfo("kind-demo", fake_api.url, "kind", "demo", "v1.34.0")
    assert info.as_dict()["flavor"] == "kind"
    assert fake_api.methods("GET", "/version")[0].headers["Authorization"] == "Bearer secret"
    assert client.configuration.host == fake_api.url


def test_connect_recognises_a_minikube_profile(fake_api: FakeApiServer, tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "config", fake_api.url, context="work", extensions=MINIKUBE_EXTENSION)
    monkey = pytest.MonkeyPatch()
    monkey.setenv("KUBECONFIG", f"{tmp_path / 'missing'}{os.pathsep}{path}")
    try:
        _, info = c.connect(check=False)
    finally:
        monkey.undo()
    assert (info.flavor, info.name, info.version) == ("minikube", "work", "")


def test_connect_to_a_missing_context(fake_api: FakeApiServer, tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "config", fake_api.url)
    with pytest.raises(ClusterError, match="'nope' does not exist"):
        c.connect("nope", config_file=str(path))


def test_no_kubeconfig_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ClusterError, match="no kube config found") as error:
        c.connect(config_file=str(tmp_path / "absent"))
    assert "minikube start" in (error.value.hint or "")


def test_broken_kubeconfig(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "contexts": []}))
    with pytest.raises(ClusterError):
        c.connect(config_file=str(path))


def test_unreachable_server_is_one_clear_error(tmp_path: Path) -> None:
    from tests.conftest import free_port

    path = write_kubeconfig(tmp_path / "config", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ClusterError, match="cannot reach the Kubernetes API server") as error:
        c.connect(config_file=str(path))
    assert "kubectl config use-context" in (error.value.hint or "")


def test_in_cluster_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kubernetes import config

    monkeypatch.setattr(config, "load_incluster_config", lambda: None)
    _, info = c.connect(config_file=str(tmp_path / "absent"), check=False)
    assert (info.context, info.flavor) == ("in-cluster", "other")


# --- イメージの参照 ---


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


def test_kind_falls_back_to_an_image_archive(fake_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """containerd のイメージストアで docker-image の読み込みが失敗したら、tar で読み込み直す。"""
    (fake_bin / "kind").write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{fake_bin}/kind.args"\n'
        'if [ "$2" = docker-image ]; then echo "ctr: content digest not found" >&2; exit 1; fi\n'
        f'cp "$3" "{fake_bin}/loaded.tar"\n'
    )

    class Image:
        def save(self, named: bool) -> list[bytes]:
            assert named is True
            return [b"layer-1", b"layer-2"]

    class Images:
        def get(self, name: str) -> Image:
            assert name == IMAGE
            return Image()

    class Client:
        images = Images()

    monkeypatch.setattr(im, "docker_client", Client)
    assert im.ensure_in_cluster(info("kind", "ci"), IMAGE) == IMAGE
    calls = (fake_bin / "kind.args").read_text().splitlines()
    assert calls[0] == f"load docker-image {IMAGE} --name ci"
    assert calls[1].startswith("load image-archive ")
    assert calls[1].endswith("image.tar --name ci")
    assert (fake_bin / "loaded.tar").read_bytes() == b"layer-1layer-2"


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


# --- Docker の HTTP の境界を置き換えた Docker SDK ---


class FakeDocker:
    """Docker Engine API の必要な部分だけを答える HTTP サーバー。"""

    def __init__(self, images: list[dict[str, Any]], push_lines: list[dict[str, Any]] | None = None) -> None:
        self.images = images
        self.push_lines = push_lines or [{"status": "Pushed"}]
        self.calls: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                fake.calls.append(f"GET {self.path}")
                path = self.path.split("?")[0]
                if path.endswith("/_ping"):
                    self._send(200, b"OK", "text/plain")
                elif path.endswith("/images/json"):
                    self._send(200, [{"Id": i["Id"], "RepoTags": i["RepoTags"]} for i in fake.images])
                elif "/images/" in path and path.endswith("/json"):
                    name = path.split("/images/", 1)[1].removesuffix("/json")
                    found = [i for i in fake.images if name in (i["Id"], *i["RepoTags"])]
                    if found:
                        self._send(200, found[0])
                    else:
                        self._send(404, {"message": f"No such image: {name}"})
                else:
                    self._send(404, {"message": "not found"})

            def do_POST(self) -> None:
                fake.calls.append(f"POST {self.path}")
                if "/push" in self.path:
                    body = b"".join(json.dumps(line).encode() + b"\r\n" for line in fake.push_lines)
                    self._send(200, body)
                else:
                    self._send(201, b"", "text/plain")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def client(self) -> Any:
        return docker.DockerClient(base_url=f"tcp://127.0.0.1:{self.httpd.server_address[1]}", version="1.43")


@pytest.fixture
def images() -> Iterator[list[dict[str, Any]]]:
    return [
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


def test_latest_local_image_asks_docker(images: list[dict[str, Any]]) -> None:
    fake = FakeDocker(images)
    try:
        assert im.latest_local_image(fake.client()) == IMAGE
        assert any("/images/json" in call for call in fake.calls)
    finally:
        fake.httpd.shutdown()


def test_no_local_image_says_build_it() -> None:
    fake = FakeDocker([])
    try:
        with pytest.raises(ConfigError, match="no local image model-in-image") as error:
            im.latest_local_image(fake.client())
        assert "mii build" in (error.value.hint or "")
    finally:
        fake.httpd.shutdown()


def test_unreachable_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import free_port

    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{free_port()}")
    with pytest.raises(DockerError, match="cannot reach the Docker engine") as error:
        im.latest_local_image()
    assert "DOCKER_HOST" in (error.value.hint or "")


def test_push_to_a_registry(images: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDocker(images)
    monkeypatch.setattr(im, "docker_client", fake.client)
    try:
        reference = im.ensure_in_cluster(info("other"), IMAGE, registry="localhost:5000")
        assert reference == f"localhost:5000/{IMAGE}"
        tag_call = next(call for call in fake.calls if "/tag?" in call)
        assert "repo=localhost%3A5000%2Fmodel-in-image" in tag_call
        assert any("/images/localhost:5000/model-in-image/push" in call for call in fake.calls)
    finally:
        fake.httpd.shutdown()


def test_push_errors(images: list[dict[str, Any]]) -> None:
    fake = FakeDocker(images, push_lines=[{"error": "denied: requested access is denied"}])
    try:
        with pytest.raises(DockerError, match="denied") as error:
            im.push(IMAGE, "ghcr.io/me/model-in-image:1", fake.client())
        assert "docker login" in (error.value.hint or "")
        with pytest.raises(DockerError, match="not in the local Docker engine"):
            im.push("model-in-image:missing", "ghcr.io/me/model-in-image", fake.client())
    finally:
        fake.httpd.shutdown()


def test_latest_local_image_follows_the_repository_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from mii_cli.settings import get_cli_settings

    class Image:
        def __init__(self, tags: list[str], created: str) -> None:
            self.tags, self.attrs = tags, {"Created": created}

    class Images:
        def list(self, name: str) -> list[Image]:
            assert name == "team/iris"
            return [Image(["team/iris:0.1.0", "team/iris:0.1.0-abc-def"], "2026-01-02")]

    class Client:
        images = Images()

    monkeypatch.setenv("MII_IMAGE_REPOSITORY", "team/iris")
    get_cli_settings.cache_clear()
    try:
        assert im.latest_local_image(Client()) == "team/iris:0.1.0-abc-def"
    finally:
        get_cli_settings.cache_clear()
