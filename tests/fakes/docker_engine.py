"""Docker Engine API の代役（127.0.0.1 の本物の HTTP サーバー）。

Docker SDK はそのまま使い、HTTP の境界でだけ置き換える。mii が使う部分だけに答える:
ping・版、イメージの一覧と詳細・タグ・push・save、ネットワークの一覧、レジストリのマニフェストの問い合わせ
（`docker buildx imagetools inspect` と同じ /distribution）。
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import docker

VERSION = {"Version": "28.0.0-fake", "ApiVersion": "1.43", "MinAPIVersion": "1.24", "Os": "linux"}


class FakeDockerEngine:
    """イメージ・ネットワーク・取れるイメージ（`pullable`）を持つ Docker エンジンの代役。"""

    def __init__(self) -> None:
        # テストが直接足す・書き換える: ローカルのイメージ、push の進み具合の行、ネットワーク、取れるイメージ
        self.images: list[dict[str, Any]] = []
        self.push_lines: list[dict[str, Any]] = [{"status": "Pushed"}]
        self.networks = ["bridge", "host", "none"]
        self.pullable: set[str] = set()
        # `docker save` の中身（イメージの tar の代わり）
        self.saved = b"layer-1layer-2"
        self.calls: list[str] = []
        # この末尾のパスへの GET には 500 で答える（壊れたエンジン）
        self.failing: set[str] = set()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                fake.calls.append(f"GET {self.path}")
                parts = urlsplit(self.path)
                path = unquote(parts.path)
                if any(path.endswith(suffix) for suffix in fake.failing):
                    self._send(500, {"message": "the engine is broken"})
                elif path.endswith("/_ping"):
                    self._send(200, b"OK", "text/plain")
                elif path.endswith("/version"):
                    self._send(200, VERSION)
                elif path.endswith("/images/json"):
                    keys = ("Id", "RepoTags", "Created", "Size")
                    self._send(200, [{k: i[k] for k in keys if k in i} for i in fake.images])
                elif "/images/" in path and path.endswith("/get"):
                    name = path.split("/images/", 1)[1].removesuffix("/get")
                    if fake.image(name) is None:
                        self._send(404, {"message": f"No such image: {name}"})
                    else:
                        self._send(200, fake.saved, "application/x-tar")
                elif "/images/" in path and path.endswith("/json"):
                    name = path.split("/images/", 1)[1].removesuffix("/json")
                    found = fake.image(name)
                    if found is None:
                        self._send(404, {"message": f"No such image: {name}"})
                    else:
                        self._send(200, found)
                elif path.endswith("/networks"):
                    filters = json.loads(parse_qs(parts.query).get("filters", ["{}"])[0])
                    wanted = filters.get("name") or []
                    names = [n for n in fake.networks if not wanted or any(w in n for w in wanted)]
                    self._send(200, [{"Name": n, "Id": f"net-{n}"} for n in names])
                elif "/distribution/" in path and path.endswith("/json"):
                    name = path.split("/distribution/", 1)[1].removesuffix("/json")
                    if name in fake.pullable:
                        self._send(200, {"Descriptor": {"digest": "sha256:" + "c" * 64}, "Platforms": []})
                    else:
                        message = f'Get "https://{name.split("/")[0]}/v2/": dial tcp: no such host'
                        self._send(500, {"message": message})
                else:
                    self._send(404, {"message": "not found"})

            def do_POST(self) -> None:
                fake.calls.append(f"POST {self.path}")
                if "/push" in self.path:
                    body = b"".join(json.dumps(line).encode() + b"\r\n" for line in fake.push_lines)
                    self._send(200, body)
                else:
                    self._send(201, b"", "text/plain")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        """DOCKER_HOST に書く URL。"""
        return f"tcp://127.0.0.1:{self.httpd.server_address[1]}"

    def image(self, name: str) -> dict[str, Any] | None:
        """ID かタグで探したイメージ。"""
        found = [i for i in self.images if name in (i["Id"], *i["RepoTags"])]
        return found[0] if found else None

    def client(self) -> Any:
        """この代役への Docker SDK のクライアント。"""
        return docker.DockerClient(base_url=self.url, version=VERSION["ApiVersion"])

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
