"""CLI の例外階層。

コアの処理はここの例外を投げ、CLI の境界（cli.py）が 1 行のメッセージと終了コードに変える。
"""

from __future__ import annotations


class MiiError(Exception):
    """mii のすべての想定内エラーの基底。`hint` は次にすべきことを示す。"""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, details: str | None = None) -> None:
        """メッセージ・対処のヒント・補足（ビルドログの末尾など）を持つ。"""
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details


class ConfigError(MiiError):
    """設定やオプションの値が不正。"""

    exit_code = 2


class ModelError(MiiError):
    """モデルまたはラベルファイルが読めない・食い違う。"""

    exit_code = 3


class DockerError(MiiError):
    """Docker エンジンに届かない、またはビルド・実行に失敗した。"""

    exit_code = 4


class ClusterError(MiiError):
    """Kubernetes クラスタに届かない、または操作に失敗した。"""

    exit_code = 5


class CheckFailed(MiiError):
    """スモークテストや負荷試験の判定が不合格。"""

    exit_code = 6


class WaitTimeout(MiiError):
    """待ち時間の上限を超えた。"""

    exit_code = 7
