"""Kubernetes API サーバーの代役（127.0.0.1 の本物の HTTP サーバー）。

クラスタはこの HTTP の境界でだけ置き換え、クライアントは公式の `kubernetes` パッケージをそのまま使う。
オブジェクトは公式クライアントのモデル（V1Pod など）を `sanitize_for_serialization` した辞書で持つ。
サーバーサイドアプライは、mii が頼る性質だけを真似る: 同じ内容なら resourceVersion を変えない、
変われば上げる、マネージャが送らなくなった spec.replicas は他に所有者がいなければ消える。

本物（テスト用の minikube の Kubernetes 1.34）と同じに振る舞うところ（tests/e2e の突き合わせで確かめる）:
- エラーの本文は Status（`reason`・`code`・`details`）。見つからない → 404 NotFound。
- Service の作成時に ClusterIP を割り当てる（消して作り直しても、他の Service と重ならない）。
- 部分的なサーバーサイドアプライ（Pod の metadata.annotations だけなど）は今のオブジェクトに重なり、
  他のフィールドは残る。注釈だけが変わっても resourceVersion は上がる。無い Pod をコンテナ無しで
  適用すると（作成になる）422 Invalid。
- DELETE は消したものに 200、無いものに 404 NotFound。
- NetworkPolicy（networking.k8s.io/v1）: 既定値（`policyTypes`、ポートの `protocol: TCP`）を埋め、
  空の `ingress`・`egress` のリストは返さない（Go の omitempty）。
- Namespace の DELETE は Namespace を `phase: Terminating` で返し、すぐには消えない（次の読み出しの後に
  中身ごと、どの API グループのオブジェクトも消える）。消えかけの Namespace への適用は 403 Forbidden
  （NamespaceTerminating）。
- 他のマネージャが持つフィールドを force なしで適用すると 409 Conflict。
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

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


def _default_network_policy(spec: dict[str, Any]) -> None:
    """本物の API サーバーと同じく NetworkPolicy の spec の既定値を埋め、空の規則のリストを落とす。"""
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress", *(["Egress"] if spec.get("egress") else [])]
    for direction in ("ingress", "egress"):
        if direction in spec and not spec[direction]:
            del spec[direction]
        for rule in spec.get(direction) or []:
            for port in rule.get("ports") or []:
                port.setdefault("protocol", "TCP")


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


_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    422: "Invalid",
    500: "InternalError",
}


def status_body(code: int, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """Kubernetes の Status 応答（本物と同じく reason と details を持つ）。"""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": _REASONS.get(code, ""),
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


def _not_found(path: str) -> dict[str, Any]:
    """`deployments.apps "x" not found` のような本物の 404。"""
    parts = path.strip("/").split("/")
    name, plural = parts[-1], parts[-2] if len(parts) > 1 else ""
    group = parts[1] if parts[0] == "apis" else ""
    qualified = f"{plural}.{group}" if group else plural
    return status_body(404, f'{qualified} "{name}" not found', {"name": name, "group": group, "kind": plural})


class FakeApiServer:
    """オブジェクトをパスごとに持つ小さな API サーバー。`routes` で個別の応答を差し込める。"""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.requests: list[Request] = []
        self.routes: dict[tuple[str, str], Handler | tuple[int, Any]] = {}
        self.logs: dict[str, str] = {}
        self.on_apply: list[Callable[[str, dict[str, Any]], None]] = []
        # 消えかけの Namespace のパス -> 消えるまでに Terminating のまま答える読み出しの回数
        self.terminating: dict[str, int] = {}
        self.version = 1
        # 次に割り当てる ClusterIP の最後の数（本物と同じく、消えた Service のアドレスを別の Service に
        # すぐには渡さない）
        self.next_address = 10
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
                # 本物の API サーバーと同じく、パスのエスケープ（プロキシの `name:port` の %3A など）を戻す
                request = Request(
                    self.command, unquote(parts.path), parse_qs(parts.query), self.headers, body
                )
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
            self._finish_terminating(request.path)
            if request.path in self.objects:
                return 200, self.objects[request.path]
            children = self._children(request.path, request.param("labelSelector"))
            if children is not None:
                return 200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": children}
            return 404, _not_found(request.path)
        if request.method == "PATCH":
            if request.headers.get("Content-Type") == "application/json-patch+json":
                return self._json_patch(request)
            return self._apply(request)
        if request.method == "DELETE":
            if request.path not in self.objects:
                return 404, _not_found(request.path)
            if re.fullmatch(r"/api/v1/namespaces/[^/]+", request.path):
                return self._delete_namespace(request.path)
            self._collect_garbage(request.path)
            self._remove(request.path)
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
        return 405, status_body(405, "method not allowed")

    def _collect_garbage(self, path: str) -> None:
        """Deployment を消すと、本物のガベージコレクタのように ReplicaSet とその Pod も消える。"""
        deleted = self.objects.get(path) or {}
        if deleted.get("kind") != "Deployment":
            return
        namespace, name = deleted["metadata"]["namespace"], deleted["metadata"]["name"]
        selector = ((deleted.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        for key, obj in list(self.objects.items()):
            labels = obj.get("metadata", {}).get("labels") or {}
            owned = any(
                ref.get("name") == name for ref in obj.get("metadata", {}).get("ownerReferences") or []
            )
            in_namespace = f"/namespaces/{namespace}/" in key
            if in_namespace and (
                (key.split("/")[-2] == "replicasets" and owned)
                or (key.split("/")[-2] == "pods" and selector and selector.items() <= labels.items())
            ):
                del self.objects[key]

    def _remove(self, path: str) -> None:
        """オブジェクトと、その下のオブジェクトを消す。"""
        for key in [p for p in self.objects if p == path or p.startswith(path + "/")]:
            del self.objects[key]

    def _delete_namespace(self, path: str) -> tuple[int, Any]:
        """本物と同じく、Namespace を Terminating にして返す（消えるのは後）。"""
        namespace = self.objects[path]
        namespace.setdefault("status", {})["phase"] = "Terminating"
        namespace["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:01Z"
        self.terminating.setdefault(path, 1)
        return 200, namespace

    def _finish_terminating(self, path: str) -> None:
        """消えかけの Namespace は、決まった回数の読み出しの後に中身ごと消える。"""
        if path not in self.terminating:
            return
        if self.terminating[path] > 0:
            self.terminating[path] -= 1
            return
        del self.terminating[path]
        self._remove(path)
        # 他の API グループ（apps・networking.k8s.io など）の、この Namespace のオブジェクトも消える
        name = path.rsplit("/", 1)[-1]
        inside = re.compile(rf"/apis/[^/]+/[^/]+/namespaces/{re.escape(name)}/")
        for key in [p for p in self.objects if inside.match(p)]:
            del self.objects[key]

    def _children(self, path: str, selector: str | None) -> list[dict[str, Any]] | None:
        """コレクションの GET（ラベルセレクタ `k=v` で絞る）。知らないパスなら None。"""
        kinds = "pods|events|jobs|deployments|replicasets|services|networkpolicies|namespaces|nodes"
        if not re.search(rf"/({kinds})$", path):
            return None
        items = [
            obj
            for key, obj in sorted(self.objects.items())
            if key.startswith(path + "/") and "/" not in key[len(path) + 1 :]
        ]
        # `k=v,k2=v2`: すべての条件に合うもの（本物の等価のセレクタと同じ）
        for term in (selector or "").split(","):
            if term:
                name, _, value = term.partition("=")
                items = [obj for obj in items if (obj["metadata"].get("labels") or {}).get(name) == value]
        return items

    def _json_patch(self, request: Request) -> tuple[int, Any]:
        """JSON Patch（RFC 6902 の replace と add。`kubectl rollout undo` が使う形）。"""
        live = self.objects.get(request.path)
        if live is None:
            return 404, _not_found(request.path)
        new = copy.deepcopy(live)
        for operation in request.body:
            if operation.get("op") not in ("replace", "add"):
                return 422, status_body(422, f"unsupported patch operation {operation.get('op')!r}")
            *parents, last = [part for part in operation["path"].split("/") if part]
            target = new
            for part in parents:
                target = target.setdefault(part, {})
            if operation["op"] == "replace" and last not in target:
                return 422, status_body(422, f"the server rejected our request: no {operation['path']}")
            target[last] = copy.deepcopy(operation["value"])
        if new.get("spec") != live.get("spec"):
            new["metadata"]["generation"] = int(live["metadata"].get("generation", 1)) + 1
        new["metadata"]["resourceVersion"] = str(self._next())
        self.objects[request.path] = new
        for hook in self.on_apply:
            hook(request.path, new)
        return 200, new

    def _apply(self, request: Request) -> tuple[int, Any]:
        """サーバーサイドアプライの真似。"""
        assert request.headers["Content-Type"] == "application/apply-patch+yaml"
        manager = request.param("fieldManager") or ""
        body = request.body
        # 所属する Namespace が消えかけなら、新しいオブジェクトは作れない
        match = re.search(r"/namespaces/([^/]+)/", request.path)
        owner = f"/api/v1/namespaces/{match.group(1)}" if match else None
        if owner in self.terminating and request.path not in self.objects:
            name, plural = request.path.split("/")[-1], request.path.split("/")[-2]
            ns = owner.rsplit("/", 1)[-1]
            return 403, status_body(
                403,
                f'{plural} "{name}" is forbidden: unable to create new content in namespace {ns} '
                "because it is being terminated",
                {"name": name, "kind": plural, "causes": [{"reason": "NamespaceTerminating"}]},
            )
        live = self.objects.get(request.path)
        replicas_owners: set[str] = set()
        if live is None and body.get("kind") == "Pod" and not (body.get("spec") or {}).get("containers"):
            # 本物と同じく、無い Pod への適用は作成になり、コンテナの無い Pod は作れない
            name = request.path.split("/")[-1]
            return 422, status_body(
                422,
                f'Pod "{name}" is invalid: spec.containers: Required value',
                {"name": name, "kind": "Pod", "causes": [{"reason": "FieldValueRequired"}]},
            )
        if live is None:
            new = copy.deepcopy(body)
            new["metadata"].update(
                resourceVersion=str(self._next()),
                generation=1,
                creationTimestamp="2025-01-01T00:00:00Z",
                uid=f"uid-{self.version}",
            )
            if (
                new.get("kind") == "Service"
                and (new.get("spec") or {}).get("type", "ClusterIP") == "ClusterIP"
            ):
                # 本物の API サーバーと同じく、作成時にサービスの範囲から ClusterIP を割り当てる
                address = f"10.96.{self.next_address // 256}.{self.next_address % 256}"
                self.next_address += 1
                new["spec"].setdefault("clusterIP", address)
                new["spec"].setdefault("clusterIPs", [new["spec"]["clusterIP"]])
        else:
            new = _merge(live, body)
            replicas_owners = {
                e["manager"]
                for e in live["metadata"].get("managedFields", [])
                if "f:replicas" in e.get("fieldsV1", {}).get("f:spec", {})
            }
        if new.get("kind") == "NetworkPolicy":
            _default_network_policy(new.setdefault("spec", {}))
        sends_replicas = "replicas" in (body.get("spec") or {})
        others = sorted(replicas_owners - {manager})
        changes_replicas = live is not None and (body.get("spec") or {}).get("replicas") != (
            live.get("spec") or {}
        ).get("replicas")
        if sends_replicas and others and changes_replicas and request.param("force") != "true":
            # 本物と同じく、他のマネージャが持つ値を force なしで変えようとすると衝突（同じ値なら共有になる）
            return 409, status_body(
                409,
                f'Apply failed with 1 conflict: conflict with "{others[0]}": .spec.replicas',
                {"causes": [{"reason": "FieldManagerConflict", "field": ".spec.replicas"}]},
            )
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
            same_metadata = all(
                new["metadata"].get(key) == live["metadata"].get(key) for key in ("labels", "annotations")
            )
            if comparable == before and same_metadata:
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
        # 本物と同じく、作成は 201・変更（と無変更）は 200
        return (201 if live is None else 200), new


def write_kubeconfig(
    path: Any,
    server: str,
    *,
    context: str = "kind-test",
    extensions: Any = None,
    cluster_name: str | None = None,
) -> Any:
    """代役のサーバーを指す kube config を書く。

    クラスタの項目の名前は既定でコンテキストと同じ（minikube・kind が書くとおり）。`cluster_name` を渡すと
    `kubectl config rename-context` の後のように、コンテキストとクラスタの項目の名前が違う。
    """
    cluster: dict[str, Any] = {"server": server}
    if extensions:
        cluster["extensions"] = extensions
    cluster_name = cluster_name or context
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": cluster}],
        "users": [{"name": "user", "user": {"token": "secret"}}],
        "contexts": [{"name": context, "context": {"cluster": cluster_name, "user": "user"}}],
        "current-context": context,
    }
    path.write_text(json.dumps(config))
    return path
