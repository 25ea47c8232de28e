"""イメージの参照（`REGISTRY/REPO:TAG@sha256:...`）の読み書き: 分け方、正規化、ダイジェスト。

文字列だけを扱う（Docker にも Kubernetes にも依らない）ので、image/ と kube/ の両方が使う。
"""

from __future__ import annotations

import re

from mii_cli.errors import ConfigError

# イメージのダイジェスト（レジストリのマニフェストの sha256）
DIGEST_PATTERN = re.compile(r"sha256:[0-9a-f]{64}")


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
