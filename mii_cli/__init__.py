"""mii: model-in-image パターンの CLI。

`service` を最初に読み込み、ONNX Runtime のテレメトリを止める（どの mii コマンドも外へ送らない）。
"""

import service  # noqa: F401  ONNX Runtime のテレメトリを onnxruntime の読み込み前に止める
