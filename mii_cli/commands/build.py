"""`mii build`: モデルとサーバーをイメージに焼き込む。"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mii_cli.commands.options import JsonOption, SampleOption, sample_row
from mii_cli.ui import console as out

if TYPE_CHECKING:
    from mii_cli.image.build import BuildRequest, BuildResult


def build_with_progress(request: BuildRequest) -> BuildResult:
    """ビルドのステップを進捗バーで見せながらビルドする（build・up の共通）。"""
    from mii_cli.image.build import build_image
    from mii_cli.ui.live import build_progress

    with build_progress() as on_progress:
        return build_image(request, on_progress=on_progress)


def base_line(result: BuildResult) -> str:
    """ベースイメージの 1 行: 指定の参照、レジストリのダイジェスト（無ければそう言う）、イメージ ID。"""
    digest = f"digest {result.base_digest}" if result.base_digest else "no registry digest (a local image)"
    return f"{result.base_image}, {digest}, image id {result.base_image_id}"


def engine_line(result: BuildResult) -> str:
    """ビルドしたエンジンの 1 行（docker-env なら、クラスタが読み込みなしで見ると添える）。"""
    daemon = result.daemon
    if daemon is None:
        return "the local Docker engine"
    if daemon.docker_env:
        return f"{daemon.describe()}: minikube {daemon.minikube_profile} uses it without a load"
    return daemon.describe()


def build(
    tag: Annotated[
        str | None, typer.Option(help="Image tag (default: model-in-image:0.1.0, MII_IMAGE_*).")
    ] = None,
    base_image: Annotated[
        str | None,
        typer.Option(
            help="Base image, by tag or pinned by digest (name[:tag]@sha256:...) "
            "(default: python:3.13-slim, MII_BASE_IMAGE)."
        ),
    ] = None,
    network: Annotated[
        str | None, typer.Option(help="Network for RUN steps, e.g. host (MII_BUILD_NETWORK).")
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="ONNX model to bake (default: models/iris_svc.onnx).")
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            help="Label JSON to bake (default: models/label.json for the bundled model, else none)."
        ),
    ] = None,
    sample: SampleOption = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Rebuild every step.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Bake the model and the server into an image (Docker SDK, classic builder).

    The image goes to the Docker engine that DOCKER_HOST names: under `eval $(minikube docker-env)`
    that is the minikube node's, where the cluster sees it without a load.
    """
    from dataclasses import replace

    from mii_cli.commands.requests import build_request
    from mii_cli.image.daemon import current_daemon

    request = build_request(
        tag=tag,
        base_image=base_image,
        network=network,
        model=model,
        labels=labels,
        sample=sample_row(sample),
        no_cache=no_cache,
    )
    result = replace(build_with_progress(request), daemon=current_daemon())
    if as_json:
        out.print_json(result)
        return
    out.success(
        f"built {result.image_id[:19]} ({result.size_bytes / 1e6:.0f} MB, "
        f"{result.cached_steps}/{result.steps} steps cached)"
    )
    for name in result.tags:
        out.info(f"tag: {name}")
    out.info(f"model sha256: {result.model_sha256}")
    out.info(f"base image: {base_line(result)}")
    out.info(f"built into {engine_line(result)}")
    out.info(f"next: `mii run --image {result.unique_tag}` or `mii deploy --image {result.unique_tag}`")


def register(app: typer.Typer) -> None:
    """コマンドを登録する。"""
    app.command()(build)
