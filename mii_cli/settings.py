"""CLI の設定（環境変数 MII_*）と、オプションの既定値の埋め方。

オプションの既定値をまとめる唯一の設定オブジェクトと、省かれたオプション（None）を設定で埋める
唯一の方法 `fill`。コマンドのオプションが常に優先する。いくつかの値から組み立てる要求
（ビルド・コンテナの起動条件・Deployment の大きさ・`mii serve` のモデル）は、ここの関数が組み立てる。
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from mii_cli.errors import ConfigError
from service.constants import SERVICE_VERSION

if TYPE_CHECKING:
    from mii_cli.image.build import BuildRequest
    from mii_cli.image.container import RunSpec
    from mii_cli.kube.render import Sizing
    from mii_cli.model.serve import ServeRequest

T = TypeVar("T")


class CliSettings(BaseSettings):
    """mii コマンドの既定値（環境変数名は MII_ + フィールド名の大文字）。"""

    model_config = SettingsConfigDict(env_prefix="MII_", case_sensitive=False, extra="ignore", frozen=True)

    image_repository: str = Field(default="model-in-image", min_length=1)
    """イメージのリポジトリ名（MII_IMAGE_REPOSITORY）。"""

    image_tag: str = Field(default=SERVICE_VERSION, min_length=1)
    """`mii build` が付ける既定のタグ（MII_IMAGE_TAG）。"""

    base_image: str = "python:3.13-slim"
    """ビルドのベースイメージ（MII_BASE_IMAGE）。レジストリに届かない環境ではローカルの代替を指定する。"""

    build_network: str | None = None
    """ビルド時のネットワーク（MII_BUILD_NETWORK）。例: host。"""

    registry: str | None = None
    """`mii deploy`・`mii up` が push するレジストリ（MII_REGISTRY）。例: 127.0.0.1:5000。"""

    replicas: int | None = Field(default=None, ge=1, le=100)
    """`mii deploy`・`mii up` のレプリカ数（MII_REPLICAS）。無ければ manifests/ の 4。"""

    pod_cpu: str | None = None
    """`mii deploy`・`mii up` の Pod 1 つの CPU（MII_POD_CPU）。無ければ manifests/ の 500m。"""

    pod_memory: str | None = None
    """`mii deploy`・`mii up` の Pod 1 つのメモリ（MII_POD_MEMORY）。無ければ manifests/ の 300Mi。"""

    container_name: str = "mii-local"
    """`mii run` のコンテナ名（MII_CONTAINER_NAME）。"""

    cpus: float = Field(default=0.5, gt=0, le=64)
    """`mii run` の CPU 上限（MII_CPUS）。Pod の limits と同じ 0.5。"""

    memory: str = "300m"
    """`mii run` のメモリ上限（MII_MEMORY）。Pod の limits と同じ 300 MiB。"""

    ready_timeout: float = Field(default=30.0, gt=0, le=600)
    """コンテナが ready になるまで待つ最大秒数（MII_READY_TIMEOUT）。"""

    @property
    def default_image(self) -> str:
        """既定のイメージ参照（例: model-in-image:0.1.0）。"""
        return f"{self.image_repository}:{self.image_tag}"


@lru_cache(maxsize=1)
def get_cli_settings() -> CliSettings:
    """環境変数から CLI の設定を読む。不正なら ConfigError。"""
    try:
        return CliSettings()
    except ValidationError as error:
        problems = "; ".join(
            f"MII_{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in error.errors()
        )
        raise ConfigError(f"invalid mii setting: {problems}") from None


def fill(value: T | None, default: T) -> T:
    """オプションの値。省かれて（None）いれば既定値（0 や空文字も値として扱う）。"""
    return default if value is None else value


def build_request(
    *,
    tag: str | None = None,
    base_image: str | None = None,
    network: str | None = None,
    model: Path | None = None,
    labels: Path | None = None,
    sample: list[float] | None = None,
    no_cache: bool = False,
) -> BuildRequest:
    """`mii build`・`mii up` のビルドの要求（タグ・ベース・ネットワークは MII_*、モデルは同梱のもの）。

    同梱のラベルは同梱のモデルのものなので、`model` を渡して `labels` を省いたときはラベル無し
    （分類器ならモデル自身のクラスラベルを使う）。
    """
    from mii_cli.image.build import BuildRequest
    from mii_cli.paths import model_and_labels, project_root

    settings = get_cli_settings()
    model_path, label_path = model_and_labels(model, labels)
    return BuildRequest(
        root=project_root(),
        model=model_path,
        labels=label_path,
        tag=fill(tag, settings.default_image),
        base_image=fill(base_image, settings.base_image),
        network=fill(network, settings.build_network),
        sample=sample,
        no_cache=no_cache,
    )


def run_spec(
    *,
    port: int,
    image: str | None = None,
    name: str | None = None,
    cpus: float | None = None,
    memory: str | None = None,
    user: str | None = None,
) -> RunSpec:
    """`mii run` のコンテナの起動条件（イメージ・名前・制限は MII_*、既定は Pod と同じ制限）。"""
    from mii_cli.image.container import RunSpec

    settings = get_cli_settings()
    return RunSpec(
        image=fill(image, settings.default_image),
        name=fill(name, settings.container_name),
        port=port,
        cpus=fill(cpus, settings.cpus),
        memory=fill(memory, settings.memory),
        user=user,
    )


def sizing(*, replicas: int | None = None, cpu: str | None = None, memory: str | None = None) -> Sizing:
    """`mii deploy`・`mii up` の Deployment の大きさ（MII_REPLICAS・MII_POD_CPU・MII_POD_MEMORY）。

    どれも無ければ manifests/ の値のまま。値を確かめる（不正なら ConfigError）。
    再デプロイでも同じ大きさを保つには、オプションより設定で渡す。
    """
    from mii_cli.kube.render import Sizing

    settings = get_cli_settings()
    return Sizing(
        replicas=fill(replicas, settings.replicas),
        cpu=fill(cpu, settings.pod_cpu),
        memory=fill(memory, settings.pod_memory),
    )


def serve_request(
    *,
    host: str,
    port: int,
    model: Path | None = None,
    labels: Path | None = None,
    sample: list[float] | None = None,
    log_level: str | None = None,
    log_format: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> ServeRequest:
    """`mii serve` の要求。モデルは --model、サービスの MODEL_FILEPATH、同梱の models/ の順に選ぶ。

    ラベルは --labels、LABEL_FILEPATH の順で、どちらも無ければ同梱のモデルには同梱のラベル、
    別のモデルにはラベル無し（同梱の label.json は同梱のモデルのもの。分類器はモデル自身の
    クラスラベルを使う）。
    """
    from mii_cli.model.serve import ServeRequest
    from mii_cli.paths import model_and_labels

    model_filepath: Path | None = None
    label_filepath: Path | str | None = labels
    if model is None and "MODEL_FILEPATH" in environ:
        # サービスの環境変数のモデル: ラベルも環境変数（無ければラベル無し）に任せる
        if labels is None and "LABEL_FILEPATH" not in environ:
            label_filepath = ""
    else:
        model_filepath, chosen_labels = model_and_labels(model, labels)
        label_filepath = chosen_labels or ""
    return ServeRequest(
        host=host,
        port=port,
        model_filepath=model_filepath,
        label_filepath=label_filepath,
        sample=sample,
        log_level=log_level,
        log_format=log_format,
    )
