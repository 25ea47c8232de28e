"""テストの土台そのもの: 止まらない・部分実行で落ちない・依存の上限。

- pytest のプロセスに gevent（greenlet）を読み込ませない。locust の pytest プラグインと
  coverage の gevent 対応が読み込むと、greenlet の後始末で CliRunner が止まることがあった。
- 止まったテストは、そのテストだけがスタックトレースとともに失敗する（pytest-timeout）。
- 一部のテストだけの実行は、カバレッジの下限（全体の実行だけに付ける）で失敗しない。
- CI が色を強制する環境（GITHUB_ACTIONS・FORCE_COLOR）でも、CLI の出力を比べるテストは崩れない。
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from tests.support import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# README のテストコマンド（CI もこれを実行する）
FULL_RUN = "uv run pytest --cov --cov-fail-under=90"


def _pytest(
    *args: str, cwd: Path = ROOT, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """別のプロセスで pytest を動かす（計測中の coverage の設定は引き継がない）。"""
    env = {k: v for k, v in os.environ.items() if "COV" not in k.upper()} | (extra_env or {})
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_pytest_process_has_not_imported_gevent() -> None:
    assert "gevent" not in sys.modules
    assert "greenlet" not in sys.modules
    assert "locust" not in sys.modules


def test_a_hanging_test_fails_alone_with_its_stack(tmp_path: Path) -> None:
    (tmp_path / "test_hang.py").write_text(
        "import time\n\n"
        "def test_hangs():\n"
        "    time.sleep(600)\n\n"
        "def test_after_the_hang():\n"
        "    assert True\n"
    )
    # このプロジェクトの設定（pyproject.toml）で、期限だけを短くして動かす
    result = _pytest(
        "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path), "-o", "timeout=2", str(tmp_path)
    )
    assert result.returncode == 1, result.stdout
    assert "1 failed, 1 passed" in result.stdout
    assert "Timeout" in result.stdout
    assert "time.sleep(600)" in result.stdout


def test_a_partial_run_is_not_held_to_the_coverage_gate() -> None:
    result = _pytest("tests/unit/test_configurations.py", "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout


def test_cli_output_stays_plain_where_a_ci_forces_colour() -> None:
    # GitHub Actions は GITHUB_ACTIONS を置き、typer はそれを見て色付きで出す
    forced = {"GITHUB_ACTIONS": "true", "FORCE_COLOR": "1", "PY_COLORS": "1", "CI": "true"}
    result = _pytest("tests/unit/test_cli.py", "tests/unit/test_command_load_test.py", "-q", extra_env=forced)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout


def test_the_full_run_in_readme_and_ci_keeps_the_90_percent_gate() -> None:
    assert "--cov-fail-under" not in " ".join(PYPROJECT["tool"]["pytest"]["ini_options"]["addopts"])
    assert FULL_RUN in (ROOT / "README.md").read_text()
    assert FULL_RUN in (ROOT / ".ci" / "run").read_text()


def test_coverage_does_not_trace_greenlets() -> None:
    assert "gevent" not in PYPROJECT["tool"]["coverage"]["run"]["concurrency"]


def test_the_train_extra_stays_below_scikit_learn_1_11() -> None:
    # SVC(probability=True) は 1.9 で非推奨、1.11 で消える。新しく解決し直しても mii train が動くこと
    (requirement,) = (
        Requirement(text)
        for text in PYPROJECT["project"]["optional-dependencies"]["train"]
        if Requirement(text).name == "scikit-learn"
    )
    assert "1.9.1" in requirement.specifier
    assert "1.11.0" not in requirement.specifier
    assert "1.10.9" in requirement.specifier
