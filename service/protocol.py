"""HTTP/1.1 の接続の守りと書き込み: uvicorn の httptools のプロトコルを 3 か所で広げる。

1. **リクエストの頭（リクエスト行とヘッダ）に上限をつける。** httptools（llhttp）は頭の大きさにも、
   届くまでの時間にも上限を持たず、途中までのヘッダの値を Python の bytes に足し続ける。そこで:
   - 大きさ: リクエスト行が `max_request_line_bytes` を超えれば 414、ヘッダ 1 つ（名前と値）が
     `max_header_field_bytes` を、ヘッダの数が `max_header_count` を、頭全体が `max_head_bytes` を超えれば
     431 を返して閉じる。終わらないヘッダ（値が届き続ける）にも効くように、頭の途中で受け取ったバイト数でも
     数える（頭に続く本文やパイプラインの次の要求は数えない）。1 つの接続が頭のために持つメモリは、
     上限と 2 回の読み込み（uvloop は 1 回 256 KiB）の和で止まる。
   - 時間: 接続してから、または次のリクエストの最初のバイトから、頭を読み終えるまでを `head_timeout`
     秒に限る。何も送らない接続は黙って閉じ、途中まで送った接続には 408 を返して閉じる。前のリクエストに
     答えている間（読むのを止めていることもある）は数えない。リクエストの合間の待ちは uvicorn の
     keep-alive の期限（`timeout_keep_alive`）で閉じ、次のリクエストを始めないバイトでは延びない。
   - 答えている最中に次の要求の頭を断るときは、前の要求に答え終えてから誤りを書いて閉じる。
   どちらの期限もリクエストごとのタイマーではなく、プロセスに 1 つの見回り（`HeadPatrol`）が守る（uvicorn は
   応答ごとに keep-alive のタイマーを作って消すが、uvloop のタイマーは 1 本の設定と取り消しに約 5 µs かかる。
   app/body.py と同じ考え）。
2. **短い応答を 1 回の書き込みで送る。** uvicorn は応答のヘッダと本文を別々に `transport.write` する
   （システムコールが 2 回）。ここではヘッダを持っておき、続く本文と 1 回で書く（`CoalescingTransport`）。
   順序も中身も変わらない。

3. **本文までそろった表のルートのリクエストに、ASGI を通さずに答える。** `responder`（サービスの
   ミドルウェア）が (メソッド, パス) を高速経路の表に持ち、HTTP/1.1 の keep-alive で、100-continue を待たず、
   前の応答を書き終えていて、書き込みが止まっていなければ、リクエストを読み終えた後で `respond()` を
   呼び（いつかは 4.）、応答を 1 回で書く。uvicorn がリクエストごとに作る `RequestResponseCycle`・タスク・
   イベントと ASGI のメッセージを省く（サービスの CPU の 2 割ほど）。このかたまりで本文が読み終わらない
   とき、本文が上限を超えたときは、そこまでの本文を持って uvicorn の経路に移す（本文の期限と 413 は
   そちらで守る）。
   応答のヘッダの並べ方は uvicorn と同じ（`default_headers` の後にアプリのヘッダ）で、同じバイト列になる
   ことをテストで確かめる。
4. **ループの 1 回りで読み終えた直接答えるリクエストに、まとめて答える（`AnswerRound`）。** 読み終えた
   その場では答えず、回りの終わり（`call_soon`）に、まず全部の答えを作り、それから全部を書く。1 件ずつ
   「読む・推論する・書く」を繰り返すと、カーネルのソケットの処理と Python・ONNX Runtime の処理が互いを
   CPU のキャッシュから追い出し、1 件ごとの CPU 時間が倍ほどになる（docs/performance.md）。推論は
   1 リクエストずつ（行をまとめない）なので、答えは 1 件ずつ答えたときとビット単位で同じ。答えを待つ接続で
   次のリクエストが始まる（パイプライン）、頭を断る、クライアントが送る側を閉じる（EOF）、サーバーが終わる
   ときは、待っている答えをその場で先に書く（答えの順を守り、答えを落とさない）。接続が切れていれば捨てる。
   混んでいなければ 1 回りに 1 件で、増えるのは `call_soon` 1 回だけ。

どれも uvicorn の `HttpToolsProtocol` のサブクラスで、uvicorn の公開の設定（`Config(http=...)`）に
渡す。表に無いリクエストの応答の作り方・パイプライン・100-continue・シャットダウンは uvicorn のまま。
"""

