"""kube config を読み、クラスタに接続し、その種類（minikube・kind・その他）を見分ける。"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import config as _config
from kubernetes.client import ApiClient, VersionApi
from kubernetes.config.config_exception import ConfigException

from mii_cli.errors import ClusterError
from mii_cli.kube import api as kapi
from mii_cli.results import Result

# kube config の関数は型注釈が無いので Any として使う
config: Any = _config

MINIKUBE = "minikube"
KIND = "kind"
DOCKER_DESKTOP = "docker-desktop"
OTHER = "other"

# ローカルの Docker エンジンのイメージをそのまま使うクラスタ（コンテキストとクラスタの項目の名前）
DESKTOPS = ("docker-desktop", "docker-for-desktop", "rancher-desktop", "orbstack")

START_HINT = (
    "start a cluster (minikube start --cpus 4 --memory 8g, or kind create cluster) or point KUBECONFIG at one"
)


@dataclass(frozen=True)
class ClusterInfo(Result):
    """接続先のクラスタ。

    `flavor` はイメージの渡し方を決め、`name` は minikube のプロファイルか kind のクラスタ名。
    """

    context: str
    server: str
    flavor: str
    name: str
    version: str = ""


def detect_flavor(
    context: str, cluster: str = "", server: str = "", extensions: Any = None
) -> tuple[str, str]:
    """コンテキスト名・クラスタ名・サーバー・拡張情報からクラスタの種類と名前を推定する。

    名前はコンテキストではなく kube config のクラスタの項目から取る（`kubectl config rename-context`
    で変わるのはコンテキスト名だけで、クラスタの項目の名前は作った道具が付けたまま残る）。
    クラスタの名前が無いときだけコンテキスト名を使う。

    - minikube: クラスタの拡張 `cluster_info` の `provider: minikube.sigs.k8s.io`、または名前が minikube。
      minikube はクラスタの項目をプロファイルの名前で書くので、名前はそのままプロファイル
    - kind: クラスタの項目が `kind-<クラスタ名>`（無ければコンテキスト名が `kind-<クラスタ名>`）
    - docker-desktop: ローカルの Docker エンジンのイメージをそのまま使える
    """
    name = cluster or context
    for extension in extensions or []:
        body = (extension or {}).get("extension") or {}
        if isinstance(body, dict) and body.get("provider") == "minikube.sigs.k8s.io":
            return MINIKUBE, name
    if MINIKUBE in (cluster, context):
        return MINIKUBE, name
    for candidate in (cluster, context):
        if candidate.startswith("kind-") and len(candidate) > len("kind-"):
            return KIND, candidate.removeprefix("kind-")
    if cluster in DESKTOPS or context in DESKTOPS:
        return DOCKER_DESKTOP, name
    return OTHER, context


def kubeconfig_files(config_file: str | None = None) -> list[Path]:
    """読む kube config のファイル（KUBECONFIG は複数可）。"""
    value = config_file or os.environ.get("KUBECONFIG") or "~/.kube/config"
    return [Path(part).expanduser() for part in value.split(os.pathsep) if part]


def _cluster_entry(files: list[Path], cluster_name: str) -> dict[str, Any]:
    """kube config からクラスタの項目（server・extensions）を探す。"""
    for path in files:
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            continue
        for entry in document.get("clusters") or []:
            if entry.get("name") == cluster_name:
                cluster: dict[str, Any] = entry.get("cluster") or {}
                return cluster
    return {}


def connect(
    context: str | None = None, *, config_file: str | None = None, check: bool = True
) -> tuple[ApiClient, ClusterInfo]:
    """kube config（無ければ Pod 内の設定）で API クライアントを作り、届くことを確かめる。"""
    files = kubeconfig_files(config_file)
    present = [path for path in files if path.is_file()]
    if present:
        joined = os.pathsep.join(str(path) for path in present)
        try:
            contexts, active = config.list_kube_config_contexts(config_file=joined)
            chosen = next((c for c in contexts if c["name"] == context), None) if context else active
            if chosen is None:
                raise ClusterError(
                    f"kube context {context!r} does not exist",
                    hint="list contexts with kubectl config get-contexts",
                )
            client = config.new_client_from_config(config_file=joined, context=chosen["name"])
        except ConfigException as error:
            raise ClusterError(f"cannot use the kube config {joined}: {error}", hint=START_HINT) from None
        cluster_name = (chosen.get("context") or {}).get("cluster", "")
        entry = _cluster_entry(present, cluster_name)
        flavor, name = detect_flavor(
            chosen["name"], cluster_name, entry.get("server", ""), entry.get("extensions")
        )
        info = ClusterInfo(chosen["name"], client.configuration.host, flavor, name)
    else:
        try:
            config.load_incluster_config()
        except ConfigException:
            raise ClusterError(
                f"no kube config found ({os.pathsep.join(str(path) for path in files)})", hint=START_HINT
            ) from None
        client = ApiClient()
        info = ClusterInfo("in-cluster", client.configuration.host, OTHER, "in-cluster")
    if check:
        info = ClusterInfo(info.context, info.server, info.flavor, info.name, server_version(client))
    return client, info


def server_version(client: ApiClient, timeout: float = 5.0) -> str:
    """API サーバーのバージョン（届かなければ ClusterError）。"""
    version = kapi.call(client, "GET /version", VersionApi(client).get_code, _request_timeout=timeout)
    return str(version.git_version)
