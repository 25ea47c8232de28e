"""MII_* の設定と、省かれたオプションを設定で埋める方法（`fill` とその組み立て関数）。"""

from __future__ import annotations

from pathlib import Path

import pytest

from mii_cli.commands.requests import build_request, sizing
from mii_cli.errors import ConfigError
from mii_cli.settings import CliSettings, fill, get_cli_settings
from tests.support import LABELS, MODEL, ROOT


def use(monkeypatch: pytest.MonkeyPatch, **settings: str) -> None:
    """MII_* の設定を置き、読み直させる。"""
    for name, value in settings.items():
        monkeypatch.setenv(f"MII_{name.upper()}", value)
    get_cli_settings.cache_clear()


def test_fill_takes_the_option_when_given() -> None:
    assert fill("option", "setting") == "option"


def test_fill_takes_the_setting_when_the_option_is_left_out() -> None:
    assert fill(None, "setting") == "setting"


def test_fill_keeps_falsy_options() -> None:
    assert fill(0, 4) == 0


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MII_BASE_IMAGE", "localhost/python:3.11-slim")
    monkeypatch.setenv("MII_IMAGE_TAG", "9.9")
    settings = CliSettings()
    assert settings.base_image == "localhost/python:3.11-slim"
    assert settings.default_image == "model-in-image:9.9"


def test_a_bad_setting_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    use(monkeypatch, cpus="-1")
    with pytest.raises(ConfigError, match="MII_CPUS"):
        get_cli_settings()


def test_a_build_without_options_bakes_the_bundled_model(monkeypatch: pytest.MonkeyPatch) -> None:
    use(monkeypatch, base_image="localhost/base:1", build_network="host", image_repository="team/iris")
    request = build_request()
    assert (request.root, request.model, request.labels) == (ROOT, MODEL, LABELS)
    chosen = (request.base_image, request.network, request.tag)
    assert chosen == ("localhost/base:1", "host", "team/iris:0.1.0")


def test_build_options_win_over_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    use(monkeypatch, base_image="localhost/base:1")
    request = build_request(base_image="other:2", tag="x:1", model=Path("/m/house.onnx"))
    assert (request.base_image, request.tag) == ("other:2", "x:1")
    assert (request.model, request.labels) == (Path("/m/house.onnx"), None)


def test_the_sizing_comes_from_the_settings_when_options_are_left_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use(monkeypatch, replicas="2", pod_cpu="250m", pod_memory="256Mi")
    assert sizing() == sizing(replicas=2, cpu="250m", memory="256Mi")
    assert sizing(cpu="300m").cpu == "300m"


def test_without_settings_the_sizing_keeps_the_manifests() -> None:
    chosen = sizing()
    assert (chosen.replicas, chosen.cpu, chosen.memory) == (None, None, None)


@pytest.mark.parametrize(
    ("setting", "message"),
    [({"replicas": "0"}, "--replicas 0 is out of range"), ({"pod_cpu": "fast"}, "--cpu 'fast' is not")],
)
def test_sizing_settings_are_checked_in_the_one_place_options_are(
    monkeypatch: pytest.MonkeyPatch, setting: dict[str, str], message: str
) -> None:
    use(monkeypatch, **setting)
    with pytest.raises(ConfigError, match=message) as error:
        sizing()
    assert "MII_REPLICAS" in (error.value.hint or "") or "250m" in (error.value.hint or "")
