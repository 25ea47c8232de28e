"""モデル: 学習と ONNX への変換（train）、Docker なしでの配信（serve）。"""
