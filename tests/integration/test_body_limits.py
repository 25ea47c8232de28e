"""本文の上限と期限を、ループバックの本物のサーバー（`mii serve`）で確かめる。

- 上限（MAX_BODY_BYTES）を超える本文を送り切ってから応答を読むクライアントが、リセットではなく
  413 を読めること（urllib は Connection: close を送るので、読み残したまま閉じるとリセットになる）。
- 本文の途中で止まったクライアントは、BODY_TIMEOUT_SECONDS の後に 408 を受け取って切られ、
  /metrics に数えられること（生のソケットで確かめる）。
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import httpx
import pytest

# 5 MB の本文（上限 1 MiB の 5 倍近く）
BIG_BODY = json.dumps({"data": [[5.1, 3.5, 1.4, 0.2]] * 230_000}).encode()
BODY_TIMEOUT = 1.0


@pytest.fixture(scope="module", params=["true", "false"], ids=["fast-path", "fastapi-routes"])
def impatient_server(request: pytest.FixtureRequest, start_live_server: Callable[..., str]) -> str:
    """本文の期限を 1 秒にしたサーバー（高速経路と FastAPI の経路の両方）。"""
    return start_live_server(env={"BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT), "FAST_PATH": request.param})


def _urllib_status(url: str) -> int | str:
    request = urllib.request.Request(
        f"{url}/predict", data=BIG_BODY, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError as error:
        return f"{type(error).__name__}: {error}"


def test_the_big_body_is_over_five_megabytes() -> None:
    assert len(BIG_BODY) > 5_000_000


def test_urllib_reads_the_413_every_time(live_server: str) -> None:
    answers = [_urllib_status(live_server) for _ in range(10)]
    assert answers == [413] * 10


def test_urllib_reads_the_413_through_either_path(impatient_server: str) -> None:
    assert [_urllib_status(impatient_server) for _ in range(3)] == [413] * 3


def test_httpx_reads_the_413_every_time(live_server: str) -> None:
    with httpx.Client(timeout=30) as client:
        answers = [client.post(f"{live_server}/predict", content=BIG_BODY).status_code for _ in range(10)]
    assert answers == [413] * 10


def test_a_chunked_body_over_the_limit_is_read_out_then_answered_413(impatient_server: str) -> None:
    def chunks() -> object:
        for start in range(0, len(BIG_BODY), 65536):
            yield BIG_BODY[start : start + 65536]

    # Content-Length の無い（chunked の）本文: 上限はミドルウェアが読みながら確かめる
    response = httpx.post(f"{impatient_server}/predict/label", content=chunks(), timeout=30)  # type: ignore[arg-type]
    assert response.status_code == 413
    assert response.json() == {"detail": "request body is larger than 1048576 bytes"}


def test_the_connection_stays_usable_after_a_drained_413(live_server: str) -> None:
    with httpx.Client(timeout=30) as client:
        assert client.post(f"{live_server}/predict", content=BIG_BODY).status_code == 413
        answer = client.post(f"{live_server}/predict", json={"data": [[5.1, 3.5, 1.4, 0.2]]})
    assert answer.status_code == 200


def _stall(url: str, sent: bytes) -> tuple[float, bytes]:
    """ヘッダと本文の一部だけを送って待つ。(応答までの秒数, サーバーが閉じるまでに届いたもの) を返す。

    サーバーが接続を閉じなければ 10 秒でソケットのタイムアウトになり、テストは失敗する。
    """
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n" + sent
        )
        started = time.monotonic()
        answer = sock.recv(65536)
        elapsed = time.monotonic() - started
        while chunk := sock.recv(65536):
            answer += chunk
    return elapsed, answer


def _metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} is not in /metrics")


def test_a_body_that_stops_halfway_gets_408_and_is_closed(impatient_server: str) -> None:
    before = _metric(impatient_server, "mii_request_body_timeouts_total")
    elapsed, answer = _stall(impatient_server, b'{"data": [[5.1, ')
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in answer.lower()
    assert b'"detail":"request body not received within 1 s"' in answer
    assert BODY_TIMEOUT <= elapsed < BODY_TIMEOUT + 3
    assert _metric(impatient_server, "mii_request_body_timeouts_total") == before + 1


def test_headers_without_any_body_also_get_408(impatient_server: str) -> None:
    elapsed, answer = _stall(impatient_server, b"")
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert elapsed < BODY_TIMEOUT + 3


def test_the_server_keeps_answering_after_a_stalled_client(impatient_server: str) -> None:
    _stall(impatient_server, b"{")
    response = httpx.post(f"{impatient_server}/predict", json={"data": [[5.1, 3.5, 1.4, 0.2]]})
    assert response.status_code == 200
