"""新しいモデルを出した後の決め手: canary の昇格（promote）、取り消し（rollback）、版の履歴（history）。

- promote: 安定版を canary のイメージへ普通のローリングアップデートで更新し（デプロイと同じ関門と
  戻し）、それから canary を消す。どちらの間も Service の背後には Ready な Pod がいる。
- rollback: canary か影（shadow）があれば消す（影は写しを止めてから）。無ければ安定版を前の版（または
  指定の版）に戻して待つ。昇格も、済んだ後に影を消す（影が試していたモデルは、もう安定版か不要）。
- history: 安定版（と canary）の版ごとのイメージとモデルと、`--analysis` が残した分析の記録（ConfigMap
  `model-in-image-analyses`、新しい順。書くのは workflows/analysis.py）。
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import ApiClient

from mii_cli.errors import ConfigError, MiiError
from mii_cli.kube import APP_NAME, CANARY_NAME
from mii_cli.kube.apply import ApplyResult, apply_all
from mii_cli.kube.configmaps import read_config_map
from mii_cli.kube.render import find, render
from mii_cli.kube.revisions import Revision, read_deployment, revision_of, revisions, rollback
from mii_cli.kube.rollout import RolloutResult, wait_for_rollout
from mii_cli.probe.pods import PodsCheck
from mii_cli.results import Result
from mii_cli.workflows.deploy import (
    applied_line,
    live_sizing,
    record_annotations,
    record_from_template,
    roll_out,
    rolled_back_line,
    undo,
    withdraw_canary,
)
from mii_cli.workflows.shadow import shadow_running, stop_shadow
from mii_cli.workflows.steps import Report, Status

# `--analysis` が分析の記録を残す ConfigMap とそのキー（JSON のリスト、新しい順）
ANALYSES_NAME = f"{APP_NAME}-analyses"
ANALYSES_KEY = "analyses.json"


def read_analyses(client: ApiClient, namespace: str) -> list[dict[str, Any]]:
    """残した分析の記録（新しい順）。壊れた中身は空として扱う（記録は見るためのもので、判定には使わない）。"""
    data = read_config_map(client, namespace, ANALYSES_NAME) or {}
    try:
        records = json.loads(data.get(ANALYSES_KEY, "[]"))
    except ValueError:
        return []
    return [record for record in records if isinstance(record, dict)] if isinstance(records, list) else []


@dataclass(frozen=True)
class PromoteResult(Result):
    """昇格の結果: 安定版が動かすイメージとその版、新しい Pod の確かめ、canary を消したか。"""

    namespace: str
    image: str
    model_sha256: str | None
    applied: list[ApplyResult]
    rollout: RolloutResult
    revision: int | None
    pods_check: PodsCheck | None
    canary_removed: bool
    shadow_removed: bool = False


@dataclass(frozen=True)
class RollbackResult(Result):
    """取り消しの結果: canary・影を消したか、安定版を戻した版。"""

    namespace: str
    canary_removed: bool
    shadow_removed: bool = False
    revision: Revision | None = None
    rollout: RolloutResult | None = None


@dataclass(frozen=True)
class History(Result):
    """版の履歴（安定版と canary）。"""

    namespace: str
    stable: list[Revision] = field(default_factory=list)
    canary: list[Revision] = field(default_factory=list)
    analyses: list[dict[str, Any]] = field(default_factory=list)


def promote(
    client: ApiClient,
    namespace: str,
    *,
    timeout: float = 300.0,
    rollback_on_failure: bool = True,
    report: Report | None = None,
) -> PromoteResult:
    """安定版を canary のイメージ（とモデルの記録）へ更新し、確かめてから canary を消す。"""
    status = Status(report)
    canary = read_deployment(client, namespace, CANARY_NAME)
    if canary is None:
        raise ConfigError(
            f"there is no canary in namespace {namespace} to promote", hint="mii deploy --canary"
        )
    stable = read_deployment(client, namespace, APP_NAME)
    if stable is None:
        raise ConfigError(f"there is no deployment {APP_NAME} in namespace {namespace}", hint="mii deploy")
    record = record_from_template(canary)
    # 変わるのは Deployment の Pod のテンプレートだけ: ほかのオブジェクト（HPA の下限・上限など）には触れない
    objects = [
        find(
            render(
                record.reference,
                namespace,
                sizing=live_sizing(stable, None),
                annotations=record_annotations(record),
            ),
            "Deployment",
        )
    ]
    previous = revision_of(stable)
    applied = apply_all(client, objects, on_applied=lambda result: status.done("apply", applied_line(result)))
    try:
        rollout, pods_check = roll_out(
            client,
            namespace,
            APP_NAME,
            record=record,
            timeout=timeout,
            image_hint="",
            check=True,
            status=status,
        )
    except MiiError as failure:
        raise undo(
            client,
            namespace,
            failure,
            previous=previous,
            allowed=rollback_on_failure,
            timeout=timeout,
            status=status,
        ) from None
    removed = withdraw_canary(client, namespace, timeout=timeout, status=status)
    shadow_removed = stop_shadow(client, namespace, timeout=timeout, status=status)
    return PromoteResult(
        namespace=namespace,
        image=record.reference,
        model_sha256=record.model_sha256,
        applied=applied,
        rollout=rollout,
        revision=revision_of(read_deployment(client, namespace, APP_NAME)),
        pods_check=pods_check,
        canary_removed=removed,
        shadow_removed=shadow_removed,
    )


def roll_back(
    client: ApiClient,
    namespace: str,
    *,
    to_revision: int | None = None,
    timeout: float = 300.0,
    report: Report | None = None,
) -> RollbackResult:
    """canary か影があれば消す。無ければ安定版を前の版（`to_revision`）に戻し、戻り切るまで待つ。"""
    status = Status(report)
    canary, shadow = read_deployment(client, namespace, CANARY_NAME), shadow_running(client, namespace)
    if canary is not None or shadow:
        if to_revision is not None:
            what = "a canary" if canary is not None else "a shadow"
            raise ConfigError(
                f"{what} is running: mii rollback removes it first",
                hint="run mii rollback without --to-revision, then again with it",
            )
        removed = canary is not None and withdraw_canary(client, namespace, timeout=timeout, status=status)
        stopped = stop_shadow(client, namespace, timeout=timeout, status=status)
        return RollbackResult(namespace=namespace, canary_removed=removed, shadow_removed=stopped)
    to = "the previous revision" if to_revision is None else f"revision {to_revision}"
    status.start("rollback", f"Rolling {APP_NAME} back to {to}...")
    target = rollback(client, namespace, APP_NAME, to_revision)
    rollout = wait_for_rollout(
        client, namespace, APP_NAME, timeout=timeout, on_progress=status.progress("rollback")
    )
    status.done("rollback", rolled_back_line(target))
    return RollbackResult(namespace=namespace, canary_removed=False, revision=target, rollout=rollout)


def history(client: ApiClient, namespace: str) -> History:
    """安定版と canary の版（古い順）。"""
    return History(
        namespace=namespace,
        stable=revisions(client, namespace, APP_NAME),
        canary=revisions(client, namespace, CANARY_NAME),
        analyses=read_analyses(client, namespace),
    )
