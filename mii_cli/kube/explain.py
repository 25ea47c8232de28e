"""Pod の状態とイベントから、ロールアウトが進まない理由を説明する（クラスタに触れない純粋な処理）。"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

IMAGE_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName")
CONFIG_REASONS = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")
RESOURCE_HINT = (
    "give the cluster more room (minikube start --cpus 4 --memory 8g, after minikube delete) "
    "or lower the requests in manifests/deployment.yml"
)


@dataclass(frozen=True)
class Problem:
    """Pod の問題。`fatal` なら待っても直らない（すぐに失敗として報告する）。"""

    pod: str
    reason: str
    message: str
    hint: str
    fatal: bool = False
    details: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """--json 用の辞書。"""
        return {
            "pod": self.pod,
            "reason": self.reason,
            "message": self.message,
            "hint": self.hint,
            "fatal": self.fatal,
        }


def _events_for(pod_name: str, events: list[Any]) -> list[Any]:
    """Pod に関するイベント（新しい順）。"""
    own = [event for event in events if getattr(event.involved_object, "name", None) == pod_name]
    return sorted(own, key=lambda event: str(event.last_timestamp or event.event_time or ""), reverse=True)


def _latest_event(pod_name: str, events: list[Any], reason: str) -> str | None:
    """Pod の指定の理由の最新イベントのメッセージ。"""
    for event in _events_for(pod_name, events):
        if event.reason == reason:
            return str(event.message or "")
    return None


def explain_pod(
    pod: Any, events: list[Any], *, image_hint: str = "", logs: str | None = None
) -> Problem | None:
    """1 つの Pod の問題を説明する（問題が無ければ None）。

    `image_hint` はイメージが取れないときの対処（クラスタの種類で変わる）、
    `logs` は前回のコンテナのログの末尾。
    """
    name = str(pod.metadata.name)
    status = pod.status
    if status is None:
        return None
    for container in status.container_statuses or []:
        waiting = container.state.waiting if container.state else None
        last = container.last_state.terminated if container.last_state else None
        terminated = container.state.terminated if container.state else None
        if waiting and waiting.reason in IMAGE_PULL_REASONS:
            return Problem(
                name,
                waiting.reason,
                f"pod {name} cannot pull image {container.image}: {waiting.message or waiting.reason}",
                image_hint or "make the image available to the cluster (mii deploy loads it)",
                fatal=waiting.reason != "ErrImagePull",
            )
        for state in (terminated, last):
            if state is not None and state.reason == "OOMKilled":
                return Problem(
                    name,
                    "OOMKilled",
                    f"pod {name} was killed for using more memory than its limit "
                    f"(restarts: {container.restart_count})",
                    "raise resources.limits.memory in manifests/deployment.yml (300Mi), "
                    "or lower MAX_BATCH_ROWS",
                    fatal=bool(waiting and waiting.reason == "CrashLoopBackOff"),
                    details=logs,
                )
        if waiting and waiting.reason == "CrashLoopBackOff":
            exit_code = last.exit_code if last else None
            return Problem(
                name,
                "CrashLoopBackOff",
                f"pod {name} keeps crashing (exit code {exit_code}, restarts: {container.restart_count})",
                f"read the log: kubectl -n {pod.metadata.namespace} logs {name} --previous",
                fatal=True,
                details=logs,
            )
        if waiting and waiting.reason in CONFIG_REASONS:
            return Problem(
                name,
                waiting.reason,
                f"pod {name} cannot start its container: {waiting.message or waiting.reason}",
                "check the security context and environment in manifests/deployment.yml",
                fatal=True,
            )
    for condition in status.conditions or []:
        if (
            condition.type == "PodScheduled"
            and condition.status == "False"
            and condition.reason == "Unschedulable"
        ):
            message = condition.message or _latest_event(name, events, "FailedScheduling") or "no node fits"
            lacking = "Insufficient cpu" in message or "Insufficient memory" in message
            return Problem(
                name,
                "Unschedulable",
                f"pod {name} is Pending: {message}",
                RESOURCE_HINT if lacking else "check the nodes with kubectl describe nodes",
            )
    if status.phase == "Running" and not _is_ready(pod):
        probe = _latest_event(name, events, "Unhealthy")
        message = f"pod {name} is running but never became ready"
        if probe:
            message += f": {probe}"
        return Problem(
            name,
            "NotReady",
            message,
            f"check that the model loads: kubectl -n {pod.metadata.namespace} logs {name}",
            details=logs,
        )
    if status.phase == "Pending":
        failed = _latest_event(name, events, "FailedMount") or _latest_event(
            name, events, "FailedCreatePodSandBox"
        )
        if failed:
            return Problem(
                name, "Pending", f"pod {name} is Pending: {failed}", "see kubectl describe pod " + name
            )
    return None


def _is_ready(pod: Any) -> bool:
    """Pod の Ready 条件が True か。"""
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def is_ready(pod: Any) -> bool:
    """Pod が Ready で、削除中でもないか。"""
    return pod.status is not None and pod.metadata.deletion_timestamp is None and _is_ready(pod)


def explain(
    pods: list[Any], events: list[Any], *, image_hint: str = "", logs: dict[str, str] | None = None
) -> list[Problem]:
    """すべての Pod の問題（問題のある Pod だけ）。"""
    problems = []
    for pod in pods:
        problem = explain_pod(pod, events, image_hint=image_hint, logs=(logs or {}).get(pod.metadata.name))
        if problem is not None:
            problems.append(problem)
    return problems


def needs_logs(pod: Any) -> bool:
    """説明にコンテナの前回のログが要るか（再起動したことがある）。"""
    return any(c.restart_count for c in (pod.status.container_statuses or [])) if pod.status else False
