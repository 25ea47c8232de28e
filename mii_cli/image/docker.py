"""Docker エンジンへの唯一のアダプタ: 接続、イメージの参照、ローカルのイメージ、mii のコンテナ。

build・run・stop・benchmark・deploy（kube/images）・doctor は Docker SDK をここを通して使う。
Docker SDK には型注釈が無いので、クライアントとイメージは Any として扱う。
"""

from __future__ import annotations

import re
from typing import Any

from mii_cli.errors import ConfigError, DockerError

# Docker SDK のクライアント（docker.DockerClient）
DockerClient = Any

# mii が起動したコンテナに付けるラベル（mii stop はこれの付いたコンテナだけを止める）
MANAGED_LABEL = "io.mii.managed-by"
MANAGED_VALUE = "mii"

START_HINT = "start Docker (check with `docker info`), or set DOCKER_HOST"

# イメージのダイジェスト（レジストリのマニフェストの sha256）
DIGEST_PATTERN = re.compile(r"sha256:[0-9a-f]{64}")


def docker_client(timeout: float = 120.0) -> DockerClient:
    """Docker エンジンに接続する。届かなければ DockerError。"""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
    except DockerException as error:
        raise DockerError(
            f"cannot reach the Docker engine ({str(error).splitlines()[0][:200]})", hint=START_HINT
        ) from None
    return client


def split_digest(reference: str) -> tuple[str, str | None]:
    """`名前[:タグ]@sha256:...` を (`名前[:タグ]`, ダイジェスト) に分ける（ダイジェストが無ければ None）。"""
    name, at, digest = reference.partition("@")
    return name, (digest if at else None)


def split_reference(reference: str) -> tuple[str, str]:
    """`repo:tag` を (repo, tag) に分ける（タグが無ければ latest）。`@sha256:...` のダイジェストは除く。"""
    name, _ = split_digest(reference)
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = name.rsplit(":", 1)
        return repository, tag
    return name, "latest"


def tag_of(reference: str) -> str | None:
    """参照が書いているタグ（`repo:tag@sha256:...` の tag。書いていなければ None、latest とはしない）。"""
    name, _ = split_digest(reference)
    last = name.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else None


def pinned_reference(reference: str, digest: str) -> str:
    """ダイジェストで固定した参照（`repo:tag@sha256:...`。タグは読みやすさのために残す）。"""
    name, _ = split_digest(reference)
    return f"{name}@{digest}"


def is_digest(value: str) -> bool:
    """`sha256:<64 桁の小文字の 16 進数>` の形か（Docker とレジストリが使うダイジェスト）。"""
    return DIGEST_PATTERN.fullmatch(value) is not None


def check_reference(reference: str, what: str) -> str:
    """イメージの参照の形を確かめ、そのまま返す。空・空白入り・不正なダイジェストは ConfigError。

    名前とタグの細かな文法はエンジンに任せ、ここではダイジェスト（`@` の後ろ）だけを厳密に見る:
    `name@sha256:<64 hex>` と `name:tag@sha256:<64 hex>` を受け付ける。
    """
    example = "python:3.13-slim@sha256:<64 hex digits>"
    if not reference or reference != reference.strip() or any(c.isspace() for c in reference):
        raise ConfigError(f"{what} {reference!r} is not an image reference", hint=f"e.g. {example}")
    name, digest = split_digest(reference)
    if digest is None:
        return reference
    if not name or "@" in digest:
        raise ConfigError(
            f"{what} {reference!r} is not an image reference: put one digest after the name",
            hint=f"e.g. {example}",
        )
    if not is_digest(digest):
        raise ConfigError(
            f"{what} {reference!r} has a malformed digest {digest!r}: "
            "expected sha256: followed by 64 lowercase hex digits",
            hint=f"copy the digest from `docker image inspect --format '{{{{.RepoDigests}}}}' IMAGE`, "
            f"e.g. {example}",
        )
    return reference


def registry_of(reference: str) -> str | None:
    """イメージの参照が名前に含むレジストリのホスト（`ghcr.io/x/y:1` なら ghcr.io。無ければ None）。"""
    first, _, rest = reference.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


def normalized_reference(reference: str) -> str:
    """Docker が正規化した参照（containerd や `minikube image ls` が示す形）。

    レジストリの無い短い名前には `docker.io/` を、さらに `/` の無い名前には `library/` を付ける
    （`model-in-image:1` → `docker.io/library/model-in-image:1`、`me/x:1` → `docker.io/me/x:1`）。
    レジストリのホストを含む名前（registry_of）はそのまま。タグもダイジェストも無ければ `:latest` を付ける。
    """
    name, digest = split_digest(reference)
    if digest is None:
        name = ":".join(split_reference(name))
    if registry_of(name) is None:
        name = f"docker.io/{name}" if "/" in name else f"docker.io/library/{name}"
    return name if digest is None else f"{name}@{digest}"


