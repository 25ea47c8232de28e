"""イメージの中で動く小さなスクリプト（ビルド時の検証と HEALTHCHECK）のテスト。"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from service import check, healthcheck


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
def probe_server() -> Iterator[tuple[int, list[int]]]:
    """/health/ready に決まったステータスを返す小さなサーバー（ループバック）。"""
    statuses = [200]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(statuses[0] if self.path == "/health/ready" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], statuses
    server.shutdown()


def test_healthcheck_follows_readiness(
    probe_server: tuple[int, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, statuses = probe_server
    monkeypatch.setenv("PORT", str(port))
    assert healthcheck.main() == 0
    statuses[0] = 503
    assert healthcheck.main() == 1


def test_healthcheck_without_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import free_port

    monkeypatch.setenv("PORT", str(free_port()))
    assert healthcheck.main() == 1
