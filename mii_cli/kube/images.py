"""デプロイするイメージを決め、クラスタから使えるようにする。

- 既定のイメージ: ローカルの Docker にある `model-in-image` の最新の一意なタグ（mii build が付ける）
- minikube: `minikube image load`、kind: `kind load docker-image`、それ以外: `--registry` へ push
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from mii_cli.docker_engine import DockerClient, docker_client, registry_of, split_reference
from mii_cli.errors import ClusterError, ConfigError, DockerError
from mii_cli.kube.cluster import DOCKER_DESKTOP, KIND, MINIKUBE, ClusterInfo

BUILD_HINT = "build it first with mii build (or pass --image)"


def _created(image: Any) -> str:
    """イメージの作成時刻（ISO 8601 の文字列、比較可能）。"""
    return str(image.attrs.get("Created", ""))


def pick_tag(tags: list[str], repository: str) -> str | None:
    """リポジトリのタグのうち一意なもの（`0.1.0-<sha>-<id>` のように `-` を含む長いもの）を選ぶ。"""
    own = sorted(
        (tag for tag in tags if tag.rsplit(":", 1)[0] == repository), key=lambda tag: (-len(tag), tag)
    )
    unique = [tag for tag in own if "-" in tag.rsplit(":", 1)[-1]]
    candidates = unique or own
    return candidates[0] if candidates else None


def latest_local_image(client: DockerClient | None = None, repository: str | None = None) -> str:
    """ローカルの Docker で最も新しく作られた、mii build の一意なタグを返す。

    リポジトリは既定で CLI の設定（MII_IMAGE_REPOSITORY、既定 model-in-image）。
    """
    import docker

    from mii_cli.settings import get_cli_settings

    repository = repository or get_cli_settings().image_repository
    client = client or docker_client()
    try:
        images = client.images.list(name=repository)
    except docker.errors.DockerException as error:
        raise DockerError(f"cannot list Docker images: {error}", hint="check that Docker runs") from None
    for image in sorted(images, key=_created, reverse=True):
        tag = pick_tag(list(image.tags), repository)
        if tag:
            return tag
    raise ConfigError(f"no local image {repository}:* found", hint=BUILD_HINT)


def has_registry(reference: str) -> bool:
    """参照がレジストリのホストを含むか（`ghcr.io/x/y:1`・`localhost:5000/y` など）。"""
    return registry_of(reference) is not None


def registry_reference(registry: str, image: str) -> str:
    """レジストリに置くときの参照（`REGISTRY/<名前>:<タグ>`）。"""
    registry = registry.strip().rstrip("/")
    if not registry or re.search(r"\s", registry):
        raise ConfigError(
            f"invalid registry {registry!r}", hint="pass --registry like localhost:5000 or ghcr.io/me"
        )
    return f"{registry}/{image.rsplit('/', 1)[-1]}"


def load_command(info: ClusterInfo, image: str) -> list[str] | None:
    """イメージをクラスタのノードへ読み込むコマンド（不要・不可能なら None）。"""
    if info.flavor == MINIKUBE:
        return ["minikube", "-p", info.name, "image", "load", image]
    if info.flavor == KIND:
        return ["kind", "load", "docker-image", image, "--name", info.name]
    return None


def missing_image_hint(info: ClusterInfo, image: str) -> str:
    """Pod がイメージを取れないときの対処（クラスタの種類ごと）。"""
    command = load_command(info, image)
    if command:
        return f"load the image into the cluster: {' '.join(command)} (mii deploy does this)"
    if info.flavor == DOCKER_DESKTOP:
        return f"build the image into Docker Desktop's engine (mii build), then mii deploy --image {image}"
    return "push the image to a registry the cluster can pull from: mii deploy --registry REGISTRY"


def run_load(command: list[str], timeout: float = 600.0) -> None:
    """読み込みのコマンドを実行する（失敗は ClusterError、出力の末尾を添える）。"""
    if shutil.which(command[0]) is None:
        raise ClusterError(
            f"{command[0]} is not installed, so the image cannot be loaded into the cluster",
            hint=f"install {command[0]}, or push to a registry with mii deploy --registry REGISTRY",
        )
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"{' '.join(command)} did not finish in {timeout:.0f}s") from None
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise ClusterError(
            f"{' '.join(command)} failed with exit code {result.returncode}",
            hint="check that the cluster runs and the image exists locally (docker image ls model-in-image)",
            details=tail or None,
        )


def push(image: str, reference: str, client: DockerClient | None = None) -> None:
    """ローカルのイメージに参照のタグを付け、Docker SDK でレジストリへ push する。"""
    import docker

    client = client or docker_client()
    repository, tag = split_reference(reference)
    try:
        client.images.get(image).tag(repository, tag)
        for line in client.images.push(repository, tag=tag, stream=True, decode=True):
            if isinstance(line, dict) and line.get("error"):
                raise DockerError(
                    f"push of {reference} failed: {line['error']}",
                    hint="log in with docker login REGISTRY, or check the registry address",
                )
    except docker.errors.ImageNotFound:
        raise DockerError(f"image {image} is not in the local Docker engine", hint=BUILD_HINT) from None
    except docker.errors.DockerException as error:
        raise DockerError(
            f"push of {reference} failed: {error}", hint="check that the registry is reachable"
        ) from None


def archive_command(info: ClusterInfo, archive: str) -> list[str]:
    """kind に tar のイメージを読み込むコマンド。"""
    return ["kind", "load", "image-archive", archive, "--name", info.name]


def load_archive(info: ClusterInfo, image: str, client: DockerClient | None = None) -> None:
    """Docker SDK でイメージを tar に保存し、kind load image-archive で読み込む。"""
    import tempfile

    import docker

    client = client or docker_client()
    with tempfile.TemporaryDirectory(prefix="mii-image-") as tmp:
        archive = f"{tmp}/image.tar"
        try:
            with open(archive, "wb") as handle:
                for chunk in client.images.get(image).save(named=True):
                    handle.write(chunk)
        except docker.errors.DockerException as error:
            raise DockerError(f"cannot save {image} to a tar: {error}", hint=BUILD_HINT) from None
        run_load(archive_command(info, archive))


@dataclass(frozen=True)
class ImagePlan:
    """イメージをクラスタから使えるようにする方法。`mii deploy` は実行の前にこれを知らせる。

    action: push（レジストリへ push してその参照をデプロイ）、load（ノードへ読み込む）、
    use（そのまま: 参照がレジストリを含む、--no-load、Docker Desktop）。
    """

    action: str
    reference: str
    detail: str


def plan_image(info: ClusterInfo, image: str, *, registry: str | None = None, load: bool = True) -> ImagePlan:
    """クラスタの種類とオプションから、イメージの渡し方を決める（何も実行しない）。"""
    if registry and image.startswith(registry.strip().rstrip("/") + "/"):
        return ImagePlan("use", image, f"{image} is already in {registry}; the cluster pulls it from there")
    if registry:
        reference = registry_reference(registry, image)
        return ImagePlan(
            "push", reference, f"push {image} to {registry} with Docker; the cluster pulls {reference}"
        )
    if has_registry(image):
        return ImagePlan("use", image, f"{image} names its registry; the cluster pulls it from there")
    if not load:
        return ImagePlan("use", image, f"--no-load: the cluster's nodes must already hold {image}")
    command = load_command(info, image)
    if command:
        return ImagePlan("load", image, f"load {image} into the {info.flavor} nodes: {' '.join(command)}")
    if info.flavor == DOCKER_DESKTOP:
        return ImagePlan("use", image, f"{info.context} runs on the local Docker engine, which has {image}")
    raise ConfigError(
        f"the cluster of context {info.context!r} is neither minikube nor kind, so it cannot see "
        f"local images like {image}",
        hint="push it to a registry the cluster pulls from: mii deploy --registry REGISTRY "
        "(or set MII_REGISTRY; the project's test cluster serves one at 127.0.0.1:5000)",
    )


def carry_out(info: ClusterInfo, image: str, plan: ImagePlan, client: DockerClient | None = None) -> None:
    """計画どおりにイメージを push するか、ノードへ読み込む。"""
    if plan.action == "push":
        push(image, plan.reference, client)
        return
    if plan.action != "load":
        return
    command = load_command(info, image)
    assert command is not None
    try:
        run_load(command)
    except ClusterError:
        if info.flavor != KIND or shutil.which("kind") is None:
            raise
        # Docker の containerd イメージストアでは kind load docker-image が失敗することがある。
        # その場合は docker save した tar を kind load image-archive で読み込む
        load_archive(info, image, client)


def ensure_in_cluster(
    info: ClusterInfo,
    image: str,
    *,
    registry: str | None = None,
    load: bool = True,
    client: DockerClient | None = None,
) -> str:
    """イメージをクラスタから使えるようにし、マニフェストに書く参照を返す。"""
    plan = plan_image(info, image, registry=registry, load=load)
    carry_out(info, image, plan, client)
    return plan.reference
