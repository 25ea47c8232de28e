"""安定版の Pod の `/metrics`（API サーバーの Pod のプロキシ越し）の代わり: 影への写しの割合を名乗る。

本物では kubelet が ConfigMap `model-in-image-mirror` をファイルに書き、サーバーがそれを 1 秒ごとに読み
直して `mii_shadow_mirror_percent` に名乗る（service/app/mirror.py）。代役は読まれるたびに API サーバーの
代役にある ConfigMap の今の中身を本物のサービスの `parse_config` で読み、本物の `Metrics` の本文で答える
（写し先が変われば、本物と同じく写しの数字を 0 から数え直す。最初に読まれたときの設定は、Pod が起きた
ときからの設定とみなす: テストが先に記録した数字はそのまま）。

- `lagging`: 設定を読み直さない Pod（前の割合を名乗り続ける。kubelet がファイルを書き換えないなど）
- `unreachable`: プロキシが届かない Pod（本物の API サーバーと同じく 503 の Status）
- `metrics[pod]`: その Pod の本物の `Metrics`（テストが推論や写しの数字を記録する）
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import generate_latest

from mii_cli.kube import MIRROR_KEY, MIRROR_NAME
from service.app.metrics import Metrics
from service.app.mirror import MirrorConfig, MirrorConfigError, parse_config
from tests.fakes.kube_api import FakeApiServer, Request, status_body
from tests.fakes.kube_objects import NAMESPACE


def metrics_path(pod: str, namespace: str = NAMESPACE) -> str:
    """Pod のプロキシ越しの `/metrics` のパス（ポート 8000）。"""
    return f"/api/v1/namespaces/{namespace}/pods/{pod}:8000/proxy/metrics"


class MirroringPods:
    """安定版の Pod の `/metrics` の代わり（`names` の Pod のプロキシのルートを `fake` に差し込む）。"""

    def __init__(self, fake: FakeApiServer, names: Iterable[str], namespace: str = NAMESPACE) -> None:
        self.fake, self.namespace = fake, namespace
        self.metrics: dict[str, Metrics] = {}
        # Pod ごとに、最後に読んだ設定（まだ読まれていない Pod は無い）
        self.configs: dict[str, MirrorConfig | None] = {}
        self.lagging: set[str] = set()
        self.unreachable: set[str] = set()
        # 読まれた Pod の名前（順に）
        self.reads: list[str] = []
        for name in names:
            self.add(name)

    def add(self, name: str) -> Metrics:
        """Pod を 1 つ足す（その Pod の Metrics を返す）。"""
        self.metrics[name] = Metrics()
        path = metrics_path(name, self.namespace)
        self.fake.routes[("GET", path)] = lambda request: self.answer(name, request)
        return self.metrics[name]

    def document(self) -> bytes:
        """今の ConfigMap の写しの設定（無ければ空。kubelet がファイルを消すのと同じ）。"""
        path = f"/api/v1/namespaces/{self.namespace}/configmaps/{MIRROR_NAME}"
        data = (self.fake.objects.get(path) or {}).get("data") or {}
        return str(data.get(MIRROR_KEY, "")).encode()

    def answer(self, name: str, request: Request) -> tuple[int, Any]:
        """1 つの Pod の `/metrics`（API サーバーのロックの中で呼ばれる）。"""
        self.reads.append(name)
        if name in self.unreachable:
            return 503, status_body(503, "error trying to reach service: dial tcp 10.0.0.1:8000: i/o timeout")
        metrics = self.metrics[name]
        if name not in self.lagging:
            try:
                config = parse_config(self.document())
            except MirrorConfigError:
                config = None
            if name in self.configs and config is not None and config != self.configs[name]:
                # 本物の Mirror.configure と同じく、写しを始めたときと写し先が変わったときに数え直す
                previous = self.configs[name]
                if previous is None or (previous.host, previous.port) != (config.host, config.port):
                    metrics.shadow.reset()
            self.configs[name] = config
            metrics.shadow.percent = config.percent if config is not None else 0.0
        return 200, generate_latest(metrics.registry).decode()
