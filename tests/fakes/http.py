"""小さな HTTP の代役: Pod やレジストリの代わりのサーバーと、任意の ASGI アプリを載せる uvicorn。"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support import free_port


class HttpStandIn:
    """127.0.0.1 で GET に答えるサーバー。

    `routes` があればパスごとのステータス（無いパスは 404）、無ければどのパスにも 200 で答える。
    本文は `{"path": パス}`。`served_by` があれば Pod のように `X-Served-By` ヘッダを付ける。
    `routes` は後から書き換えられる（答えを途中で変える）。
    """

    def __init__(self, routes: dict[str, int] | None = None, *, served_by: str | None = None) -> None:
        self.routes = routes
        self.requests: list[str] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                stand_in.requests.append(self.path)
                routes = stand_in.routes
                status = 200 if routes is None else routes.get(self.path, 404)
                body = json.dumps({"path": self.path}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if served_by is not None:
                    self.send_header("X-Served-By", served_by)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def port(self) -> int:
        port: int = self.httpd.server_address[1]
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def opener(self) -> Callable[[], tuple[Any, Callable[[], None]]]:
        """ポートフォワードのストリームの代わり: このサーバーへの TCP 接続を開く関数。"""

        def open_stream() -> tuple[Any, Callable[[], None]]:
            sock = socket.create_connection(("127.0.0.1", self.port))
            return sock, sock.close

        return open_stream

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def asgi_server(app: Any) -> Iterator[str]:
    """任意の ASGI アプリ（わざと誤るサービスなど）を 127.0.0.1 の空きポートの uvicorn に載せ、URL を渡す。"""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server on 127.0.0.1 did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
