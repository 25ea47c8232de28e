"""`mii doctor` の点検（Docker エンジンとクラスタは HTTP の境界の代役、PATH とポートは本物）。"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mii_cli.image.daemon import DockerDaemon
from mii_cli.image.docker import docker_client
from mii_cli.kube.cluster import connect
from mii_cli.workflows import doctor
from tests.fakes.docker_engine import FakeDockerEngine
from tests.fakes.http import HttpStandIn
from tests.fakes.kube_api import FakeApiServer, write_kubeconfig
from tests.support import free_port

BASE = "localhost/python:3.13-slim"


def probe(engine: FakeDockerEngine | None = None, **options: Any) -> doctor.Probe:
    """代役の Docker エンジン（無ければ届かないエンジン）を見る Probe。"""
    dead = f"tcp://127.0.0.1:{free_port()}"

    def unreachable() -> Any:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("DOCKER_HOST", dead)
            return docker_client(timeout=2)

    values: dict[str, Any] = {
        "base_image": BASE,
        "build_network": None,
        "registry": None,
        "docker": engine.client if engine else unreachable,
    }
    return doctor.Probe(**{**values, **options})


def on_path(*names: str) -> Any:
    """PATH の検索の代わり: 指定した名前だけが /usr/bin にある。"""
    return lambda name: f"/usr/bin/{name}" if name in names else None


@pytest.fixture
def cluster(fake_api: FakeApiServer, tmp_path: Path) -> Any:
    """kube context の種類を選んで代役の API サーバーにつなぐ connect を返すファクトリ。"""

    def make(context: str) -> Any:
        config = write_kubeconfig(tmp_path / f"{context}.yaml", fake_api.url, context=context)
        return lambda name: connect(name, config_file=str(config))

    return make


@pytest.fixture
def no_cluster(tmp_path: Path) -> Any:
    """kube config の無い connect。"""
    return lambda name: connect(name, config_file=str(tmp_path / "absent"))


# --- 必須: Docker エンジン、ベースイメージ、ビルドのネットワーク --------------------------------


def test_a_reachable_engine_names_its_version(fake_docker: FakeDockerEngine) -> None:
    check = doctor.check_docker(probe(fake_docker))
    assert (check.name, check.ok, check.required) == ("docker", True, True)
    assert check.detail == "the local Docker engine: Docker 28.0.0-fake, API 1.43"


def test_an_unreachable_engine_fails_with_a_hint() -> None:
    check = doctor.check_docker(probe())
    assert not check.ok
    assert check.detail.startswith("the local Docker engine: cannot reach the Docker engine")
    assert "DOCKER_HOST" in (check.hint or "")


def test_a_local_base_image_passes(fake_docker: FakeDockerEngine) -> None:
    fake_docker.images = [{"Id": "sha256:" + "a" * 64, "RepoTags": [BASE], "Size": 120_000_000}]
    check = doctor.check_base_image(probe(fake_docker))
    assert check.ok
    assert check.detail == f"{BASE} is present locally (120 MB)"


def test_a_base_image_the_engine_can_pull_passes(fake_docker: FakeDockerEngine) -> None:
    fake_docker.pullable.add(BASE)
    assert doctor.check_base_image(probe(fake_docker)).ok


def test_a_base_image_out_of_reach_names_the_registry_less_settings(fake_docker: FakeDockerEngine) -> None:
    check = doctor.check_base_image(probe(fake_docker))
    assert not check.ok
    assert "no such host" in check.detail
    for name in ("--base-image", "MII_BASE_IMAGE", "MII_BUILD_NETWORK"):
        assert name in (check.hint or "")


def test_a_base_image_pinned_by_digest_is_found_by_its_digest(fake_docker: FakeDockerEngine) -> None:
    digest = "sha256:" + "d" * 64
    fake_docker.images = [
        {"Id": "sha256:" + "a" * 64, "RepoTags": [], "RepoDigests": [f"python@{digest}"], "Size": 1}
    ]
    check = doctor.check_base_image(probe(fake_docker, base_image=f"python:3.13-slim@{digest}"))
    assert check.ok, check.detail


def test_a_malformed_base_image_digest_fails_before_asking_the_engine(fake_docker: FakeDockerEngine) -> None:
    check = doctor.check_base_image(probe(fake_docker, base_image="python@sha256:abc"))
    assert not check.ok
    assert "malformed digest 'sha256:abc'" in check.detail
    assert fake_docker.calls == []


def test_without_an_engine_the_base_image_cannot_be_looked_for() -> None:
    check = doctor.check_base_image(probe())
    assert not check.ok
    assert check.detail.startswith(f"cannot look for {BASE}: cannot reach the Docker engine")


def test_no_build_network_setting_uses_the_default_network() -> None:
    check = doctor.check_build_network(probe())
    assert check.ok
    assert "MII_BUILD_NETWORK is not set" in check.detail


def test_a_build_network_of_the_engine_passes(fake_docker: FakeDockerEngine) -> None:
    check = doctor.check_build_network(probe(fake_docker, build_network="host"))
    assert check.ok
    assert check.detail == "RUN steps use the host network (MII_BUILD_NETWORK)"


def test_a_build_network_the_engine_does_not_have_fails(fake_docker: FakeDockerEngine) -> None:
    check = doctor.check_build_network(probe(fake_docker, build_network="hots"))
    assert not check.ok
    assert "MII_BUILD_NETWORK=hots" in check.detail
    assert "MII_BUILD_NETWORK=host" in (check.hint or "")


# --- 助言: クラスタ、metrics API、イメージの渡し方、wrk、ポート ---------------------------------


def test_a_reachable_cluster_names_its_flavour_and_version(cluster: Any, fake_api: FakeApiServer) -> None:
    check = doctor.check_kube_context(probe(connect=cluster("kind-demo")))
    assert (check.ok, check.required) == (True, False)
    assert check.detail == f"kind-demo (kind) at {fake_api.url}, Kubernetes v1.34.0"


def test_no_cluster_is_advice_with_how_to_start_one(no_cluster: Any) -> None:
    check = doctor.check_kube_context(probe(connect=no_cluster))
    assert (check.ok, check.required) == (False, False)
    assert "minikube start" in (check.hint or "")


def test_a_served_metrics_api_passes(cluster: Any, fake_api: FakeApiServer) -> None:
    fake_api.routes[("GET", "/apis/metrics.k8s.io/v1beta1")] = (200, {"kind": "APIResourceList"})
    assert doctor.check_metrics_api(probe(connect=cluster("minikube"))).ok


def test_a_missing_metrics_api_says_how_to_enable_it(cluster: Any) -> None:
    check = doctor.check_metrics_api(probe(connect=cluster("minikube")))
    assert not check.ok
    assert check.hint == "enable it with: minikube -p minikube addons enable metrics-server"


def test_the_metrics_api_needs_a_cluster(no_cluster: Any) -> None:
    check = doctor.check_metrics_api(probe(connect=no_cluster))
    assert check.detail.startswith("no cluster to ask: no kube config found")


@pytest.fixture
def registry() -> Iterator[HttpStandIn]:
    """レジストリの代わり（GET /v2/ に 200）。"""
    server = HttpStandIn({"/v2/": 200})
    yield server
    server.close()


def test_a_registry_that_answers_the_registry_api_passes(registry: HttpStandIn, no_cluster: Any) -> None:
    check = doctor.check_image_loader(probe(registry=f"127.0.0.1:{registry.port}", connect=no_cluster))
    assert check.ok
    assert registry.requests == ["/v2/"]


def test_a_registry_that_does_not_answer_fails() -> None:
    check = doctor.check_image_loader(probe(registry=f"127.0.0.1:{free_port()}"))
    assert not check.ok
    assert "ConnectError" in check.detail


def test_a_server_that_is_not_a_registry_fails(registry: HttpStandIn) -> None:
    registry.routes = {}
    check = doctor.check_image_loader(probe(registry=f"127.0.0.1:{registry.port}/team"))
    assert not check.ok
    assert "answered HTTP 404, not the registry API" in check.detail


@pytest.mark.parametrize(("context", "tool"), [("kind-demo", "kind"), ("minikube", "minikube")])
def test_a_local_cluster_needs_its_loader_on_path(cluster: Any, context: str, tool: str) -> None:
    found = doctor.check_image_loader(probe(connect=cluster(context), which=on_path(tool)))
    assert found.ok
    assert found.detail == f"load into {tool} with /usr/bin/{tool}"


def test_a_local_cluster_without_its_loader_fails(cluster: Any) -> None:
    check = doctor.check_image_loader(probe(connect=cluster("kind-demo"), which=on_path()))
    assert not check.ok
    assert "kind is not on PATH" in check.detail


def test_docker_desktop_needs_no_loader(cluster: Any) -> None:
    assert doctor.check_image_loader(probe(connect=cluster("docker-desktop"), which=on_path())).ok


def test_another_cluster_needs_a_registry(cluster: Any) -> None:
    check = doctor.check_image_loader(probe(connect=cluster("mii-e2e")))
    assert not check.ok
    assert "MII_REGISTRY" in (check.hint or "")


def test_wrk_on_path_passes() -> None:
    assert doctor.check_wrk(probe(which=on_path("wrk"))).detail == "/usr/bin/wrk (for mii benchmark)"


def test_missing_wrk_is_advice() -> None:
    check = doctor.check_wrk(probe(which=on_path()))
    assert (check.ok, check.required) == (False, False)
    assert "apt-get install wrk" in (check.hint or "")


def test_a_free_port_passes() -> None:
    port = free_port()
    check = doctor.check_port(probe(port=port))
    assert (check.name, check.ok) == (f"port-{port}", True)


def test_a_port_in_use_fails() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        check = doctor.check_port(probe(port=port))
    assert not check.ok
    assert "--port" in (check.hint or "")


# --- ビルドの行き先（minikube の docker-env） ---------------------------------------------------


def minikube_cluster(fake_api: FakeApiServer, tmp_path: Path, profile: str) -> Any:
    """minikube のプロファイル（kube config のクラスタの項目の名前）の代役のクラスタにつなぐ connect。"""
    config = write_kubeconfig(
        tmp_path / f"{profile}.yaml",
        fake_api.url,
        context=profile,
        cluster_name=profile,
        extensions=[{"name": "cluster_info", "extension": {"provider": "minikube.sigs.k8s.io"}}],
    )
    return lambda name: connect(name, config_file=str(config))


NODE = "tcp://192.168.49.2:2376"


def test_docker_env_for_the_context_s_profile_needs_no_load(fake_api: FakeApiServer, tmp_path: Path) -> None:
    docker_env = DockerDaemon(host=NODE, minikube_profile="dev")
    checked = probe(connect=minikube_cluster(fake_api, tmp_path, "dev"), daemon=docker_env)
    target = doctor.check_build_target(checked)
    assert target.ok
    assert target.detail == (
        f"builds go to minikube dev's Docker engine at {NODE} (docker-env); the cluster of dev uses them "
        "without a load"
    )
    loader = doctor.check_image_loader(checked)
    assert (loader.ok, loader.detail) == (
        True,
        "none needed: builds go into minikube dev's node (docker-env)",
    )


def test_docker_env_for_another_profile_is_flagged(fake_api: FakeApiServer, tmp_path: Path) -> None:
    docker_env = DockerDaemon(host=NODE, minikube_profile="old")
    target = doctor.check_build_target(
        probe(connect=minikube_cluster(fake_api, tmp_path, "dev"), daemon=docker_env)
    )
    assert not target.ok
    assert "point at minikube profile 'old'" in target.detail
    assert "eval $(minikube -p old docker-env --unset)" in (target.hint or "")


def test_the_local_engine_with_minikube_says_deploy_loads(fake_api: FakeApiServer, tmp_path: Path) -> None:
    target = doctor.check_build_target(probe(connect=minikube_cluster(fake_api, tmp_path, "dev")))
    assert target.ok
    assert target.detail == (
        "builds go to the local Docker engine; mii deploy loads them into the minikube nodes (dev)"
    )


def test_a_left_over_active_dockerd_is_flagged(no_cluster: Any) -> None:
    target = doctor.check_build_target(probe(connect=no_cluster, stray_profile="dev"))
    assert not target.ok
    assert "MINIKUBE_ACTIVE_DOCKERD=dev is set but DOCKER_HOST is not" in target.detail
    assert "eval $(minikube -p dev docker-env)" in (target.hint or "")


def test_no_cluster_still_names_the_engine(no_cluster: Any) -> None:
    target = doctor.check_build_target(
        probe(connect=no_cluster, daemon=DockerDaemon(host=NODE, minikube_profile="dev"))
    )
    assert (target.ok, target.detail) == (
        True,
        f"builds go to minikube dev's Docker engine at {NODE} (docker-env) (no cluster to compare)",
    )


# --- 全体 -------------------------------------------------------------------------------------


def test_the_report_has_every_check_in_order(fake_docker: FakeDockerEngine, no_cluster: Any) -> None:
    report = doctor.diagnose(probe(fake_docker, connect=no_cluster, which=on_path("wrk")))
    names = [check.name for check in report.checks]
    assert names == [
        "docker",
        "base-image",
        "build-network",
        "kube-context",
        "build-target",
        "metrics-api",
        "image-loader",
        "wrk",
        "port-8000",
    ]
    assert {check.name for check in report.checks if check.required} == {
        "docker",
        "base-image",
        "build-network",
    }


def test_failed_advice_does_not_fail_the_report(fake_docker: FakeDockerEngine, no_cluster: Any) -> None:
    fake_docker.pullable.add(BASE)
    report = doctor.diagnose(probe(fake_docker, connect=no_cluster, which=on_path(), port=free_port()))
    assert report.passed
    assert report.problems == []
    assert not all(check.ok for check in report.checks)


def test_a_failed_required_check_fails_the_report(fake_docker: FakeDockerEngine, no_cluster: Any) -> None:
    report = doctor.diagnose(probe(fake_docker, connect=no_cluster, which=on_path("wrk")))
    assert not report.passed
    assert [check.name for check in report.problems] == ["base-image"]


def test_the_engine_is_asked_once_for_all_checks(fake_docker: FakeDockerEngine) -> None:
    connections: list[int] = []

    def counting() -> Any:
        connections.append(1)
        return fake_docker.client()

    doctor.diagnose(probe(docker=counting), checks=[doctor.check_docker, doctor.check_base_image])
    assert connections == [1]


@pytest.mark.parametrize(
    ("registry", "scheme"),
    [
        ("127.0.0.1:5000", "http"),
        ("localhost:5000/team", "http"),
        ("[::1]:5000", "http"),
        ("registry.example.com", "https"),
    ],
)
def test_a_loopback_registry_is_asked_over_http(
    registry: str, scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Docker が http で話すのはループバックのレジストリだけ（IPv6 の [::1] も含む）
    asked: list[str] = []

    def answer(url: str, **_: Any) -> Any:
        asked.append(url)
        return type("Response", (), {"status_code": 200})()

    monkeypatch.setattr(doctor.httpx, "get", answer)
    assert doctor.registry_problem(registry) is None
    assert asked[0].startswith(f"{scheme}://")
