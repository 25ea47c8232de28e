"""影（shadow）への写し: 推論のリクエストの一部を新しいモデルの Pod へ写し、答えを自分のものと比べる。

`mii deploy --shadow` は新しいモデルを、どの Service も利用者を送らない Deployment として動かし、
ConfigMap（`model-in-image-mirror`）に写し先と割合を書く。安定版の Pod はその ConfigMap をファイルとして
読み（`MIRROR_CONFIG`、kubelet が書き換える）、1 秒ごとに読み直すので、写しの入り切りで Pod は起き直さない。

- 写すのは推論のルート（`POST /predict`・`/predict/label`・V2 の infer の JSON）で、自分が 200 で
  答えたものだけ。割合（percent）は端数を持ち越して数えるので、乱数を使わず正確にその割合になる。
- 利用者への答えが先: 表の関数が答えを作った後、写しを有界の待ち行列に入れるだけで戻る（送るのは
  イベントループの次の回から、別のタスクが）。待ち行列が埋まっていれば写しを捨てて数える。
- 送り手は少数のタスクで、それぞれ写し先への keep-alive の接続を 1 本持つ。名前は引かない（写し先は
  アドレスで書かれる）。答えを待つ期限を過ぎるか、接続が切れれば、その写しは影の誤りとして数える。
- 影の答えが 200 なら自分の答えと比べ（service.app.comparison）、一致・ラベルの変わった行・値の最大の差・
  影の遅延を `/metrics` の `mii_shadow_*` に数える（service.app.metrics の `ShadowStats`）。

写しが切られている間、表の関数は元のまま（写すかを確かめる費用も無い）。写しを入れると、写すルートの
表の関数だけを写す関数に差し替え、切ると元に戻す。
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from service import constants
from service.app.comparison import PREDICT, PREDICT_LABEL, V2, Incomparable, compare
from service.app.metrics import ShadowStats
from service.app.replies import JSON, Reply
from service.app.state import FastAnswer, FastRoute, ServiceState

logger = logging.getLogger(__name__)

# JSON の答えのヘッダの先頭（service.app.replies.reply は content-type を先頭に置く）
_JSON_CONTENT_TYPE = (b"content-type", JSON)


class MirrorConfigError(ValueError):
    """写しの設定の中身が不正（どこが何故だめかの 1 行）。"""


@dataclass(frozen=True)
class MirrorConfig:
    """写し先（IP アドレスとポート）と、写す推論のリクエストの割合（0 より大きく 100 以下の %）。"""

    host: str
    port: int
    percent: float

    @property
    def target(self) -> str:
        """`host:port`（IPv6 は角括弧で）。"""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_config(text: bytes) -> MirrorConfig | None:
    """設定の JSON（`{"target": "10.96.0.12:8000", "percent": 10}`）を読む。空・`{}`・0 % は写さない（None）。

    写し先はアドレスでなければならない（名前を引かない: Pod は DNS へ出ていく通信を許されていない）。
    """
    if not text.strip():
        return None
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise MirrorConfigError(f"not JSON: {error}") from None
    if not isinstance(document, dict):
        raise MirrorConfigError("not a JSON object")
    percent = document.get("percent", 0)
    if isinstance(percent, bool) or not isinstance(percent, int | float) or not 0 <= percent <= 100:
        raise MirrorConfigError(f"percent {percent!r} is not a number from 0 to 100")
    target = document.get("target")
    if not percent or target in (None, ""):
        return None
    if not isinstance(target, str):
        raise MirrorConfigError(f"target {target!r} is not host:port")
    host, _, port_text = target.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise MirrorConfigError(f"target {target!r} is not an IP address and a port") from None
    # 桁数を先に確かめる（4,300 桁を超える数字の int() は MirrorConfigError でない ValueError になる）
    digits = port_text.lstrip("0")
    if (
        not port_text.isascii()
        or not port_text.isdigit()
        or len(digits) > 5
        or not 1 <= int(digits or "0") <= 65535
    ):
        raise MirrorConfigError(f"target {target!r} has no port from 1 to 65535")
    return MirrorConfig(host=host, port=int(digits), percent=float(percent))


def mirrored_kind(method: str, path: str) -> str | None:
    """表の (メソッド, パス) を写すなら、その答えの種類（写さなければ None）。"""
    if method != "POST":
        return None
    if path == "/predict":
        return PREDICT
    if path == "/predict/label":
        return PREDICT_LABEL
    if path.startswith("/v2/") and path.endswith("/infer"):
        return V2
    return None


@dataclass(frozen=True)
class Copy:
    """待ち行列の写し 1 つ: パス・種類・本文・自分の答え・リクエスト ID。"""

    path: str
    kind: str
    body: bytes
    answer: bytes
    request_id: bytes


class ShadowClient:
    """写し先への keep-alive の接続 1 本で、写しを 1 つずつ送って答えを読む（HTTP/1.1、Content-Length）。"""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        """写し先と、1 つの写しの期限（接続・送信・答えの読み取りを合わせて）。"""
        self.host, self.port, self.timeout = host, port, timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def authority(self) -> str:
        """Host ヘッダの値（IPv6 は角括弧で）。"""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def send(self, copy: Copy) -> tuple[int, bytes]:
        """写しを送り、(ステータス, 本文) を返す。期限切れ・接続の失敗・壊れた答えは OSError 等で上がる。"""
        async with asyncio.timeout(self.timeout):
            try:
                return await self._exchange(copy)
            except BaseException:
                self.close()
                raise

    async def _exchange(self, copy: Copy) -> tuple[int, bytes]:
        if self._reader is not None and self._reader.at_eof():
            # 影が待ちの間に閉じた keep-alive の接続（uvicorn の keep-alive の期限など）: 開き直す
            self.close()
        if self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(
                self.host, self.port, limit=constants.MIRROR_MAX_HEAD_BYTES
            )
        assert self._reader is not None
        assert self._writer is not None
        head = (
            (
                f"POST {copy.path} HTTP/1.1\r\nhost: {self.authority}\r\n"
                f"content-type: application/json\r\ncontent-length: {len(copy.body)}\r\n"
            ).encode()
            + b"x-request-id: "
            + copy.request_id
            + b"\r\nx-mirrored: 1\r\n\r\n"
        )
        self._writer.write(head + copy.body)
        await self._writer.drain()
        status, length, closes = _read_head(await self._reader.readuntil(b"\r\n\r\n"))
        body = await self._reader.readexactly(length)
        if closes:
            self.close()
        return status, body

    def close(self) -> None:
        """接続を閉じる（次の写しで開き直す）。"""
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


def _read_head(head: bytes) -> tuple[int, int, bool]:
    """答えの頭から (ステータス, Content-Length, 閉じるか)。読めない・大きすぎれば ValueError。"""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise ValueError("not an HTTP/1.x answer")
    length, close, keep_alive = -1, False, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip()
        if name == b"content-length":
            if not value.isdigit() or len(value) > 9:
                raise ValueError("bad content-length")
            length = int(value)
        elif name == b"connection":
            tokens = {token.strip() for token in value.lower().split(b",")}
            close, keep_alive = close or b"close" in tokens, keep_alive or b"keep-alive" in tokens
    if not 0 <= length <= constants.MIRROR_MAX_ANSWER_BYTES:
        raise ValueError("answer without a content-length, or too large")
    # HTTP/1.0 の答えは、keep-alive と書かれていなければ閉じる（RFC 9112 9.3）
    closes = close or (parts[0] == b"HTTP/1.0" and not keep_alive)
    return int(parts[1]), length, closes


class Mirror:
    """写しの入り切り・割合の数え・待ち行列・送り手のタスク・設定の読み直し。"""

    def __init__(
        self,
        state: ServiceState,
        *,
        queue_size: int = constants.MIRROR_QUEUE_SIZE,
        senders: int = constants.MIRROR_SENDERS,
        timeout: float = constants.MIRROR_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """状態（表とメトリクス）と、待ち行列の大きさ・送り手の数・1 つの写しの期限を受け取る。"""
        self.state = state
        self.stats: ShadowStats = state.metrics.shadow
        self.queue_size, self.senders, self.timeout, self.clock = queue_size, senders, timeout, clock
        self.config: MirrorConfig | None = None
        self._credit = 0.0
        self._originals: dict[tuple[str, str], FastRoute] = {}
        self._queue: asyncio.Queue[Copy] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._classification = False

    # --- 入り切り ---------------------------------------------------------------------------------

    def configure(self, config: MirrorConfig | None) -> None:
        """設定を当てる（イベントループの上で）。写し先が変われば数字を 0 から数え直す。"""
        if config == self.config:
            return
        previous = self.config
        if config is not None and not any(mirrored_kind(*key) for key in self.state.fast_routes):
            # FAST_PATH=false: 写す表の関数が無い（FastAPI の経路は写さない）。写すと名乗らない
            logger.warning("mirroring needs FAST_PATH=true; not mirroring")
            config = None
        if (
            config is not None
            and previous is not None
            and (previous.host, previous.port) == (config.host, config.port)
        ):
            # 割合だけが変わった: 送り手と待ち行列（写した数に数えた写し）はそのまま
            self.config = config
            self.stats.percent = config.percent
            logger.info("mirroring %g%% of predict requests to %s", config.percent, config.target)
            return
        self.config = config
        self._stop_senders()
        if config is None:
            self._restore()
            self.stats.percent = 0.0
            logger.info("mirroring off")
            return
        if previous is None or (previous.host, previous.port) != (config.host, config.port):
            self.stats.reset()
        self.stats.percent = config.percent
        self._credit = 0.0
        self._classification = self.state.model.info.task == "classification"
        self._queue = asyncio.Queue(self.queue_size)
        self._tasks = [
            asyncio.get_running_loop().create_task(self._sender(config)) for _ in range(self.senders)
        ]
        self._install()
        logger.info("mirroring %g%% of predict requests to %s", config.percent, config.target)

    def _install(self) -> None:
        """写すルートの表の関数を、写す関数に差し替える（元は取っておく）。"""
        routes = self.state.fast_routes
        if not self._originals:
            self._originals = {key: route for key, route in routes.items() if mirrored_kind(*key) is not None}
        for (method, path), route in self._originals.items():
            kind = mirrored_kind(method, path)
            assert kind is not None
            routes[(method, path)] = dataclasses.replace(
                route, answer=self._mirroring(route.answer, path, kind)
            )

    def _restore(self) -> None:
        """表の関数を元に戻す。"""
        self.state.fast_routes.update(self._originals)

    def _mirroring(self, answer: FastAnswer, path: str, kind: str) -> FastAnswer:
        def mirrored(body: bytes, header_length: str | None, request_id: bytes) -> Reply:
            reply = answer(body, header_length, request_id)
            # 自分が 200 で答えた JSON のリクエストで、答えも JSON のものだけ（バイナリのテンソルの
            # 答えは比べない。V2 は JSON のリクエストにも binary_data_output などでバイナリで答える）
            if reply[0] == 200 and header_length is None and reply[2][0] == _JSON_CONTENT_TYPE:
                self.offer(Copy(path, kind, body, reply[1], request_id))
            return reply

        return mirrored

    def offer(self, copy: Copy) -> None:
        """割合に当たれば写しを待ち行列に入れる（埋まっていれば捨てて数える）。待たない。"""
        config, queue = self.config, self._queue
        if config is None or queue is None:
            return
        self._credit += config.percent
        if self._credit < 100.0:
            return
        self._credit -= 100.0
        try:
            queue.put_nowait(copy)
        except asyncio.QueueFull:
            self.stats.dropped += 1
            return
        self.stats.mirrored += 1

    # --- 送り手 -----------------------------------------------------------------------------------

    async def _sender(self, config: MirrorConfig) -> None:
        """待ち行列から写しを取り、写し先へ送り、答えを比べて数える（取り消されるまで）。"""
        queue = self._queue
        assert queue is not None
        client = ShadowClient(config.host, config.port, self.timeout)
        try:
            while True:
                copy = await queue.get()
                await self.exchange(client, copy)
        finally:
            client.close()

    async def exchange(self, client: ShadowClient, copy: Copy) -> None:
        """写し 1 つを送り、結果を数える。"""
        stats = self.stats
        start = self.clock()
        try:
            status, body = await client.send(copy)
        except TimeoutError:
            stats.answered("timeout", self.clock() - start)
            return
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            stats.answered("unreachable", self.clock() - start)
            return
        stats.answered(str(status), self.clock() - start)
        if status != 200:
            return
        try:
            found = compare(copy.kind, copy.answer, body, classification=self._classification)
        except Incomparable:
            stats.incomparable += 1
            return
        stats.compared(found.rows, found.label_changes, found.max_difference)

    def _stop_senders(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        self._queue = None

    # --- 設定の読み直し ----------------------------------------------------------------------------

    async def watch(self, path: Path, interval: float = constants.MIRROR_POLL_SECONDS) -> None:
        """設定のファイルを `interval` 秒ごとに読み直し、変わったら当てる（取り消されるまで）。

        ファイルが無いのは写さないこと（ConfigMap の無い Pod）。読めない・不正な中身は警告して写さない。
        """
        last: bytes | None = None
        try:
            while True:
                try:
                    text = path.read_bytes()
                except FileNotFoundError:
                    text = b""
                except OSError as error:
                    text = b""
                    if last != b"":
                        logger.warning("cannot read the mirror configuration %s: %s", path, error)
                if text != last:
                    last = text
                    try:
                        self.configure(parse_config(text))
                    except MirrorConfigError as error:
                        logger.warning("ignoring the mirror configuration %s: %s", path, error)
                        self.configure(None)
                await asyncio.sleep(interval)
        finally:
            self.close()

    def close(self) -> None:
        """送り手を止め、表を元に戻す。"""
        self._stop_senders()
        self._restore()
        self.config = None
        self.stats.percent = 0.0


def start_mirror(state: ServiceState, path: Path) -> asyncio.Task[None]:
    """設定を読み直すタスクを始める（lifespan の起動の後、イベントループの上で）。"""
    mirror = Mirror(state)
    return asyncio.get_running_loop().create_task(mirror.watch(path))
