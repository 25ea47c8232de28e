"""サンプルの 1 行の形式: 有限の数の空でないリスト（そのままか、その JSON）。

サンプルの行はモデルの側のもの（/predict/test・/metadata の答えと、読み込み時の試し推論に使う）なので、
その形式の検査はここに置く。SAMPLE_ROW（`service.configurations`）・`mii` の `--sample`・training.json の
`sample`（`service.ml.loading`）がこれを使う。モデルの幅と合うかはモデルを読んでから `service.ml.loading`
が確かめる。
"""

from __future__ import annotations

import json
import math

SAMPLE_PROBLEM = "must be a non-empty JSON list of finite numbers, e.g. [5.1, 3.5, 1.4, 0.2]"


def parse_sample(value: object) -> list[float]:
    """サンプルの 1 行（数のリスト、またはその JSON）を確かめて float のリストにする。不正なら ValueError。

    SAMPLE_ROW・`--sample`・training.json の `sample` の共通の検査。
    """
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError(SAMPLE_PROBLEM) from None
    if not isinstance(value, list) or not value:
        raise ValueError(SAMPLE_PROBLEM)
    for item in value:
        if not isinstance(item, int | float) or isinstance(item, bool) or not math.isfinite(item):
            raise ValueError(SAMPLE_PROBLEM)
    return [float(item) for item in value]
