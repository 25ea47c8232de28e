"""アプリが持つ状態（読み込んだモデル・メトリクス・準備完了フラグ・起動時に作った応答）。"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from service.app.errors import Protocol
from service.app.metrics import Metrics, RouteStats
from service.app.replies import Reply
from service.app.v2_codec import OneRowJson
from service.ml.prediction import TabularModel

# 高速経路の 1 エンドポイント: (本文, Inference-Header-Content-Length, リクエスト ID) -> 応答
FastAnswer = Callable[[bytes, "str | None", bytes], Reply]


@dataclass(frozen=True)
class FastRoute:
    """高速経路の 1 つの (メソッド, 具体的なパス): 答える関数・メトリクス・エラーの形・本文を読むか。"""

    answer: FastAnswer
    stats: RouteStats
    protocol: Protocol
    reads_body: bool


@dataclass
class ServiceState:
    """lifespan で用意し、ルートと高速経路から参照する状態。"""

    metrics: Metrics
    served_by: str
    model_: TabularModel | None = None
    ready: bool = False
    # 決まった答え（/metadata・/label・/predict/test など）は起動時に 1 度だけ作る: 名前 -> 応答
    cached: dict[str, Reply] = field(default_factory=dict)
    # 1 行の V2 の JSON の答えの決まった部分（出力の名前の組 -> OneRowJson）。モデルを読み込んだ後に作る
    v2_one_row: dict[tuple[str, ...], OneRowJson] = field(default_factory=dict)
    # 高速経路の表 (メソッド, パス) -> FastRoute。モデルを読み込んだ後に作る（FAST_PATH=false なら空）
    fast_routes: dict[tuple[str, str], FastRoute] = field(default_factory=dict)

    @property
    def model(self) -> TabularModel:
        """読み込み済みのモデル（未読み込みで呼ばれることは無い: readiness が先に 503 を返す）。"""
        if self.model_ is None:
            raise RuntimeError("model is not loaded yet")
        return self.model_
