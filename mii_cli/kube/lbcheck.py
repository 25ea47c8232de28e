"""ロードバランシングの確認: クラスタ内の短い Job が Service の DNS 名へリクエストを送り、
応答した Pod（`X-Served-By` ヘッダ）ごとの件数を JSON でログに出す。2 つ以上の Pod が答えれば合格。
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from kubernetes.client import ApiClient, AppsV1Api, BatchV1Api, CoreV1Api

from mii_cli.errors import ClusterError, WaitTimeout
from mii_cli.kube import APP_NAME
from mii_cli.kube import api as kapi
from mii_cli.kube.apply import server_side_apply
from mii_cli.kube.render import Manifest
from service.constants import DEFAULT_PORT, SERVED_BY_HEADER

JOB_NAME = "mii-lb-check"
MIN_PODS = 2

# Job のコンテナで動かすスクリプト（標準ライブラリだけ。接続ごとに kube-proxy が振り分ける）
SCRIPT = f"""
import collections, json, sys, time, urllib.request
url, total = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + (float(sys.argv[3]) if len(sys.argv) > 3 else 0.0)
counts, errors, sent = collections.Counter(), [], 0
while sent < total or time.monotonic() < deadline:
    sent += 1
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            response.read()
            counts[response.headers.get("{SERVED_BY_HEADER}") or "unknown"] += 1
    except Exception as error:
        errors.append(type(error).__name__ + ": " + str(error))
print(json.dumps({{"url": url, "requests": sent, "errors": len(errors),
                  "first_errors": errors[:3], "served_by": dict(counts)}}))
""".strip()


def service_url(namespace: str, path: str = "/predict/test") -> str:
    """Service のクラスタ内の URL。"""
    return f"http://{APP_NAME}.{namespace}.svc:{DEFAULT_PORT}{path}"


def job_manifest(
    image: str, namespace: str, *, requests: int = 60, duration: float = 0.0, name: str = JOB_NAME
) -> Manifest:
    """確認用の Job（アプリと同じイメージ、制限付きのセキュリティコンテキスト）。

    `requests` 件を送り、`duration` 秒に満たなければ時間いっぱいまで送り続ける（更新中の負荷に使う）。
    """
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": APP_NAME}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": int(180 + duration),
            "ttlSecondsAfterFinished": 600,
            "template": {
                # app=model-in-image を付けない（Service に選ばれないように）
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
                            "command": [
                                "python",
                                "-c",
                                SCRIPT,
                                service_url(namespace),
                                str(requests),
                                f"{duration:g}",
                            ],
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "64Mi"},
                                "limits": {"cpu": "200m", "memory": "128Mi"},
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


def parse_result(log: str) -> dict[str, Any]:
    """Job のログの最後の JSON 行を読む（無ければ ClusterError）。"""
    for line in reversed(log.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                result: dict[str, Any] = json.loads(line)
            except ValueError:
                continue
            if isinstance(result.get("served_by"), dict):
                return result
    tail = "\n".join(log.strip().splitlines()[-10:])
    raise ClusterError("the load-balancing job printed no result", details=tail or "(empty log)")


def verdict(result: dict[str, Any]) -> tuple[bool, str]:
    """合否と 1 行の説明。2 つ以上の Pod が答え、失敗が無ければ合格。"""
    served = result.get("served_by") or {}
    counts = ", ".join(f"{pod}={count}" for pod, count in sorted(served.items()))
    errors = int(result.get("errors") or 0)
    passed = len(served) >= MIN_PODS and errors == 0
    detail = (
        f"{result.get('requests')} in-cluster requests answered by {len(served)} pods ({counts or 'none'})"
    )
    if errors:
        detail += f"; {errors} failed: {'; '.join(result.get('first_errors') or [])}"
    elif len(served) < MIN_PODS:
        detail += f"; need at least {MIN_PODS}"
    return passed, detail


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


def run_lb_check(
    client: ApiClient,
    namespace: str,
    *,
    requests: int = 60,
    duration: float = 0.0,
    timeout: float = 180.0,
    poll: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Job を動かして結果を返す（`passed`・`detail` 付き）。終われば Job を消す。"""
    image = deployed_image(client, namespace)
    batch, core = BatchV1Api(client), CoreV1Api(client)
    # 前回の Job が残っていれば消えるまで待つ（Job のテンプレートは変更できない）
    _delete_job(client, namespace, JOB_NAME)
    start = clock()
    while kapi.read(client, "reading the job", batch.read_namespaced_job, JOB_NAME, namespace) is not None:
        if clock() - start >= timeout:
            raise WaitTimeout(
                f"old job {JOB_NAME} is still being deleted", hint=f"kubectl -n {namespace} get jobs"
            )
        sleep(poll)
    created = server_side_apply(client, job_manifest(image, namespace, requests=requests, duration=duration))
    # 消した前回の Job の Pod は後からガベージコレクトされるので、今回の Job の uid で Pod を選ぶ
    job_uid = (created.get("metadata") or {}).get("uid")
    selector = f"batch.kubernetes.io/controller-uid={job_uid}" if job_uid else f"job-name={JOB_NAME}"
    try:
        while True:
            job = kapi.call(client, "reading the job", batch.read_namespaced_job, JOB_NAME, namespace)
            status = job.status
            if status is not None and ((status.succeeded or 0) > 0 or (status.failed or 0) > 0):
                break
            if clock() - start >= timeout + duration:
                raise WaitTimeout(
                    f"load-balancing job {JOB_NAME} did not finish in {timeout:.0f}s",
                    hint=f"kubectl -n {namespace} describe job {JOB_NAME}",
                )
            sleep(poll)
        pods = kapi.call(
            client,
            "listing job pods",
            core.list_namespaced_pod,
            namespace,
            label_selector=selector,
        ).items
        if not pods:
            raise ClusterError(
                f"job {JOB_NAME} has no pod", hint=f"kubectl -n {namespace} describe job {JOB_NAME}"
            )
        log = kapi.call(
            client, "reading the job log", core.read_namespaced_pod_log, kapi.name_of(pods[0]), namespace
        )
        if not (status.succeeded or 0):
            raise ClusterError(
                f"load-balancing job {JOB_NAME} failed",
                hint=f"kubectl -n {namespace} logs job/{JOB_NAME}",
                details="\n".join(str(log).strip().splitlines()[-10:]) or None,
            )
        result = parse_result(str(log))
    finally:
        _delete_job(client, namespace, JOB_NAME)
    passed, detail = verdict(result)
    return {**result, "passed": passed, "detail": detail, "image": image}
