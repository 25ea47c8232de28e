"""サーバーサイドアプライ（フィールドマネージャ `mii`）で、オブジェクトを順に適用する。

同じ内容を 2 回適用してもサーバーは書き込まない（resourceVersion が変わらない）ので冪等。
既にある Deployment には spec.replicas を送らない（HPA が決めたレプリカ数を戻さない）。
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes.client import ApiClient

from mii_cli.errors import ClusterError
from mii_cli.kube import FIELD_MANAGER
from mii_cli.kube import api as kapi
from mii_cli.kube.render import Manifest, describe
from mii_cli.results import Result

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
# spec.replicas の所有を HPA へ渡すときに使う一時的なマネージャ（Kubernetes の文書の手順）
HANDOVER_MANAGER = "mii-handover-to-hpa"

# (apiVersion, kind) -> (API のパス, リソース名, Namespace に属するか)
RESOURCES: dict[tuple[str, str], tuple[str, str, bool]] = {
    ("v1", "Namespace"): ("/api/v1", "namespaces", False),
    ("v1", "ServiceAccount"): ("/api/v1", "serviceaccounts", True),
    ("v1", "ConfigMap"): ("/api/v1", "configmaps", True),
    ("v1", "Pod"): ("/api/v1", "pods", True),
    ("v1", "Service"): ("/api/v1", "services", True),
    ("networking.k8s.io/v1", "NetworkPolicy"): ("/apis/networking.k8s.io/v1", "networkpolicies", True),
    ("apps/v1", "Deployment"): ("/apis/apps/v1", "deployments", True),
    ("policy/v1", "PodDisruptionBudget"): ("/apis/policy/v1", "poddisruptionbudgets", True),
    ("autoscaling/v2", "HorizontalPodAutoscaler"): ("/apis/autoscaling/v2", "horizontalpodautoscalers", True),
    ("batch/v1", "Job"): ("/apis/batch/v1", "jobs", True),
}


@dataclass(frozen=True)
class ApplyResult(Result):
    """1 つのオブジェクトの適用結果（created・configured・unchanged）。"""

    kind: str
    name: str
    action: str


def object_path(obj: Manifest) -> str:
    """オブジェクトの API のパス。"""
    key = (obj["apiVersion"], obj["kind"])
    if key not in RESOURCES:
        raise ClusterError(
            f"mii cannot apply {obj['apiVersion']} {obj['kind']}", hint="remove it from manifests/"
        )
    prefix, plural, namespaced = RESOURCES[key]
    metadata = obj["metadata"]
    if namespaced:
        return f"{prefix}/namespaces/{metadata['namespace']}/{plural}/{metadata['name']}"
    return f"{prefix}/{plural}/{metadata['name']}"


def get_live(client: ApiClient, obj: Manifest) -> dict[str, Any] | None:
    """クラスタにある同じオブジェクト（無ければ None）。"""
    status, body = kapi.request(client, "GET", object_path(obj))
    if status == 404:
        return None
    if status >= 400:
        raise ClusterError(f"reading {describe(obj)} failed ({status}): {kapi.status_message(body)}")
    live: dict[str, Any] = body
    return live


def server_side_apply(
    client: ApiClient, obj: Manifest, *, manager: str = FIELD_MANAGER, force: bool = True
) -> dict[str, Any]:
    """1 つのオブジェクトをサーバーサイドアプライする（force なら競合は強制的に取る）。

    force=False で競合（409）したときは空の辞書を返す（呼び出し側が「他が持っている」と解釈する）。
    """
    status, body = kapi.request(
        client,
        "PATCH",
        object_path(obj),
        query=[
            ("fieldManager", manager),
            ("force", "true" if force else "false"),
            ("fieldValidation", "Strict"),
        ],
        body=obj,
        content_type=APPLY_CONTENT_TYPE,
    )
    if status == 409 and not force:
        return {}
    if status >= 400:
        hint = None
        if status == 403 and "being terminated" in kapi.status_message(body):
            hint = "the namespace is still being deleted; wait for mii teardown to finish, then deploy again"
        elif status in (401, 403):
            hint = "your kube context lacks the rights; check it with kubectl auth can-i patch deployments"
        elif "not declared in schema" in kapi.status_message(body):
            # Kubernetes 1.34 は未知のフィールドを含むサーバーサイドアプライに 500 で答える
            hint = "a field in manifests/ is unknown to this cluster's Kubernetes version; fix manifests/"
        raise ClusterError(
            f"applying {describe(obj)} failed ({status}): {kapi.status_message(body)}", hint=hint
        )
    result: dict[str, Any] = body
    return result


def owns_replicas(live: dict[str, Any], manager: str = FIELD_MANAGER) -> bool:
    """`manager` が Apply で spec.replicas を所有しているか（managedFields を読む）。"""
    for entry in live.get("metadata", {}).get("managedFields") or []:
        if entry.get("manager") != manager or entry.get("operation") != "Apply":
            continue
        if "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {}):
            return True
    return False


def deployment_body(obj: Manifest, live: dict[str, Any] | None) -> Manifest:
    """送る Deployment。既にあれば spec.replicas を除く（作成時だけ replicas を決める）。"""
    if live is None:
        return obj
    body = copy.deepcopy(obj)
    body["spec"].pop("replicas", None)
    return body


def handover_body(obj: Manifest, live: dict[str, Any]) -> Manifest:
    """spec.replicas だけを今の値で持つオブジェクト（所有を一時マネージャに渡すため）。"""
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {"name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"]},
        "spec": {"replicas": live.get("spec", {}).get("replicas", obj["spec"].get("replicas"))},
    }


def _desired_state(obj: dict[str, Any]) -> tuple[Any, Any, Any]:
    """mii が決める部分（spec・ラベル・注釈）。適用の前後でこれが同じなら変更なし。"""
    metadata = obj.get("metadata") or {}
    return obj.get("spec"), metadata.get("labels"), metadata.get("annotations")


def apply_one(client: ApiClient, obj: Manifest) -> ApplyResult:
    """1 つを適用し、作成・変更・無変更のどれだったかを返す。"""
    live = get_live(client, obj)
    body = obj
    if obj["kind"] == "Deployment" and live is not None:
        if owns_replicas(live):
            # mii が replicas を所有したまま送らないと、値が消えて既定の 1 に戻ってしまう。
            # 先に別のマネージャに今の値を持たせてから手放す（Kubernetes の文書の手順どおり force なし。
            # 競合したら HPA がもう replicas を持っているので、そのまま手放してよい）
            server_side_apply(client, handover_body(obj, live), manager=HANDOVER_MANAGER, force=False)
        body = deployment_body(obj, live)
    result = server_side_apply(client, body)
    if live is None:
        action = "created"
    elif _desired_state(result) == _desired_state(live):
        # status だけの書き込み（HPA の status の更新など）は変更に数えない
        action = "unchanged"
    else:
        action = "configured"
    return ApplyResult(kind=obj["kind"], name=obj["metadata"]["name"], action=action)


def delete_object(client: ApiClient, obj: Manifest) -> bool:
    """オブジェクトを消す（下のものはバックグラウンドで消える）。無ければ False。"""
    status, body = kapi.request(
        client, "DELETE", object_path(obj), query=[("propagationPolicy", "Background")]
    )
    if status == 404:
        return False
    if status >= 400:
        raise ClusterError(f"deleting {describe(obj)} failed ({status}): {kapi.status_message(body)}")
    return True


def apply_all(
    client: ApiClient,
    objects: list[Manifest],
    *,
    on_applied: Callable[[ApplyResult], None] | None = None,
) -> list[ApplyResult]:
    """オブジェクトを与えられた順（適用順）に適用する。on_applied があれば 1 つ適用するたびに呼ぶ。"""
    applied = []
    for obj in objects:
        result = apply_one(client, obj)
        if on_applied is not None:
            on_applied(result)
        applied.append(result)
    return applied
