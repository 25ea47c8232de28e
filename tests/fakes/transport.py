"""asyncio のトランスポートの代役: 書いたもの・読み取りの停止・閉じたかを覚える（プロトコルの確かめ用）。

本物のソケットでの振る舞いは、ループバックの本物のサーバーに生のソケットで送るテストが確かめる。
"""

from __future__ import annotations

from typing import Any


class RecordingTransport:
    """書いたもの・読み取りの停止・閉じたかを覚えるトランスポート。"""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.reading = True

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str) -> Any:
        """ループバックの接続の両端（それ以外の情報は無い）。"""
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name)
