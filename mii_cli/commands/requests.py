"""オプションと設定（MII_*）から、下の層が受け取る要求を組み立てる（CLI の層の端）。

省かれたオプション（None）を `settings.fill` で設定の値に埋め、ビルド・コンテナの起動条件・
Deployment の大きさ・`mii serve` のモデルの要求にする。下の層は設定を読まない。
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mii_cli.settings import fill, get_cli_settings

if TYPE_CHECKING:
    from mii_cli.image.build import BuildRequest
    from mii_cli.image.container import RunSpec
    from mii_cli.kube.render import Sizing
    from mii_cli.model.serve import ServeRequest


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
    """`mii run` のコンテナの起動条件（イメージ・名前・制限は MII_*、既定は Pod と同じ制限）。

    ポートは Docker のエンジンのあるマシンの、このマシンから届くアドレスに公開する（docker-env なら
    ノードの IP。届くアドレスが無ければ DockerError）。
    """
    from mii_cli.image.container import RunSpec
    from mii_cli.image.daemon import current_daemon

    settings = get_cli_settings()
    return RunSpec(
        image=fill(image, settings.default_image),
        name=fill(name, settings.container_name),
        port=port,
        cpus=fill(cpus, settings.cpus),
        memory=fill(memory, settings.memory),
        user=user,
        address=current_daemon().publish_address(),
    )


def sizing(*, replicas: int | None = None, cpu: str | None = None, memory: str | None = None) -> Sizing:
    """`mii deploy`・`mii up` の Deployment の大きさ（MII_REPLICAS・MII_POD_CPU・MII_POD_MEMORY）。

    どれも無ければ manifests/ の値のまま。値は Sizing が 1 か所で確かめる（不正なら ConfigError）。
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
