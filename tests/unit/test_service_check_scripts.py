"""イメージの中で動く小さなスクリプト（ビルド時の検証と HEALTHCHECK）のテスト。"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service import check, healthcheck
from tests.fakes.http import HttpStandIn
from tests.support import free_port


def test_check_passes_on_the_bundled_model(
    clean_env: pytest.MonkeyPatch, model_path: Path, label_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("MODEL_FILEPATH", str(model_path))
    clean_env.setenv("LABEL_FILEPATH", str(label_path))
    assert check.main() == 0
    out = capsys.readouterr().out
    assert out.startswith("model check passed: iris_svc.onnx sha256=")
    assert "classes=3" in out


def test_check_fails_with_one_line(
    clean_env: pytest.MonkeyPatch, model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = tmp_path / "label.json"
    labels.write_text('{"0": "a"}')
    clean_env.setenv("MODEL_FILEPATH", str(model_path))
    clean_env.setenv("LABEL_FILEPATH", str(labels))
    assert check.main() == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("model check failed: cannot load model:")
    assert "1 entries but the model has 3 classes" in err
    assert "\n" not in err


@pytest.fixture
def probe_server() -> Iterator[HttpStandIn]:
    """/health/ready に決まったステータスを返す小さなサーバー（ループバック）。"""
    server = HttpStandIn({"/health/ready": 200})
    yield server
    server.close()


def test_healthcheck_passes_while_the_service_is_ready(
    probe_server: HttpStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORT", str(probe_server.port))
    assert healthcheck.main() == 0


def test_healthcheck_fails_while_the_service_is_not_ready(
    probe_server: HttpStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe_server.routes = {"/health/ready": 503}
    monkeypatch.setenv("PORT", str(probe_server.port))
    assert healthcheck.main() == 1


def test_healthcheck_without_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", str(free_port()))
    assert healthcheck.main() == 1
