"""CLI の設定（環境変数 MII_*）と、オプションの既定値の埋め方。

オプションの既定値をまとめる唯一の設定オブジェクトと、省かれたオプション（None）を設定で埋める
唯一の方法 `fill`。コマンドのオプションが常に優先する。設定を読むのは CLI の層（commands/）だけで、
下の層は埋め終わった値を引数で受け取る（この流れは一方向: ここは下の層を読み込まない）。
"""

from __future__ import annotations

from functools import lru_cache
from typing import TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from mii_cli.errors import ConfigError
from service.constants import SERVICE_VERSION

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

    replicas: int | None = None
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
