"""応答を 1 回で書くトランスポート（service/protocol.py の CoalescingTransport）: 何をいつ書くか。

本物のサーバーでの振る舞い（1 応答 1 回の書き込み、パイプライン、HEAD など）は
tests/integration/test_head_limits.py と HTTP のテストが確かめる。ここは書き込みの並びの細部だけを、
書いたものを覚えるトランスポートで。
"""

from __future__ import annotations

from service.protocol import COALESCE_LIMIT, CoalescingTransport
from tests.fakes.transport import RecordingTransport

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n"


def coalescing() -> tuple[CoalescingTransport, RecordingTransport]:
    recorder = RecordingTransport()
    return CoalescingTransport(recorder), recorder  # type: ignore[arg-type]


def test_the_head_and_the_body_go_out_in_one_write() -> None:
    transport, recorder = coalescing()
    transport.write(HEAD)
    assert recorder.writes == []
    transport.write(b"abcd")
    assert recorder.writes == [HEAD + b"abcd"]


def test_a_memoryview_body_is_written_whole_held_head_or_not() -> None:
    transport, recorder = coalescing()
    transport.write(HEAD)
    transport.write(memoryview(b"ab"))
    transport.write(memoryview(b"cd"))
    assert recorder.writes == [HEAD + b"ab", b"cd"]


def test_a_body_that_starts_like_a_status_line_is_not_held() -> None:
    transport, recorder = coalescing()
    transport.write(HEAD)
    transport.write(b"x")
    transport.write(b"HTTP/1.1 is how it starts")
    assert recorder.writes == [HEAD + b"x", b"HTTP/1.1 is how it starts"]
    # 応答を書き終えれば、次の応答の始まりはまた持つ
    transport.flush()
    transport.write(HEAD)
    assert len(recorder.writes) == 2


def test_100_continue_goes_out_at_once_and_the_answer_is_still_coalesced() -> None:
    transport, recorder = coalescing()
    transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert recorder.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    transport.write(HEAD)
    transport.write(b"abcd")
    assert recorder.writes[1:] == [HEAD + b"abcd"]


def test_a_large_body_is_written_after_the_head_not_copied_into_it() -> None:
    transport, recorder = coalescing()
    body = b"a" * (COALESCE_LIMIT + 1)
    transport.write(HEAD)
    transport.write(body)
    assert recorder.writes == [HEAD, body]


def test_a_head_without_a_body_is_written_at_the_end_of_the_response_or_on_close() -> None:
    transport, recorder = coalescing()
    transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    transport.flush()
    assert recorder.writes == [b"HTTP/1.1 204 No Content\r\n\r\n"]
    transport.write(HEAD)
    transport.close()
    assert recorder.writes[-1] == HEAD
    assert recorder.closed
    # ほかは本物のトランスポートへ
    assert transport.get_extra_info("peername") == ("127.0.0.1", 50000)  # 本物のトランスポートへ委ねる
