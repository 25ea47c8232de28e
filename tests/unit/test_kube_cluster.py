"""クラスタの種類の判定と、kube config からの接続。"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from mii_cli.errors import ClusterError
from mii_cli.kube import cluster as c
from tests.fakes.kube_api import FakeApiServer, write_kubeconfig
from tests.support import free_port

# minikube v1.38.1 がクラスタの項目（名前はプロファイル）に書く拡張
MINIKUBE_EXTENSION = [
    {
        "name": "cluster_info",
        "extension": {
            "last-update": "Fri, 05 Dec 2025 07:48:00 UTC",
            "provider": "minikube.sigs.k8s.io",
            "version": "v1.38.1",
        },
    }
]


# --- 種類の判定 ---


@pytest.mark.parametrize(
    ("context", "cluster", "extensions", "expected"),
    [
        ("minikube", "minikube", None, ("minikube", "minikube")),
        ("dev", "dev", MINIKUBE_EXTENSION, ("minikube", "dev")),
        # kubectl config rename-context の後: プロファイルはクラスタの項目の名前
        ("dev-laptop", "dev", MINIKUBE_EXTENSION, ("minikube", "dev")),
        ("laptop", "minikube", None, ("minikube", "minikube")),
        # クラスタの名前が無いときだけコンテキスト名
        ("minikube", "", None, ("minikube", "minikube")),
        ("work", "", MINIKUBE_EXTENSION, ("minikube", "work")),
        ("kind-kind", "kind-kind", None, ("kind", "kind")),
        ("ci", "kind-ci", None, ("kind", "ci")),
        ("kind-old", "kind-ci", None, ("kind", "ci")),
        ("kind-ci", "", None, ("kind", "ci")),
        ("kind-", "kind-", None, ("other", "kind-")),
        ("docker-desktop", "docker-desktop", None, ("docker-desktop", "docker-desktop")),
        ("desktop", "docker-desktop", None, ("docker-desktop", "docker-desktop")),
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
    assert fake_api.methods("GET", "/version")[0].headers["Authorization"] == "Bearer secret"
    assert client.configuration.host == fake_api.url


def test_connect_recognises_a_minikube_profile(fake_api: FakeApiServer, tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "config", fake_api.url, context="work", extensions=MINIKUBE_EXTENSION)
    with pytest.MonkeyPatch.context() as monkey:
        monkey.setenv("KUBECONFIG", f"{tmp_path / 'missing'}{os.pathsep}{path}")
        _, info = c.connect(check=False)
    assert (info.flavor, info.name, info.version) == ("minikube", "work", "")


def test_a_renamed_minikube_context_keeps_its_profile(fake_api: FakeApiServer, tmp_path: Path) -> None:
    """`kubectl config rename-context minikube dev-laptop` の後も、プロファイルはクラスタの項目の名前。"""
    path = write_kubeconfig(
        tmp_path / "config",
        fake_api.url,
        context="dev-laptop",
        cluster_name="minikube",
        extensions=MINIKUBE_EXTENSION,
    )
    _, info = c.connect(config_file=str(path), check=False)
    assert (info.context, info.flavor, info.name) == ("dev-laptop", "minikube", "minikube")


def test_a_renamed_kind_context_keeps_its_cluster(fake_api: FakeApiServer, tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "config", fake_api.url, context="kind-old", cluster_name="kind-ci")
    _, info = c.connect(config_file=str(path), check=False)
    assert (info.context, info.flavor, info.name) == ("kind-old", "kind", "ci")


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
    path = write_kubeconfig(tmp_path / "config", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ClusterError, match="cannot reach the Kubernetes API server") as error:
        c.connect(config_file=str(path))
    assert "kubectl config use-context" in (error.value.hint or "")


def test_in_cluster_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kubernetes import config

    monkeypatch.setattr(config, "load_incluster_config", lambda: None)
    _, info = c.connect(config_file=str(tmp_path / "absent"), check=False)
    assert (info.context, info.flavor) == ("in-cluster", "other")
