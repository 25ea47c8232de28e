"""`mii doctor` を本物のクラスタと Docker に対して: kube context・metrics API・イメージの渡し方。"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import E2eSettings, Mii

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _checks(mii: Mii) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in mii.json("doctor")["checks"]}


def test_doctor_reaches_the_cluster_of_the_current_context(
    mii: Mii, cluster: tuple[Any, Any], docker_client: Any
) -> None:
    _, info = cluster
    check = _checks(mii)["kube-context"]
    assert check["ok"], check
    assert check["detail"] == f"{info.context} ({info.flavor}) at {info.server}, Kubernetes {info.version}"


def test_doctor_finds_the_metrics_api_the_hpa_needs(
    mii: Mii, cluster: tuple[Any, Any], docker_client: Any
) -> None:
    check = _checks(mii)["metrics-api"]
    assert check["ok"], check


def test_doctor_finds_a_way_to_carry_the_image_to_the_cluster(
    e2e: E2eSettings, mii: Mii, cluster: tuple[Any, Any], docker_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mii_cli.settings import get_cli_settings

    if e2e.registry:
        monkeypatch.setenv("MII_REGISTRY", e2e.registry)
    get_cli_settings.cache_clear()
    check = _checks(mii)["image-loader"]
    get_cli_settings.cache_clear()
    assert check["ok"], check
