"""API サーバーの代役に置くもの: 公式クライアントのモデルの Pod とイベント、コントローラの代わりのフック。

フック（`FakeApiServer.on_apply` に足す）は、本物のクラスタでコントローラがすることを真似る:
- `become_ready`: Deployment が適用されたら、Deployment コントローラのように版（ReplicaSet）を決め、
  status を埋め、その版の Ready な Pod を置く（Pod のテンプレートが変わらなければ版も変わらない。
  前の版と同じテンプレートに戻れば、その ReplicaSet が次の番号をもらう: `kubectl rollout undo` と同じ）
- `job_finishes`: Job が適用されたら終わらせ、Pod とそのログを置く
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from typing import Any

from kubernetes.client import (
    CoreV1Event,
    V1ContainerState,
    V1ContainerStateRunning,
    V1ContainerStateTerminated,
    V1ContainerStateWaiting,
    V1ContainerStatus,
    V1ObjectMeta,
    V1ObjectReference,
    V1Pod,
    V1PodCondition,
    V1PodSpec,
    V1PodStatus,
)

from tests.fakes.kube_api import FakeApiServer

NAMESPACE = "model-in-image"
IMAGE = "model-in-image:0.1.0-0123456789ab-fedcba987654"
JOB_UID = "job-uid-1"

Hook = Callable[[str, dict[str, Any]], None]


def pod(
    name: str,
    *,
    namespace: str = NAMESPACE,
    labels: dict[str, str] | None = None,
    phase: str = "Running",
    ready: bool = True,
    waiting: tuple[str, str] | None = None,
    terminated: str | None = None,
    last: tuple[str, int] | None = None,
    restarts: int = 0,
    scheduled: tuple[str, str] | None = None,
    created: str = "2025-01-01T00:00:00Z",
    annotations: dict[str, str] | None = None,
) -> V1Pod:
    """状態を指定した Pod（公式のモデル）。既定は Ready で動いているアプリの Pod。

    `waiting`・`last` は (理由, メッセージ／終了コード)、`scheduled` は置けない理由 (reason, message)。
    """
    state = V1ContainerState(running=V1ContainerStateRunning())
    if waiting:
        state = V1ContainerState(waiting=V1ContainerStateWaiting(reason=waiting[0], message=waiting[1]))
    if terminated:
        state = V1ContainerState(terminated=V1ContainerStateTerminated(reason=terminated, exit_code=137))
    last_state = None
    if last:
        last_state = V1ContainerState(
            terminated=V1ContainerStateTerminated(reason=last[0], exit_code=last[1])
        )
    conditions = [V1PodCondition(type="Ready", status="True" if ready else "False")]
    if scheduled:
        conditions = [
            V1PodCondition(type="PodScheduled", status="False", reason=scheduled[0], message=scheduled[1])
        ]
    statuses = [
        V1ContainerStatus(
            name="model-in-image",
            image=IMAGE,
            image_id="",
            ready=ready,
            restart_count=restarts,
            state=state,
            last_state=last_state,
        )
    ]
    return V1Pod(
        api_version="v1",
        kind="Pod",
        metadata=V1ObjectMeta(
            name=name,
            namespace=namespace,
            labels=labels or {"app": "model-in-image"},
            annotations=annotations,
            creation_timestamp=created,
        ),
        spec=V1PodSpec(containers=[], node_name=None if scheduled else "node-1"),
        status=V1PodStatus(
            phase=phase,
            pod_ip=None if scheduled else "10.0.0.1",
            conditions=conditions,
            container_statuses=None if scheduled else statuses,
        ),
    )


def node(
    name: str, cpu: str, memory: str, *, ready: bool = True, unschedulable: bool = False
) -> dict[str, Any]:
    """ノード 1 台の API オブジェクト（割り当て可能な CPU・メモリと Ready 条件）。"""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "spec": {"unschedulable": unschedulable} if unschedulable else {},
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def event(
    pod_name: str, reason: str, message: str, when: str = "2025-01-01T00:00:00Z", namespace: str = NAMESPACE
) -> CoreV1Event:
    """Pod についてのイベント。"""
    return CoreV1Event(
        metadata=V1ObjectMeta(name=f"{pod_name}.{reason}", namespace=namespace),
        involved_object=V1ObjectReference(kind="Pod", name=pod_name, namespace=namespace),
        reason=reason,
        message=message,
        last_timestamp=when,
    )


def put_pods(fake: FakeApiServer, *pods: V1Pod) -> None:
    """Pod を置く。"""
    for item in pods:
        fake.put(f"/api/v1/namespaces/{item.metadata.namespace}/pods/{item.metadata.name}", item)


REVISION = "deployment.kubernetes.io/revision"


def template_hash(template: dict[str, Any]) -> str:
    """Pod のテンプレートの短いハッシュ（本物の pod-template-hash の代わり）。"""
    labels = {
        k: v
        for k, v in (template.get("metadata", {}).get("labels") or {}).items()
        if k != "pod-template-hash"
    }
    normalized = {**template, "metadata": {**template.get("metadata", {}), "labels": labels}}
    return hashlib.sha256(json.dumps(normalized, sort_keys=True).encode()).hexdigest()[:10]


def _revision(obj: dict[str, Any]) -> int:
    return int((obj["metadata"].get("annotations") or {}).get(REVISION, 0))


def roll_out(
    fake: FakeApiServer, deployment: dict[str, Any], *, restarts: int = 0, ready: bool = True
) -> str:
    """Deployment コントローラの代わり: 版を決め ReplicaSet と Pod を置く（返すのは今の版のハッシュ）。

    `ready=False` は新しい版の Pod が起動に失敗し続けるロールアウト: 古い Pod は残って答え続け
    （maxUnavailable: 0）、新しい Pod は CrashLoopBackOff のまま。
    """
    namespace, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
    template = deployment["spec"]["template"]
    current_hash = template_hash(template)
    prefix = f"/apis/apps/v1/namespaces/{namespace}/replicasets/"
    owned = {
        path: rs
        for path, rs in fake.objects.items()
        if path.startswith(prefix)
        and any(ref.get("name") == name for ref in rs["metadata"].get("ownerReferences") or [])
    }
    newest = max((_revision(rs) for rs in owned.values()), default=0)
    path = f"{prefix}{name}-{current_hash}"
    existing = owned.get(path)
    if existing is None or _revision(existing) != newest:
        # 新しいテンプレートは新しい ReplicaSet に、前の版のテンプレートなら前の ReplicaSet に次の番号を
        labels = {**(template["metadata"].get("labels") or {}), "pod-template-hash": current_hash}
        rs = existing or {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{name}-{current_hash}",
                "namespace": namespace,
                "labels": labels,
                "creationTimestamp": f"2025-01-01T00:00:{len(owned):02d}Z",
                "ownerReferences": [
                    {
                        "kind": "Deployment",
                        "name": name,
                        "uid": deployment["metadata"].get("uid"),
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    **copy.deepcopy(template),
                    "metadata": {**template["metadata"], "labels": labels},
                },
            },
        }
        rs["metadata"].setdefault("annotations", {})[REVISION] = str(newest + 1)
        fake.objects[path] = rs
    replicas = int(deployment["spec"].get("replicas", 4))
    pods = f"/api/v1/namespaces/{namespace}/pods/"
    selector = deployment["spec"]["selector"]["matchLabels"]
    labels = {**(template["metadata"].get("labels") or {}), "pod-template-hash": current_hash}
    deployment["metadata"].setdefault("annotations", {})[REVISION] = fake.objects[path]["metadata"][
        "annotations"
    ][REVISION]
    if not ready:
        old = [
            p
            for p, o in fake.objects.items()
            if p.startswith(pods) and selector.items() <= (o["metadata"].get("labels") or {}).items()
        ]
        fake.objects[path]["status"] = {"replicas": replicas, "readyReplicas": 0}
        deployment["status"] = {
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": replicas + len(old),
            "updatedReplicas": replicas,
            "readyReplicas": len(old),
            "availableReplicas": len(old),
        }
        put_pods(
            fake,
            *(
                pod(
                    f"{name}-{current_hash}-{i}",
                    namespace=namespace,
                    labels=labels,
                    ready=False,
                    waiting=("CrashLoopBackOff", "back-off restarting failed container"),
                )
                for i in range(replicas)
            ),
        )
        return current_hash
    for rs_path, rs in fake.objects.items():
        if rs_path.startswith(prefix) and rs["metadata"]["name"].startswith(f"{name}-"):
            count = replicas if rs_path == path else 0
            rs["status"] = {"replicas": count, "readyReplicas": count}
    deployment["status"] = {
        "observedGeneration": deployment["metadata"]["generation"],
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
    }
    for pod_path in [
        p
        for p, o in fake.objects.items()
        if p.startswith(pods) and selector.items() <= (o["metadata"].get("labels") or {}).items()
    ]:
        del fake.objects[pod_path]
    put_pods(
        fake,
        *(
            pod(
                f"{name}-{i}",
                namespace=namespace,
                labels=labels,
                annotations=template["metadata"].get("annotations"),
                restarts=restarts,
            )
            for i in range(replicas)
        ),
    )
    return current_hash


def become_ready(
    fake: FakeApiServer, *, restarts: int = 0, stuck: Callable[[dict[str, Any]], bool] | None = None
) -> Hook:
    """Deployment が適用されたら、コントローラの代わりに版を決め、status を埋め Ready な Pod を置くフック。

    `stuck(deployment)` が真の版は Ready にならない（新しい Pod が CrashLoopBackOff のまま）。
    """

    def hook(path: str, obj: dict[str, Any]) -> None:
        if obj["kind"] == "Deployment":
            roll_out(fake, obj, restarts=restarts, ready=not (stuck and stuck(obj)))

    return hook


def job_finishes(fake: FakeApiServer, log: str, *, succeeded: bool = True) -> Hook:
    """Job が適用されたら終わらせ（成功か失敗）、その Pod とログを置くフック。

    前回の Job の Pod（同じ job-name で uid が違い、ガベージコレクトを待っている）も置く:
    mii は今回の Job の uid で Pod を選ばなければならない。
    """

    def hook(path: str, obj: dict[str, Any]) -> None:
        if obj["kind"] != "Job":
            return
        name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
        obj["status"] = {"succeeded": 1} if succeeded else {"failed": 1}
        obj["metadata"]["uid"] = JOB_UID
        labels = {"job-name": name, "batch.kubernetes.io/controller-uid": JOB_UID}
        put_pods(fake, pod("lb-1", namespace=namespace, labels=labels))
        old = {"job-name": name, "batch.kubernetes.io/controller-uid": "job-uid-0"}
        put_pods(fake, pod("lb-0", namespace=namespace, labels=old))
        fake.logs["lb-0"] = '{"requests": 1, "errors": 1, "served_by": {}}'
        fake.logs["lb-1"] = log

    return hook
