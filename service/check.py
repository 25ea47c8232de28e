"""ビルド時の検証: サービス自身のローダでモデル（とラベル・サンプル）を読み、試し推論する。

`python -m service.check` として Dockerfile から呼ぶ。失敗したら理由を 1 行で出して終了コード 1。
"""

from __future__ import annotations

import sys

from service.server import StartupError, prepare


def main() -> int:
    """モデルを検証し、結果を 1 行で表示する。"""
    try:
        _settings, model = prepare()
    except StartupError as error:
        print(f"model check failed: {error}", file=sys.stderr)
        return 1
    info = model.info
    answer = model.predict(model.sample)[0]
    what = f"classes={info.num_classes}" if info.task == "classification" else f"outputs={info.num_outputs}"
    print(
        f"model check passed: {info.file_name} sha256={info.sha256} task={info.task} "
        f"features={info.num_features} {what} sample={[round(p, 6) for p in answer]} ({info.sample_source})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
