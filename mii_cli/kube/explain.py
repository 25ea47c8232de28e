"""Pod の状態とイベントから、ロールアウトが進まない理由を説明する（クラスタに触れない純粋な処理）。"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mii_cli.kube.pods import ready_condition
from mii_cli.results import Result

IMAGE_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName")
CONFIG_REASONS = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")
RESOURCE_HINT = (
    "give the cluster more room (minikube start --cpus 4 --memory 8g, after minikube delete) "
    "or lower the requests in manifests/deployment.yml"
)


@dataclass(frozen=True)
class Problem(Result):
    """Pod の問題。`fatal` なら待っても直らない（すぐに失敗として報告する）。"""

    pod: str
    reason: str
    message: str
    hint: str
    fatal: bool = False
    details: str | None = None


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

    コンテナの状態（イメージ・メモリ・クラッシュ・設定）、スケジュール、readiness、Pending の理由の順に見る。
    `image_hint` はイメージが取れないときの対処（クラスタの種類で変わる）、
    `logs` は前回のコンテナのログの末尾。
    """
    if pod.status is None:
        return None
    for container in pod.status.container_statuses or []:
        problem = _container_problem(pod, container, image_hint, logs)
        if problem is not None:
            return problem
    return (
        _scheduling_problem(pod, events)
        or _readiness_problem(pod, events, logs)
        or _pending_problem(pod, events)
    )


def _container_problem(pod: Any, container: Any, image_hint: str, logs: str | None) -> Problem | None:
    """コンテナの状態から読める問題（イメージが取れない・メモリ超過・クラッシュ・設定の誤り）。"""
    name = str(pod.metadata.name)
    waiting = container.state.waiting if container.state else None
    reason = waiting.reason if waiting else None
    message = (waiting.message if waiting else None) or reason
    if reason in IMAGE_PULL_REASONS:
        return Problem(
            name,
            reason,
            f"pod {name} cannot pull image {container.image}: {message}",
            image_hint or "make the image available to the cluster (mii deploy loads it)",
            fatal=reason != "ErrImagePull",
        )
    oom = _oom_problem(name, container, crashing=reason == "CrashLoopBackOff", logs=logs)
    if oom is not None:
        return oom
    if reason == "CrashLoopBackOff":
        last = container.last_state.terminated if container.last_state else None
        return Problem(
            name,
            "CrashLoopBackOff",
            f"pod {name} keeps crashing (exit code {last.exit_code if last else None}, "
            f"restarts: {container.restart_count})",
            f"read the log: kubectl -n {pod.metadata.namespace} logs {name} --previous",
            fatal=True,
            details=logs,
        )
    if reason in CONFIG_REASONS:
        return Problem(
            name,
            reason,
            f"pod {name} cannot start its container: {message}",
            "check the security context and environment in manifests/deployment.yml",
            fatal=True,
        )
    return None


def _oom_problem(name: str, container: Any, *, crashing: bool, logs: str | None) -> Problem | None:
    """今か前回のコンテナがメモリの上限で殺されたか（クラッシュを繰り返していれば待っても直らない）。"""
    states = (
        container.state.terminated if container.state else None,
        container.last_state.terminated if container.last_state else None,
    )
    if not any(state is not None and state.reason == "OOMKilled" for state in states):
        return None
    return Problem(
        name,
        "OOMKilled",
        f"pod {name} was killed for using more memory than its limit (restarts: {container.restart_count})",
        "raise resources.limits.memory in manifests/deployment.yml (300Mi), or lower MAX_BATCH_ROWS",
        fatal=crashing,
        details=logs,
    )


def _scheduling_problem(pod: Any, events: list[Any]) -> Problem | None:
    """どのノードにも置けない Pod（CPU・メモリが足りなければ、小さくするか大きなクラスタを勧める）。"""
    name = str(pod.metadata.name)
    for condition in pod.status.conditions or []:
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
    return None


def _readiness_problem(pod: Any, events: list[Any], logs: str | None) -> Problem | None:
    """動いているのに Ready にならない Pod（readiness probe の失敗のイベントを添える）。"""
    if pod.status.phase != "Running" or ready_condition(pod):
        return None
    name = str(pod.metadata.name)
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


def _pending_problem(pod: Any, events: list[Any]) -> Problem | None:
    """置かれたのに始まらない Pod（ボリュームやサンドボックスの失敗のイベント）。"""
    if pod.status.phase != "Pending":
        return None
    name = str(pod.metadata.name)
    failed = _latest_event(name, events, "FailedMount") or _latest_event(
        name, events, "FailedCreatePodSandBox"
    )
    if not failed:
        return None
    return Problem(name, "Pending", f"pod {name} is Pending: {failed}", "see kubectl describe pod " + name)


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
