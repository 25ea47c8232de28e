"""Docker エンジンへの唯一のアダプタ: 接続、ローカルのイメージ、pull、ネットワーク、mii のコンテナ。

image/（build・container・benchmark・delivery）と workflows/doctor は Docker SDK をここを通して使う。
イメージの参照（名前・タグ・ダイジェスト）の読み書きは Docker に依らないので mii_cli/references.py にある。
Docker SDK には型注釈が無いので、クライアントとイメージは Any として扱う。
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from mii_cli.errors import DockerError
from mii_cli.references import split_digest, split_reference

# Docker SDK のクライアント（docker.DockerClient）
DockerClient = Any

# mii が起動したコンテナに付けるラベル（mii stop はこれの付いたコンテナだけを止める）
MANAGED_LABEL = "io.mii.managed-by"
MANAGED_VALUE = "mii"

START_HINT = "start Docker (check with `docker info`), or set DOCKER_HOST"


# requests（Docker SDK の HTTP）は、これらの環境変数の CA の束を、セッションに設定した CA より優先する
# （requests #3829）。TLS のエンジン（minikube の docker-env）では、その CA でエンジンの証明書を確かめる
_CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def docker_client(timeout: float = 120.0, environment: Mapping[str, str] | None = None) -> DockerClient:
    """Docker エンジンに接続する（DOCKER_HOST・DOCKER_TLS_VERIFY・DOCKER_CERT_PATH に従う）。

    届かなければ DockerError。

    TLS で話すエンジン（`eval $(minikube docker-env)` の `tcp://<ノード>:2376`）には、DOCKER_CERT_PATH の
    ca.pem で証明書を確かめる。REQUESTS_CA_BUNDLE などがあると requests はそちらを使って失敗するので、
    そのエンジンとの接続では環境変数の CA も代理も読まない（Docker の CLI と同じく、エンジンへは直接）。
    """
    import docker
    from docker.errors import DockerException

    source = os.environ if environment is None else environment
    tls = bool(source.get("DOCKER_TLS_VERIFY") or source.get("DOCKER_CERT_PATH"))
    try:
        with _without(_CA_BUNDLE_VARIABLES if tls else ()):
            client = docker.from_env(timeout=int(timeout), environment=environment)
        if tls:
            client.api.trust_env = False
        client.ping()
    except DockerException as error:
        raise DockerError(
            f"cannot reach the Docker engine ({str(error).splitlines()[0][:200]})", hint=START_HINT
        ) from None
    return client


@contextlib.contextmanager
def _without(names: tuple[str, ...]) -> Iterator[None]:
    """環境変数をいくつか外して戻す（Docker SDK はクライアントを作るときにエンジンの版を尋ねる）。"""
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


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
