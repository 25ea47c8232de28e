"""HTTP のエラー: 例外・例外からステータスへの表・エラーの本文（1 か所で決める）。

どの例外を何番のステータスにするかは `_STATUS` の表だけが決め、本文の形はプロトコルで決まる:
簡易 API（仕様書の API）は `{"detail": ...}`、Open Inference Protocol（V2、`/v2` の下）は
`{"error": "..."}`。高速経路・FastAPI のルート・ミドルウェア（413・408・500）のどれもが
`error_reply()` を通すので、同じ誤りには同じバイト列が返る。

エラーの本文を書くこと自体は失敗しない: クライアントの値を返す（422 の `input`）のは JSON に書けて
`ECHO_LIMIT` 以下のときだけで、それ以外は型と大きさだけを言う文字列に換える。それでも書けない値が
残っていれば（64 ビットを超える整数、深すぎる入れ子など）、書けない部分を同じ説明に換えて書き直す。

応答そのもの（`Reply` の型と `reply()`）は成功の応答と同じ `service.app.replies` のもので組み立てる。
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

from service.app.replies import JSON, Headers, Reply, reply
from service.ml.prediction import InvalidInputError

Protocol = Literal["simple", "v2"]

_CLOSE = (b"connection", b"close")
INTERNAL_ERROR = "Internal server error"
# 422 の detail にクライアントの値をそのまま返す上限（JSON にしたバイト数）と、loc の文字列の上限
ECHO_LIMIT = 256
LOC_LIMIT = 64
# 書き直すときにたどる入れ子の深さ（orjson の上限 254 より十分浅く）
_MAX_DEPTH = 32


class ServiceError(Exception):
    """HTTP のエラーになる例外の基底。`close` なら応答の後で接続を閉じる。"""

    close = False

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class NotFound(ServiceError):
    """無いもの（回帰器のラベル、V2 の知らないモデル名・版）。"""


class SchemaError(ServiceError):
    """本文がスキーマに合わない（FastAPI と同じ形の 422 の detail を持つ）。"""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("request body does not match the schema")


class BodyTooLarge(ServiceError):
    """本文が上限を超えた。読み切れなかったときは接続を閉じる。"""

    def __init__(self, limit: int, *, drained: bool = True) -> None:
        super().__init__(f"request body is larger than {limit} bytes")
        self.close = not drained


class BodyTimeout(ServiceError):
    """本文が期限までに届かなかった。残りが後から届いても読まないので接続を閉じる。"""

    close = True

    def __init__(self, seconds: float) -> None:
        super().__init__(f"request body not received within {seconds:g} s")


# 例外 -> ステータス（ここだけで決める）
_STATUS: dict[type[Exception], int] = {
    InvalidInputError: 400,
    NotFound: 404,
    BodyTimeout: 408,
    BodyTooLarge: 413,
    SchemaError: 422,
}
MAPPED_ERRORS = tuple(_STATUS)


def protocol_of(path: str) -> Protocol:
    """パスからエラーの本文の形を決める（`/v2` の下は V2）。"""
    return "v2" if path == "/v2" or path.startswith("/v2/") else "simple"


def status_of(error: Exception) -> int:
    """例外のステータス（表に無いものは 500）。"""
    for kind in type(error).__mro__:
        status = _STATUS.get(kind)
        if status is not None:
            return status
    return 500


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def describe(value: Any) -> str:
    """値の型と大きさだけを言う（中身は出さない）。どんな値でも失敗しない。"""
    if value is None:
        return "<null>"
    if isinstance(value, bool):
        return "<boolean>"
    if isinstance(value, int):
        # str() は 4300 桁を超える整数で失敗するので、大きさはビット数で言う
        return f"<integer of {_count(value.bit_length(), 'bit')}>"
    if isinstance(value, float):
        return "<number>"
    if isinstance(value, str):
        return f"<string of {_count(len(value), 'character')}>"
    if isinstance(value, (list, tuple)):
        return f"<array of {_count(len(value), 'item')}>"
    if isinstance(value, dict):
        return f"<object with {_count(len(value), 'key')}>"
    return f"<{type(value).__name__}>"


def echo(value: Any) -> Any:
    """クライアントが送った値を detail に返せる形にする（JSON に書けて小さければそのまま）。"""
    try:
        if len(orjson.dumps(value)) <= ECHO_LIMIT:
            return value
    except (orjson.JSONEncodeError, TypeError):
        pass
    return describe(value)


def echo_loc(loc: Any) -> list[str | int]:
    """エラーの場所（本文のキーと添字）。長いキーは切り詰める。"""
    bounded: list[str | int] = []
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            bounded.append(part)
        else:
            text = str(part)
            bounded.append(text if len(text) <= LOC_LIMIT else f"{text[:LOC_LIMIT]}...")
    return bounded


def _writable(value: Any, depth: int = 0) -> Any:
    """JSON に書けない部分を describe() の説明に換えた写し。"""
    if isinstance(value, dict):
        if depth >= _MAX_DEPTH:
            return describe(value)
        return {_writable_key(key): _writable(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        if depth >= _MAX_DEPTH:
            return describe(value)
        return [_writable(item, depth + 1) for item in value]
    try:
        orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        return describe(value)
    return value


def _writable_key(key: Any) -> str:
    text = key if isinstance(key, str) else describe(key)
    try:
        orjson.dumps(text)
    except (orjson.JSONEncodeError, TypeError):
        return describe(text)
    return text


def render(payload: Any) -> bytes:
    """エラーの本文を JSON にする。書けない値があっても失敗せず、その部分を説明に換える。"""
    try:
        return orjson.dumps(payload)
    except (orjson.JSONEncodeError, TypeError):
        return orjson.dumps(_writable(payload))


def error_reply(error: Exception, protocol: Protocol) -> Reply:
    """例外をそのプロトコルの形のエラー応答にする（表に無い例外は 500、中身は出さない）。"""
    status = status_of(error)
    if status == 500:
        message: Any = INTERNAL_ERROR
    elif isinstance(error, SchemaError):
        message = error.errors if protocol == "simple" else error.message
    else:
        message = str(error)
    close = [_CLOSE] if isinstance(error, ServiceError) and error.close else None
    return message_reply(status, message, protocol, close)


def message_reply(status: int, message: Any, protocol: Protocol, extra: Headers | None = None) -> Reply:
    """エラーの本文の形（簡易 API は `{"detail": ...}`、V2 は `{"error": ...}`）はここだけで決める。"""
    payload = {"detail": message} if protocol == "simple" else {"error": message}
    return reply(status, render(payload), JSON, extra)
