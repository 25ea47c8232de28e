"""単体テストの共通フィクスチャ。"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_registry_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """CI はテスト用クラスタのために MII_REGISTRY を設定する。単体テストはそれに左右されない。"""
    from mii_cli.settings import get_cli_settings

    monkeypatch.delenv("MII_REGISTRY", raising=False)
    get_cli_settings.cache_clear()
    yield
    get_cli_settings.cache_clear()
