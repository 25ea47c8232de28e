"""単体テストが使う API サーバーの代役（tests/fakes/kube_api.py）を、本物のクラスタと突き合わせる。

mii が頼るやりとりを同じ順に両方へ送り、ステータスコード・本文の種類・reason・mii が読む値が
同じであることを確かめる。代役が本物からずれれば、ここで失敗する。
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from mii_cli.errors import ConfigError
from mii_cli.kube import APP_NAME, MIRROR_ANNOTATION
from mii_cli.kube import api as kapi
from mii_cli.kube.apply import APPLY_CONTENT_TYPE, delete_object, object_path
from mii_cli.kube.configmaps import read_config_map, write_config_map
from mii_cli.kube.pods import annotate_pods
from mii_cli.kube.render import render
from mii_cli.kube.revisions import read_deployment, revisions, rollback, scale
from mii_cli.kube.services import cluster_ip
from tests.fakes.kube_api import FakeApiServer
from tests.fakes.kube_objects import become_ready

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

NAMESPACE = "mii-fake-check"
IMAGE = "127.0.0.1:5000/model-in-image:never-pulled"


def _apply(client: Any, obj: dict[str, Any], manager: str = "mii", force: bool = True) -> tuple[int, Any]:
    return kapi.request(
        client,
        "PATCH",
        object_path(obj),
        query=[("fieldManager", manager), ("force", "true" if force else "false")],
        body=obj,
        content_type=APPLY_CONTENT_TYPE,
    )


def _shape(status: int, body: Any) -> tuple[int, str, str]:
    """比べる形: (コード, kind, reason)。"""
    body = body if isinstance(body, dict) else {}
    return status, str(body.get("kind", "")), str(body.get("reason", ""))


def _settled(client: Any, current: int) -> list[tuple[int, str, bool]]:
    """Deployment コントローラが今の版を `current` にするまで待ち、版の (番号, イメージ, 今か) を返す。"""
    deadline = time.monotonic() + 60
    found: list[tuple[int, str, bool]] = []
    while time.monotonic() < deadline:
        found = [(r.number, r.image, r.current) for r in revisions(client, NAMESPACE, APP_NAME)]
        if any(number == current and now for number, _, now in found):
            break
        time.sleep(0.5)
    return found


def _conversation(client: Any, wait: Callable[[], None]) -> dict[str, Any]:
    """mii が頼るやりとりを順に行い、比べる値を集める。"""
    objects = {o["kind"]: o for o in render(IMAGE, NAMESPACE)}
    seen: dict[str, Any] = {}
    seen["read missing"] = _shape(*kapi.request(client, "GET", object_path(objects["Deployment"])))
    _apply(client, objects["Namespace"])
    status, service = _apply(client, objects["Service"])
    seen["service gets a cluster IP"] = (status, bool((service.get("spec") or {}).get("clusterIP")))
    # 同じ内容の適用は書き込まない。Service には状態を書くコントローラが無いので resourceVersion で見る
    # （Deployment の resourceVersion は、deployment コントローラが status を書くと 2 回の適用の間でも変わる）
    _, service_again = _apply(client, objects["Service"])
    seen["same apply keeps resourceVersion"] = (
        service["metadata"]["resourceVersion"] == service_again["metadata"]["resourceVersion"]
    )
    # 影の写し先（mii deploy --shadow）: Service の読み出しは割り当てた ClusterIP を返す。無ければ None
    seen["read the service's cluster IP"] = (
        cluster_ip(client, NAMESPACE, APP_NAME) == service["spec"]["clusterIP"],
        cluster_ip(client, NAMESPACE, "absent"),
    )
    # NetworkPolicy: 既定の値（policyTypes・protocol）の補い方と空の egress の読み返し方（mii status が読む）
    policies = [o for o in render(IMAGE, NAMESPACE) if o["kind"] == "NetworkPolicy"]
    for policy in policies:
        status, written = _apply(client, policy)
        spec = written.get("spec") or {}
        seen[f"networkpolicy {policy['metadata']['name']}"] = (
            status,
            spec.get("policyTypes"),
            spec.get("ingress"),
            spec.get("egress"),
        )
    _, first = _apply(client, objects["Deployment"])
    _, again = _apply(client, objects["Deployment"])
    seen["same apply keeps the Deployment's generation"] = (
        first["metadata"]["generation"] == again["metadata"]["generation"] == 1
    )
    other = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "model-in-image", "namespace": NAMESPACE},
        "spec": {"replicas": 7},
    }
    seen["conflict without force"] = _shape(*_apply(client, other, manager="someone-else", force=False))
    # 版: 別のイメージで版が進み、前の版のテンプレートに戻すと（mii rollback と同じ JSON Patch）、
    # その ReplicaSet が次の番号をもらう（Deployment コントローラの振る舞い。代役は become_ready が真似る）
    second = {o["kind"]: o for o in render(f"{IMAGE}-second", NAMESPACE)}["Deployment"]
    _apply(client, second)
    seen["revisions after a new image"] = _settled(client, 2)
    rollback(client, NAMESPACE, APP_NAME)
    seen["revisions after a rollback"] = _settled(client, 3)
    # canary の段（mii deploy --analysis）: spec.replicas だけを JSON Patch で変える
    generation = read_deployment(client, NAMESPACE, APP_NAME)["metadata"]["generation"]  # type: ignore[index]
    scale(client, NAMESPACE, APP_NAME, 3)
    scaled = read_deployment(client, NAMESPACE, APP_NAME) or {}
    seen["scale by JSON patch"] = (scaled["spec"]["replicas"], scaled["metadata"]["generation"] > generation)
    try:
        scale(client, NAMESPACE, "absent", 1)
    except ConfigError as error:
        seen["scale a missing deployment"] = error.message
    # 分析の記録（ConfigMap）: 無ければ None、作って置き換えて読み返す
    seen["configmap missing"] = read_config_map(client, NAMESPACE, "mii-records")
    write_config_map(client, NAMESPACE, "mii-records", {"records.json": "[1]"})
    write_config_map(client, NAMESPACE, "mii-records", {"records.json": "[2, 1]"})
    seen["configmap read back"] = read_config_map(client, NAMESPACE, "mii-records")
    # 写しの入り切り（mii deploy --shadow）: Pod に注釈だけを部分的に適用すると、ほかのフィールドは残る。
    # 無い Pod への部分的な適用は作成になり、コンテナが無いので断られる。Pod は Namespace の
    # Pod Security Admission（restricted）を通る形で作る
    probe = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "mirror-probe", "namespace": NAMESPACE, "labels": {"app": "mirror-probe"}},
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "probe",
                    "image": IMAGE,
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    # 本物の Pod は ReplicaSet のコントローラが作る: mii とは別のフィールドマネージャ（同じマネージャの
    # 部分的な適用は、書かなかったフィールド（コンテナ）を手放すことになり、本物は断る）
    _apply(client, probe, manager="replicaset-stand-in")
    annotated = annotate_pods(client, NAMESPACE, "app=mirror-probe", MIRROR_ANNOTATION, "1")
    status, pod = kapi.request(client, "GET", object_path(probe))
    seen["annotate a pod by apply"] = (
        annotated,
        status,
        pod["metadata"].get("annotations"),
        pod["metadata"].get("labels"),
        [c["name"] for c in pod["spec"]["containers"]],
    )
    missing = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "absent", "namespace": NAMESPACE}}
    seen["annotate a missing pod"] = _shape(*_apply(client, missing))
    # 影を消す（mii rollback）: 消えれば True、2 度目は 404
    records = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "mii-records", "namespace": NAMESPACE},
    }
    for obj in (objects["Service"], policies[0], records):
        deleted = delete_object(client, obj)
        again = _shape(*kapi.request(client, "DELETE", object_path(obj)))
        seen[f"delete {obj['kind']} twice"] = (deleted, again, delete_object(client, obj))
    status, deleted = kapi.request(client, "DELETE", f"/api/v1/namespaces/{NAMESPACE}")
    seen["delete namespace"] = (status, deleted.get("kind"), (deleted.get("status") or {}).get("phase"))
    late = {**objects["Service"], "metadata": {**objects["Service"]["metadata"], "name": "late"}}
    status, body = _apply(client, late)
    refused = "being terminated" in body["message"]
    seen["apply into a terminating namespace"] = (*_shape(status, body), refused)
    wait()
    seen["namespace gone"] = kapi.request(client, "GET", f"/api/v1/namespaces/{NAMESPACE}")[0]
    return seen


def test_the_fake_api_server_answers_like_the_real_one(
    cluster: tuple[Any, Any], fake_api: FakeApiServer
) -> None:
    real_client = cluster[0]

    def wait_real() -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if kapi.request(real_client, "GET", f"/api/v1/namespaces/{NAMESPACE}")[0] == 404:
                return
            time.sleep(2)

    try:
        real = _conversation(real_client, wait_real)
    except BaseException:
        # 途中で失敗しても Namespace を残さない（残ると、使い回すクラスタでの次の回が最初から食い違う）
        kapi.request(real_client, "DELETE", f"/api/v1/namespaces/{NAMESPACE}")
        raise
    # 代役の Namespace は、Terminating のまま 1 度読まれた後に消える。版は代役のコントローラが決める
    fake_api.on_apply.append(become_ready(fake_api))
    fake_client = fake_api.client()
    fake = _conversation(
        fake_client, lambda: kapi.request(fake_client, "GET", f"/api/v1/namespaces/{NAMESPACE}")
    )
    assert real == fake
    # 本物の答えそのものも、mii が前提にする値であること
    assert real["read missing"] == (404, "Status", "NotFound")
    assert real["conflict without force"] == (409, "Status", "Conflict")
    assert real["scale by JSON patch"] == (3, True)
    assert real["configmap missing"] is None
    assert real["configmap read back"] == {"records.json": "[2, 1]"}
    assert real["read the service's cluster IP"] == (True, None)
    assert real["annotate a pod by apply"] == (
        ["mirror-probe"],
        200,
        {MIRROR_ANNOTATION: "1"},
        {"app": "mirror-probe"},
        ["probe"],
    )
    assert real["annotate a missing pod"] == (422, "Status", "Invalid")
    for kind in ("Service", "NetworkPolicy", "ConfigMap"):
        assert real[f"delete {kind} twice"] == (True, (404, "Status", "NotFound"), False)
    assert real["delete namespace"] == (200, "Namespace", "Terminating")
    assert real["apply into a terminating namespace"] == (403, "Status", "Forbidden", True)
    assert real["namespace gone"] == 404
    assert real["revisions after a rollback"] == [(2, f"{IMAGE}-second", False), (3, IMAGE, True)]
