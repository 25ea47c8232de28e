"""マニフェストを読み、適用するオブジェクトを組み立てる（クラスタに触れない純粋な処理）。"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mii_cli.errors import ConfigError
from mii_cli.kube import (
    APP_NAME,
    CANARY_NAME,
    IMAGE_DIGEST_ANNOTATION,
    IMAGE_TAG_ANNOTATION,
    MIRROR_NAME,
    MODEL_FILE_ANNOTATION,
    MODEL_SAMPLE_ANSWER_ANNOTATION,
    MODEL_SHA256_ANNOTATION,
    SERVICE_LABEL_KEY,
    SHADOW_NAME,
)
from mii_cli.kube.quantity import parse_quantity

Manifest = dict[str, Any]

# 適用の順序（依存される側が先）。削除はこの逆順。
# NetworkPolicy は Deployment より先: Pod が作られる前にポリシーがある
KIND_ORDER: tuple[str, ...] = (
    "Namespace",
    "ServiceAccount",
    "ConfigMap",
    "NetworkPolicy",
    "Service",
    "Deployment",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
)


def manifests_dir() -> Path:
    """プロジェクトの manifests/ フォルダ。"""
    from mii_cli.paths import project_root

    return project_root() / "manifests"


def load_manifests(directory: Path | None = None) -> list[Manifest]:
    """kustomization.yaml の resources に並ぶファイルを読み、オブジェクトのリストを返す。"""
    directory = directory or manifests_dir()
    kustomization = directory / "kustomization.yaml"
    if not kustomization.is_file():
        raise ConfigError(
            f"{kustomization} is missing",
            hint="run mii from a clone of the project (manifests/ ships with it)",
        )
    resources = (yaml.safe_load(kustomization.read_text(encoding="utf-8")) or {}).get("resources") or []
    objects: list[Manifest] = []
    for name in resources:
        path = directory / str(name)
        try:
            documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(
                f"cannot read manifest {path}: {error}", hint="fix the file in manifests/"
            ) from None
        for document in documents:
            if not isinstance(document, dict) or "kind" not in document or "apiVersion" not in document:
                if document is None:
                    continue
                raise ConfigError(
                    f"{path} holds a document that is not a Kubernetes object",
                    hint="each YAML document needs apiVersion, kind and metadata",
                )
            objects.append(document)
    return objects


def kind_rank(obj: Manifest) -> int:
    """適用順での位置（知らない種類は最後）。"""
    kind = obj.get("kind", "")
    return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)


def apply_order(objects: list[Manifest]) -> list[Manifest]:
    """適用の順に並べる（同じ種類の中では元の順を保つ）。"""
    return sorted(objects, key=kind_rank)


def set_image(obj: Manifest, image: str) -> None:
    """Deployment のアプリのコンテナのイメージを差し替える。"""
    containers = obj["spec"]["template"]["spec"]["containers"]
    for container in containers:
        if container.get("name") == APP_NAME:
            container["image"] = image
            return
    raise ConfigError(
        f"deployment {obj['metadata'].get('name')} has no container named {APP_NAME}",
        hint="keep the container name model-in-image in manifests/deployment.yml",
    )


def set_namespace(obj: Manifest, namespace: str) -> None:
    """Namespace オブジェクトの名前、またはオブジェクトの所属 Namespace を差し替える。"""
    metadata = obj.setdefault("metadata", {})
    if obj["kind"] == "Namespace":
        metadata["name"] = namespace
    else:
        metadata["namespace"] = namespace


# サーバー 1 つが動くのに要る最小限（これ未満では起動しないか、負荷で OOMKilled になる）
MIN_CPU_MILLICORES = 50
MIN_MEMORY_BYTES = 96 * 2**20


def cpu_millicores(text: str) -> int:
    """CPU の量（`250m`・`0.5`・`1`）をミリコアにする。API サーバーが断る形や小さすぎれば ConfigError。"""
    value = parse_quantity(text)
    # 2 進の接尾辞（250Mi）も API サーバーは量とみなすが、CPU では 2 億個のコアになる: 書き間違いとして断る
    if value is None or value < 0 or text.endswith("i"):
        raise ConfigError(
            f"--cpu {text!r} is not a CPU quantity", hint="use millicores or cores: 250m, 0.5, 1"
        )
    millicores = value * 1000
    if millicores != int(millicores):
        raise ConfigError(f"--cpu {text!r} is finer than a millicore", hint="e.g. 250m")
    if millicores < MIN_CPU_MILLICORES:
        raise ConfigError(
            f"--cpu {text} is below the {MIN_CPU_MILLICORES}m one server needs", hint="e.g. 250m or 500m"
        )
    return int(millicores)


def memory_bytes(text: str) -> int:
    """メモリの量（`300Mi`・`512M`・`1Gi`）をバイトにする。API サーバーが断る形や小さすぎれば ConfigError。"""
    value = parse_quantity(text)
    if value is None or value < 0:
        raise ConfigError(
            f"--memory {text!r} is not a memory quantity", hint="use a Kubernetes quantity: 300Mi, 512Mi, 1Gi"
        )
    if value < MIN_MEMORY_BYTES:
        raise ConfigError(
            f"--memory {text} is below the {MIN_MEMORY_BYTES // 2**20}Mi one server needs",
            hint="e.g. 300Mi (the server uses about 60 MiB under load)",
        )
    return int(value)


@dataclass(frozen=True)
class Sizing:
    """Deployment の大きさ: レプリカ数と Pod 1 つの CPU・メモリ（requests = limits）。

    None の項目は manifests/ の値（4 レプリカ・500m・300Mi）のまま。
    レプリカ数は作成時の spec.replicas と HPA の下限（manifests/ の下限を超えない）になる。
    """

    replicas: int | None = None
    cpu: str | None = None
    memory: str | None = None

    def __post_init__(self) -> None:
        """値を確かめる（オプションと MII_* の設定の値を確かめるのはここだけ。不正なら ConfigError）。"""
        if self.replicas is not None and not 1 <= self.replicas <= 100:
            raise ConfigError(
                f"--replicas {self.replicas} is out of range",
                hint="use 1 to 100 (--replicas or MII_REPLICAS)",
            )
        if self.cpu is not None:
            cpu_millicores(self.cpu)
        if self.memory is not None:
            memory_bytes(self.memory)


def pod_requests(sizing: Sizing | None) -> tuple[int, int]:
    """Pod 1 つが要求する CPU（ミリコア）とメモリ（バイト）: 大きさの指定、無ければ manifests/ の値。"""
    container = find(load_manifests(), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    requests = (container.get("resources") or {}).get("requests") or {}
    cpu = sizing.cpu if sizing and sizing.cpu is not None else str(requests["cpu"])
    memory = sizing.memory if sizing and sizing.memory is not None else str(requests["memory"])
    return cpu_millicores(cpu), memory_bytes(memory)


def set_sizing(objects: list[Manifest], sizing: Sizing) -> None:
    """Deployment のレプリカ数・リソースと、HPA の下限・上限を大きさに合わせる。"""
    for obj in objects:
        spec = obj.get("spec") or {}
        if obj["kind"] == "Deployment":
            if sizing.replicas is not None:
                spec["replicas"] = sizing.replicas
            for container in spec["template"]["spec"]["containers"]:
                if container.get("name") != APP_NAME:
                    continue
                resources = container.setdefault("resources", {})
                for bound in ("requests", "limits"):
                    values = resources.setdefault(bound, {})
                    if sizing.cpu is not None:
                        values["cpu"] = sizing.cpu
                    if sizing.memory is not None:
                        values["memory"] = sizing.memory
        elif obj["kind"] == "HorizontalPodAutoscaler" and sizing.replicas is not None:
            # 下限はレプリカ数を超えない（超えると HPA がすぐに増やしてしまう）。上限は下回らない
            spec["minReplicas"] = min(int(spec.get("minReplicas", 1)), sizing.replicas)
            spec["maxReplicas"] = max(int(spec.get("maxReplicas", 1)), sizing.replicas)


def render(
    image: str,
    namespace: str,
    directory: Path | None = None,
    *,
    sizing: Sizing | None = None,
    annotations: dict[str, str] | None = None,
) -> list[Manifest]:
    """適用するオブジェクトを適用順に返す（イメージ・Namespace・大きさを設定済み）。

    `annotations` は Pod のテンプレートに足す（その Pod が持つモデルの記録）。
    """
    objects = [copy.deepcopy(obj) for obj in load_manifests(directory)]
    for obj in objects:
        set_namespace(obj, namespace)
        if obj["kind"] == "Deployment":
            set_image(obj, image)
            if annotations:
                template = obj["spec"]["template"]["metadata"]
                template["annotations"] = {**(template.get("annotations") or {}), **annotations}
    if sizing is not None:
        set_sizing(objects, sizing)
    return apply_order(objects)


def model_annotations(
    *,
    model_file: str | None,
    model_sha256: str | None,
    image_tag: str | None,
    image_digest: str | None,
    sample_answer: Any = None,
) -> dict[str, str]:
    """Pod のテンプレートに書く、その Pod が持つモデルの記録（分かっているものだけ）。"""
    values = {
        MODEL_FILE_ANNOTATION: model_file,
        MODEL_SHA256_ANNOTATION: model_sha256,
        IMAGE_TAG_ANNOTATION: image_tag,
        IMAGE_DIGEST_ANNOTATION: image_digest,
        MODEL_SAMPLE_ANSWER_ANNOTATION: None if sample_answer is None else json.dumps(sample_answer),
    }
    return {key: value for key, value in values.items() if value}


# canary の Deployment の Pod の数の上限（`--canary-replicas` と、分析の段の上限）
MAX_CANARY_REPLICAS = 10


def canary_deployment(objects: list[Manifest], replicas: int) -> Manifest:
    """安定版の Deployment から、同じ Service に並ぶ小さな 2 つ目の Deployment（canary）を作る。

    Pod は Service・PDB・NetworkPolicy が選ぶラベル（SERVICE_LABEL_KEY）を安定版と共有し、
    Deployment の selector（app）だけを分ける: 2 つの Deployment が互いの Pod を数えない。HPA は付けない。
    """
    if not 1 <= replicas <= MAX_CANARY_REPLICAS:
        raise ConfigError(
            f"--canary-replicas {replicas} is out of range", hint=f"use 1 to {MAX_CANARY_REPLICAS}"
        )
    canary = copy.deepcopy(find(objects, "Deployment"))
    labels = {"app": CANARY_NAME, SERVICE_LABEL_KEY: APP_NAME}
    canary["metadata"]["name"] = CANARY_NAME
    canary["metadata"]["labels"] = dict(labels)
    spec = canary["spec"]
    spec["replicas"] = replicas
    spec["selector"] = {"matchLabels": {"app": CANARY_NAME}}
    spec["template"]["metadata"]["labels"] = dict(labels)
    for constraint in spec["template"]["spec"].get("topologySpreadConstraints") or []:
        constraint["labelSelector"] = {"matchLabels": {"app": CANARY_NAME}}
    # canary は写さない（写すのは安定版の Pod。昇格は安定版をマニフェストから描き直すので、写しの設定は残る）
    _without_mirror(canary)
    return canary


# 影の Pod に写しを送る安定版の Pod が読む設定（影の Pod 自身は写さない）
MIRROR_ENV = "MIRROR_CONFIG"


def shadow_manifests_dir() -> Path:
    """影が動いている間だけ適用するオブジェクト（manifests/shadow/）。"""
    return manifests_dir() / "shadow"


def shadow_objects(objects: list[Manifest], namespace: str) -> list[Manifest]:
    """安定版の Deployment から影の Deployment（1 Pod、どの Service にも選ばれない）を作り、その Service と
    2 つの NetworkPolicy（manifests/shadow/）を添える（適用順）。

    影の Pod は `app: model-in-image-shadow` だけを持つ（SERVICE_LABEL_KEY を持たないので、利用者の Service・
    PDB・安定版の NetworkPolicy に選ばれない）。写しの設定は外す: 影は写さない。HPA は付けない。
    """
    shadow = copy.deepcopy(find(objects, "Deployment"))
    labels = {"app": SHADOW_NAME}
    shadow["metadata"]["name"] = SHADOW_NAME
    shadow["metadata"]["labels"] = dict(labels)
    spec = shadow["spec"]
    spec["replicas"] = 1
    spec["selector"] = {"matchLabels": dict(labels)}
    spec["template"]["metadata"]["labels"] = dict(labels)
    for constraint in spec["template"]["spec"].get("topologySpreadConstraints") or []:
        constraint["labelSelector"] = {"matchLabels": dict(labels)}
    _without_mirror(shadow)
    extra = [copy.deepcopy(obj) for obj in load_manifests(shadow_manifests_dir())]
    for obj in extra:
        set_namespace(obj, namespace)
    return apply_order([*extra, shadow])


def _without_mirror(deployment: Manifest) -> None:
    """Pod のテンプレートから写しの設定（MIRROR_CONFIG と、その ConfigMap のボリューム）を外す。"""
    pod = deployment["spec"]["template"]["spec"]
    volumes = {
        volume["name"]
        for volume in pod.get("volumes") or []
        if (volume.get("configMap") or {}).get("name") == MIRROR_NAME
    }
    pod["volumes"] = [volume for volume in pod.get("volumes") or [] if volume["name"] not in volumes]
    for container in pod["containers"]:
        container["env"] = [env for env in container.get("env") or [] if env.get("name") != MIRROR_ENV]
        container["volumeMounts"] = [
            mount for mount in container.get("volumeMounts") or [] if mount.get("name") not in volumes
        ]


def find(objects: list[Manifest], kind: str) -> Manifest:
    """種類で 1 つ探す。"""
    for obj in objects:
        if obj.get("kind") == kind:
            return obj
    raise ConfigError(f"manifests/ has no {kind}", hint="restore the file from the project")


def to_yaml(objects: list[Manifest]) -> str:
    """複数ドキュメントの YAML にする（--dry-run の出力）。"""
    return yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False)


def describe(obj: Manifest) -> str:
    """`Kind/name` の形の短い名前。"""
    return f"{obj['kind']}/{obj['metadata']['name']}"
