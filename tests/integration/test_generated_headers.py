"""ヘッダから作った要求: サービスが読むどのヘッダにどんな値が来ても、答えは 2xx か 4xx（5xx も止まりも無い）。

サービスが読むヘッダは 5 つ: V2 のバイナリテンソル拡張の `Inference-Header-Content-Length`、`Content-Length`、
`Content-Type`、`Accept`、`X-Request-ID`。hypothesis が作る値（ASCII の数字、上付きや全角の数字、符号、
空白、桁の多い数、制御文字、latin-1 の外のバイト、CR・LF など）を、生のソケットで本物のサーバー
（`mii serve`）へ送る（httpx は値を確かめてしまうので送れない）。答えは 5 秒以内に来るか、サーバーが
接続を閉じる。5xx は 1 つも無い。件数は設定で決まった数だけ（`derandomize`）。
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(
    max_examples=80,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
ONE_ROW = json.dumps({"data": [[5.1, 3.5, 1.4, 0.2]]}).encode()
V2_HEADER = json.dumps(
    {
        "inputs": [
            {
                "name": "float_input",
                "shape": [1, 4],
                "datatype": "FP32",
                "parameters": {"binary_data_size": 16},
            }
        ]
    }
).encode()
V2_BINARY = V2_HEADER + b"\x00\x00\x80\x3f" * 4

# 数の形をした値と、その近くのもの
numbers = st.one_of(
    st.integers(min_value=-5, max_value=10**6).map(lambda n: str(n).encode()),
    st.sampled_from(
        [b"", b" ", b"0", b"00", b"+5", b"-1", b"1.0", b"1e3", b"0x10", b" 5", b"5 ", b"\xb2",
         b"\xef\xbc\x95", "²".encode(), "٣".encode(), b"9" * 30, b"9" * 5000, b"1,2", b"\t7"]
    ),
)  # fmt: skip
# ヘッダの値として送るバイト列（CR・LF・NUL も含む: パーサが断る）
raw_values = st.one_of(numbers, st.binary(max_size=64), st.text(max_size=32).map(lambda t: t.encode("utf-8")))


@pytest.fixture(scope="module")
def server(start_live_server: Callable[..., str]) -> tuple[str, int]:
    url = start_live_server(env={"BODY_TIMEOUT_SECONDS": "0.5", "HEAD_TIMEOUT_SECONDS": "2"})
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def send(server: tuple[str, int], head: bytes, body: bytes) -> bytes:
    """要求を送り、答え（サーバーが閉じるか、最初の答えが読み切れるまで）を返す。"""
    with socket.create_connection(server, timeout=5) as sock:
        try:
            sock.sendall(head + b"\r\n" + body)
        except (BrokenPipeError, ConnectionResetError):
            return b""
        received = b""
        while b"\r\n\r\n" not in received:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        return received


def assert_answered_without_a_server_error(answer: bytes) -> None:
    if not answer:
        return  # サーバーが答えずに閉じた（送っている間の 4xx のあとのリセットを含む）
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    status = int(answer.split(b" ", 2)[1])
    assert status < 500, answer[:500]


def request(path: str, headers: list[tuple[bytes, bytes]], body: bytes, *, length: bool = True) -> bytes:
    lines = [b"POST " + path.encode() + b" HTTP/1.1", b"Host: x", b"Connection: close"]
    if length:
        lines.append(b"Content-Length: %d" % len(body))
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n"


@SETTINGS
@given(value=raw_values)
def test_any_inference_header_content_length(server: tuple[str, int], value: bytes) -> None:
    head = request("/v2/models/iris_svc/infer", [(b"Inference-Header-Content-Length", value)], V2_BINARY)
    assert_answered_without_a_server_error(send(server, head, V2_BINARY))


@SETTINGS
@given(value=raw_values)
def test_any_content_length(server: tuple[str, int], value: bytes) -> None:
    head = request("/predict", [(b"Content-Length", value)], ONE_ROW, length=False)
    assert_answered_without_a_server_error(send(server, head, ONE_ROW))


@SETTINGS
@given(name=st.sampled_from([b"Content-Type", b"Accept", b"X-Request-ID"]), value=raw_values)
def test_any_content_type_accept_and_request_id(server: tuple[str, int], name: bytes, value: bytes) -> None:
    for path, body in (("/predict", ONE_ROW), ("/v2/models/iris_svc/infer", V2_BINARY)):
        extra = [(b"Inference-Header-Content-Length", str(len(V2_HEADER)).encode())] if "v2" in path else []
        head = request(path, [(name, value), *extra], body)
        assert_answered_without_a_server_error(send(server, head, body))


@pytest.mark.parametrize(
    "value",
    ["\xb2".encode("latin-1"), "²".encode(), "０".encode(), b"9" * 5000, b"0", b"-1", b" 16"],
    ids=["latin1-superscript", "utf8-superscript", "fullwidth", "5000-digits", "zero", "negative", "space"],
)
def test_the_issue_s_header_values_are_400(server: tuple[str, int], value: bytes) -> None:
    """Issue の `Inference-Header-Content-Length: ²` は 500 だった。ASCII の数字だけを長さとして読む。"""
    head = request("/v2/models/iris_svc/infer", [(b"Inference-Header-Content-Length", value)], b"{}")
    answer = send(server, head, b"{}")
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:300]
    assert b"Inference-Header-Content-Length" in answer
