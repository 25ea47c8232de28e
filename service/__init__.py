"""推論サービス（FastAPI + ONNX Runtime）。

外へは何も送らない: ONNX Runtime は Linux で 1DS テレメトリが既定で有効で、読み込んだ時点で
ホームの下（~/.cache/Microsoft/DeveloperTools/.onnxruntime/）にデバイス ID とイベントの DB を書き、
イベントを送ろうとする。onnxruntime を読み込む前に、このパッケージの読み込みで止める
（onnxruntime 1.32 は環境変数 ORT_DISABLE_TELEMETRY=1 を読み込み時に見る）。
`service.ml.prediction` は読み込んだ後に実行時の API（disable_telemetry_events）でも止める。
"""

import os

# 利用者の値でも上書きする: モデルサーバーはどの設定でも外へ送らない
os.environ["ORT_DISABLE_TELEMETRY"] = "1"