from __future__ import annotations

import asyncio
import http
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

Headers = list[tuple[bytes, bytes]]

# 応答のヘッダのうち、書いた後に接続を閉じる印
_CLOSE = (b"connection", b"close")

# 1 回の書き込みにまとめる上限（これより大きな本文は、まとめずにそのまま書く: 写す費用の方が大きい）
COALESCE_LIMIT = 64 * 1024


@dataclass(frozen=True)
class HeadLimits:
    """リクエストの頭の上限（service/configurations.py の設定から作る）。"""

    max_request_line_bytes: int
    max_header_field_bytes: int
    max_header_count: int
    max_head_bytes: int
    head_timeout: float


class Responder(Protocol):
    """ASGI を通さずに答えられるリクエストに答えるもの（サービスのミドルウェア）。"""

    max_body_bytes: int

    def route(self, method: str, path: str) -> Any | None:
        """(メソッド, パス) が直接答えられるルートなら、そのルート（`respond` に渡す）。"""

    def respond(
        self, route: Any, method: str, path: str, headers: Headers, body: bytes
    ) -> tuple[int, bytes, Headers]:
        """本文までそろったリクエストの応答: (ステータス, 本文, ヘッダ（content-length を含む）)。"""


class _Closing(Exception):
    """閉じかけの接続で次のリクエストが始まった（パーサのコールバックから投げ、読み捨てる）。"""


