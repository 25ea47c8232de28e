"""送り先と送る行: スモークテストと負荷試験が共有する、URL の確かめ方とサンプルの行。

負荷試験は locust（gevent の monkeypatch）を ssl より先に読み込む必要があるので、このモジュールは
ssl を読み込むもの（httpx など）に依存しない。
"""

from __future__ import annotations

from mii_cli.errors import ConfigError
from service import constants

# バッチの確認に使う 3 行（Iris の 3 品種から 1 行ずつ。先頭は /predict/test のサンプル。負荷試験も使う）
BATCH_ROWS: list[list[float]] = [
    list(constants.SAMPLE_DATA[0]),
    [6.4, 3.2, 4.5, 1.5],
    [6.7, 3.0, 5.2, 2.3],
]


def normalize_url(url: str) -> str:
    """URL を確かめ、末尾の / を除いて返す。scheme が無ければ ConfigError。"""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
        raise ConfigError(
            f"--url must be an http:// or https:// URL, got {url!r}",
            hint="for example --url http://127.0.0.1:8000",
        )
    return url
