"""推論サービスの定数。

環境変数の既定値、サンプル入力、メタデータの固定値など、実行時に変わらない値をまとめる。
"""

from __future__ import annotations

from typing import Final

# サービスのバージョン（イメージのタグ・OCI ラベル・/metadata で共通）
SERVICE_VERSION: Final = "0.1.0"

# イメージ内のアプリケーションルート（仕様書 2.2 節）
IMAGE_ROOT: Final = "/model_in_image_pattern"

# モデル・ラベルファイルの既定パス（仕様書 6 節）
DEFAULT_MODEL_FILEPATH: Final = f"{IMAGE_ROOT}/models/iris_svc.onnx"
DEFAULT_LABEL_FILEPATH: Final = f"{IMAGE_ROOT}/models/label.json"

# 学習時の情報を書き出すファイル名（モデルと同じディレクトリに置く）
TRAINING_FACTS_FILENAME: Final = "training.json"

# 待ち受けの既定値
DEFAULT_HOST: Final = "0.0.0.0"
DEFAULT_PORT: Final = 8000

# リクエスト制限の既定値
DEFAULT_MAX_BATCH_ROWS: Final = 1000
DEFAULT_MAX_BODY_BYTES: Final = 1024 * 1024

# 本文が最初の受け取りから届き終わるまでの既定の期限（秒）。過ぎれば 408
DEFAULT_BODY_TIMEOUT_SECONDS: Final = 10.0

# 上限を超えた本文を 413 の前に読み捨てる最大バイト数（これを超えたら読まずに接続を閉じる）
DRAIN_MAX_BYTES: Final = 64 * 1024 * 1024

# リクエストの頭（リクエスト行とヘッダ）の既定の上限。大きさは h11 と Node.js の 16 KiB、ヘッダ 1 つの
# 8190 バイトと数の 100 は gunicorn（limit_request_field_size・limit_request_fields）と Envoy の
# max_headers_count、リクエスト行の 8190 バイトは nginx の large_client_header_buffers の 8k に合わせる。
# 時間は Envoy が端のプロキシに勧める request_headers_timeout の 10 秒
DEFAULT_MAX_REQUEST_LINE_BYTES: Final = 8190
DEFAULT_MAX_HEADER_FIELD_BYTES: Final = 8190
DEFAULT_MAX_HEADER_COUNT: Final = 100
DEFAULT_MAX_HEAD_BYTES: Final = 16 * 1024
DEFAULT_HEAD_TIMEOUT_SECONDS: Final = 10.0
# リクエストの合間に開いた接続を待つ秒数（uvicorn の timeout_keep_alive。nginx の keepalive_timeout と同じ）
DEFAULT_KEEP_ALIVE_SECONDS: Final = 75.0

# 影（shadow）への写し（service/app/mirror.py）: 待ち行列に置ける写しの数（超えた写しは捨てて数える）、
# 送り手のタスク（写し先への keep-alive の接続）の数、1 つの写しの期限（秒）、設定を読み直す間隔（秒）、
# 影の答えの頭と本文の上限（バイト）
MIRROR_QUEUE_SIZE: Final = 256
MIRROR_SENDERS: Final = 4
MIRROR_TIMEOUT_SECONDS: Final = 2.0
MIRROR_POLL_SECONDS: Final = 1.0
MIRROR_MAX_HEAD_BYTES: Final = 16 * 1024
MIRROR_MAX_ANSWER_BYTES: Final = 16 * 1024 * 1024

# ラベルファイルの上限: ファイルの大きさと、ラベル名 1 つの長さ（/label・/metadata・/predict/label の応答は
# ラベルを含むので、ラベルの大きさがそのまま応答の大きさになる）
MAX_LABEL_FILE_BYTES: Final = 1024 * 1024
MAX_LABEL_NAME_CHARS: Final = 256

# テスト推論に使うサンプル（元実装と同じ Iris の 1 行目）
SAMPLE_DATA: Final[list[list[float]]] = [[5.1, 3.5, 1.4, 0.2]]

# 元実装の /metadata が返していた固定値
DATA_TYPE: Final = "float32"
PREDICTION_TYPE: Final = "float32"

# どの Pod が応答したかを示すレスポンスヘッダ（ロードバランシングの確認に使う）
SERVED_BY_HEADER: Final = "X-Served-By"
REQUEST_ID_HEADER: Final = "X-Request-ID"
