"""表のルートに ASGI を通さずに答える経路: uvicorn の経路と同じ答えか、いつ使うか。

2 つの確かめ方:
- 本物のサーバー（`mii serve`、127.0.0.1）に生のソケットで同じリクエストを 2 通り送る。普通に送れば直接答え、
  `Expect: 100-continue` を付ければ uvicorn の経路（100 を書くのは uvicorn）で答える。どちらも同じバイト列か
  （Date を除く）。
- 本物のアプリ（実モデル）と本物のプロトコルのクラスを、書いたものを覚えるトランスポートにつなぎ、
  どのリクエストが直接答えられ（uvicorn のタスクを作らない、1 回の書き込み）、どれが uvicorn の経路に
  移るかを見る（本文がかたまりをまたぐ、上限を超える、書き込みが止まっている、HTTP/1.0、前の応答の途中）。
  直接の答えはループの回りの終わりにまとめて書くので、その順（全部作ってから全部書く、同じ接続の答えの順、
  閉じた接続・誤り・終了）も見る。
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from uvicorn.server import ServerState

from service.app.app import create_app
from service.configurations import load_settings
from service.protocol import BoundedHttpToolsProtocol
from service.server import uvicorn_config
from tests.fakes.transport import RecordingTransport

ROW = b'{"data":[[5.1,3.5,1.4,0.2]]}'
V2 = orjson.dumps(
    {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}
)


def post(path: str, body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
        % (path.encode(), len(body), extra)
        + body
    )


def get(path: str, extra: bytes = b"") -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path.encode(), extra)


# --- 本物のサーバー ------------------------------------------------------------------------------


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


@pytest.fixture(scope="module")
def server(start_live_server: Callable[..., str]) -> str:
    return start_live_server()


def one_answer(url: str, request: bytes) -> bytes:
    """1 つのリクエストを送り、1 つの答え（100 Continue があればそれも）を content-length まで読む。"""
    with socket.create_connection(address(url), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while True:
            head, sep, rest = received.partition(b"\r\n\r\n")
            if sep and not head.startswith(b"HTTP/1.1 100 "):
                length = int(re.search(rb"content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
                if len(rest) >= length:
                    return received
            elif sep:
                # 100 Continue の後に本当の答えが来る
                after = rest.partition(b"\r\n\r\n")
                if after[1]:
                    length = int(re.search(rb"content-length: (\d+)", after[0]).group(1))  # type: ignore[union-attr]
                    if len(after[2]) >= length:
                        return received
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk


def head_answer(url: str, request: bytes) -> bytes:
    """HEAD の答え（本文が無いので、空行まで読んで閉じる）。"""
    with socket.create_connection(address(url), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
        sock.settimeout(0.3)
        try:
            received += sock.recv(65536)  # 本文が続けば、ここで読める
        except TimeoutError:
            pass
        return received


def without_date(response: bytes) -> bytes:
    return re.sub(rb"date: [^\r]*\r\n", b"", response)


CASES = {
    "health": get("/health"),
    "ready": get("/health/ready"),
    "metadata": get("/metadata"),
    "label": get("/label"),
    "sample": get("/predict/test"),
    "sample-label": get("/predict/test/label"),
    "predict": post("/predict", ROW),
    "predict-label": post("/predict/label", ROW),
    "predict-400": post("/predict", b'{"data":[[1,2]]}'),
    "predict-422": post("/predict", b'{"rows":1}'),
    "predict-bad-json": post("/predict", b"{"),
    "v2-infer": post("/v2/models/iris_svc/infer", V2),
    "v2-400": post("/v2/models/iris_svc/infer", b'{"inputs":[]}'),
    "v2-metadata": get("/v2/models/iris_svc"),
    "head": b"HEAD /metadata HTTP/1.1\r\nHost: x\r\n\r\n",
    # 先頭の 0 は HTTP として正しい（5,000 桁: Python の int の桁の上限を超える）
    "content-length-zeros": b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    + b"Content-Length: "
    + b"0" * 5000
    + b"%d\r\n\r\n" % len(ROW)
    + ROW,
}


@pytest.mark.parametrize("request_bytes", CASES.values(), ids=CASES.keys())
def test_the_direct_answer_is_the_bytes_uvicorn_would_write(server: str, request_bytes: bytes) -> None:
    request_id = b"X-Request-ID: same-id\r\n"
    head, body = request_bytes.split(b"\r\n\r\n", 1)
    read = head_answer if request_bytes.startswith(b"HEAD") else one_answer
    direct = read(server, head + b"\r\n" + request_id + b"\r\n" + body)
    through_uvicorn = read(server, head + b"\r\n" + request_id + b"Expect: 100-continue\r\n\r\n" + body)
    if request_bytes.startswith(b"POST"):
        # uvicorn の経路を通ったことの証: 本文を読む前に 100 を書くのは uvicorn の RequestResponseCycle だけ
        assert through_uvicorn.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        through_uvicorn = through_uvicorn.removeprefix(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert not direct.startswith(b"HTTP/1.1 100 ")
    assert without_date(direct) == without_date(through_uvicorn)
    assert b"\r\ndate: " in direct
    assert b"\r\nx-request-id: same-id\r\n" in direct


def test_pipelined_direct_and_uvicorn_answers_keep_their_order(server: str) -> None:
    # /docs は FastAPI の経路、ほかは直接: 答えは送った順
    requests = [
        post("/predict", ROW),
        get("/docs"),
        get("/health"),
        post("/predict/label", ROW),
        get("/nope"),
    ]
    with socket.create_connection(address(server), timeout=10) as sock:
        sock.sendall(b"".join(requests) + get("/health", b"Connection: close\r\n"))
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    statuses = [int(s) for s in re.findall(rb"HTTP/1\.1 (\d{3}) ", received)]
    assert statuses == [200, 200, 200, 200, 404, 200]
    assert received.index(b"prediction") < received.index(b"<html") < received.index(b'"health"')


# --- 本物のアプリとプロトコル、書いたものを覚えるトランスポート ---------------------------------


@pytest.fixture
def connect(model_path: Path, label_path: Path, clean_env: pytest.MonkeyPatch) -> Callable[[], Any]:
    """本物のアプリ（読み込み済み）と、サービスと同じ設定のプロトコルで、新しい接続を作る関数。"""
    settings = load_settings(model_filepath=model_path, label_filepath=label_path, max_body_bytes=4096)
    app = create_app(settings)
    app.start()
    config = uvicorn_config(app.entry, settings, responder=app.middleware)
    config.load()
    state = ServerState()

    def make() -> tuple[BoundedHttpToolsProtocol, RecordingTransport]:
        protocol = config.http_protocol_class(
            config=config, server_state=state, app_state={}, _loop=asyncio.get_running_loop()
        )
        wire = RecordingTransport()
        protocol.connection_made(wire)  # type: ignore[arg-type]
        return protocol, wire  # type: ignore[return-value]

    return make


async def settle(protocol: BoundedHttpToolsProtocol) -> None:
    """uvicorn の経路のタスクが終わるまで回す。"""
    for _ in range(200):
        if not protocol.tasks:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the uvicorn task did not finish")


def statuses(wire: RecordingTransport) -> list[int]:
    return [int(s) for s in re.findall(rb"HTTP/1\.1 (\d{3}) ", b"".join(wire.writes))]


def test_a_whole_request_is_answered_at_the_end_of_the_loop_pass_in_one_write(
    connect: Callable[[], Any],
) -> None:
    async def scenario() -> None:
        protocol, wire = connect()
        protocol.data_received(post("/predict", ROW))
        # uvicorn のタスクは作らず、ループのこの回りの終わりに 1 回で書く
        assert not protocol.tasks
        assert wire.writes == []
        assert protocol.busy()  # 答えを待つ間は、頭の期限も keep-alive の期限も数えない
        await asyncio.sleep(0)
        assert len(wire.writes) == 1
        assert statuses(wire) == [200]
        assert wire.writes[0].endswith(b"\r\n\r\n" + wire.writes[0].split(b"\r\n\r\n", 1)[1])
        assert b'"prediction"' in wire.writes[0]
        # 次のリクエストを待つ（keep-alive の期限は見回りが見る）
        assert protocol.idle_since is not None
        assert protocol.server_state.total_requests == 1
        protocol.data_received(get("/health") + get("/label"))
        # パイプライン: 2 つ目の始まりで 1 つ目にその場で答え、2 つ目は回りの終わりに
        assert statuses(wire) == [200, 200]
        await asyncio.sleep(0)
        assert statuses(wire) == [200, 200, 200]
        assert b'"0"' in wire.writes[-1]  # /label の答えが最後
        assert len(wire.writes) == 3
        protocol.connection_lost(None)

    asyncio.run(scenario())


def test_a_body_split_across_reads_moves_to_uvicorn_and_is_answered(connect: Callable[[], Any]) -> None:
    async def scenario() -> None:
        protocol, wire = connect()
        request = post("/predict", ROW)
        protocol.data_received(request[:-10])
        assert len(protocol.tasks) == 1  # 本文の期限を守る uvicorn の経路で続きを待つ
        await asyncio.sleep(0.01)
        assert wire.writes == []
        protocol.data_received(request[-10:])
        await settle(protocol)
        assert statuses(wire) == [200]
        assert b'"prediction"' in b"".join(wire.writes)
        protocol.connection_lost(None)

    asyncio.run(scenario())


def test_a_chunked_body_over_the_limit_moves_to_uvicorn_and_gets_413(connect: Callable[[], Any]) -> None:
    async def scenario() -> None:
        protocol, wire = connect()
        big = b'{"data":[[' + b"1," * 3000 + b"1]]}"
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big)
        protocol.data_received(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunked
        )
        assert len(protocol.tasks) == 1
        await settle(protocol)
        assert statuses(wire) == [413]
        protocol.connection_lost(None)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("request_bytes", "why"),
    [
        (b"GET /health HTTP/1.0\r\n\r\n", "HTTP/1.0: uvicorn closes after the answer"),
        (get("/health", b"Connection: close\r\n"), "the client asked to close"),
        (post("/predict", ROW, b"Expect: 100-continue\r\n"), "uvicorn writes 100 Continue"),
        (get("/health?verbose=1"), "a query string is read by parse_url: still direct"),
        (get("/docs"), "not a table route"),
        (b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n", "HEAD of a table route: still direct"),
    ],
)
def test_which_requests_go_through_uvicorn(
    connect: Callable[[], Any], request_bytes: bytes, why: str
) -> None:
    async def scenario() -> None:
        protocol, wire = connect()
        protocol.data_received(request_bytes)
        direct = not protocol.tasks
        await asyncio.sleep(0)
        assert direct == why.endswith("still direct"), why
        await settle(protocol)
        assert [status for status in statuses(wire) if status != 100] == [200], why
        if request_bytes.startswith(b"HEAD"):
            assert b"".join(wire.writes).endswith(b"\r\n\r\n"), "a HEAD answer has no body"
        protocol.connection_lost(None)

    asyncio.run(scenario())


def test_a_request_behind_an_unfinished_answer_or_a_full_write_buffer_waits_its_turn(
    connect: Callable[[], Any],
) -> None:
    async def scenario() -> None:
        protocol, wire = connect()
        # 前の答え（uvicorn の経路）がまだ: 次は直接答えず、uvicorn の列に並ぶ（答えの順を守る）
        protocol.data_received(get("/docs") + get("/health"))
        assert len(protocol.tasks) == 1
        assert len(protocol.pipeline) == 1
        await settle(protocol)
        assert statuses(wire) == [200, 200]
        assert b'"health"' in wire.writes[-1]
        # 書き込みが止まっている（クライアントが読まない）: uvicorn の経路で書けるまで待つ
        protocol.pause_writing()
        protocol.data_received(get("/health"))
        assert len(protocol.tasks) == 1
        await asyncio.sleep(0.02)
        assert statuses(wire) == [200, 200]
        protocol.resume_writing()
        await settle(protocol)
        assert statuses(wire) == [200, 200, 200]
        protocol.connection_lost(None)

    asyncio.run(scenario())


def test_an_unexpected_error_in_a_direct_answer_is_a_500_in_the_routes_shape(
    connect: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        protocol, wire = connect()
        key = ("POST", "/v2/models/iris_svc/infer")
        routes = protocol.responder.fast_routes  # type: ignore[union-attr]

        def broken(*_: Any) -> Any:
            raise RuntimeError("secret detail")

        route = dataclasses.replace(routes[key], answer=broken)
        monkeypatch.setitem(routes, key, route)
        protocol.data_received(post("/v2/models/iris_svc/infer", V2) + get("/health"))
        assert not protocol.tasks
        await asyncio.sleep(0)
        assert statuses(wire) == [500, 200]
        answer = wire.writes[0]
        assert answer.endswith(b'{"error":"Internal server error"}')
        assert b"secret" not in answer
        assert route.stats.statuses.get(500) == 1
        protocol.connection_lost(None)

    asyncio.run(scenario())


def test_trailers_are_not_request_headers(connect: Callable[[], Any]) -> None:
    async def scenario() -> None:
        protocol, wire = connect()
        chunks = b"".join(b"1\r\n%s\r\n" % ROW[i : i + 1] for i in range(len(ROW)))  # 1 バイトずつ
        protocol.data_received(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\nX-Request-ID: from-trailer\r\n\r\n"
        )
        assert not protocol.tasks  # 小さなかたまりの本文も、1 回で届けば直接
        await asyncio.sleep(0)
        assert statuses(wire) == [200]
        assert b'"prediction"' in wire.writes[0]
        assert b"from-trailer" not in wire.writes[0]
        protocol.connection_lost(None)

    asyncio.run(scenario())


def test_an_answer_that_says_close_closes_and_an_error_outside_the_route_is_a_500(
    connect: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        protocol, wire = connect()
        key = ("GET", "/health")
        routes = protocol.responder.fast_routes  # type: ignore[union-attr]

        def closing(*_: Any) -> Any:
            return 200, b"{}", [(b"content-length", b"2"), (b"connection", b"close")]

        monkeypatch.setitem(routes, key, dataclasses.replace(routes[key], answer=closing))
        protocol.data_received(get("/health") + get("/health"))
        await asyncio.sleep(0)
        assert statuses(wire) == [200]  # 閉じると告げた後の要求には答えない
        assert wire.closed
        protocol.connection_lost(None)

        protocol, wire = connect()

        def broken(*_: Any) -> Any:
            raise RuntimeError("secret")

        monkeypatch.setattr(protocol.responder, "respond", broken)
        protocol.data_received(get("/label"))
        await asyncio.sleep(0)
        assert statuses(wire) == [500]
        assert b"secret" not in wire.writes[0]
        assert wire.closed
        protocol.connection_lost(None)

    asyncio.run(scenario())


# --- ループの 1 回りの答え（AnswerRound） ----------------------------------------------------------


def test_a_loop_pass_makes_every_answer_before_writing_any(
    connect: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        connections = [connect() for _ in range(4)]
        responder = connections[0][0].responder
        real = responder.respond
        written_when_made: list[int] = []

        def counting(*args: Any) -> Any:
            written_when_made.append(sum(len(wire.writes) for _, wire in connections))
            return real(*args)

        monkeypatch.setattr(responder, "respond", counting)
        for protocol, _ in connections:
            protocol.data_received(post("/predict", ROW))
        assert written_when_made == []  # 読んだその場では作らない
        await asyncio.sleep(0)
        assert written_when_made == [0, 0, 0, 0]  # 4 つとも、どれかを書く前に作った
        for protocol, wire in connections:
            assert statuses(wire) == [200]
            assert b'"prediction"' in wire.writes[0]
            assert not protocol.busy()
            assert protocol.idle_since is not None
            protocol.connection_lost(None)

    asyncio.run(scenario())


def test_a_connection_lost_before_its_turn_is_skipped_and_the_others_are_answered(
    connect: Callable[[], Any],
) -> None:
    async def scenario() -> None:
        (gone, gone_wire), (stays, wire) = connect(), connect()
        gone.data_received(post("/predict", ROW))
        stays.data_received(post("/predict", ROW))
        gone.connection_lost(None)
        await asyncio.sleep(0)
        assert gone_wire.writes == []
        assert statuses(wire) == [200]
        assert stays.server_state.total_requests == 1
        # 閉じかけ（close の後、connection_lost の前）の接続にも書かない
        stays.data_received(post("/predict", ROW))
        wire.close()
        await asyncio.sleep(0)
        assert statuses(wire) == [200]
        stays.connection_lost(None)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("following", "expected"),
    [
        (get("/docs"), [200, 200]),  # uvicorn の経路の次のリクエスト
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", [200, 431]),
        (b"\x00\x01 not http\r\n\r\n", [200, 400]),
    ],
    ids=["uvicorn-path", "header-too-large", "garbage"],
)
def test_a_waiting_answer_is_written_before_what_follows_on_its_connection(
    connect: Callable[[], Any], following: bytes, expected: list[int]
) -> None:
    async def scenario() -> None:
        protocol, wire = connect()
        protocol.data_received(post("/predict", ROW) + following)
        await settle(protocol)
        await asyncio.sleep(0)
        assert statuses(wire) == expected
        assert b'"prediction"' in wire.writes[0]
        protocol.connection_lost(None)

    asyncio.run(scenario())


def test_a_half_close_in_the_same_pass_still_gets_the_waiting_answer(connect: Callable[[], Any]) -> None:
    async def scenario() -> None:
        protocol, wire = connect()
        # uvloop は同じ回りのうちに要求と EOF を渡し、eof_received が偽ならトランスポートを閉じる
        protocol.data_received(post("/predict", ROW))
        if not protocol.eof_received():
            wire.close()
        await asyncio.sleep(0)
        assert statuses(wire) == [200]
        assert b'"prediction"' in wire.writes[0]
        protocol.connection_lost(None)

    asyncio.run(scenario())


def test_shutdown_answers_a_waiting_request_before_closing(connect: Callable[[], Any]) -> None:
    async def scenario() -> None:
        protocol, wire = connect()
        protocol.data_received(post("/predict", ROW))
        protocol.shutdown()
        assert statuses(wire) == [200]
        assert wire.closed
        await asyncio.sleep(0)  # 回りの終わりには、もう答えるものが無い
        assert statuses(wire) == [200]
        protocol.connection_lost(None)

    asyncio.run(scenario())


def test_an_error_outside_one_route_does_not_stop_the_others_in_the_pass(
    connect: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        (first, first_wire), (broken, broken_wire), (last, last_wire) = connect(), connect(), connect()
        real = broken.responder.respond

        def failing_label(route: Any, method: str, path: str, *rest: Any) -> Any:
            if path == "/label":
                raise RuntimeError("secret")
            return real(route, method, path, *rest)

        monkeypatch.setattr(broken.responder, "respond", failing_label)
        first.data_received(get("/health"))
        broken.data_received(get("/label"))
        last.data_received(post("/predict", ROW))
        await asyncio.sleep(0)
        assert statuses(first_wire) == [200]
        assert statuses(broken_wire) == [500]
        assert broken_wire.closed
        assert b"secret" not in broken_wire.writes[0]
        assert statuses(last_wire) == [200]
        for protocol in (first, broken, last):
            protocol.connection_lost(None)

    asyncio.run(scenario())


def test_a_status_with_no_status_line_or_a_failing_write_costs_only_its_own_connection(
    connect: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        (odd, odd_wire), (failing, failing_wire), (fine, fine_wire) = connect(), connect(), connect()
        routes = odd.responder.fast_routes  # type: ignore[union-attr]
        key = ("GET", "/label")
        # 書き方の分からないステータス（ステータス行が無い）は、組み立ての外の誤りとして 500
        monkeypatch.setitem(routes, key, dataclasses.replace(routes[key], answer=lambda *_: (600, b"{}", [])))

        def refuse(_data: Any) -> None:
            raise OSError("the socket is gone")

        monkeypatch.setattr(failing_wire, "write", refuse)
        odd.data_received(get("/label"))
        failing.data_received(post("/predict", ROW))
        fine.data_received(post("/predict", ROW))
        await asyncio.sleep(0)
        assert statuses(odd_wire) == [500]
        assert odd_wire.closed
        assert failing_wire.closed  # 書けなかった接続は閉じる
        assert statuses(fine_wire) == [200]
        for protocol in (odd, failing, fine):
            protocol.connection_lost(None)

    asyncio.run(scenario())
