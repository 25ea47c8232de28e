"""ロードバランシングの確認: クラスタ内の短い Job が Service の ClusterIP へリクエストを送り、
応答した Pod（`X-Served-By` ヘッダ）ごとの件数を JSON でログに出す。2 つ以上の Pod が答えれば合格。

DNS 名ではなく ClusterIP を使う: クラスタの DNS（CoreDNS）が無くても kube-proxy の振り分けを確かめられる。
Job の Pod は `app.kubernetes.io/component: check` を持ち、manifests/networkpolicy.yml の
model-in-image-checks が許す通信（アプリの Pod のポート 8000 だけ。DNS も無し）しかしない。
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

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

LOAD_JOB_NAME = "mii-load"
_POLL = 1.0
Sleep = Callable[[float], None]

# Job のコンテナで動かすスクリプト（標準ライブラリだけ。接続ごとに kube-proxy が振り分ける）。
# 引数: URL・件数・秒数・（あれば）POST する JSON の本文
SCRIPT = f"""
import collections, json, sys, time, urllib.request
url, total = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + (float(sys.argv[3]) if len(sys.argv) > 3 else 0.0)
body = sys.argv[4].encode() if len(sys.argv) > 4 else None
headers = {{"Content-Type": "application/json"}} if body else {{}}
counts, errors, sent = collections.Counter(), [], 0
while sent < total or time.monotonic() < deadline:
    sent += 1
    try:
        request = urllib.request.Request(url, data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()
            counts[response.headers.get("{SERVED_BY_HEADER}") or "unknown"] += 1
    except Exception as error:
        errors.append(type(error).__name__ + ": " + str(error))
print(json.dumps({{"url": url, "requests": sent, "errors": len(errors),
                  "first_errors": errors[:3], "served_by": dict(counts)}}))
""".strip()


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


def job_manifest(
    image: str,
    namespace: str,
    url: str,
    *,
    requests: int = 60,
    duration: float = 0.0,
    name: str = JOB_NAME,
    parallelism: int = 1,
    body: str | None = None,
    cpu_limit: str = "200m",
) -> Manifest:
    """確認用の Job（アプリと同じイメージ、制限付きのセキュリティコンテキスト）。

    Pod ごとに `requests` 件を送り、`duration` 秒に満たなければ時間いっぱいまで送り続ける
    （更新中・HPA の確認の負荷に使う）。`parallelism` 個の Pod が同時に送る。`body` があれば POST。
    """
    # CHECK_LABEL_KEY の付いた Pod だけが、NetworkPolicy model-in-image-checks でアプリの Pod へ送れる
    labels = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": APP_NAME,
        CHECK_LABEL_KEY: CHECK_LABEL_VALUE,
    }
    arguments = [url, str(requests), f"{duration:g}", *([body] if body is not None else [])]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "parallelism": parallelism,
            "completions": parallelism,
            "backoffLimit": 0,
            "activeDeadlineSeconds": int(180 + duration),
            "ttlSecondsAfterFinished": 600,
            "template": {
                # app=model-in-image を付けない（Service とアプリの NetworkPolicy に選ばれないように）
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "enableServiceLinks": False,
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "runAsGroup": 0,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "lb-check",
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["python", "-c", SCRIPT, *arguments],
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "64Mi"},
                                "limits": {"cpu": cpu_limit, "memory": "128Mi"},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "runAsNonRoot": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                },
            },
        },
    }


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


def run_lb_check(
    client: ApiClient,
    namespace: str,
    *,
    requests: int = 60,
    duration: float = 0.0,
    timeout: float = 180.0,
    name: str = JOB_NAME,
    parallelism: int = 1,
    body: str | None = None,
    path: str = "/predict/test",
    cpu_limit: str = "200m",
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> LbCheckResult:
    """クラスタ内の Job で Service に送り、結果を返す（`passed`・`detail` 付き）。終われば Job を消す。

    既定はロードバランシングの確認（GET /predict/test を 60 件）。`duration`・`parallelism`・`body`
    で、更新中や HPA の確認のための負荷にもなる。
    """
    image = deployed_image(client, namespace)
    url = service_url(cluster_ip(client, namespace), path)
    start = clock()
    _wait_deleted(client, namespace, name, start + timeout, clock, sleep)
    manifest = job_manifest(
        image,
        namespace,
        url,
        requests=requests,
        duration=duration,
        name=name,
        parallelism=parallelism,
        body=body,
        cpu_limit=cpu_limit,
    )
    created = server_side_apply(client, manifest)
    # 消した前回の Job の Pod は後からガベージコレクトされるので、今回の Job の uid で Pod を選ぶ
    job_uid = (created.get("metadata") or {}).get("uid")
    selector = f"batch.kubernetes.io/controller-uid={job_uid}" if job_uid else f"job-name={name}"
    try:
        succeeded = _wait_finished(
            client, namespace, name, parallelism, start + timeout + duration, clock, sleep
        )
        logs = _pod_logs(client, namespace, name, selector)
        if not succeeded:
            raise ClusterError(
                f"in-cluster job {name} failed",
                hint=f"kubectl -n {namespace} logs job/{name}",
                details="\n".join(logs[0].strip().splitlines()[-10:]) or None,
            )
        result = merge_results([parse_result(log) for log in logs])
    finally:
        _delete_job(client, namespace, name)
    return replace(result, image=image)
