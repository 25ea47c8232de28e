"""ロードバランシングの確認: クラスタ内の短い Job が Service の ClusterIP へリクエストを送り、
応答した Pod（`X-Served-By` ヘッダ）ごとの件数を JSON でログに出す。2 つ以上の Pod が答えれば合格。

DNS 名ではなく ClusterIP を使う: クラスタの DNS（CoreDNS）が無くても kube-proxy の振り分けを確かめられる。
Job の Pod は `app.kubernetes.io/component: check` を持ち、manifests/networkpolicy.yml の
model-in-image-checks が許す通信（アプリの Pod のポート 8000 だけ。DNS も無し）しかしない。
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client import ApiClient, AppsV1Api, BatchV1Api, CoreV1Api

from mii_cli.errors import ClusterError, WaitTimeout
from mii_cli.kube import APP_NAME, CHECK_LABEL_KEY, CHECK_LABEL_VALUE
from mii_cli.kube import api as kapi
from mii_cli.kube.apply import server_side_apply
from mii_cli.kube.render import Manifest
from mii_cli.results import Result
from service.constants import DEFAULT_PORT, SERVED_BY_HEADER

JOB_NAME = "mii-lb-check"
MIN_PODS = 2

_POLL = 1.0
Sleep = Callable[[float], None]
_HERE = Path(__file__).parent
# Job のコンテナで動かすスクリプトと Job のひな形（どちらもこのパッケージのファイル）
SCRIPT = (_HERE / "check_requests.py").read_text(encoding="utf-8")
JOB_TEMPLATE = _HERE / "check_job.yml"


@dataclass(frozen=True)
class LbCheckResult(Result):
    """Job が送ったリクエストの集計（Pod ごとの応答数）と合否。2 つ以上の Pod が答え、失敗が無ければ合格。"""

    computed = ("passed", "detail")

    url: str | None
    requests: int
    errors: int
    first_errors: list[str] = field(default_factory=list)
    served_by: dict[str, int] = field(default_factory=dict)
    image: str = ""

    @property
    def passed(self) -> bool:
        """2 つ以上の Pod が答え、失敗が 0 件か。"""
        return len(self.served_by) >= MIN_PODS and self.errors == 0

    @property
    def detail(self) -> str:
        """1 行の説明（何件が何個の Pod に答えられたか、失敗の内容）。"""
        counts = ", ".join(f"{pod}={count}" for pod, count in sorted(self.served_by.items()))
        text = (
            f"{self.requests} in-cluster requests answered by {len(self.served_by)} pods ({counts or 'none'})"
        )
        if self.errors:
            return text + f"; {self.errors} failed: {'; '.join(self.first_errors)}"
        if len(self.served_by) < MIN_PODS:
            return text + f"; need at least {MIN_PODS}"
        return text


def service_url(cluster_ip: str, path: str = "/predict/test") -> str:
    """Service のクラスタ内の URL（ClusterIP）。"""
    return f"http://{cluster_ip}:{DEFAULT_PORT}{path}"


def cluster_ip(client: ApiClient, namespace: str) -> str:
    """アプリの Service の ClusterIP（Service が無い・IP が無ければ ClusterError）。"""
    service = kapi.read(
        client, "reading the service", CoreV1Api(client).read_namespaced_service, APP_NAME, namespace
    )
    if service is None:
        raise ClusterError(f"no service {APP_NAME} in namespace {namespace}", hint="mii deploy")
    address = service.spec.cluster_ip if service.spec else None
    if not address or address == "None":
        raise ClusterError(f"service {APP_NAME} in namespace {namespace} has no cluster IP")
    return str(address)


@cache
def _template() -> Manifest:
    job: Manifest = yaml.safe_load(JOB_TEMPLATE.read_text(encoding="utf-8"))
    return job


def check_job(image: str, namespace: str, url: str, *, requests: int = 60, name: str = JOB_NAME) -> Manifest:
    """確認の Job: `url` へ `requests` 件の GET を送り、応答した Pod を数える（ひな形 check_job.yml）。"""
    job = copy.deepcopy(_template())
    labels = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": APP_NAME,
        CHECK_LABEL_KEY: CHECK_LABEL_VALUE,
    }
    job["metadata"].update(name=name, namespace=namespace, labels=labels)
    job["spec"]["template"]["metadata"] = {"labels": dict(labels)}
    container = job["spec"]["template"]["spec"]["containers"][0]
    container["image"] = image
    container["command"] = ["python", "-c", SCRIPT, url, str(requests), SERVED_BY_HEADER]
    return job


def parse_result(log: str) -> LbCheckResult:
    """Job のログの最後の JSON 行を読む（無ければ ClusterError）。"""
    for line in reversed(log.strip().splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            result: dict[str, Any] = json.loads(line)
        except ValueError:
            continue
        if isinstance(result.get("served_by"), dict):
            return LbCheckResult(
                url=result.get("url"),
                requests=int(result.get("requests") or 0),
                errors=int(result.get("errors") or 0),
                first_errors=[str(e) for e in result.get("first_errors") or []],
                served_by={str(pod): int(count) for pod, count in result["served_by"].items()},
            )
    tail = "\n".join(log.strip().splitlines()[-10:])
    raise ClusterError("the load-balancing job printed no result", details=tail or "(empty log)")


def deployed_image(client: ApiClient, namespace: str) -> str:
    """デプロイ済みのアプリのイメージ。"""
    deployment = kapi.read(
        client, "reading the deployment", AppsV1Api(client).read_namespaced_deployment, APP_NAME, namespace
    )
    if deployment is None:
        raise ClusterError(f"no deployment {APP_NAME} in namespace {namespace}", hint="mii deploy")
    return str(deployment.spec.template.spec.containers[0].image)


def _delete_job(client: ApiClient, namespace: str, name: str) -> None:
    """Job と Pod を消す（無くてもよい）。"""
    kapi.request(
        client,
        "DELETE",
        f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
        query=[("propagationPolicy", "Background")],
    )


def merge_results(results: list[LbCheckResult]) -> LbCheckResult:
    """Job の Pod ごとの結果を 1 つにまとめる（件数・失敗数・Pod ごとの応答数を足す）。"""
    served: dict[str, int] = {}
    for result in results:
        for pod, count in result.served_by.items():
            served[pod] = served.get(pod, 0) + count
    return LbCheckResult(
        url=results[0].url if results else None,
        requests=sum(r.requests for r in results),
        errors=sum(r.errors for r in results),
        first_errors=[e for r in results for e in r.first_errors][:3],
        served_by=served,
    )


def _wait_deleted(
    client: ApiClient, namespace: str, name: str, deadline: float, clock: Callable[[], float], sleep: Sleep
) -> None:
    """前回の Job が消えるまで待つ（Job のテンプレートは変更できないので作り直す）。"""
    batch = BatchV1Api(client)
    _delete_job(client, namespace, name)
    while kapi.read(client, "reading the job", batch.read_namespaced_job, name, namespace) is not None:
        if clock() >= deadline:
            raise WaitTimeout(
                f"old job {name} is still being deleted", hint=f"kubectl -n {namespace} get jobs"
            )
        sleep(_POLL)


def _wait_finished(
    client: ApiClient,
    namespace: str,
    name: str,
    completions: int,
    deadline: float,
    clock: Callable[[], float],
    sleep: Sleep,
) -> bool:
    """Job が終わるまで待ち、すべての Pod が成功したかを返す。"""
    batch = BatchV1Api(client)
    while True:
        status = kapi.call(client, "reading the job", batch.read_namespaced_job, name, namespace).status
        succeeded, failed = (status.succeeded or 0, status.failed or 0) if status else (0, 0)
        if failed > 0 or succeeded >= completions:
            return failed == 0
        if clock() >= deadline:
            raise WaitTimeout(
                f"in-cluster job {name} did not finish in time",
                hint=f"kubectl -n {namespace} describe job {name}",
            )
        sleep(_POLL)


def _pod_logs(client: ApiClient, namespace: str, name: str, selector: str) -> list[str]:
    """Job の Pod のログ（Pod が無ければ ClusterError）。"""
    core = CoreV1Api(client)
    pods = kapi.call(client, "listing job pods", core.list_namespaced_pod, namespace, label_selector=selector)
    if not pods.items:
        raise ClusterError(f"job {name} has no pod", hint=f"kubectl -n {namespace} describe job {name}")
    return [
        str(
            kapi.call(client, "reading the job log", core.read_namespaced_pod_log, kapi.name_of(p), namespace)
        )
        for p in pods.items
    ]


def run_job(
    client: ApiClient,
    job: Manifest,
    *,
    timeout: float = 180.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Sleep = time.sleep,
) -> LbCheckResult:
    """確認の Job を作り直して動かし、Pod ごとの結果をまとめて返す。終われば Job を消す。

    Job のテンプレートは変えられないので、同じ名前の前の Job があれば消えるのを待ってから作る。
    """
    namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
    start = clock()
    _wait_deleted(client, namespace, name, start + timeout, clock, sleep)
    created = server_side_apply(client, job)
    # 消した前回の Job の Pod は後からガベージコレクトされるので、今回の Job の uid で Pod を選ぶ
    job_uid = (created.get("metadata") or {}).get("uid")
    selector = f"batch.kubernetes.io/controller-uid={job_uid}" if job_uid else f"job-name={name}"
    try:
        succeeded = _wait_finished(
            client, namespace, name, int(job["spec"].get("completions") or 1), start + timeout, clock, sleep
        )
        logs = _pod_logs(client, namespace, name, selector)
        if not succeeded:
            raise ClusterError(
                f"in-cluster job {name} failed",
                hint=f"kubectl -n {namespace} logs job/{name}",
                details="\n".join(logs[0].strip().splitlines()[-10:]) or None,
            )
        return merge_results([parse_result(log) for log in logs])
    finally:
        _delete_job(client, namespace, name)


def run_lb_check(
    client: ApiClient,
    namespace: str,
    *,
    requests: int = 60,
    timeout: float = 180.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Sleep = time.sleep,
) -> LbCheckResult:
    """デプロイしたイメージの確認の Job から Service の ClusterIP へ送り、結果を返す（合否つき）。"""
    image = deployed_image(client, namespace)
    job = check_job(image, namespace, service_url(cluster_ip(client, namespace)), requests=requests)
    result = run_job(client, job, timeout=timeout, clock=clock, sleep=sleep)
    return replace(result, image=image)
