"""アプリが持つ状態（読み込んだモデル・メトリクス・準備完了フラグ）。"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.app.metrics import Metrics
from service.ml.prediction import Classifier


@dataclass
class ServiceState:
    """lifespan で用意し、ルータから参照する状態。"""

    metrics: Metrics
    served_by: str
    classifier_: Classifier | None = None
    ready: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def classifier(self) -> Classifier:
        """読み込み済みの Classifier（未読み込みで呼ばれることは無い: readiness が先に 503 を返す）。"""
        if self.classifier_ is None:
            raise RuntimeError("model is not loaded yet")
        return self.classifier_
