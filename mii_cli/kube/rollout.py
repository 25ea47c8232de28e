"""Deployment のロールアウトを待ち（途中経過はコールバックへ）、失敗したら理由を説明する。"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException

from mii_cli.errors import ClusterError, MiiError, WaitTimeout
from mii_cli.kube import APP_LABEL, APP_NAME
from mii_cli.kube import api as kapi
from mii_cli.kube.explain import Problem, explain, needs_logs
from mii_cli.kube.pods import PodRow, pod_rows
from mii_cli.results import Result


@dataclass(frozen=True)
class RolloutProgress:
    """ロールアウトの途中経過（待つたびに 1 つ）: Ready・更新済みの数と Pod の表。"""

    deployment: str
    ready: int
    updated: int
    desired: int
    elapsed: float
    timeout: float
    pods: list[PodRow]


@dataclass(frozen=True)
class RolloutResult(Result):
    """終わったロールアウト。"""

    deployment: str
    ready: int
    desired: int
    seconds: float


def rollout_done(deployment: Any) -> bool:
    """ロールアウトが終わったか（新しい Pod が揃って Ready で、古い Pod が残っていない）。"""
    spec, status = deployment.spec, deployment.status
    if status is None or (status.observed_generation or 0) < (deployment.metadata.generation or 0):
        return False
    desired = spec.replicas if spec.replicas is not None else 1
    updated = status.updated_replicas or 0
    return (
        updated >= desired
        and (status.replicas or 0) == updated
        and (status.available_replicas or 0) >= desired
    )


def deadline_exceeded(deployment: Any) -> str | None:
    """Deployment の Progressing 条件が期限切れならそのメッセージ。"""
    for condition in (deployment.status.conditions if deployment.status else None) or []:
        if condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded":
            return str(condition.message or "progress deadline exceeded")
    return None


def progress_of(deployment: Any, pods: list[Any], elapsed: float, timeout: float) -> RolloutProgress:
    """Deployment と Pod から途中経過を作る。"""
    desired = deployment.spec.replicas if deployment.spec.replicas is not None else 1
    status = deployment.status
    return RolloutProgress(
        deployment=str(deployment.metadata.name),
        ready=(status.ready_replicas or 0) if status else 0,
        updated=(status.updated_replicas or 0) if status else 0,
        desired=desired,
        elapsed=elapsed,
        timeout=timeout,
        pods=pod_rows(pods, datetime.now(UTC)),
    )


def previous_logs(client: ApiClient, namespace: str, pods: list[Any], lines: int = 20) -> dict[str, str]:
    """再起動した Pod の前回のコンテナのログの末尾。"""
    core = CoreV1Api(client)
    logs: dict[str, str] = {}
    for pod in pods:
        if not needs_logs(pod):
            continue
        try:
            text = core.read_namespaced_pod_log(
                kapi.name_of(pod),
                namespace,
                container=APP_NAME,
                previous=True,
                tail_lines=lines,
                _request_timeout=10,
            )
        except (ApiException, OSError):
            continue
        if text:
            logs[kapi.name_of(pod)] = str(text).rstrip()
    return logs


def diagnose(client: ApiClient, namespace: str, pods: list[Any], image_hint: str) -> list[Problem]:
    """Pod・イベント・ログから問題を説明する。"""
    core = CoreV1Api(client)
    events = kapi.call(client, "listing events", core.list_namespaced_event, namespace).items or []
    return explain(pods, events, image_hint=image_hint, logs=previous_logs(client, namespace, pods))


def _failure(problems: list[Problem], fallback: str, *, timed_out: bool) -> MiiError:
    """問題の一覧を 1 つのエラーにする（最初の問題を本文に、残りを補足に）。"""
    error_type = WaitTimeout if timed_out else ClusterError
    if not problems:
        return error_type(fallback, hint="look at kubectl -n NAMESPACE describe pods")
    first = problems[0]
    lines = [f"{p.pod}: {p.reason}: {p.message}" for p in problems[1:]]
    if first.details:
        lines.insert(0, f"last log lines of {first.pod}:\n{first.details}")
    message = f"{fallback}: {first.message}" if timed_out else first.message
    return error_type(message, hint=first.hint, details="\n".join(lines) or None)


def _of_template(pod: Any, deployment: Any) -> bool:
    """Pod が Deployment の今のテンプレートのものか（消えかけでなく、イメージが同じ）。"""
    if pod.metadata.deletion_timestamp is not None:
        return False
    containers = pod.spec.containers if pod.spec else None
    if not containers:
        return True
    return bool(containers[0].image == deployment.spec.template.spec.containers[0].image)


def selector_of(deployment: Any) -> str:
    """Deployment の Pod を選ぶラベルセレクタ（`k=v,...`）。無ければアプリのラベル。"""
    labels = getattr(getattr(deployment.spec, "selector", None), "match_labels", None) or {}
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items())) or APP_LABEL


def wait_for_rollout(
    client: ApiClient,
    namespace: str,
    name: str = APP_NAME,
    *,
    timeout: float = 300.0,
    image_hint: str = "",
    poll: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_progress: Callable[[RolloutProgress], None] | None = None,
) -> RolloutResult:
    """ロールアウトを待つ。終われば Ready 数を返し、失敗・時間切れは理由つきの例外にする。

    `on_progress` を渡すと、Deployment を読むたびに途中経過で呼ぶ。
    """
    apps, core = AppsV1Api(client), CoreV1Api(client)
    start = clock()
    while True:
        deployment = kapi.call(
            client, "reading the deployment", apps.read_namespaced_deployment, name, namespace
        )
        pods = kapi.call(
            client,
            "listing pods",
            core.list_namespaced_pod,
            namespace,
            label_selector=selector_of(deployment),
        ).items
        elapsed = clock() - start
        if on_progress is not None:
            on_progress(progress_of(deployment, pods, elapsed, timeout))
        if rollout_done(deployment):
            return RolloutResult(
                deployment=name,
                ready=deployment.status.ready_replicas or 0,
                desired=deployment.spec.replicas,
                seconds=elapsed,
            )
        stalled = deadline_exceeded(deployment)
        # 直らない失敗を探すのは今のテンプレートの Pod だけ（前の版に戻した直後の、消えていく Pod は除く）
        current = [pod for pod in pods if _of_template(pod, deployment)]
        fatal = [p for p in explain(current, [], image_hint=image_hint) if p.fatal]
        if fatal or stalled or elapsed >= timeout:
            problems = diagnose(client, namespace, pods, image_hint)
            problems.sort(key=lambda p: not p.fatal)
            if elapsed >= timeout and not fatal:
                raise _failure(problems, f"rollout not finished after {timeout:.0f}s", timed_out=True)
            raise _failure(problems, stalled or "rollout failed", timed_out=False)
        sleep(poll)
