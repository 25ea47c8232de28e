"""クラスタ内の Job が動かすスクリプト（標準ライブラリだけ）を、ループバックの本物のサーバーで動かす。"""

from __future__ import annotations

import json
import subprocess
import sys

from mii_cli.probe import in_cluster as lbcheck
from mii_cli.probe.in_cluster import LbCheckResult


def _run(*args: str) -> LbCheckResult:
    output = subprocess.run(
        [sys.executable, "-c", lbcheck.SCRIPT, *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return lbcheck.parse_result(output)


def test_the_script_counts_the_pods_that_answer(live_server: str) -> None:
    result = _run(f"{live_server}/predict/test", "5")
    assert result.served_by == {"live-server": 5}
    assert result.errors == 0


def test_the_script_posts_a_batch_as_load(live_server: str) -> None:
    body = json.dumps({"data": [[5.1, 3.5, 1.4, 0.2]] * 50})
    result = _run(f"{live_server}/predict", "4", "0", body)
    assert result.requests == 4
    assert result.errors == 0
    assert result.served_by == {"live-server": 4}


def test_the_script_reports_refused_requests_as_errors(live_server: str) -> None:
    # 本文の無い POST は 422: urllib は HTTPError を投げ、スクリプトはそれを失敗に数える
    result = _run(f"{live_server}/predict", "2", "0", "{}")
    assert result.errors == 2
    assert "HTTPError" in str(result.first_errors)
