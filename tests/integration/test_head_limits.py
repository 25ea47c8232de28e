"""リクエストの頭（リクエスト行とヘッダ）の上限と、1 回の書き込み（service/protocol.py）を本物のサーバーで。

`mii serve` を 127.0.0.1 で起動し、生のソケットで送る（httpx はヘッダの値を確かめてしまうので、攻撃の形を
送れない）。大きすぎる頭は 431・414 で閉じ、止まった頭は 408 で閉じ、何も送らない接続は黙って閉じる。
終わらないヘッダを送り続ける接続が 10 本あっても、サーバーのメモリは増えず、/health は答え続ける
（数はテストが出す。時間の目標はベンチマークではなくここで緩く確かめるだけ）。
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service import constants

# 期限の既定は 10 秒。テストでは 1 秒にして待ち時間を短くする
HEAD_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def server(start_live_server: Callable[..., str]) -> str:
    return start_live_server(env={"HEAD_TIMEOUT_SECONDS": str(HEAD_TIMEOUT)})


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def exchange(url: str, data: bytes, *, timeout: float = 10.0, shut: bool = False) -> bytes:
    """生のバイト列を送り、サーバーが閉じるまで（または timeout まで）読んだものを返す。"""
    with socket.create_connection(address(url), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        if shut:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            received += chunk
        return received


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response.split(b" ", 2)[1])


def body_of(response: bytes) -> bytes:
    return response.split(b"\r\n\r\n", 1)[1]


GET = b"GET /health HTTP/1.1\r\nHost: x\r\n"


def test_a_normal_request_still_answers(server: str) -> None:
    response = exchange(server, GET + b"Connection: close\r\n\r\n")
    assert status_of(response) == 200
    assert body_of(response) == b'{"health":"ok"}'


def test_headers_just_under_the_limits_are_accepted(server: str) -> None:
    line = b"X-Long: " + b"a" * (constants.DEFAULT_MAX_HEADER_FIELD_BYTES - len("x-long") - 100)
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(constants.DEFAULT_MAX_HEADER_COUNT - 3))
    assert status_of(exchange(server, GET + line + b"\r\nConnection: close\r\n\r\n")) == 200
    assert status_of(exchange(server, GET + many + b"Connection: close\r\n\r\n")) == 200


@pytest.mark.parametrize(
    ("request_bytes", "status", "detail"),
    [
        (
            GET + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n",
            431,
            f"a request header exceeds {constants.DEFAULT_MAX_HEADER_FIELD_BYTES} bytes",
        ),
        (
            GET + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n",
            431,
            f"more than {constants.DEFAULT_MAX_HEADER_COUNT} request headers",
        ),
        (
            GET + b"".join(b"X-%d: %s\r\n" % (i, b"b" * 3000) for i in range(8)) + b"\r\n",
            431,
            f"request headers exceed {constants.DEFAULT_MAX_HEAD_BYTES} bytes",
        ),
        (
            b"GET /" + b"p" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            414,
            f"request line exceeds {constants.DEFAULT_MAX_REQUEST_LINE_BYTES} bytes",
        ),
        (b"NOT HTTP\r\n\r\n", 400, "invalid HTTP request"),
    ],
    ids=["one-header", "header-count", "whole-head", "request-line", "garbage"],
)
def test_an_oversized_or_broken_head_is_refused_and_closed(
    server: str, request_bytes: bytes, status: int, detail: str
) -> None:
    response = exchange(server, request_bytes)
    assert status_of(response) == status
    assert b"connection: close\r\n" in response
    assert body_of(response) == b'{"detail":"' + detail.encode() + b'"}'


def test_a_header_that_never_ends_is_cut_at_the_limit(server: str) -> None:
    """値が届き続けるヘッダ（1 回では送り切れない大きさ）も、上限を超えたところで 431 で閉じる。

    送れたバイト数には、サーバーが読んだ分のほかにカーネルの送受信のバッファ（ループバックで合わせて
    最大 10 MB ほど）が入る。サーバーが読み続ければ 64 MB すべてを送れるので、16 MB より手前で切られれば、
    サーバーは上限で読むのをやめている（読んだ分のメモリは test_ten_endless_headers_... が測る）。
    """
    with socket.create_connection(address(server), timeout=10) as sock:
        sock.sendall(GET + b"X-Big: ")
        sent = 0
        try:
            while sent < 64 * 1024 * 1024:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            response = sock.recv(65536)
        except ConnectionResetError:
            response = b""
    assert sent < 16 * 1024 * 1024, f"the server read {sent} bytes of one header"
    if response:  # 送り続けている間に閉じられると、応答はリセットで消えることがある
        assert status_of(response) == 431


def test_a_stalled_head_gets_408_and_an_idle_connection_is_closed(server: str) -> None:
    started = time.monotonic()
    stalled = exchange(server, GET + b"X-Partial: ", timeout=HEAD_TIMEOUT + 5)
    assert status_of(stalled) == 408
    assert body_of(stalled) == b'{"detail":"request headers not received within 1 s"}'
    idle = exchange(server, b"", timeout=HEAD_TIMEOUT + 5)
    assert idle == b""  # 何も言わない接続には何も言わずに閉じる
    assert time.monotonic() - started < 2 * (HEAD_TIMEOUT + 2)


def test_keep_alive_and_pipelining_still_work(server: str) -> None:
    pipelined = GET + b"\r\n" + b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    response = exchange(server, pipelined)
    assert response.count(b"HTTP/1.1 200 OK") == 2


def test_a_slow_but_steady_head_within_the_time_limit_is_answered(server: str) -> None:
    with socket.create_connection(address(server), timeout=10) as sock:
        for part in (b"GET /health ", b"HTTP/1.1\r\n", b"Host: x\r\n", b"Connection: close\r\n", b"\r\n"):
            sock.sendall(part)
            time.sleep(HEAD_TIMEOUT / 10)
        assert status_of(sock.recv(65536)) == 200


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def server_pid(url: str) -> int:
    """その URL で待ち受けるプロセス（`mii serve` は uvicorn を同じプロセスで動かす）。"""
    port = address(url)[1]
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
            inode = fields[9]
    assert inode is not None
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            if fd.readlink() == Path(f"socket:[{inode}]"):
                return int(fd.parts[2])
        except OSError:
            continue
    raise AssertionError(f"no process listens on port {port}")


def test_ten_endless_headers_do_not_grow_memory_and_health_still_answers(
    start_live_server: Callable[..., str],
) -> None:
    """Issue の攻撃: 10 本の接続が `X-Big: ` の後に 10 MB の `a` を送り、終わらせない。"""
    url = start_live_server(env={"HEAD_TIMEOUT_SECONDS": "30", "POD_NAME": "attacked"})
    pid = server_pid(url)
    exchange(url, GET + b"Connection: close\r\n\r\n")
    before = rss_kib(pid)
    results: list[Any] = []

    def attack() -> None:
        try:
            with socket.create_connection(address(url), timeout=30) as sock:
                sock.sendall(GET + b"X-Big: ")
                for _ in range(10 * 256):
                    sock.sendall(b"a" * 4096)
        except OSError as error:
            results.append(type(error).__name__)

    threads = [threading.Thread(target=attack, daemon=True) for _ in range(10)]
    for thread in threads:
        thread.start()
    latencies = []
    peak = before
    for _ in range(20):
        started = time.perf_counter()
        response = exchange(url, GET + b"Connection: close\r\n\r\n", timeout=5)
        latencies.append((time.perf_counter() - started) * 1000)
        assert status_of(response) == 200
        peak = max(peak, rss_kib(pid))
        time.sleep(0.05)
    for thread in threads:
        thread.join(timeout=30)
    after = rss_kib(pid)
    print(
        f"\nheader attack: RSS {before / 1024:.1f} MiB before, peak {peak / 1024:.1f} MiB, "
        f"{after / 1024:.1f} MiB after; /health p50 {sorted(latencies)[10]:.1f} ms, "
        f"max {max(latencies):.1f} ms; attackers: {sorted(results)}"
    )
    assert peak - before < 8 * 1024, f"RSS grew by {(peak - before) / 1024:.1f} MiB"
    assert len(results) == 10  # どの接続もサーバーに閉じられた


# --- keep-alive: 応答の後に黙っている接続は期限で閉じ、使い続ける接続は閉じない ---

KEEP_ALIVE = 1.0


@pytest.fixture(scope="module")
def short_keep_alive(start_live_server: Callable[..., str]) -> str:
    return start_live_server(env={"KEEP_ALIVE_SECONDS": str(KEEP_ALIVE), "HEAD_TIMEOUT_SECONDS": "30"})


def read_response(sock: socket.socket) -> bytes:
    """1 つの応答（Content-Length まで）を読む。"""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, received
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = int(next(line for line in lines if line.lower().startswith(b"content-length:"))[15:])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return head


def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_time(short_keep_alive: str) -> None:
    with socket.create_connection(address(short_keep_alive), timeout=KEEP_ALIVE + 5) as sock:
        sock.sendall(GET + b"\r\n")
        assert status_of(read_response(sock)) == 200
        answered = time.monotonic()
        assert sock.recv(65536) == b""  # 何も言わずに閉じる
        waited = time.monotonic() - answered
    # 見回りは 1 秒ごと（頭の期限の 1/4 と 1 秒の短いほう）なので、期限から見回り 1 回分までに閉じる
    assert KEEP_ALIVE - 0.1 <= waited <= KEEP_ALIVE + 1.5, waited


def test_a_connection_in_use_outlives_the_keep_alive_time(short_keep_alive: str) -> None:
    with socket.create_connection(address(short_keep_alive), timeout=5) as sock:
        started = time.monotonic()
        while time.monotonic() - started < 3 * KEEP_ALIVE:
            sock.sendall(GET + b"\r\n")
            assert status_of(read_response(sock)) == 200
            time.sleep(KEEP_ALIVE / 3)


# --- 正しい要求は断らない: 頭に続く本文やパイプラインの次の要求は、頭の大きさに数えない ---


def batch(rows: int) -> bytes:
    """`rows` 行の /predict の本文。"""
    return ('{"data": [' + ", ".join(["[5.1, 3.5, 1.4, 0.2]"] * rows) + "]}").encode()


BIG_BODY = batch(800)  # 上限の 16 KiB より大きい


def pipeline(sock: socket.socket, request: bytes, count: int, *, wait: float = 0.0) -> bytes:
    """続けた要求を別のスレッドで送り、`wait` 秒読まずに待ってから、`count` 個の答えか切断まで読む。"""
    sender = threading.Thread(target=sock.sendall, args=(request,), daemon=True)
    sender.start()
    time.sleep(wait)
    received = b""
    while len(statuses(received)) < count:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        received += chunk
    sender.join(timeout=10)
    return received


def post(body: bytes, *, pad: int = 0) -> bytes:
    extra = b"X-Pad: " + b"a" * pad + b"\r\n" if pad else b""
    return (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


def statuses(response: bytes) -> list[int]:
    """続けて届いた応答のステータス（本文は JSON の数なので、ステータス行の形は本文に現れない）。"""
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", response)]


def test_a_head_split_from_its_large_body_is_answered(server: str) -> None:
    request = post(BIG_BODY) + b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with socket.create_connection(address(server), timeout=10) as sock:
        sock.sendall(request[:20])
        time.sleep(0.2)
        sock.sendall(request[20:])
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert statuses(received) == [200, 200]


def test_pipelined_requests_with_large_heads_and_bodies_are_all_answered(server: str) -> None:
    count = 40
    with socket.create_connection(address(server), timeout=10) as sock:
        received = pipeline(sock, post(batch(300), pad=6000) * count, count)
    assert statuses(received) == [200] * count


def test_a_slow_reader_of_pipelined_answers_gets_every_answer(server: str) -> None:
    """答えを読まないクライアントの前で、サーバーは読むのを止める: その間は頭の期限を数えない。"""
    count = 40
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        sock.connect(address(server))
        sock.settimeout(10)
        # 行の上限（1,000 行）のバッチ: 答えは 1 つ約 60 KB で、読まないクライアントの受信バッファを埋める
        received = pipeline(sock, post(batch(1000), pad=6000) * count, count, wait=3 * HEAD_TIMEOUT)
    assert statuses(received) == [200] * count


@pytest.mark.parametrize(
    ("request_", "later"),
    [
        (GET + b"\r\n", b"\r\n"),  # リクエストの間の改行
        (b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n", b"hello"),  # 答えた後に届いた本文
    ],
    ids=["blank-line", "body-after-the-answer"],
)
def test_bytes_that_start_no_request_do_not_keep_an_idle_connection_open(
    short_keep_alive: str, request_: bytes, later: bytes
) -> None:
    with socket.create_connection(address(short_keep_alive), timeout=KEEP_ALIVE + 5) as sock:
        sock.sendall(request_)
        assert status_of(read_response(sock)) == 200
        answered = time.monotonic()
        time.sleep(KEEP_ALIVE / 2)
        sock.sendall(later)
        assert sock.recv(65536) == b""
        waited = time.monotonic() - answered
    # 待ち始めたのは答えた時: 後のバイトで延びない
    assert waited <= KEEP_ALIVE + 1.5, waited


def test_a_head_refused_behind_a_pipelined_request_is_answered_after_it(server: str) -> None:
    """誤りが前の要求の答えに見えないように: 前の要求に 200 を返してから、431 で閉じる。"""
    oversized = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"
    response = exchange(server, post(BIG_BODY) + oversized)
    assert statuses(response) == [200, 431]
