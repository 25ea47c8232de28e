"""テストが共有する小さな道具（フィクスチャではないもの）: プロジェクトのパス、サービスの環境変数、
空きポート、e2e の設定、`mii` を呼ぶ道具。
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import Result
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
MODEL = MODELS / "iris_svc.onnx"
LABELS = MODELS / "label.json"
MANIFESTS = ROOT / "manifests"
REFERENCE = ROOT.parent / "shared" / "reference"

# サービスが読む環境変数（テストを動かす環境の設定で結果が変わらないように消す）
SERVICE_ENV = (
    "MODEL_FILEPATH",
    "LABEL_FILEPATH",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "PORT",
    "HOST",
    "MAX_BATCH_ROWS",
    "MAX_BODY_BYTES",
    "ACCESS_LOG",
    "POD_NAME",
    "FAST_PATH",
    "BODY_TIMEOUT_SECONDS",
    "MODEL_NAME",
    "SAMPLE_ROW",
)


def free_port() -> int:
    """ループバックの空きポートを返す。"""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class E2eSettings:
    """e2e テストの設定（環境変数 MII_E2E_*）。

    - `MII_E2E_CONTEXT`: kube context（既定は今のもの）
    - `MII_E2E_NAMESPACE`: Namespace（既定 mii-e2e。利用者のデプロイに触れない）
    - `MII_E2E_REPLICAS`・`MII_E2E_CPU`・`MII_E2E_MEMORY`: Deployment の大きさ（既定 2・250m・300Mi。
      2 コアのノードでもローリングアップデートの追加の Pod と HPA の増加が入る）
    - `MII_E2E_REGISTRY`（無ければ `MII_REGISTRY`）: イメージを push するレジストリ。
      無ければ minikube・kind へ読み込む
    - `MII_REQUIRE_CLUSTER=1`: クラスタや Docker が無いときにスキップせず失敗にする（CI）
    """

    namespace: str
    replicas: int
    cpu: str
    memory: str
    registry: str | None
    context: str | None
    required: bool

    @classmethod
    def from_environment(cls) -> E2eSettings:
        """環境変数から読む。"""
        env = os.environ
        return cls(
            namespace=env.get("MII_E2E_NAMESPACE", "mii-e2e"),
            replicas=int(env.get("MII_E2E_REPLICAS", "2")),
            cpu=env.get("MII_E2E_CPU", "250m"),
            memory=env.get("MII_E2E_MEMORY", "300Mi"),
            registry=env.get("MII_E2E_REGISTRY") or env.get("MII_REGISTRY") or None,
            context=env.get("MII_E2E_CONTEXT") or None,
            required=env.get("MII_REQUIRE_CLUSTER") == "1",
        )

    @property
    def sizing_args(self) -> list[str]:
        """Deployment の大きさと、イメージの渡し方のオプション。"""
        args = ["--replicas", str(self.replicas), "--cpu", self.cpu, "--memory", self.memory]
        return [*args, "--registry", self.registry] if self.registry else args


class Mii:
    """`mii` を CliRunner で実行する（終了コードは呼び出し側が確かめる）。"""

    def __call__(self, *args: str) -> Result:
        from mii_cli import cli

        return CliRunner().invoke(cli.app, list(args))

    def json(self, *args: str) -> Any:
        """`mii ... --json` を実行し、成功を確かめて JSON を返す。"""
        result = self(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)
