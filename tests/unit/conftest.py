"""単体テストの共通フィクスチャ。"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_registry_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """CI や利用者がテスト用クラスタのために設定する MII_REGISTRY などに、単体テストは左右されない。"""
    from mii_cli.settings import get_cli_settings

    for name in ("MII_REGISTRY", "MII_REPLICAS", "MII_POD_CPU", "MII_POD_MEMORY"):
        monkeypatch.delenv(name, raising=False)
    get_cli_settings.cache_clear()
    yield
    get_cli_settings.cache_clear()
