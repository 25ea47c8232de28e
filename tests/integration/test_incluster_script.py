"""クラスタ内の Job が動かすスクリプト（標準ライブラリだけ）を、ループバックの本物のサーバーで動かす:
mii の確認のスクリプト（check_requests.py）と、e2e の負荷の Job のスクリプト（tests/support.py）。"""

from __future__ import annotations

import json
import subprocess
import sys

from mii_cli.probe import in_cluster
from mii_cli.probe.in_cluster import LbCheckResult
from service.constants import SERVED_BY_HEADER
from tests.support import LOAD_SCRIPT


def _run(script: str, *args: str) -> LbCheckResult:
    output = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return in_cluster.parse_result(output)


def test_the_script_counts_the_pods_that_answer(live_server: str) -> None:
    result = _run(in_cluster.SCRIPT, f"{live_server}/predict/test", "5", SERVED_BY_HEADER)
    assert result.served_by == {"live-server": 5}
    assert result.errors == 0


def test_the_script_reports_refused_requests_as_errors(live_server: str) -> None:
    # /predict は GET を受けない（405）: urllib は HTTPError を投げ、スクリプトはそれを失敗に数える
    result = _run(in_cluster.SCRIPT, f"{live_server}/predict", "2", SERVED_BY_HEADER)
    assert result.errors == 2
    assert "HTTPError" in str(result.first_errors)


def test_the_load_script_posts_a_batch_for_the_time_given(live_server: str) -> None:
    body = json.dumps({"data": [[5.1, 3.5, 1.4, 0.2]] * 50})
    result = _run(LOAD_SCRIPT, f"{live_server}/predict", "0.3", SERVED_BY_HEADER, body)
    assert result.requests > 1
    assert result.errors == 0
    assert result.served_by == {"live-server": result.requests}


def test_the_load_script_counts_refused_requests(live_server: str) -> None:
    # 本文の無い POST は 422
    result = _run(LOAD_SCRIPT, f"{live_server}/predict", "0", SERVED_BY_HEADER, "{}")
    assert result.errors == result.requests == 1
