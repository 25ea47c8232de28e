"""`mii serve` で起動した本物の uvicorn にループバックで問い合わせる。"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT, free_port


def _start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mii_cli", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_ready(url: str, process: subprocess.Popen[str], timeout: float = 15.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if process.poll() is not None:
            pytest.fail(f"server exited early: {process.stdout.read() if process.stdout else ''}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=0.5).status_code == 200:
                return time.monotonic() - start
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail("server did not become ready")


def test_mii_serve_answers_on_loopback_and_stops_on_ctrl_c() -> None:
    port = free_port()
    process = _start("serve", "--port", str(port), "--log-level", "info", "--log-format", "json")
    url = f"http://127.0.0.1:{port}"
    try:
        elapsed = _wait_ready(url, process)
        assert elapsed < 10
        assert httpx.get(f"{url}/health").json() == {"health": "ok"}
        response = httpx.post(f"{url}/predict/label", json={"data": [[6.7, 3.0, 5.2, 2.3]]})
        assert response.json() == {"prediction": "virginica"}
        assert response.headers["x-request-id"]
        assert httpx.post(f"{url}/predict", json={"data": [[1, 2]]}).status_code == 400
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=15)
    assert process.returncode == 0, output
    assert '"message":"model ready: iris_svc.onnx' in output
    assert "Traceback" not in output


def test_mii_serve_with_a_missing_model_exits_with_one_line(tmp_path: Path) -> None:
    process = _start("serve", "--port", str(free_port()), "--model", str(tmp_path / "none.onnx"))
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 3
    assert "none.onnx: model file not found" in output
    assert "Traceback" not in output


def test_python_m_service_reports_bad_configuration(tmp_path: Path) -> None:
    process = subprocess.run(
        [sys.executable, "-m", "service"],
        cwd=ROOT,
        env={**os.environ, "PORT": "99999"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert process.returncode == 1
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: invalid configuration: PORT=")


def test_mii_serve_on_a_busy_port_is_one_clear_error() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = _start("serve", "--port", str(port), "--log-level", "warning")
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 2
    assert f"Error: cannot listen on 127.0.0.1:{port}" in output
    assert "Traceback" not in output
