"""影（shadow）: 新しいモデルを利用者に答えない Deployment として動かし、安定版の推論の一部を写させる。

`mii deploy --shadow` の手順（workflows/deploy.py の `steps_for` が並べる）:

1. `apply_shadow`: 影の Deployment（1 Pod、どの Service にも選ばれない）と、その Pod だけを選ぶ Service、
   2 つの NetworkPolicy（影は入りがポート 8000 だけで出る通信なし、安定版から影のポート 8000 へだけ出てよい）
   を適用する（manifests/shadow/）。もう影へ写していれば（影を出し直す）、先に写しを止める。
2. ロールアウトを待ち、影の Pod を確かめる（デプロイと同じ関門。通らなければ影を消す）。
3. `start_mirroring`: 影の Service の ClusterIP と割合を ConfigMap `model-in-image-mirror` に書き、
   安定版の Pod に注釈を付けて kubelet にすぐ書き換えさせ、すべての安定版の Pod が `/metrics` でその割合を
   名乗るまで待つ（API サーバーの Pod のプロキシ越し）。名乗らなければ失敗にして影を消す。

安定版の Pod は起き直さない: 写しの設定はテンプレートの外（ConfigMap のファイル）にあり、サーバーが
1 秒ごとに読み直す（service/app/mirror.py）。`stop_shadow` は逆の順に、写しを止めたのを確かめてから
影のオブジェクトを消す（`mii rollback`・`mii promote` が呼ぶ）。
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kubernetes.client import ApiClient

from mii_cli.errors import ClusterError, ConfigError, MiiError
from mii_cli.kube import (
    APP_LABEL,
    APP_NAME,
    MIRROR_ANNOTATION,
    MIRROR_KEY,
    MIRROR_NAME,
    SHADOW_LABEL,
    SHADOW_NAME,
)
from mii_cli.kube.apply import apply_all, delete_object
from mii_cli.kube.configmaps import read_config_map, write_config_map
from mii_cli.kube.pods import annotate_pods
from mii_cli.kube.render import MIRROR_ENV, Manifest, render, shadow_objects
from mii_cli.kube.revisions import read_deployment
from mii_cli.kube.services import cluster_ip
from mii_cli.probe.mirror import parse_mirror
from mii_cli.results import Result
from mii_cli.workflows.pod_metrics import read_pods
from mii_cli.workflows.steps import Status
from service.constants import DEFAULT_PORT

if TYPE_CHECKING:
    from mii_cli.workflows.deploy import DeployContext

# 安定版の Pod が写しの入り切りを名乗るまで待つ上限（秒）。注釈で kubelet がすぐ同期すれば数秒、
# しなくても kubelet の同期の周期（既定 1 分）と ConfigMap のキャッシュの分で届く
MIRROR_WAIT_SECONDS = 150.0
POLL_SECONDS = 2.0
# 写さない設定（サーバーは `{}` を写し無しと読む）
MIRROR_OFF = "{}"


@dataclass(frozen=True)
class Mirroring(Result):
    """写しの状態: 写し先（影の Service の ClusterIP:ポート）・割合・その割合を名乗った安定版の Pod。"""

    target: str
    percent: float
    pods: list[str] = field(default_factory=list)


def mirror_document(target: str, percent: float) -> str:
    """ConfigMap に書く写しの設定（サーバーの MIRROR_CONFIG の形）。"""
    return json.dumps({"target": target, "percent": percent})


def mirrors(deployment: Manifest) -> bool:
    """安定版の Pod のテンプレートが写しの設定（MIRROR_CONFIG）を持つか。"""
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return any(env.get("name") == MIRROR_ENV for c in containers for env in c.get("env") or [])


def pod_percents(client: ApiClient, namespace: str) -> dict[str, float | None]:
    """安定版の Ready な Pod ごとの、`/metrics` が名乗る写しの割合（読めない・名乗らなければ None）。"""
    pods, readings, _ = read_pods(client, namespace, APP_LABEL, parse_mirror)
    percents: dict[str, float | None] = {}
    for pod in pods:
        found = readings[pod].percents if pod in readings else []
        percents[pod] = found[0] if found else None
    return percents


def set_mirroring(
    client: ApiClient,
    namespace: str,
    percent: float,
    target: str | None,
    *,
    timeout: float = MIRROR_WAIT_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """写しの設定を書き（`percent` 0 なら ConfigMap を空に）、安定版の Pod がその割合を名乗るまで待つ。

    名乗った Pod の名前を返す。期限までに名乗らない Pod があれば ClusterError。
    """
    document = mirror_document(target, percent) if target is not None and percent > 0 else MIRROR_OFF
    write_config_map(client, namespace, MIRROR_NAME, {MIRROR_KEY: document})
    annotate_pods(client, namespace, APP_LABEL, MIRROR_ANNOTATION, str(time.time_ns()))
    deadline = clock() + timeout
    while True:
        percents = pod_percents(client, namespace)
        behind = {pod: found for pod, found in percents.items() if found != percent}
        if percents and not behind:
            return sorted(percents)
        if clock() >= deadline:
            shown = ", ".join(f"{pod} ({'unread' if v is None else f'{v:g}%'})" for pod, v in behind.items())
            raise ClusterError(
                f"the stable pods did not switch to mirroring {percent:g}% within {timeout:.0f}s: "
                + (shown or "no ready stable pod"),
                hint=f"kubectl -n {namespace} get configmap {MIRROR_NAME} -o yaml; the pods re-read it "
                "every second once the kubelet has updated the file",
            )
        sleep(POLL_SECONDS)


# --- デプロイの手順 -----------------------------------------------------------------------------


def check_stable_mirrors(ctx: DeployContext) -> None:
    """安定版の Pod が写しの設定を読むか（古い mii でデプロイした安定版は読まない）。"""
    assert ctx.stable is not None
    if not mirrors(ctx.stable):
        raise ConfigError(
            f"the stable pods of {APP_NAME} do not read the mirror configuration ({MIRROR_ENV})",
            hint="deploy the stable model once more with this mii (mii deploy), then add the shadow",
        )


def mirroring_now(client: ApiClient, namespace: str) -> bool:
    """写しの設定が写し先を持つか（安定版の Pod が今の影へ写しているか）。"""
    document = (read_config_map(client, namespace, MIRROR_NAME) or {}).get(MIRROR_KEY)
    return document is not None and document != MIRROR_OFF


def apply_shadow(ctx: DeployContext) -> None:
    """影の Deployment・Service・NetworkPolicy を適用する。

    もう影へ写していれば、先に写しを止める: 影の Service のアドレスは変わらないので、止めなければ
    安定版の Pod は写しの数字を数え直さず、前の影の答え（とロールアウトの間の両方の答え）が新しい影の
    数字に混ざる。止めたのを確かめられなければ警告して続ける。
    """
    from mii_cli.workflows.deploy import applied_line, record_annotations

    assert ctx.record is not None
    namespace = ctx.request.namespace
    if mirroring_now(ctx.client, namespace):
        ctx.status.start("mirror", f"Stopping the mirroring to the running {SHADOW_NAME} first...")
        try:
            set_mirroring(ctx.client, namespace, 0.0, None, clock=ctx.clock, sleep=ctx.sleep)
        except MiiError as error:
            ctx.status.warn("mirror", f"{error.message}; the new shadow's numbers may include the old one's")
        else:
            ctx.status.done("mirror", "the stable pods stopped mirroring; their numbers start again from 0")
    objects = render(ctx.reference, namespace, sizing=ctx.sizing, annotations=record_annotations(ctx.record))
    ctx.objects = shadow_objects(objects, namespace)
    ctx.applied = apply_all(
        ctx.client, ctx.objects, on_applied=lambda result: ctx.status.done("apply", applied_line(result))
    )


def start_mirroring(ctx: DeployContext) -> None:
    """安定版の Pod に写しを始めさせ、すべての Pod が名乗るまで待つ（失敗すれば影を消す）。"""
    request, client, namespace = ctx.request, ctx.client, ctx.request.namespace
    percent = request.mirror_percent
    try:
        address = cluster_ip(client, namespace, SHADOW_NAME)
        if address is None:
            raise ClusterError(f"service {SHADOW_NAME} has no cluster IP to mirror to")
        target = f"[{address}]:{DEFAULT_PORT}" if ":" in address else f"{address}:{DEFAULT_PORT}"
        ctx.status.start("mirror", f"Asking the stable pods to mirror {percent:g}% of predict requests...")
        pods = set_mirroring(client, namespace, percent, target, clock=ctx.clock, sleep=ctx.sleep)
    except MiiError as failure:
        if not request.rollback_on_failure:
            raise type(failure)(
                f"{failure.message}; the shadow is left running (--no-rollback)", hint=failure.hint
            ) from None
        ctx.status.warn("mirror", failure.message)
        stop_shadow(
            client, namespace, timeout=request.timeout, status=ctx.status, clock=ctx.clock, sleep=ctx.sleep
        )
        raise type(failure)(f"{failure.message}; removed the shadow", hint=failure.hint) from None
    ctx.mirroring = Mirroring(target=target, percent=percent, pods=pods)
    ctx.status.done(
        "mirror",
        f"{len(pods)} stable pods mirror {percent:g}% of predict requests to {SHADOW_NAME} ({target})",
    )


# --- 影を消す ----------------------------------------------------------------------------------


def stop_shadow(
    client: ApiClient,
    namespace: str,
    *,
    timeout: float,
    status: Status,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """写しを止め（安定版の Pod が 0% を名乗るまで待つ）、影のオブジェクトを消す。影が無ければ False。

    写しが止まったのを確かめられなくても（Pod が読めないなど）、警告して影を消す: 写し先が消えれば、
    残った写しは影のエラーとして数えられるだけで、利用者の答えには関わらない。
    """
    from mii_cli.workflows.deploy import wait_pods_gone

    if not shadow_running(client, namespace):
        return False
    status.start("shadow", "Stopping the mirroring to the shadow...")
    try:
        set_mirroring(
            client, namespace, 0.0, None, timeout=min(timeout, MIRROR_WAIT_SECONDS), clock=clock, sleep=sleep
        )
    except MiiError as error:
        status.warn("shadow", f"{error.message}; removing the shadow anyway")
    status.start("shadow", f"Removing {SHADOW_NAME}...")
    objects = shadow_objects(render("unused", namespace), namespace)
    for obj in reversed(objects):
        delete_object(client, obj)
    delete_object(
        client,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": MIRROR_NAME, "namespace": namespace}},
    )
    wait_pods_gone(client, namespace, SHADOW_LABEL, "shadow", timeout=timeout, clock=clock, sleep=sleep)
    status.done("shadow", f"removed {SHADOW_NAME}; the stable pods mirror nothing")
    return True


def shadow_running(client: ApiClient, namespace: str) -> bool:
    """影の Deployment か Service があるか（途中で止まった影の残りも、消す対象として見つける）。"""
    return (
        read_deployment(client, namespace, SHADOW_NAME) is not None
        or cluster_ip(client, namespace, SHADOW_NAME) is not None
    )