class HeadRejected(Exception):
    """頭が上限を超えた（パーサのコールバックから投げ、data_received で応答にする）。"""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str) -> bytes:
    """頭を読み切れなかったときの応答（JSON の `{"detail": ...}`、接続を閉じる）。

    ルートが決まる前なので、簡易 API のエラーと同じ形にする。メッセージは ASCII の固定の文だけ
    （クライアントの値を含めない）。
    """
    body = b'{"detail":"' + message.encode("ascii") + b'"}'
    phrase = http.HTTPStatus(status).phrase.encode("ascii")
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, phrase),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class CoalescingTransport:
    """応答のヘッダ（ステータス行からの `write`）を持ち、続く本文の `write` と 1 回で書くトランスポート。

    uvicorn の 1 つの応答は、ヘッダの `write` と本文の `write` が続く。応答の始まり（前の応答を書き終えた後の
    最初の `write`）がステータス行なら持ち、次の `write` でまとめて書く（タイマーも次のループの回りも
    要らない）。本文の無い応答（HEAD・204）や、本文の前に止まった応答のヘッダは、応答の終わり（`flush`）か
    閉じる前に書く。`100 Continue` はすぐ書く（クライアントはそれを待ってから本文を送る）。本文の途中の
    `write` は、たまたま `HTTP/1.1 ` で始まっても持たない。ほかは本物のトランスポートへ委ねる。
    """

    __slots__ = ("_head", "_starting", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None
        # 次の write が応答の始まりか（応答を書き終えるたびに戻す）
        self._starting = True

    def write(self, data: bytes) -> None:
        """応答のヘッダなら持ち、それ以外は持っていたヘッダと 1 回で書く。"""
        head = self._head
        if head is not None:
            self._head = None
            if len(data) <= COALESCE_LIMIT:
                self._transport.write(head + data)
            else:
                self._transport.write(head)
                self._transport.write(data)
            return
        if self._starting and type(data) is bytes and data.startswith(b"HTTP/1.1 "):
            if data.startswith(b"HTTP/1.1 100 "):
                self._transport.write(data)  # 本当の応答はこの後に始まる
            else:
                self._head = data
                self._starting = False
            return
        self._starting = False
        self._transport.write(data)

    def write_whole(self, data: bytes) -> None:
        """ヘッダと本文のそろった 1 つの応答を書く（持たない。次の write も応答の始まり）。"""
        self._transport.write(data)

    def flush(self) -> None:
        """持っているヘッダを書く（応答の終わり: 次の write は次の応答の始まり）。"""
        head = self._head
        self._starting = True
        if head is not None:
            self._head = None
            if not self._transport.is_closing():
                self._transport.write(head)

    def close(self) -> None:
        """持っているヘッダを書いてから閉じる。"""
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        """本物のトランスポートが閉じかけか（応答ごとに呼ばれるので `__getattr__` を通さない）。"""
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HeadPatrol:
    """接続を見回り、頭の期限や keep-alive の期限を過ぎたものを閉じる（サーバーに 1 つ）。

    接続は頭を読み始めた時刻（`head_since`）と、応答を終えて次のリクエストを待ち始めた時刻
    （`idle_since`）を持つ。見回りは `interval` 秒ごとに、頭の期限を過ぎた接続の `head_timed_out()` を、
    keep-alive の期限（uvicorn の `timeout_keep_alive`）を過ぎた接続を閉じる処理を呼ぶ。uvicorn は応答ごとに
    keep-alive のタイマーを作って次のリクエストで消すが、その費用をリクエストごとに払わないよう、ここで
    まとめて見る。見る接続が無くなれば止まり、次の接続で再び始まる。
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.interval = min(1.0, timeout / 4)
        self.watched: set[BoundedHttpToolsProtocol] = set()
        self._handle: asyncio.TimerHandle | None = None

    def watch(self, protocol: BoundedHttpToolsProtocol) -> None:
        """接続を見回りに入れる（見回りが止まっていれば始める）。"""
        self.watched.add(protocol)
        if self._handle is None:
            self._handle = self.loop.call_later(self.interval, self._round)

    def forget(self, protocol: BoundedHttpToolsProtocol) -> None:
        """閉じた接続を外す。"""
        self.watched.discard(protocol)

    def _round(self) -> None:
        now = self.loop.time()
        for protocol in list(self.watched):
            if protocol.busy():
                # 応答を書いている間（読むのを止めていることもある）は、クライアントを待っていない
                continue
            since = protocol.head_since
            if since is not None and now - since >= self.timeout:
                protocol.head_timed_out()
                continue
            idle = protocol.idle_since
            if idle is not None and now - idle >= protocol.timeout_keep_alive:
                protocol.idle_since = None
                protocol.timeout_keep_alive_handler()
        self._handle = self.loop.call_later(self.interval, self._round) if self.watched else None


class AnswerRound:
    """ループの 1 回りで読み終えた、直接答えるリクエストにまとめて答える（サーバーに 1 つ）。

    接続は読み終えたリクエストを持って `add` で並ぶ。回りの終わり（最初の `add` の `call_soon`）に `run` が、
    並んだ順にすべての答えを作ってから、すべてを書く。作るあいだは Python と ONNX Runtime の処理だけが続き、
    書くあいだはカーネルの送信だけが続くので、どちらの作業の置き場も CPU のキャッシュに残る。
    並んだ後に答えを書き終えた接続（パイプラインで次が始まった、閉じた）は飛ばす。
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiting: list[BoundedHttpToolsProtocol] = []

    def add(self, protocol: BoundedHttpToolsProtocol) -> None:
        """答えを待つ接続を並べる（回りの最初の 1 つで、回りの終わりの `run` を頼む）。"""
        if not self.waiting:
            self.loop.call_soon(self.run)
        self.waiting.append(protocol)

    def run(self) -> None:
        """並んだ接続の答えを全部作り、それから全部書く。"""
        waiting = self.waiting
        self.waiting = []
        answers = [protocol.render_queued() for protocol in waiting]
        for protocol, answer in zip(waiting, answers, strict=True):
            if answer is None:
                continue
            try:
                protocol.write_answer(*answer)
            except Exception:  # noqa: BLE001  書けない接続は閉じる（ほかの接続の答えは続けて書く）
                protocol.transport.close()


# サーバーに 1 つずつ置くもの（`BoundedHttpToolsProtocol._per_server`）
_PerServer = TypeVar("_PerServer", HeadPatrol, AnswerRound)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """頭の大きさと時間に上限をつけ、短い応答を 1 回で書く httptools のプロトコル。

    上限（`limits`）はクラスの属性: uvicorn はプロトコルのクラスを受け取り、決まった引数で作るので、
    `protocol_class` が上限ごとのサブクラスを作る。
    """

    limits: ClassVar[HeadLimits]
    # ASGI を通さずに答えるもの（無ければすべて uvicorn の経路）
    responder: ClassVar[Responder | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """uvicorn の引数をそのまま受け取る。"""
        super().__init__(*args, **kwargs)
        # 頭を読み始めた時刻（読んでいなければ None。接続してから最初のバイトまでも数える）、頭の途中か、
        # そこまでに受け取ったバイト数（かたまりごと）と、コールバックで数えた長さ・ヘッダの数
        self.head_since: float | None = None
        # 応答を終えて次のリクエストを待ち始めた時刻（keep-alive の期限。待っていなければ None）
        self.idle_since: float | None = None
        self._in_head = False
        self._head_received = 0
        self._head_bytes = 0
        self._header_count = 0
        # 始まったリクエストの数（1 つのかたまりの中で次のリクエストが始まったかを見る）と、
        # 読みかけのリクエストがあるか（始まって、まだ終わっていない）
        self._messages = 0
        self._message_open = False
        self._rejected = False
        # 応答の途中で頭を断ったとき、前のリクエストに答え終えてから書く誤り（状態と文）
        self._pending: tuple[int, str] | None = None
        # 直接答えるリクエスト（頭を読み終えて本文を待つ間）: ルート・メソッド・パスと、届いた本文
        self._direct: tuple[Any, str, str] | None = None
        self._direct_body: bytes | bytearray = b""
        # 読み終えて、回りの終わりに答える直接のリクエスト: (ルート, メソッド, パス, ヘッダ, 本文)
        self._queued: tuple[Any, str, str, Headers, bytes] | None = None
        # uvicorn の既定のヘッダ（Date）と、それを書いたバイト列
        self._defaults: tuple[Headers | None, bytes] = (None, b"")
        self._patrol = self._per_server(
            "mii_head_patrol", lambda: HeadPatrol(self.loop, self.limits.head_timeout)
        )
        self._round = self._per_server("mii_answer_round", lambda: AnswerRound(self.loop))

    def _per_server(self, name: str, make: Callable[[], _PerServer]) -> _PerServer:
        """サーバー（uvicorn の ServerState）とそのループに 1 つのもの（見回り、回り）。無ければ作る。"""
        found: _PerServer | None = getattr(self.server_state, name, None)
        if found is None or found.loop is not self.loop:
            found = make()
            setattr(self.server_state, name, found)
        return found

    # --- 接続 --------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """接続を受け、何も届かなくても `head_timeout` で閉じるよう見回りに入れる。"""
        super().connection_made(transport)
        # 流れの制御（FlowControl）は本物のトランスポートを持ったまま、書き込みだけをまとめる
        self.transport = CoalescingTransport(transport)  # type: ignore[assignment]
        self.head_since = self.loop.time()
        self._patrol.watch(self)

    def connection_lost(self, exc: Exception | None) -> None:
        """見回りから外し、答えを待つリクエストを捨てる（書く先が無い）。"""
        self._patrol.forget(self)
        self.head_since = None
        self.idle_since = None
        self._queued = None
        super().connection_lost(exc)

    def eof_received(self) -> None:
        """クライアントが送る側を閉じた（half-close）: 答えを待つリクエストがあれば、先に答える。

        uvloop は同じ回りのうちに本文と EOF を続けて渡すことがあり、EOF の後にはトランスポートを閉じるので、
        回りの終わりまで待つと答えが書けない。
        """
        self._answer_queued()
        super().eof_received()

    def shutdown(self) -> None:
        """サーバーの終了: 答えを待つリクエストがあれば、答えてから uvicorn の終わり方へ。"""
        self._answer_queued()
        super().shutdown()

    # --- 受け取り ----------------------------------------------------------------------------

    def busy(self) -> bool:
        """応答を書いている最中か、答えを待つリクエストが並んでいるか（そのあいだはクライアントを待っていない）。"""
        cycle = self.cycle
        return (
            self._queued is not None
            or bool(self.pipeline)
            or (cycle is not None and not cycle.response_complete)
        )

    def data_received(self, data: bytes) -> None:
        """パーサに渡し、パーサの拒否を応答にし、頭の途中で受け取ったバイト数を数える。

        頭がこのかたまりの前から続いていて、このかたまりでも終わらなければ、かたまり全体が頭のバイト。
        何も読みかけていないところでこのかたまりの中で頭が始まって終わらなければ、これもかたまり全体。
        前のリクエストの本文などの後で頭が始まって終わらなければ、数えられるのはコールバックで読み終えた
        部分（リクエスト行と済んだヘッダ）だけで、読みかけの 1 つのヘッダは次のかたまりから数える。
        本文や次のリクエストを頭に数えないので、正しい要求を断らない。1 つの接続が頭のために持つメモリは、
        上限と 2 回の読み込み（uvloop は 1 回 256 KiB）の和で止まる。
        """
        if self._rejected:
            return
        idle = self.idle_since
        self.idle_since = None
        continuing = self._in_head
        opened = self._message_open
        messages = self._messages
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as error:
            if isinstance(error.__context__, _Closing):
                # 閉じると告げた応答の後に続く要求: uvicorn と同じく答えない
                self._rejected = True
                return
            if isinstance(error.__context__, HeadRejected):
                self._reject(error.__context__.status, error.__context__.message)
            else:
                self._reject(400, "invalid HTTP request")
            return
        except httptools.HttpParserError:
            self._reject(400, "invalid HTTP request")
            return
        except httptools.HttpParserUpgrade:
            # WebSocket は使わない: Upgrade は無視して普通のリクエストとして答える（RFC 9110 7.8）
            pass
        if self._direct is not None:
            # 本文がこのかたまりで終わらなかった: 本文の期限を守る uvicorn の経路で続きを待つ
            self._to_cycle()
        if self._in_head:
            began = self._messages - messages
            if continuing and not began:
                self._head_received += len(data)
            elif not opened and began == 1:
                # 何も読みかけていないところで始まった頭: かたまり全体が頭（前の空行の分だけ多く数える）
                self._head_received = len(data)
            else:
                self._head_received = self._head_bytes
            if self._head_received > self.limits.max_head_bytes:
                self._reject(431, f"request headers exceed {self.limits.max_head_bytes} bytes")
        elif messages == self._messages and not self.busy():
            # 次のリクエストを始めないバイト（リクエストの間の改行、答えた後に届いた本文）では、
            # 待ち始めた時刻を変えない（少しずつ送って接続を開けておけない）
            self.idle_since = idle if idle is not None else self.loop.time()

    def _reject(self, status: int, message: str) -> None:
        """頭の誤りに応答して閉じる（この接続では以後何も読まない）。

        前のリクエストにまだ答えている（パイプライン）なら、それに答え終えてから書く（誤りが前の
        リクエストの答えに見えないように）。
        """
        self._answer_queued()  # 前のリクエストの答えが先
        self._rejected = True
        self.head_since = None
        self._in_head = False
        self._direct = None
        if self.busy():
            self._pending = (status, message)
            self.flow.pause_reading()
            return
        self.transport.write(error_response(status, message))
        self.transport.close()

    def head_timed_out(self) -> None:
        """頭が期限までに届かなかった: 途中まで届いていれば 408、何も無ければ黙って閉じる。"""
        if self._rejected or self.transport.is_closing():
            self.head_since = None
            return
        if self._in_head:
            self._reject(408, f"request headers not received within {self.limits.head_timeout:g} s")
            return
        self._rejected = True
        self.head_since = None
        self.transport.close()

    # --- パーサのコールバック -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        """次のリクエストの最初のバイト: 頭の時間と大きさを数え始める。

        uvicorn の on_message_begin の前半（URL・ヘッダ・100-continue を空にする）だけを行い、ASGI の
        scope は uvicorn の経路に渡すときに作る（`_to_uvicorn`。直接答えるリクエストには要らない）。
        """
        if self._queued is not None:
            self._answer_queued()  # 同じ接続の前のリクエストに先に答える（答えの順）
        if self.transport.is_closing():
            raise _Closing
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.idle_since = None
        self._messages += 1
        self._message_open = True
        # 前のリクエストに答えている間は時間を数えない（読むのを止めていることもある）。答え終えてから数える
        self.head_since = None if self.busy() else self.loop.time()
        self._in_head = True
        self._head_received = 0
        self._head_bytes = 0
        self._header_count = 0

    def on_url(self, url: bytes) -> None:
        """リクエスト行の長さを確かめる（414）。uvicorn の on_url と同じく URL をつなぐ。"""
        self.url += url
        self._head_bytes += len(url)
        if len(self.url) > self.limits.max_request_line_bytes:
            raise HeadRejected(414, f"request line exceeds {self.limits.max_request_line_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        """ヘッダ 1 つの長さ、数、頭全体の長さを確かめる（431）。

        受け取り方は uvicorn の on_header と同じ（名前を小文字にして並べ、100-continue を覚える）。
        リクエストごとに何度も呼ばれるので、その上に関数の呼び出しを重ねない。
        """
        if not self._in_head:
            # chunked の本文の後のトレーラー: ヘッダとして扱わない（届き方で答えが変わらないように）
            return
        size = len(name) + len(value)
        self._header_count += 1
        self._head_bytes += size + 4
        limits = self.limits
        if size > limits.max_header_field_bytes:
            raise HeadRejected(431, f"a request header exceeds {limits.max_header_field_bytes} bytes")
        if self._header_count > limits.max_header_count:
            raise HeadRejected(431, f"more than {limits.max_header_count} request headers")
        if self._head_bytes > limits.max_head_bytes:
            raise HeadRejected(431, f"request headers exceed {limits.max_head_bytes} bytes")
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        """頭を読み終えた: 見張りを止め、直接答えられるなら本文を待つ。そうでなければ uvicorn の処理へ。"""
        self.head_since = None
        self._in_head = False
        responder = self.responder
        if responder is not None and self._can_answer_directly():
            url = self.url
            # 問い合わせ・断片・エスケープの無い origin-form ならそのままパス（uvicorn は parse_url で読む）
            plain = url[:1] == b"/" and b"?" not in url and b"#" not in url
            raw = url if plain else httptools.parse_url(url).path
            if b"%" not in raw:
                method = self.parser.get_method().decode("ascii")
                path = raw.decode("ascii")
                route = responder.route(method, path)
                if route is not None:
                    self._direct = (route, method, path)
                    self._direct_body = b""
                    return
        self._to_uvicorn()

    def _to_uvicorn(self) -> None:
        """uvicorn の経路へ: uvicorn の on_message_begin で scope を作り、読んだ頭を戻して続きを任せる。"""
        url, headers, expect = self.url, self.headers, self.expect_100_continue
        super().on_message_begin()
        self.url = url
        self.headers = headers
        self.scope["headers"] = headers
        self.expect_100_continue = expect
        super().on_headers_complete()

    def _can_answer_directly(self) -> bool:
        """このリクエストに ASGI を通さずに答えてよいか（頭で分かること）。

        keep-alive の HTTP/1.1 で（閉じる応答は uvicorn が作る）、100-continue を待たず（本文の前に
        100 を書くのは uvicorn）、前の応答を書き終えていて（順序）、書き込みが止まっていない（流れの制御は
        uvicorn の経路で待つ）こと。
        """
        cycle = self.cycle
        parser = self.parser
        return (
            (cycle is None or cycle.response_complete)
            and not self.pipeline
            and not self.expect_100_continue
            and not self.flow.write_paused
            and not self.root_path
            and parser.should_keep_alive()
            and not parser.should_upgrade()
            and parser.get_http_version() == "1.1"
        )

    def on_body(self, body: bytes) -> None:
        """本文の一部: 直接答えるリクエストなら貯める（上限を超えたら uvicorn の経路へ。413 はそちらで）。"""
        if self._direct is None:
            super().on_body(body)
            return
        buffered = self._direct_body
        if not buffered:
            self._direct_body = body  # ふつうは本文が 1 回で届く: 写さない
        else:
            # chunked の小さなかたまりが続いても、足すたびに全体を写さない
            if type(buffered) is bytes:
                buffered = self._direct_body = bytearray(buffered)
            buffered += body
        if len(self._direct_body) > self.responder.max_body_bytes:  # type: ignore[union-attr]
            self._to_cycle()

    def on_message_complete(self) -> None:
        """リクエストを読み終えた（本文まで）。直接答えるリクエストなら、この回りの終わりに答える。"""
        self._message_open = False
        if self._direct is not None:
            route, method, path = self._direct
            self._queued = (route, method, path, self.headers, bytes(self._direct_body))
            self._direct = None
            self._direct_body = b""
            self._round.add(self)
            return
        super().on_message_complete()

    def _answer_queued(self) -> None:
        """答えを待つリクエストがあれば、その場で答える（次のリクエスト・誤り・終了の前に）。"""
        answer = self.render_queued()
        if answer is not None:
            self.write_answer(*answer)

    def render_queued(self) -> tuple[bytes, bool] | None:
        """答えを待つリクエストの応答を、uvicorn と同じ形（`default_headers`、アプリのヘッダ、空行、本文）の
        バイト列にする: (バイト列, 書いた後に閉じるか)。待つものが無い・接続が閉じかけなら None。
        """
        queued = self._queued
        if queued is None:
            return None
        self._queued = None
        if self.transport.is_closing():
            return None
        route, method, path, headers, body = queued
        try:
            status, payload, out = self.responder.respond(route, method, path, headers, body)  # type: ignore[union-attr]
            defaults = self.server_state.default_headers
            if defaults is not self._defaults[0]:
                # uvicorn は Date を毎秒新しいリストにする: そのときだけ書き直す
                self._defaults = (defaults, b"".join(b"%s: %s\r\n" % header for header in defaults))
            content = [STATUS_LINE[status], self._defaults[1]]
            for name, value in out:
                content.extend((name, b": ", value, b"\r\n"))
            # HEAD には同じヘッダで本文を付けない（uvicorn と同じ。RFC 9110 9.3.2）
            content.extend((b"\r\n", payload if method != "HEAD" else b""))
            return b"".join(content), _CLOSE in out
        except Exception:  # noqa: BLE001  答えの組み立ての外の想定外の誤り: 500 で閉じる（回りのほかの答えは止めない）
            return error_response(500, "internal server error"), True

    def write_answer(self, data: bytes, close: bool) -> None:
        """作った応答を 1 回で書き、書き終えたときの uvicorn の仕事（数える、閉じるか次を待つ）をする。"""
        if self.transport.is_closing():
            return
        self.transport.write_whole(data)  # type: ignore[attr-defined]
        self.server_state.total_requests += 1
        if close:
            self.transport.close()  # uvicorn と同じく、閉じると告げた応答の後は閉じる
            return
        self.idle_since = self.loop.time()

    def _to_cycle(self) -> None:
        """直接答えるはずのリクエストを、そこまでの本文を持って uvicorn の経路に移す。"""
        body = self._direct_body
        self._direct = None
        self._direct_body = b""
        self._to_uvicorn()
        if body:
            super().on_body(bytes(body))

    def on_response_complete(self) -> None:
        """応答を書き終えた: 本文の無い応答のヘッダも書き、次のリクエストへ。

        uvicorn の on_response_complete と同じ順（数える、閉じかけなら終わり、読み取りを再開、
        パイプラインの次を始める）で、keep-alive のタイマーの代わりに待ち始めた時刻を残す（見回りが閉じる）。
        並んだリクエストに答え終えてから、保留していた頭の誤りを書いて閉じる。
        """
        self.transport.flush()  # type: ignore[attr-defined]
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        if self.pipeline:
            if not self._rejected:
                self.flow.resume_reading()
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        if self._pending is not None:
            status, message = self._pending
            self._pending = None
            self.transport.write(error_response(status, message))
            self.transport.close()
            return
        self.flow.resume_reading()
        now = self.loop.time()
        if self._in_head:
            self.head_since = now  # 答えている間に届き始めた頭: ここから数える
        else:
            self.idle_since = now


def protocol_class(limits: HeadLimits, responder: Responder | None = None) -> type[BoundedHttpToolsProtocol]:
    """uvicorn の `Config(http=...)` に渡すプロトコルのクラス（上限と、直接答えるものを持つサブクラス）。"""
    return type(
        "BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), {"limits": limits, "responder": responder}
    )
