"""`mii deploy`: イメージをクラスタへ渡し、オブジェクトを順に適用し、ロールアウトを待つ。"""

from __future__ import annotations

from typing import Any

from kubernetes.client import ApiClient

from mii_cli import console as out
from mii_cli.errors import MiiError
from mii_cli.kube import APP_NAME
from mii_cli.kube import api as kapi
from mii_cli.kube.apply import apply_all
from mii_cli.kube.cluster import KIND, MINIKUBE, ClusterInfo, connect
from mii_cli.kube.images import carry_out, latest_local_image, missing_image_hint, plan_image
from mii_cli.kube.render import Manifest, Sizing, find, load_manifests, render
from mii_cli.kube.rollout import wait_for_rollout
from mii_cli.kube.teardown import ensure_managed, read_namespace, wait_gone

METRICS_PATH = "/apis/metrics.k8s.io/v1beta1"
METRICS_SERVER_MANIFEST = (
    "https://github.com/kubernetes-sigs/metrics-server/releases/latest/download/components.yaml"
)


def manifest_image() -> str:
    """manifests/deployment.yml に書かれたイメージ（--dry-run の既定）。"""
    deployment = find(load_manifests(), "Deployment")
    image: str = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


def dry_run_objects(
    namespace: str, image: str | None, sizing: Sizing | None = None
) -> tuple[str, list[Manifest]]:
    """クラスタに触れずに、適用するオブジェクトを組み立てる。

    --image が無ければローカルの最新イメージ、Docker に届かなければマニフェストのイメージを使う。
    """
    if image is None:
        try:
            image = latest_local_image()
        except MiiError as error:
            image = manifest_image()
            out.info(f"{error.message}; showing the manifests' image {image}")
    return image, render(image, namespace, sizing=sizing)


def metrics_api_available(client: ApiClient) -> bool:
    """metrics API（metrics-server）が応答するか。HPA はこれが無いと CPU 使用率を読めない。"""
    status, _ = kapi.request(client, "GET", METRICS_PATH, timeout=10)
    return status == 200


def metrics_hint(info: ClusterInfo) -> str:
    """metrics-server を入れる方法（クラスタの種類ごと）。"""
    if info.flavor == MINIKUBE:
        return f"minikube -p {info.name} addons enable metrics-server"
    command = f"kubectl apply -f {METRICS_SERVER_MANIFEST}"
    if info.flavor == KIND:
        command += (
            " && kubectl -n kube-system patch deployment metrics-server --type=json "
            '-p \'[{"op":"add","path":"/spec/template/spec/containers/0/args/-",'
            '"value":"--kubelet-insecure-tls"}]\''
        )
    return command


def deploy(
    *,
    namespace: str,
    image: str | None = None,
    registry: str | None = None,
    timeout: float = 300.0,
    context: str | None = None,
    load: bool = True,
    wait: bool = True,
    sizing: Sizing | None = None,
    client: ApiClient | None = None,
    info: ClusterInfo | None = None,
) -> dict[str, Any]:
    """デプロイの全体。結果（クラスタ・イメージ・適用結果・metrics API・ロールアウト）を辞書で返す。"""
    if client is None or info is None:
        client, info = connect(context)
    out.info(f"cluster: {info.context} ({info.flavor}, {info.version or 'unknown version'}) at {info.server}")
    image = image or latest_local_image()
    plan = plan_image(info, image, registry=registry, load=load)
    out.info(f"image: {plan.detail}")
    existing = read_namespace(client, namespace)
    if existing is not None:
        ensure_managed(existing, namespace, "deploy into")
        if (existing.get("status") or {}).get("phase") == "Terminating":
            out.info(f"namespace {namespace} is still being deleted; waiting")
            wait_gone(client, namespace)
    if plan.action != "use":
        with out.console.status(f"Making {image} available to the cluster ({plan.action})..."):
            carry_out(info, image, plan)
    reference = plan.reference
    out.success(f"image: {reference}")
    applied = apply_all(client, render(reference, namespace, sizing=sizing))
    for item in applied:
        out.success(f"{item.kind}/{item.name} {item.action}")
    metrics = metrics_api_available(client)
    if not metrics:
        out.warn(
            f"the metrics API ({METRICS_PATH}) is not served, so the HPA cannot read CPU usage; "
            f"enable it with: {metrics_hint(info)}"
        )
    result: dict[str, Any] = {
        "cluster": info.as_dict(),
        "namespace": namespace,
        "image": reference,
        "applied": [item.as_dict() for item in applied],
        "metrics_api": metrics,
        "rollout": None,
    }
    if wait:
        rollout = wait_for_rollout(
            client, namespace, APP_NAME, timeout=timeout, image_hint=missing_image_hint(info, reference)
        )
        out.success(f"deployment/{APP_NAME}: {rollout['ready']}/{rollout['desired']} pods ready")
        result["rollout"] = rollout
    return result
