"""Kubernetes へのデプロイ（マニフェストの描画・イメージの読み込み・適用・待機・確認・削除）。

ここの定数は manifests/ の名前と一致させる（単体テストで照合する）。
"""

from __future__ import annotations

from typing import Final

# 既定の Namespace とアプリ名（Deployment・Service・HPA・PDB・コンテナの名前）
NAMESPACE: Final = "model-in-image"
APP_NAME: Final = "model-in-image"
# 安定版の Deployment の Pod を選ぶラベル（Deployment の selector）
APP_LABEL: Final = f"app={APP_NAME}"
# Service・PodDisruptionBudget・NetworkPolicy が選ぶ、安定版と canary の両方の Pod が持つラベル
SERVICE_LABEL_KEY: Final = "app.kubernetes.io/name"
# 新しいモデルを少しだけ動かす 2 つ目の Deployment（`mii deploy --canary`）。HPA は持たない
CANARY_NAME: Final = f"{APP_NAME}-canary"
CANARY_LABEL: Final = f"app={CANARY_NAME}"
# 新しいモデルに安定版の推論の写しだけを送る Deployment（`mii deploy --shadow`）と、その Pod だけを選ぶ
# Service。影の Pod は SERVICE_LABEL_KEY を持たない: メインの Service・PDB・NetworkPolicy に選ばれない
SHADOW_NAME: Final = f"{APP_NAME}-shadow"
SHADOW_LABEL: Final = f"app={SHADOW_NAME}"
# 安定版の Pod が読む写しの設定の ConfigMap とそのキー（manifests/deployment.yml の MIRROR_CONFIG）
MIRROR_NAME: Final = f"{APP_NAME}-mirror"
MIRROR_KEY: Final = "mirror.json"
# `--mirror-percent` の既定: 安定版の推論のリクエストのうち影へ写す割合（%）
DEFAULT_MIRROR_PERCENT: Final = 10.0
# 写しの設定を書き換えた後に安定版の Pod に付ける注釈（kubelet がその Pod を同期し、ConfigMap のファイルを
# すぐ書き換える。付けなければ kubelet の周期（既定で約 1 分）を待つ）
MIRROR_ANNOTATION: Final = "io.mii/mirror"
# Pod のテンプレートに記録する、その Pod が持つモデル（イメージのラベルから。`mii history` が読む）
MODEL_FILE_ANNOTATION: Final = "io.mii/model-file"
MODEL_SHA256_ANNOTATION: Final = "io.mii/model-sha256"
IMAGE_TAG_ANNOTATION: Final = "io.mii/image-tag"
IMAGE_DIGEST_ANNOTATION: Final = "io.mii/image-digest"
# サンプルの 1 行へのモデルの答え（JSON）。新しい Pod がこのモデルで答えるかの確かめに使う
MODEL_SAMPLE_ANSWER_ANNOTATION: Final = "io.mii/model-sample-answer"
# Deployment コントローラが ReplicaSet と Deployment に書く版の番号
REVISION_ANNOTATION: Final = "deployment.kubernetes.io/revision"
# 確認の Job（probe/check_job.yml）の Pod のラベル。NetworkPolicy model-in-image-checks がこれで選ぶ
CHECK_LABEL_KEY: Final = "app.kubernetes.io/component"
CHECK_LABEL_VALUE: Final = "check"
# サーバーサイドアプライのフィールドマネージャ
FIELD_MANAGER: Final = "mii"
