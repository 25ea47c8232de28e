"""マニフェストを読み、適用するオブジェクトを組み立てる（クラスタに触れない純粋な処理）。"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from mii_cli.errors import ConfigError
from mii_cli.kube import APP_NAME

Manifest = dict[str, Any]

# 適用の順序（依存される側が先）。削除はこの逆順
KIND_ORDER: tuple[str, ...] = (
    "Namespace",
    "ServiceAccount",
    "ConfigMap",
    "Service",
    "Deployment",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
)


def manifests_dir() -> Path:
    """プロジェクトの manifests/ フォルダ。"""
    from mii_cli.paths import project_root

    return project_root() / "manifests"


def load_manifests(directory: Path | None = None) -> list[Manifest]:
    """kustomization.yaml の resources に並ぶファイルを読み、オブジェクトのリストを返す。"""
    directory = directory or manifests_dir()
    kustomization = directory / "kustomization.yaml"
    if not kustomization.is_file():
        raise ConfigError(
            f"{kustomization} is missing",
            hint="run mii from a clone of the project (manifests/ ships with it)",
        )
    resources = (yaml.safe_load(kustomization.read_text(encoding="utf-8")) or {}).get("resources") or []
    objects: list[Manifest] = []
    for name in resources:
        path = directory / str(name)
        try:
            documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(
                f"cannot read manifest {path}: {error}", hint="fix the file in manifests/"
            ) from None
        for document in documents:
            if not isinstance(document, dict) or "kind" not in document or "apiVersion" not in document:
                if document is None:
                    continue
                raise ConfigError(
                    f"{path} holds a document that is not a Kubernetes object",
                    hint="each YAML document needs apiVersion, kind and metadata",
                )
            objects.append(document)
    return objects


def kind_rank(obj: Manifest) -> int:
    """適用順での位置（知らない種類は最後）。"""
    kind = obj.get("kind", "")
    return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)


def apply_order(objects: list[Manifest]) -> list[Manifest]:
    """適用の順に並べる（同じ種類の中では元の順を保つ）。"""
    return sorted(objects, key=kind_rank)


def set_image(obj: Manifest, image: str) -> None:
    """Deployment のアプリのコンテナのイメージを差し替える。"""
    containers = obj["spec"]["template"]["spec"]["containers"]
    for container in containers:
        if container.get("name") == APP_NAME:
            container["image"] = image
            return
    raise ConfigError(
        f"deployment {obj['metadata'].get('name')} has no container named {APP_NAME}",
        hint="keep the container name model-in-image in manifests/deployment.yml",
    )


def set_namespace(obj: Manifest, namespace: str) -> None:
    """Namespace オブジェクトの名前、またはオブジェクトの所属 Namespace を差し替える。"""
    metadata = obj.setdefault("metadata", {})
    if obj["kind"] == "Namespace":
        metadata["name"] = namespace
    else:
        metadata["namespace"] = namespace


def render(image: str, namespace: str, directory: Path | None = None) -> list[Manifest]:
    """適用するオブジェクトを適用順に返す（イメージと Namespace を設定済み）。"""
    objects = [copy.deepcopy(obj) for obj in load_manifests(directory)]
    for obj in objects:
        set_namespace(obj, namespace)
        if obj["kind"] == "Deployment":
            set_image(obj, image)
    return apply_order(objects)


def find(objects: list[Manifest], kind: str) -> Manifest:
    """種類で 1 つ探す。"""
    for obj in objects:
        if obj.get("kind") == kind:
            return obj
    raise ConfigError(f"manifests/ has no {kind}", hint="restore the file from the project")


def to_yaml(objects: list[Manifest]) -> str:
    """複数ドキュメントの YAML にする（--dry-run の出力）。"""
    return yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False)


def describe(obj: Manifest) -> str:
    """`Kind/name` の形の短い名前。"""
    return f"{obj['kind']}/{obj['metadata']['name']}"