def normalized_repository(reference: str) -> str:
    """参照のリポジトリの正規化した形（タグとダイジェストは除く。例: `docker.io/library/python`）。"""
    repository, _ = split_reference(reference)
    return split_reference(normalized_reference(repository))[0]


def repo_digest(repo_digests: list[str], reference: str) -> str | None:
    """イメージの RepoDigests のうち、参照と同じリポジトリのもののダイジェスト（無ければ None）。

    参照がダイジェストを書いていて、それが RepoDigests にあればそれを選ぶ（同じリポジトリに
    マルチプラットフォームの index とプラットフォームのマニフェストの 2 つがあることがある）。
    """
    repository = normalized_repository(reference)
    _, wanted = split_digest(reference)
    found = [
        digest
        for entry in repo_digests
        for name, digest in [split_digest(str(entry))]
        if digest is not None and is_digest(digest) and normalized_repository(name) == repository
    ]
    if wanted in found:
        return wanted
    return found[0] if found else None


def _engine_errors() -> tuple[type[BaseException], ...]:
    """Docker SDK が投げる、エンジンとのやりとりの失敗（API の誤りと接続・待ち時間の失敗）。"""
    from docker.errors import DockerException
    from requests import RequestException

    return DockerException, RequestException


def _problem(error: BaseException) -> str:
    """Docker SDK の例外を 1 行の理由にする。"""
    explanation = getattr(error, "explanation", None) or str(error) or type(error).__name__
    return str(explanation).splitlines()[0][:200]


def local_image(client: DockerClient, reference: str) -> Any | None:
    """ローカルのエンジンにあるイメージ（無ければ None。尋ねられなければ DockerError）。"""
    from docker.errors import ImageNotFound

    try:
        return client.images.get(reference)
    except ImageNotFound:
        return None
    except _engine_errors() as error:
        raise DockerError(f"cannot look up image {reference}: {_problem(error)}") from None


def engine_version(client: DockerClient) -> str:
    """エンジンの版と API の版（例: `20.10.24, API 1.41`）。読めなければ DockerError。"""
    try:
        version = client.version()
    except _engine_errors() as error:
        raise DockerError(f"the Docker engine did not tell its version: {_problem(error)}") from None
    return f"{version.get('Version', 'unknown')}, API {version.get('ApiVersion', 'unknown')}"


def pull_problem(client: DockerClient, reference: str) -> str | None:
    """エンジンがそのイメージをレジストリから取れるか（マニフェストだけを尋ねる）。取れなければ理由。"""
    try:
        client.api.inspect_distribution(reference)
    except _engine_errors() as error:
        return _problem(error)
    return None


def pull_image(client: DockerClient, reference: str) -> Any:
    """イメージをレジストリから取り、ローカルのイメージを返す（取れなければ理由を添えて DockerError）。

    ダイジェストを書いた参照はダイジェストで取る（エンジンは `tag` にダイジェストを受け取る）。
    """
    repository, tag = split_reference(reference)
    _, digest = split_digest(reference)
    try:
        for event in client.api.pull(repository, tag=digest or tag, stream=True, decode=True):
            if isinstance(event, dict) and event.get("error"):
                raise DockerError(f"cannot pull {reference}: {str(event['error']).splitlines()[0][:200]}")
        return client.images.get(reference)
    except _engine_errors() as error:
        raise DockerError(f"cannot pull {reference}: {_problem(error)}") from None


def network_exists(client: DockerClient, name: str) -> bool:
    """エンジンにその名前のネットワークがあるか（host・bridge・none や作ったネットワーク）。"""
    try:
        networks = client.networks.list(names=[name])
    except _engine_errors() as error:
        raise DockerError(f"cannot list the Docker networks: {_problem(error)}") from None
    return any(network.name == name for network in networks)


def remove_container(client: DockerClient, name: str, *, grace: int = 25) -> bool:
    """mii が起動した同名のコンテナを止めて消す。無ければ False（エラーにしない）。

    mii のラベルが無いコンテナ（他の人のもの）には触れず、DockerError にする。
    """
    from docker.errors import NotFound

    try:
        container = client.containers.get(name)
    except NotFound:
        return False
    if (container.labels or {}).get(MANAGED_LABEL) != MANAGED_VALUE:
        raise DockerError(
            f"container {name} was not started by mii; leaving it alone",
            hint="pick another name with --name, or remove it yourself with `docker rm -f`",
        )
    try:
        if container.status == "running":
            container.stop(timeout=grace)
        container.remove(force=True)
    except NotFound:
        return False
    return True
