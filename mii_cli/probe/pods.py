"""新しい Pod そのものを確かめる（Service が選ぶ Pod ではなく）: デプロイの後の関門。

ロールアウトが終わったら、新しい版の Pod の 1 つずつへポートフォワードし、スモークテストの
すべての確認（全エンドポイント）を通し、その Pod が名乗るモデルの sha256 とサンプルの 1 行への答えが、
デプロイしたイメージのラベルの記録と同じかを確かめる。1 つでも違えば、デプロイは失敗として戻される。
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import httpx
from kubernetes.client import ApiClient, CoreV1Api

from mii_cli.kube import api as kapi
from mii_cli.kube.pods import is_ready
from mii_cli.kube.portforward import PortForwarder, forward_to_pod
from mii_cli.probe.smoke_test import SmokeReport, run_smoke_test
from mii_cli.results import Result
from service.constants import DEFAULT_PORT

# サンプルの答えを比べる許容差（同じモデルと同じ ONNX Runtime なら一致する。浮動小数の表し方の差だけ許す）
ANSWER_TOLERANCE = 1e-6

Forward = Callable[[ApiClient, str, str, int], AbstractContextManager[PortForwarder]]
Smoke = Callable[..., SmokeReport]


@dataclass(frozen=True)
class PodCheck(Result):
    """Pod 1 つの結果（`detail` は 1 行）。"""

    pod: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class PodsCheck(Result):
    """新しい Pod すべての結果。1 つも無い・1 つでも通らなければ不合格。"""

    computed = ("passed",)

    pods: list[PodCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """すべての Pod が通ったか。"""
        return bool(self.pods) and all(check.ok for check in self.pods)

    @property
    def problem(self) -> str:
        """通らなかった最初の Pod の 1 行（通っていれば空）。"""
        if not self.pods:
            return "no new pod to check"
        failed = next((check for check in self.pods if not check.ok), None)
        return f"pod {failed.pod}: {failed.detail}" if failed else ""


def same_answer(served: Any, expected: Any, tolerance: float = ANSWER_TOLERANCE) -> bool:
    """2 つの答え（数か数のリスト）が許容差の中で同じか。"""
    if isinstance(expected, list):
        return (
            isinstance(served, list)
            and len(served) == len(expected)
            and all(same_answer(s, e, tolerance) for s, e in zip(served, expected, strict=True))
        )
    if isinstance(expected, (int, float)) and isinstance(served, (int, float)):
        return math.isclose(float(served), float(expected), rel_tol=tolerance, abs_tol=tolerance)
    return bool(served == expected)


def check_service(
    url: str,
    *,
    model_sha256: str | None,
    sample_answer: Any,
    timeout: float = 5.0,
    smoke: Smoke = run_smoke_test,
) -> tuple[bool, str]:
    """1 つのサーバーを確かめる: 全エンドポイント、モデルの sha256、サンプルの 1 行への答え。"""
    report = smoke(url, timeout=timeout)
    if report.unreachable is not None:
        return False, f"unreachable: {report.unreachable}"
    if not report.passed:
        first = report.failed[0]
        return (
            False,
            f"{len(report.failed)} of {len(report.checks)} checks failed ({first.name}: {first.detail})",
        )
    if model_sha256 and report.model_sha256 != model_sha256:
        served = (report.model_sha256 or "none")[:12]
        return False, f"serves model {served}, but the image carries {model_sha256[:12]}"
    detail = f"{len(report.checks)} checks passed, model {(report.model_sha256 or '?')[:12]}"
    if sample_answer is not None:
        try:
            answered = httpx.get(f"{url}/predict/test", timeout=timeout).json().get("prediction")
        except (httpx.HTTPError, ValueError) as error:
            return False, f"/predict/test could not be read: {error}"
        if not same_answer(answered, sample_answer):
            return (
                False,
                f"answers the sample row with {answered}, but the image's model answers {sample_answer}",
            )
        detail += ", sample answer as built"
    return True, detail


def new_pods(client: ApiClient, namespace: str, template_hash: str) -> list[Any]:
    """今の版のテンプレートから作られた Pod（pod-template-hash が同じもの）。"""
    core = CoreV1Api(client)
    pods = kapi.call(
        client,
        "listing the new pods",
        core.list_namespaced_pod,
        namespace,
        label_selector=f"pod-template-hash={template_hash}",
    ).items
    return [pod for pod in pods if pod.metadata.deletion_timestamp is None]


def check_pods(
    client: ApiClient,
    namespace: str,
    pods: list[Any],
    *,
    model_sha256: str | None,
    sample_answer: Any,
    timeout: float = 5.0,
    forward: Forward = forward_to_pod,
    smoke: Smoke = run_smoke_test,
) -> PodsCheck:
    """Pod を 1 つずつ確かめる（Ready でなければそれだけで不合格）。"""
    results = []
    for pod in sorted(pods, key=kapi.name_of):
        name = kapi.name_of(pod)
        if not is_ready(pod):
            results.append(PodCheck(pod=name, ok=False, detail="not ready"))
            continue
        with forward(client, namespace, name, DEFAULT_PORT) as forwarder:
            ok, detail = check_service(
                forwarder.url,
                model_sha256=model_sha256,
                sample_answer=sample_answer,
                timeout=timeout,
                smoke=smoke,
            )
        results.append(PodCheck(pod=name, ok=ok, detail=detail))
    return PodsCheck(pods=results)
