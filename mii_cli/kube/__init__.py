"""Kubernetes へのデプロイ（マニフェストの描画・イメージの読み込み・適用・待機・確認・削除）。

ここの定数は manifests/ の名前と一致させる（単体テストで照合する）。
"""

from __future__ import annotations

from typing import Final

# 既定の Namespace とアプリ名（Deployment・Service・HPA・PDB・コンテナの名前）
NAMESPACE: Final = "model-in-image"
APP_NAME: Final = "model-in-image"
# Pod を選ぶラベル
APP_LABEL: Final = f"app={APP_NAME}"
# 確認の Job（lbcheck.py）の Pod のラベル。NetworkPolicy model-in-image-checks がこれで選ぶ
CHECK_LABEL_KEY: Final = "app.kubernetes.io/component"
CHECK_LABEL_VALUE: Final = "check"
# サーバーサイドアプライのフィールドマネージャ
FIELD_MANAGER: Final = "mii"
