"""外へ何も送らない: ONNX Runtime のテレメトリが、サービスと mii のどの入口でも止まっていること。

ONNX Runtime（Linux）は 1DS テレメトリが既定で有効で、読み込んだ時点でホームの下に
デバイス ID とイベントの DB を書く。各コマンドを新しい HOME・ORT_DISABLE_TELEMETRY の無い環境の
子プロセスで動かし、何も書かれないことを確かめる（止めるのは mii 自身であって、テストの環境ではない）。
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support import LABELS, MODEL, ROOT, free_port

TELEMETRY_DIR = Path(".cache", "Microsoft", "DeveloperTools", ".onnxruntime")


# 子プロセスに渡す環境変数は許可したものだけ。onnxruntime 1.32 は CI の目印（CI=true、
# GITHUB_ACTIONS、TF_BUILD、JENKINS_URL など）があると自分でテレメトリを止めるので、
# 親の環境をそのまま渡すと CI では対照が書かれず、書かれないことの確かめも空振りになる
_KEPT_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ")


def _env(home: Path) -> dict[str, str]:
    """新しい HOME で、テレメトリを止める変数もサービスの設定も CI の目印も持たない環境。"""
    env = {k: v for k, v in os.environ.items() if k in _KEPT_ENV or k.startswith("COVERAGE_")}
    env["HOME"] = str(home)
    return env


def _telemetry_files(home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if "Microsoft" in p.parts)


def _run(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**_env(home), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_onnxruntime_itself_writes_telemetry_state_when_not_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 対照: 止めなければ書かれる（この確かめ方が本当に検出できることの裏付け）。
    # CI の目印を親に置いても子には届かないこと（CI でも対照が成り立つこと）もここで確かめる
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    # 書き込みは ONNX Runtime の中の別スレッドが行うことがあるので、セッションを作ったあと
    # 現れるまで（最大 20 秒）子プロセスの中で待つ
    script = (
        "import pathlib, sys, time, onnxruntime\n"
        f"onnxruntime.InferenceSession({str(MODEL)!r}, providers=['CPUExecutionProvider'])\n"
        f"target = pathlib.Path({str(tmp_path / TELEMETRY_DIR)!r})\n"
        "deadline = time.monotonic() + 20\n"
        "while not target.is_dir() and time.monotonic() < deadline:\n"
        "    time.sleep(0.1)\n"
    )
    result = _run(tmp_path, "-c", script)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / TELEMETRY_DIR).is_dir(), _telemetry_files(tmp_path)


def test_mii_serve_and_smoke_test_leave_no_telemetry_files(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    home = tmp_path / "home"
    home.mkdir()
    with log.open("wb") as handle:
        server = subprocess.Popen(
            [sys.executable, "-m", "mii_cli", "serve", "--port", str(port), "--log-level", "info"],
            cwd=ROOT,
            env=_env(home),
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/health/ready", timeout=0.5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        smoke = _run(home, "-m", "mii_cli", "smoke-test", "--url", url, "--json")
        assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=15)
    assert _telemetry_files(home) == []
    assert "telemetry" not in log.read_text().lower()


def test_the_image_entry_points_leave_no_telemetry_files(tmp_path: Path) -> None:
    # python -m service.check はビルド中のモデルの確認、service.server はイメージの run.sh の入口
    files = {"MODEL_FILEPATH": str(MODEL), "LABEL_FILEPATH": str(LABELS)}
    check = _run(tmp_path, "-m", "service.check", env=files)
    assert check.returncode == 0, check.stderr
    prepared = _run(tmp_path, "-c", "from service.server import prepare; prepare()", env=files)
    assert prepared.returncode == 0, prepared.stderr
    assert _telemetry_files(tmp_path) == []


# mii build はビルドの前に手元でモデルを確かめる（inspect_model）
_MODEL_CHECK = (
    "import sys, pathlib\n"
    "from mii_cli.image.build import inspect_model\n"
    "inspect_model(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]))"
)


@pytest.mark.parametrize(
    "args",
    [
        ["-m", "mii_cli", "train", "--output", "{out}", "--json"],
        ["-c", _MODEL_CHECK, str(MODEL), str(LABELS)],
    ],
    ids=["mii-train", "mii-build-model-check"],
)
def test_mii_commands_leave_no_telemetry_files(tmp_path: Path, args: list[str]) -> None:
    home = tmp_path / "home"
    home.mkdir()
    result = _run(home, *(a.replace("{out}", str(tmp_path / "out")) for a in args))
    assert result.returncode == 0, result.stderr
    assert _telemetry_files(home) == []
