"""Deployment の版（revision）: 版ごとの ReplicaSet を読み、前の版に戻す。

Deployment コントローラは Pod のテンプレートが変わるたびに ReplicaSet を作り（同じテンプレートの
ReplicaSet があればそれを使い直し）、版の番号を `deployment.kubernetes.io/revision` に書く。
前の版に戻すのは `kubectl rollout undo` と同じ: その版の ReplicaSet のテンプレート（pod-template-hash
ラベルを除く）を Deployment のテンプレートに置き換える。コントローラはその ReplicaSet に新しい番号を付ける。
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from kubernetes.client import ApiClient

from mii_cli.errors import ClusterError, ConfigError
from mii_cli.kube import (
    FIELD_MANAGER,
    IMAGE_DIGEST_ANNOTATION,
    IMAGE_TAG_ANNOTATION,
    MODEL_FILE_ANNOTATION,
    MODEL_SHA256_ANNOTATION,
    REVISION_ANNOTATION,
)
from mii_cli.kube import api as kapi
from mii_cli.results import Result

JSON_PATCH = "application/json-patch+json"
TEMPLATE_HASH_LABEL = "pod-template-hash"


@dataclass(frozen=True)
class Revision(Result):
    """Deployment の版 1 つ（その版の ReplicaSet）。モデルの記録は Pod のテンプレートの注釈から。"""

    deployment: str
    number: int
    image: str
    model_file: str | None
    model_sha256: str | None
    image_tag: str | None
    image_digest: str | None
    created: str
    replicas: int
    ready: int
    # Deployment の今の版（いま Pod を動かしている、あるいはこれから動かす版）
    current: bool


def deployment_path(namespace: str, name: str) -> str:
    return f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"


def read_deployment(client: ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    """Deployment（無ければ None）。"""
    status, body = kapi.request(client, "GET", deployment_path(namespace, name))
    if status == 404:
        return None
    if status >= 400:
        raise ClusterError(f"reading deployment {name} failed ({status}): {kapi.status_message(body)}")
    deployment: dict[str, Any] = body
    return deployment


def revision_of(obj: dict[str, Any] | None) -> int | None:
    """オブジェクトの版の番号（注釈が無ければ None）。"""
    if obj is None:
        return None
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION)
    return int(value) if value and str(value).isdigit() else None


def _replica_sets(client: ApiClient, namespace: str, deployment: dict[str, Any]) -> list[dict[str, Any]]:
    """Deployment が持つ ReplicaSet（selector で集め、ownerReferences で Deployment のものに絞る）。"""
    labels = (deployment["spec"].get("selector") or {}).get("matchLabels") or {}
    selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
    status, body = kapi.request(
        client,
        "GET",
        f"/apis/apps/v1/namespaces/{namespace}/replicasets",
        query=[("labelSelector", selector)],
    )
    if status >= 400:
        raise ClusterError(f"listing replica sets failed ({status}): {kapi.status_message(body)}")
    uid = deployment["metadata"].get("uid")
    name = deployment["metadata"]["name"]
    return [
        item
        for item in (body or {}).get("items") or []
        if any(
            ref.get("kind") == "Deployment" and (ref.get("uid") == uid if uid else ref.get("name") == name)
            for ref in item["metadata"].get("ownerReferences") or []
        )
    ]


def _revision(item: dict[str, Any], deployment: str, current: int | None) -> Revision:
    template = item["spec"]["template"]
    annotations = template["metadata"].get("annotations") or {}
    number = revision_of(item) or 0
    return Revision(
        deployment=deployment,
        number=number,
        image=str(template["spec"]["containers"][0]["image"]),
        model_file=annotations.get(MODEL_FILE_ANNOTATION),
        model_sha256=annotations.get(MODEL_SHA256_ANNOTATION),
        image_tag=annotations.get(IMAGE_TAG_ANNOTATION),
        image_digest=annotations.get(IMAGE_DIGEST_ANNOTATION),
        created=str(item["metadata"].get("creationTimestamp") or ""),
        replicas=int((item.get("status") or {}).get("replicas") or 0),
        ready=int((item.get("status") or {}).get("readyReplicas") or 0),
        current=number == current,
    )


def revisions(client: ApiClient, namespace: str, name: str) -> list[Revision]:
    """Deployment の版を番号の順に（Deployment が無ければ空）。"""
    deployment = read_deployment(client, namespace, name)
    if deployment is None:
        return []
    current = revision_of(deployment)
    found = [_revision(item, name, current) for item in _replica_sets(client, namespace, deployment)]
    return sorted(found, key=lambda revision: revision.number)


def template_hash(client: ApiClient, namespace: str, name: str) -> str | None:
    """Deployment の今の版の ReplicaSet の pod-template-hash（新しい Pod を選ぶのに使う）。"""
    deployment = read_deployment(client, namespace, name)
    if deployment is None:
        return None
    current = revision_of(deployment)
    for item in _replica_sets(client, namespace, deployment):
        if revision_of(item) == current:
            labels = item["metadata"].get("labels") or {}
            value = labels.get(TEMPLATE_HASH_LABEL)
            return str(value) if value else None
    return None


def rollback(client: ApiClient, namespace: str, name: str, to_revision: int | None = None) -> Revision:
    """Deployment を前の版（`to_revision` があればその版）のテンプレートに戻し、戻した版を返す。

    前の版が無い（初めてのデプロイ）・指定の版が無いときは ConfigError。
    """
    deployment = read_deployment(client, namespace, name)
    if deployment is None:
        raise ConfigError(f"no deployment {name} in namespace {namespace}", hint="mii deploy first")
    current = revision_of(deployment)
    items = {revision_of(item) or 0: item for item in _replica_sets(client, namespace, deployment)}
    if to_revision is None:
        older = sorted(number for number in items if current is not None and number < current)
        if not older:
            raise ConfigError(
                f"deployment {name} has no earlier revision to roll back to",
                hint="mii history lists the revisions",
            )
        to_revision = older[-1]
    if to_revision == current:
        raise ConfigError(f"deployment {name} already runs revision {to_revision}", hint="mii history")
    if to_revision not in items:
        raise ConfigError(
            f"deployment {name} has no revision {to_revision}",
            hint=f"mii history lists the revisions it keeps: {', '.join(str(n) for n in sorted(items))}",
        )
    target = items[to_revision]
    template = copy.deepcopy(target["spec"]["template"])
    (template["metadata"].get("labels") or {}).pop(TEMPLATE_HASH_LABEL, None)
    status, body = _replace(client, namespace, name, "/spec/template", template)
    if status >= 400:
        raise ClusterError(
            f"rolling {name} back to revision {to_revision} failed ({status}): {kapi.status_message(body)}"
        )
    return _revision(target, name, None)


def _replace(client: ApiClient, namespace: str, name: str, path: str, value: Any) -> tuple[int, Any]:
    """Deployment の 1 つのフィールドを JSON Patch の replace で変える（rollout undo と scale の形）。"""
    return kapi.request(
        client,
        "PATCH",
        deployment_path(namespace, name),
        query=[("fieldManager", FIELD_MANAGER)],
        body=[{"op": "replace", "path": path, "value": value}],
        content_type=JSON_PATCH,
    )


def delete_deployment(client: ApiClient, namespace: str, name: str) -> bool:
    """Deployment を消す（Pod はそれぞれの猶予で止まる）。無ければ False。"""
    status, body = kapi.request(
        client,
        "DELETE",
        deployment_path(namespace, name),
        query=[("propagationPolicy", "Background")],
    )
    if status == 404:
        return False
    if status >= 400:
        raise ClusterError(f"deleting deployment {name} failed ({status}): {kapi.status_message(body)}")
    return True


def scale(client: ApiClient, namespace: str, name: str, replicas: int) -> None:
    """Deployment の spec.replicas を変える（HPA の無い Deployment: canary の段）。無ければ ConfigError。"""
    status, body = _replace(client, namespace, name, "/spec/replicas", replicas)
    if status == 404:
        raise ConfigError(f"no deployment {name} in namespace {namespace} to scale")
    if status >= 400:
        raise ClusterError(f"scaling {name} to {replicas} failed ({status}): {kapi.status_message(body)}")
