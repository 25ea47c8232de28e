"""HTTP のエラーと応答の形（1 か所で決める）。

どの例外を何番のステータスにするかは `_STATUS` の表だけが決め、本文の形はプロトコルで決まる:
簡易 API（仕様書の API）は `{"detail": ...}`、Open Inference Protocol（V2、`/v2` の下）は
`{"error": "..."}`。高速経路・FastAPI のルート・ミドルウェア（413・408・500）のどれもが
`error_reply()` を通すので、同じ誤りには同じバイト列が返る。
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

from service.ml.prediction import InvalidInputError

Protocol = Literal["simple", "v2"]
Headers = list[tuple[bytes, bytes]]
# 応答: (ステータス, 本文, ヘッダ)。ヘッダは content-type と content-length を含む
Reply = tuple[int, bytes, Headers]

JSON = b"application/json"
OCTET_STREAM = b"application/octet-stream"
_CLOSE = (b"connection", b"close")
INTERNAL_ERROR = "Internal server error"


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


def reply(status: int, body: bytes, content_type: bytes = JSON, extra: Headers | None = None) -> Reply:
    """応答を組み立てる。"""
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    return status, body, headers


def json_reply(status: int, payload: Any) -> Reply:
    """JSON の応答を組み立てる。"""
    return reply(status, orjson.dumps(payload))


def status_of(error: Exception) -> int:
    """例外のステータス（表に無いものは 500）。"""
    for kind in type(error).__mro__:
        status = _STATUS.get(kind)
        if status is not None:
            return status
    return 500


def error_reply(error: Exception, protocol: Protocol) -> Reply:
    """例外をそのプロトコルの形のエラー応答にする（表に無い例外は 500、中身は出さない）。"""
    status = status_of(error)
    if status == 500:
        message: Any = INTERNAL_ERROR
    elif isinstance(error, SchemaError):
        message = error.errors if protocol == "simple" else error.message
    else:
        message = str(error)
    payload = {"detail": message} if protocol == "simple" else {"error": message}
    close = [_CLOSE] if isinstance(error, ServiceError) and error.close else None
    return reply(status, orjson.dumps(payload), JSON, close)
