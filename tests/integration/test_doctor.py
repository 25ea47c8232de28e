"""`mii doctor` を本物の Docker エンジンに対して（マーカー docker）: 版、ベースイメージ、
ビルドのネットワーク。
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from mii_cli.settings import get_cli_settings
from mii_cli.workflows import doctor
from tests.support import Mii

pytestmark = pytest.mark.docker

BASE_IMAGE = os.environ.get("MII_BASE_IMAGE", "python:3.13-slim")


def probe(**inputs: Any) -> doctor.Probe:
    chosen: dict[str, Any] = {"base_image": BASE_IMAGE, "build_network": "host", "registry": None}
    return doctor.Probe(**{**chosen, **inputs})


def test_the_engine_reports_its_version(docker: Any) -> None:
    check = doctor.check_docker(probe())
    assert check.ok
    assert docker.version()["Version"] in check.detail


def test_the_base_image_of_the_build_is_found(docker: Any) -> None:
    docker.images.get(BASE_IMAGE)  # CI はこのイメージをローカルに作る
    check = doctor.check_base_image(probe())
    assert check.ok, check.detail
    assert "present locally" in check.detail


def test_a_local_only_base_image_that_is_missing_gets_the_registry_less_hint(docker: Any) -> None:
    check = doctor.check_base_image(probe(base_image="localhost/mii-doctor-absent:0"))
    assert not check.ok
    assert "is not local and the engine cannot pull it" in check.detail
    assert "MII_BASE_IMAGE" in (check.hint or "")


def test_the_host_network_exists_for_the_build(docker: Any) -> None:
    assert doctor.check_build_network(probe()).ok


def test_a_network_the_engine_does_not_have_is_found_out(docker: Any) -> None:
    assert not doctor.check_build_network(probe(build_network="mii-doctor-absent")).ok


def test_the_command_passes_the_required_checks(docker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MII_BASE_IMAGE", BASE_IMAGE)
    get_cli_settings.cache_clear()
    report = Mii().json("doctor")
    get_cli_settings.cache_clear()
    checks = {c["name"]: c for c in report["checks"]}
    assert (checks["docker"]["ok"], checks["base-image"]["ok"], checks["build-network"]["ok"]) == (
        True,
        True,
        True,
    )
