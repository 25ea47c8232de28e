"""ベンチマークの天井: サービスと同じ uvicorn の設定で動く、何もしない ASGI アプリ。

`python -m service.ceiling` として同じイメージ・同じ制限・素の uvicorn（httptools のプロトコルを
サービスのもの（service/protocol.py）にしない）で起動し、`mii benchmark` が
サービスと交互に測る。本文を読み切り、決まった JSON を返すだけなので、その req/s は
「この CPU で、素の uvicorn の上の ASGI アプリが 1 リクエストに払う費用」の基準になる（サービスは uvicorn の
プロトコルを広げて ASGI を通さずに答えるので、これより速いこともある）。
サービスの req/s をこれで割った値（share）はマシンの速さや混み具合に左右されにくい。
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

from service.configurations import load_settings
from service.server import uvicorn_config

Message = MutableMapping[str, Any]

_BODY = b'{"prediction":[0.9720988869667053,0.01597398892045021,0.011927163228392601]}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_BODY)).encode())]


async def app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """本文を読み切って決まった JSON を返す（lifespan はそのまま終える）。"""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})


def main() -> None:
    """HOST・PORT の設定で起動する。"""
    uvicorn.Server(uvicorn_config(app, load_settings(), bounded=False)).run()


if __name__ == "__main__":
    main()
