"""Kubernetes API サーバーの代役（127.0.0.1 の本物の HTTP サーバー）と、その自己テスト。

クラスタはこの HTTP の境界でだけ置き換え、クライアントは公式の `kubernetes` パッケージをそのまま使う。
オブジェクトは公式クライアントのモデル（V1Pod など）を `sanitize_for_serialization` した辞書で持つ。
サーバーサイドアプライは、mii が頼る性質だけを真似る: 同じ内容なら resourceVersion を変えない、
変われば上げる、マネージャが送らなくなった spec.replicas は他に所有者がいなければ消える。
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes.client import ApiClient, Configuration

Handler = Callable[["Request"], tuple[int, Any]]

_serializer = ApiClient()


def to_dict(model: Any) -> dict[str, Any]:
    """公式クライアントのモデルを API の JSON と同じ辞書にする。"""
    result: dict[str, Any] = _serializer.sanitize_for_serialization(model)
    return result


class Request:
    """受けたリクエスト。"""

    def __init__(self, method: str, path: str, query: dict[str, list[str]], headers: Any, body: Any) -> None:
        self.method, self.path, self.query, self.headers, self.body = method, path, query, headers, body

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


def _merge(base: Any, patch: Any) -> Any:
    """辞書を再帰的に重ねる（リストは置き換え）。"""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _merge(base.get(key), value)
        return merged
    return copy.deepcopy(patch)


VERSION = {
    "major": "1",
    "minor": "34",
    "gitVersion": "v1.34.0",
    "gitCommit": "0" * 40,
    "gitTreeState": "clean",
    "buildDate": "2025-08-27T00:00:00Z",
    "goVersion": "go1.24.6",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def status_body(code: int, message: str) -> dict[str, Any]:
    """Kubernetes の Status 応答。"""
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "code": code}


class FakeApiServer:
    """オブジェクトをパスごとに持つ小さな API サーバー。`routes` で個別の応答を差し込める。"""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.requests: list[Request] = []
        self.routes: dict[tuple[str, str], Handler | tuple[int, Any]] = {}
        self.logs: dict[str, str] = {}
        self.on_apply: list[Callable[[str, dict[str, Any]], None]] = []
        self.version = 1
        self.lock = threading.Lock()
        server = self

        class _Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                request = Request(self.command, parts.path, parse_qs(parts.query), self.headers, body)
                with server.lock:
                    server.requests.append(request)
                    code, payload = server.dispatch(request)
                data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                self.send_response(code)
                self.send_header(
                    "Content-Type", "text/plain" if isinstance(payload, str) else "application/json"
                )
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PATCH = do_POST = do_DELETE = do_PUT = _handle  # noqa: N815

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> FakeApiServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def client(self) -> ApiClient:
        """このサーバーへの公式クライアント。"""
        configuration = Configuration(host=self.url)
        configuration.retries = 0
        return ApiClient(configuration)

    # --- 状態の操作 ---

    def put(self, path: str, obj: Any) -> dict[str, Any]:
        """オブジェクト（モデルまたは辞書）を置く。"""
        data = to_dict(obj) if not isinstance(obj, dict) else copy.deepcopy(obj)
        metadata = data.setdefault("metadata", {})
        metadata.setdefault("resourceVersion", str(self._next()))
        self.objects[path] = data
        return data

    def methods(self, method: str, path_prefix: str = "") -> list[Request]:
        """受けたリクエストのうち、メソッドとパスの先頭が合うもの。"""
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    def _next(self) -> int:
        self.version += 1
        return self.version

    # --- 振る舞い ---

    def dispatch(self, request: Request) -> tuple[int, Any]:
        route = self.routes.get((request.method, request.path))
        if route is not None:
            return route(request) if callable(route) else route
        if request.path.rstrip("/") == "/version":
            return 200, VERSION
        if request.method == "GET" and request.path.endswith("/log"):
            pod = request.path.split("/")[-2]
            if pod in self.logs:
                return 200, self.logs[pod]
            return 404, status_body(404, f"pods {pod} not found")
        if request.method == "GET":
            if request.path in self.objects:
                return 200, self.objects[request.path]
            children = self._children(request.path, request.param("labelSelector"))
            if children is not None:
                return 200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": children}
            return 404, status_body(404, f"{request.path} not found")
        if request.method == "PATCH":
            return self._apply(request)
        if request.method == "DELETE":
            if request.path not in self.objects:
                return 404, status_body(404, f"{request.path} not found")
            for path in [p for p in self.objects if p == request.path or p.startswith(request.path + "/")]:
                del self.objects[path]
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
        return 405, status_body(405, "method not allowed")

    def _children(self, path: str, selector: str | None) -> list[dict[str, Any]] | None:
        """コレクションの GET（ラベルセレクタ `k=v` で絞る）。知らないパスなら None。"""
        if not re.search(r"/(pods|events|jobs|deployments|services|namespaces)$", path):
            return None
        items = [
            obj
            for key, obj in sorted(self.objects.items())
            if key.startswith(path + "/") and "/" not in key[len(path) + 1 :]
        ]
        if selector:
            name, _, value = selector.partition("=")
            items = [obj for obj in items if (obj["metadata"].get("labels") or {}).get(name) == value]
        return items

    def _apply(self, request: Request) -> tuple[int, Any]:
        """サーバーサイドアプライの真似。"""
        assert request.headers["Content-Type"] == "application/apply-patch+yaml"
        manager = request.param("fieldManager") or ""
        body = request.body
        live = self.objects.get(request.path)
        replicas_owners: set[str] = set()
        if live is None:
            new = copy.deepcopy(body)
            new["metadata"].update(
                resourceVersion=str(self._next()), generation=1, creationTimestamp="2025-01-01T00:00:00Z"
            )
            if (
                new.get("kind") == "Service"
                and (new.get("spec") or {}).get("type", "ClusterIP") == "ClusterIP"
            ):
                # 本物の API サーバーと同じく、作成時にサービスの範囲から ClusterIP を割り当てる
                address = (
                    f"10.96.0.{10 + sum(1 for o in self.objects.values() if o.get('kind') == 'Service')}"
                )
                new["spec"].setdefault("clusterIP", address)
                new["spec"].setdefault("clusterIPs", [new["spec"]["clusterIP"]])
        else:
            new = _merge(live, body)
            replicas_owners = {
                e["manager"]
                for e in live["metadata"].get("managedFields", [])
                if "f:replicas" in e.get("fieldsV1", {}).get("f:spec", {})
            }
        sends_replicas = "replicas" in (body.get("spec") or {})
        if sends_replicas:
            replicas_owners.add(manager)
        elif manager in replicas_owners:
            replicas_owners.discard(manager)
            if not replicas_owners and "spec" in new:
                new["spec"].pop("replicas", None)
        if body.get("kind") == "Deployment":
            new["metadata"]["managedFields"] = [
                {"manager": owner, "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
                for owner in sorted(replicas_owners)
            ]
        if live is not None:
            comparable = {k: v for k, v in new.items() if k != "metadata"}
            before = {k: v for k, v in live.items() if k != "metadata"}
            owners = new["metadata"].get("managedFields")
            same_owners = owners == live["metadata"].get("managedFields")
            if comparable == before and new["metadata"].get("labels") == live["metadata"].get("labels"):
                new = copy.deepcopy(live)
                if not same_owners:
                    # 所有者だけが変わった: 書き込みはあるが世代は変わらない
                    new["metadata"].update(managedFields=owners, resourceVersion=str(self._next()))
            else:
                new["metadata"]["resourceVersion"] = str(self._next())
                if comparable.get("spec") != before.get("spec"):
                    new["metadata"]["generation"] = int(live["metadata"].get("generation", 1)) + 1
        self.objects[request.path] = new
        for hook in self.on_apply:
            hook(request.path, new)
        return 200, new


@pytest.fixture
def fake_api() -> Iterator[FakeApiServer]:
    """起動した代役の API サーバー。"""
    server = FakeApiServer().start()
    yield server
    server.stop()


def write_kubeconfig(path: Any, server: str, *, context: str = "kind-test", extensions: Any = None) -> Any:
    """代役のサーバーを指す kube config を書く。"""
    cluster: dict[str, Any] = {"server": server}
    if extensions:
        cluster["extensions"] = extensions
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": cluster}],
        "users": [{"name": "user", "user": {"token": "secret"}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": "user"}}],
        "current-context": context,
    }
    path.write_text(json.dumps(config))
    return path


def test_fake_server_answers_the_official_client(fake_api: FakeApiServer) -> None:
    from kubernetes.client import CoreV1Api, V1Namespace, V1ObjectMeta, VersionApi

    client = fake_api.client()
    assert VersionApi(client).get_code().git_version == "v1.34.0"
    fake_api.put("/api/v1/namespaces/demo", V1Namespace(metadata=V1ObjectMeta(name="demo")))
    assert CoreV1Api(client).read_namespace("demo").metadata.name == "demo"
    assert [n.metadata.name for n in CoreV1Api(client).list_namespace().items] == ["demo"]


def test_fake_server_forgets_replicas_that_nobody_owns(fake_api: FakeApiServer) -> None:
    from mii_cli.kube import api as kapi

    client = fake_api.client()
    path = "/apis/apps/v1/namespaces/n/deployments/d"
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 4}}
    query = [("fieldManager", "m")]
    kapi.request(client, "PATCH", path, query=query, body=body, content_type="application/apply-patch+yaml")
    without = {**body, "spec": {}}
    kapi.request(
        client, "PATCH", path, query=query, body=without, content_type="application/apply-patch+yaml"
    )
    assert "replicas" not in fake_api.objects[path]["spec"]
