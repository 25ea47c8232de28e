"""デプロイするイメージを決め、クラスタから使えるようにする。

- 既定のイメージ: ローカルの Docker にある `model-in-image` の最新の一意なタグ（mii build が付ける）
- minikube の docker-env（`eval $(minikube -p P docker-env)`）で、kube context が同じプロファイル:
  イメージはもうノードのエンジンにある（mii build がそこへ作った）。読み込まない。`image load` は
  既定の `--overwrite=true` でノードのイメージを先に消すので、ここで走らせると作ったものを失う
- minikube: `minikube -p PROFILE image load IMAGE --daemon` の後、`image ls` で入ったことを確かめる。
  その前に、イメージがローカルの Docker にあるかを確かめる（無ければ `image load` は何も読み込まずに
  0 で終わり、ノードにだけあるイメージ（docker-env の下で作ったもの）は消してしまう）
- kind: `kind load docker-image`（ノードへの取り込みで失敗したら 1 プラットフォームの tar で読み込み直す）
- それ以外: `--registry` へ push し、push が知らせたダイジェストで固定した参照
  （`REGISTRY/model-in-image:TAG@sha256:...`）をデプロイする
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mii_cli.errors import ClusterError, ConfigError, DockerError
from mii_cli.image.daemon import DockerDaemon, docker_env_hint, unset_hint
from mii_cli.image.docker import DockerClient, docker_client, local_image
from mii_cli.kube.cluster import DOCKER_DESKTOP, KIND, MINIKUBE, ClusterInfo
from mii_cli.references import is_digest, normalized_reference, pinned_reference, registry_of, split_reference
from mii_cli.results import Result

BUILD_HINT = "build it first with mii build (or pass --image)"
KIND_HINT = "check that the cluster runs (kind get clusters) and the image exists locally (docker image ls)"

# `docker save` の tar を読むときの一度の大きさ（Docker SDK の既定と同じ 2 MiB）
SAVE_CHUNK = 2 * 1024 * 1024


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


def latest_local_image(repository: str, client: DockerClient | None = None) -> str:
    """ローカルの Docker で最も新しく作られた、リポジトリの mii build の一意なタグを返す。"""
    import docker

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
    """レジストリに置くときの参照（`REGISTRY/<名前>:<タグ>`）。

    ローカルの参照のダイジェストは落とす（レジストリでのダイジェストは push が知らせる）。
    タグが無ければ push と同じく latest。
    """
    registry = registry.strip().rstrip("/")
    if not registry or re.search(r"\s", registry):
        raise ConfigError(
            f"invalid registry {registry!r}", hint="pass --registry like localhost:5000 or ghcr.io/me"
        )
    name, tag = split_reference(image)
    return f"{registry}/{name.rsplit('/', 1)[-1]}:{tag}"


def load_command(info: ClusterInfo, image: str) -> list[str] | None:
    """イメージをクラスタのノードへ読み込むコマンド（不要・不可能なら None）。

    minikube は `--daemon` でローカルの Docker エンジンからだけ読み込む（付けないと v1.38.1 は
    短い名前をまず Docker Hub に尋ねる）。
    """
    if info.flavor == MINIKUBE:
        return ["minikube", "-p", info.name, "image", "load", image, "--daemon"]
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


def _tail(output: str, lines: int = 15) -> str:
    """ツールの出力の末尾（エラーの details に添える）。"""
    return "\n".join(output.strip().splitlines()[-lines:])


def require_tool(tool: str) -> None:
    """minikube・kind が PATH に無ければ ClusterError（Docker に問い合わせるより先に確かめる）。"""
    if shutil.which(tool) is None:
        raise ClusterError(
            f"{tool} is not installed, so the image cannot be loaded into the cluster",
            hint=f"install {tool}, or push to a registry with mii deploy --registry REGISTRY",
        )


def run_tool(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """minikube・kind を実行して結果を返す（無い・終わらないときだけ ClusterError。終了コードは見ない）。"""
    require_tool(command[0])
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"{' '.join(command)} did not finish in {timeout:.0f}s") from None


def _failed(command: list[str], result: subprocess.CompletedProcess[str], hint: str) -> ClusterError:
    """0 以外で終わったコマンドのエラー（出力の末尾を details に）。"""
    return ClusterError(
        f"{' '.join(command)} failed with exit code {result.returncode}",
        hint=hint,
        details=_tail(result.stderr or result.stdout) or None,
    )


def run_load(command: list[str], timeout: float = 600.0, hint: str | None = None) -> None:
    """読み込みのコマンドを実行する（失敗は ClusterError、出力の末尾を添える）。"""
    result = run_tool(command, timeout)
    if result.returncode != 0:
        raise _failed(
            command,
            result,
            hint
            or "check that the cluster runs and the image exists locally (docker image ls model-in-image)",
        )


def pushed_digest(line: Any, tag: str) -> str | None:
    """push の進み具合の 1 行が知らせるダイジェスト（無ければ None）。

    エンジンはマニフェストを置いた後に `{"aux": {"Tag": TAG, "Digest": "sha256:...", "Size": N}}` を送る
    （moby の PushResult。その前の行 `TAG: digest: sha256:... size: N` と同じ値）。
    """
    aux = line.get("aux") if isinstance(line, dict) else None
    if not isinstance(aux, dict) or not aux.get("Digest"):
        return None
    if aux.get("Tag") not in (None, "", tag):
        return None
    return str(aux["Digest"])


def push(image: str, reference: str, client: DockerClient | None = None) -> str:
    """ローカルのイメージに参照のタグを付け、Docker SDK でレジストリへ push し、ダイジェストを返す。

    ダイジェスト（`sha256:...`）は push の進み具合が知らせるもの。知らせなければ DockerError
    （タグだけでは、クラスタが取るイメージが push したものだと言えない）。
    """
    import docker

    client = client or docker_client()
    repository, tag = split_reference(reference)
    digest = None
    try:
        client.images.get(image).tag(repository, tag)
        for line in client.images.push(repository, tag=tag, stream=True, decode=True):
            if isinstance(line, dict) and line.get("error"):
                raise DockerError(
                    f"push of {reference} failed: {line['error']}",
                    hint="log in with docker login REGISTRY, or check the registry address",
                )
            digest = pushed_digest(line, tag) or digest
    except docker.errors.ImageNotFound:
        raise DockerError(f"image {image} is not in the local Docker engine", hint=BUILD_HINT) from None
    except docker.errors.DockerException as error:
        raise DockerError(
            f"push of {reference} failed: {error}", hint="check that the registry is reachable"
        ) from None
    if digest is None or not is_digest(digest):
        said = "no digest" if digest is None else f"a malformed digest {digest!r}"
        raise DockerError(
            f"push of {reference} reported {said}, so the cluster could not be pinned to what was pushed",
            hint=f"check the registry and the engine with `docker push {reference}` "
            "(it prints `digest: sha256:...`); then deploy that digest: "
            f"mii deploy --image {reference}@sha256:...",
        )
    return digest


def minikube_images(profile: str, timeout: float = 120.0) -> list[dict[str, Any]]:
    """`minikube -p PROFILE image ls --format json` の一覧（動いているノードが無ければ空）。

    minikube v1.38.1 はノードごとの `ListImage`（id・repoDigests・repoTags・size）を
    json.Marshal した配列を出す。読めないノードは飛ばすので、ノードが止まっていても 0 で終わる。
    """
    command = ["minikube", "-p", profile, "image", "ls", "--format", "json"]
    result = run_tool(command, timeout)
    if result.returncode != 0:
        raise _failed(command, result, f"check the profile with minikube -p {profile} status")
    listed = _image_list(result.stdout)
    if listed is None:
        raise ClusterError(
            f"{' '.join(command)} printed something that is not an image list",
            hint=f"check minikube itself: minikube -p {profile} image ls",
            details=_tail(result.stdout) or _tail(result.stderr) or "(no output)",
        )
    return listed


def _image_list(text: str) -> list[dict[str, Any]] | None:
    """`image ls --format json` の出力を読む（オブジェクトの配列でなければ None）。

    null は空の一覧として扱う（v1.38.1 の ListImages は空の配列を出すが、null でも意味は同じ）。
    """
    try:
        listed = json.loads(text)
    except ValueError:
        return None
    if listed is None:
        return []
    if isinstance(listed, list) and all(isinstance(item, dict) for item in listed):
        return listed
    return None


def holds_image(listed: list[dict[str, Any]], image: str) -> bool:
    """`minikube image ls` の一覧にイメージがあるか（正規化した参照 `docker.io/library/...` で比べる）。"""
    wanted = {image, normalized_reference(image)}
    for item in listed:
        names = [*(item.get("repoTags") or []), *(item.get("repoDigests") or [])]
        if wanted.intersection(name for name in names if isinstance(name, str)):
            return True
    return False


def node_only_error(profile: str, image: str) -> ClusterError:
    """イメージがノードにだけある（docker-env の下で作り、その変数がもう無い）ときのエラー。"""
    return ClusterError(
        f"{image} is only in minikube {profile}'s node (built there under docker-env), and the "
        "docker-env variables are not set: minikube image load would remove it from the node "
        "and load nothing",
        hint=f"set them again and rerun, no load needed: {docker_env_hint(profile)}; "
        "or deploy what the node holds with --no-load",
    )


def load_into_minikube(
    info: ClusterInfo, image: str, client: DockerClient | None = None, timeout: float = 600.0
) -> None:
    """ローカルの Docker のイメージを minikube のプロファイルへ読み込み、本当に入ったか確かめる。

    minikube v1.38.1 の `image load` は何も読み込まなくても 0 で終わる（イメージが無ければ
    `! The image '...' was not found; unable to add it to cache.` だけ、コンテナランタイムが
    止まっていれば何も出さない）。そのうえ既定の `--overwrite=true` では、ノードにある同じ名前の
    イメージを先に消してから読み込み元を探す。だから読み込む前にイメージがローカルにあるかを確かめ
    （無ければノードの一覧を見て、ノードにだけあるのか、どこにも無いのかを伝える）、読み込んだ後にも
    `image ls` の一覧で確かめる。
    """
    profile = info.name
    command = load_command(info, image)
    assert command is not None
    require_tool(command[0])
    if local_image(client or docker_client(), image) is None:
        if holds_image(minikube_images(profile), image):
            raise node_only_error(profile, image)
        repository, _ = split_reference(image)
        raise DockerError(
            f"image {image} is not in the local Docker engine, so minikube image load would load "
            "nothing (it exits 0 all the same)",
            hint=f"{BUILD_HINT}; the local images are listed by docker image ls {repository}",
        )
    result = run_tool(command, timeout)
    if result.returncode != 0:
        raise _failed(
            command,
            result,
            f"check the profile and the cluster: minikube profile list, minikube -p {profile} status",
        )
    listed = minikube_images(profile)
    if holds_image(listed, image):
        return
    said = _tail(result.stderr or result.stdout)
    details = [said or "minikube printed nothing and exited 0"]
    if listed:
        details.append(
            f"the profile's image list has {len(listed)} images, none named {normalized_reference(image)}"
        )
    else:
        details.append("the profile's image list is empty (is the node and its container runtime running?)")
    repository, _ = split_reference(image)
    raise ClusterError(
        f"minikube -p {profile} image load did not load {image}: it is not in the profile's image list",
        hint=f"check the image exists locally: docker image ls {repository}; "
        f"check minikube -p {profile} status",
        details="\n".join(details),
    )


def archive_command(info: ClusterInfo, archive: str) -> list[str]:
    """kind に tar のイメージを読み込むコマンド。"""
    return ["kind", "load", "image-archive", archive, "--name", info.name]


# Engine API がイメージの保存（GET /images/{name}/get）で platform を受け取る最初の版
PLATFORM_SAVE_API = (1, 48)


def _api_version(value: str) -> tuple[int, ...]:
    """API の版（`1.48`）を比べられる組にする（読めなければ (0,)）。"""
    try:
        return tuple(int(part) for part in str(value).split("."))
    except ValueError:
        return (0,)


def image_platform(attrs: dict[str, Any]) -> dict[str, str] | None:
    """イメージの詳細（Os・Architecture・Variant）から OCI のプラットフォーム（分からなければ None）。"""
    if not attrs.get("Os") or not attrs.get("Architecture"):
        return None
    platform = {"os": str(attrs["Os"]), "architecture": str(attrs["Architecture"])}
    if attrs.get("Variant"):
        platform["variant"] = str(attrs["Variant"])
    return platform


def save_image(client: DockerClient, image: str) -> Iterator[bytes]:
    """イメージを `docker save` の tar として取り出す（1 つのプラットフォームだけ）。

    containerd のイメージストアでは、保存した tar がマルチプラットフォームの index をすべて指し、
    ローカルに無いプラットフォームの中身が欠ける（kind の ctr import --all-platforms が
    `content digest ... not found` で失敗する）。そこで API 1.48 以上ではイメージ自身の
    プラットフォームだけを保存する。それより古いエンジンはグラフドライバのストアで、tar は
    もともと 1 つのプラットフォームしか持たないので、そのまま保存する。
    """
    api = client.api
    platform = None
    if _api_version(api.api_version) >= PLATFORM_SAVE_API:
        platform = image_platform(client.images.get(image).attrs)
    if platform is None:
        chunks: Iterator[bytes] = api.get_image(image)
        return chunks
    # Docker SDK の save()・get_image() には platform の引数が無いので、低水準のクライアントで
    # GET /images/{name}/get?platform=<JSON の OCI プラットフォーム> を直接呼ぶ
    response = api._get(
        api._url("/images/{0}/get", image), params={"platform": json.dumps(platform)}, stream=True
    )
    platform_chunks: Iterator[bytes] = api._stream_raw_result(response, SAVE_CHUNK, False)
    return platform_chunks


def load_archive(info: ClusterInfo, image: str, client: DockerClient | None = None) -> None:
    """イメージの 1 つのプラットフォームを tar に保存し、kind load image-archive で読み込む。"""
    import tempfile

    import docker

    client = client or docker_client()
    with tempfile.TemporaryDirectory(prefix="mii-image-") as tmp:
        archive = f"{tmp}/image.tar"
        try:
            with open(archive, "wb") as handle:
                for chunk in save_image(client, image):
                    handle.write(chunk)
        except docker.errors.ImageNotFound:
            raise DockerError(f"image {image} is not in the local Docker engine", hint=BUILD_HINT) from None
        except (docker.errors.DockerException, OSError) as error:
            raise DockerError(f"cannot save {image} to a tar: {error}", hint=BUILD_HINT) from None
        run_load(archive_command(info, archive), hint=KIND_HINT)


def load_into_kind(info: ClusterInfo, image: str, client: DockerClient | None = None) -> None:
    """`kind load docker-image` で読み込む。ノードへの取り込みで失敗したら tar で読み込み直す。

    Docker の containerd イメージストアでは `kind load docker-image` が
    `failed to load image: ... ctr: content digest ...: not found` で失敗する（kind #3795）。
    その場合だけ 1 つのプラットフォームの tar を `kind load image-archive` で読み込む。
    イメージが無い・クラスタが無いといった失敗は、tar にしても同じなのでそのまま知らせる。
    """
    command = load_command(info, image)
    assert command is not None
    result = run_tool(command, 600.0)
    if result.returncode == 0:
        return
    first = _failed(command, result, KIND_HINT)
    if "failed to load image" not in (result.stderr + result.stdout):
        raise first
    try:
        load_archive(info, image, client)
    except ClusterError as error:
        # tar でも失敗したら、最初の失敗も添える（どちらも同じ原因のことが多い）
        raise ClusterError(
            error.message,
            hint=error.hint,
            details="\n".join(filter(None, [error.details, f"before that, {first.message}:", first.details])),
        ) from None


@dataclass(frozen=True)
class ImagePlan(Result):
    """イメージをクラスタから使えるようにする方法。`mii deploy` は実行の前にこれを知らせ、結果の
    JSON（`delivery`）にも残す。

    action: docker-env（minikube の docker-env: イメージはもうノードのエンジンにあり、読み込まない）、
    push（レジストリへ push し、その参照を push が知らせたダイジェストで固定してデプロイ）、
    load（ノードへ読み込む: minikube image load・kind load）、use（そのまま: 参照がレジストリを含む、
    --no-load、Docker Desktop）。
    push の `reference` はタグまで（ダイジェストは push してから分かる。`carry_out` が返す）。
    """

    action: str
    reference: str
    detail: str


def check_daemon(info: ClusterInfo, daemon: DockerDaemon) -> None:
    """docker-env が今の kube context と別のクラスタを向いていれば ConfigError。

    そのあいだ Docker の呼び出しは別の minikube のノードのエンジンへ届くので、そこで作ったイメージは
    このクラスタには無く、そこから読み込むこともできない。
    """
    profile = daemon.minikube_profile
    if profile is None or (info.flavor == MINIKUBE and info.name == profile):
        return
    cluster = f"minikube profile {info.name!r}" if info.flavor == MINIKUBE else f"a {info.flavor} cluster"
    fix = f"point both at it: {docker_env_hint(info.name)}; or " if info.flavor == MINIKUBE else ""
    raise ConfigError(
        f"the Docker variables point at minikube profile {profile!r} (MINIKUBE_ACTIVE_DOCKERD), but the "
        f"kube context {info.context!r} is {cluster}",
        hint=f"{fix}drop the Docker variables: {unset_hint(profile)}",
    )


def plan_image(
    info: ClusterInfo,
    image: str,
    *,
    registry: str | None = None,
    load: bool = True,
    daemon: DockerDaemon | None = None,
) -> ImagePlan:
    """クラスタの種類・Docker のエンジン・オプションから、イメージの渡し方を決める（何も実行しない）。"""
    daemon = daemon or DockerDaemon(host="")
    if registry and image.startswith(registry.strip().rstrip("/") + "/"):
        return ImagePlan("use", image, f"{image} is already in {registry}; the cluster pulls it from there")
    if has_registry(image) and not registry:
        return ImagePlan("use", image, f"{image} names its registry; the cluster pulls it from there")
    if not load and not registry:
        return ImagePlan("use", image, f"--no-load: the cluster's nodes must already hold {image}")
    check_daemon(info, daemon)
    if registry:
        reference = registry_reference(registry, image)
        return ImagePlan(
            "push",
            reference,
            f"push {image} to {registry} with Docker; the cluster pulls {reference} "
            "by the digest the push reports",
        )
    if daemon.docker_env:
        return ImagePlan(
            "docker-env",
            image,
            f"{image} is in minikube {daemon.minikube_profile}'s Docker engine (docker-env), where the "
            "kubelet finds it: no image load",
        )
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


def carry_out(info: ClusterInfo, image: str, plan: ImagePlan, client: DockerClient | None = None) -> str:
    """計画どおりにイメージを push するか、ノードへ読み込み（docker-env ならそこにあるかを確かめ）、
    マニフェストに書く参照を返す。

    push したなら、push が知らせたダイジェストで固定した参照（`REGISTRY/名前:タグ@sha256:...`）。
    """
    if plan.action == "push":
        return pinned_reference(plan.reference, push(image, plan.reference, client))
    if plan.action == "docker-env":
        if local_image(client or docker_client(), image) is None:
            raise DockerError(
                f"image {image} is not in minikube {info.name}'s Docker engine (docker-env)",
                hint=f"build it there with mii build while {docker_env_hint(info.name)} is in effect, "
                "or pass --image",
            )
    elif plan.action == "load":
        if info.flavor == MINIKUBE:
            load_into_minikube(info, image, client)
        elif info.flavor == KIND:
            load_into_kind(info, image, client)
    return plan.reference


def ensure_in_cluster(
    info: ClusterInfo,
    image: str,
    *,
    registry: str | None = None,
    load: bool = True,
    client: DockerClient | None = None,
    daemon: DockerDaemon | None = None,
) -> str:
    """イメージをクラスタから使えるようにし、マニフェストに書く参照（push ならダイジェスト付き）を返す。"""
    plan = plan_image(info, image, registry=registry, load=load, daemon=daemon)
    return carry_out(info, image, plan, client)
