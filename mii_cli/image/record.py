"""デプロイするイメージが持つモデルの記録: イメージのラベル（mii build が書く）から読む。

`mii deploy` はこれを Pod のテンプレートの注釈に書き（kube.render.model_annotations。
`mii history`・`mii status` が読む）、ロールアウトの後に新しい Pod がこのモデルで答えるかを
確かめる（sha256 とサンプルの答え）。
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mii_cli.errors import MiiError
from mii_cli.image.docker import DockerClient, docker_client, local_image
from mii_cli.references import split_digest
from mii_cli.results import Result

# mii build がイメージに書くラベル（Dockerfile の LABEL）
MODEL_FILE_LABEL = "io.mii.model.file"
MODEL_SHA256_LABEL = "io.mii.model.sha256"
SAMPLE_ANSWER_LABEL = "io.mii.model.sample-answer"


@dataclass(frozen=True)
class ImageRecord(Result):
    """イメージの参照と、そのイメージが持つモデル（ラベルが読めなければ None）。

    `sample_answer` はモデルのサンプルの 1 行への答え（`/predict/test` が返すはずの値）。
    """

    reference: str
    image_tag: str
    image_digest: str | None
    model_file: str | None = None
    model_sha256: str | None = None
    sample_answer: Any = None


def record_from_labels(reference: str, labels: dict[str, str] | None) -> ImageRecord:
    """参照とイメージのラベルから記録を作る（ラベルの無いもの・読めないものは None）。"""
    tag, digest = split_digest(reference)
    labels = labels or {}
    answer: Any = None
    if labels.get(SAMPLE_ANSWER_LABEL):
        try:
            answer = json.loads(labels[SAMPLE_ANSWER_LABEL])
        except ValueError:
            answer = None
    sha256 = labels.get(MODEL_SHA256_LABEL)
    return ImageRecord(
        reference=reference,
        image_tag=tag,
        image_digest=digest,
        model_file=labels.get(MODEL_FILE_LABEL) or None,
        model_sha256=sha256 if sha256 and sha256 != "unknown" else None,
        sample_answer=answer,
    )


def read_record(image: str, reference: str, client: DockerClient | None = None) -> ImageRecord:
    """ローカルの Docker にある `image` のラベルから、`reference` としてデプロイするイメージの記録を作る。

    Docker に届かない・イメージがローカルに無い（レジストリの参照だけを渡した）ときはモデルの記録なし。
    """
    try:
        found = local_image(client or docker_client(timeout=30), image)
    except MiiError:
        found = None
    labels = ((found.attrs.get("Config") or {}).get("Labels") or {}) if found is not None else {}
    return record_from_labels(reference, labels)
