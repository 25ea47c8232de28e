"""Docker Engine API の代役（127.0.0.1 の本物の HTTP サーバー）。

Docker SDK はそのまま使い、HTTP の境界でだけ置き換える。mii が使う部分だけに答える:
ping・版、イメージの一覧と詳細・タグ・push・pull・save・ビルド、ネットワークの一覧、レジストリのマニフェストの
問い合わせ（`docker buildx imagetools inspect` と同じ /distribution）。

イメージの参照の引き方は本物（moby 20.10）と同じ: ID、RepoTags、RepoDigests の `名前@sha256:...`、
`名前:タグ@sha256:...` はタグを見ずにダイジェストで引く。
push は本物と同じ行を返す（`push_lines` が None のとき）: 進み具合、`TAG: digest: sha256:... size: N`、
最後に moby の PushResult `{"progressDetail": {}, "aux": {"Tag": TAG, "Digest": "sha256:...", "Size": N}}`。
ダイジェストはイメージ ID から決まり（同じイメージなら同じダイジェスト）、イメージの RepoDigests に
`リポジトリ@ダイジェスト` が足される（本物も push したダイジェストを記録する）。
pull（POST /images/create）は `remote`（レジストリにあるイメージ。参照 -> イメージ）から取る。
ビルド（POST /build）は Dockerfile を実行せず、要求（タグ・ビルド引数・pull）を `builds` に残し、
ビルド引数から決まる ID のイメージをタグ付きで作る。

API の版は `api_version`（既定 1.43）。本物と同じく、パスの版（`/v1.48/...`）がそれより新しい要求は
400 で断る。
イメージの保存（`GET /images/{name}/get`、`docker save`）は本物の tar を返す（`image_archive`）:
- グラフドライバのストア（既定）: tar はイメージ自身のプラットフォーム 1 つだけ
- containerd のイメージストア（`containerd_store = True`）: tar の index.json はイメージの index の
  すべてのプラットフォーム（イメージの `_platforms`）を指すが、中身（blobs）はローカルにある自身のものだけ。
  ctr import --all-platforms はこれを `content digest ...: not found` で断る（kind #3795）
- `platform` の問い合わせ（JSON の OCI プラットフォーム）は、エンジンとパスの版がどちらも 1.48 以上の
  ときだけ効き（1.48 で入った。古い版の要求では本物も無視する）、そのプラットフォームだけを保存する
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shlex
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import docker

VERSION = {"Version": "28.0.0-fake", "ApiVersion": "1.43", "MinAPIVersion": "1.24", "Os": "linux"}

# Engine API がイメージの保存で platform を受け取る最初の版
PLATFORM_SAVE_API = (1, 48)


def _version(value: str) -> tuple[int, ...]:
    return tuple(int(part) for part in value.split("."))


def platform_of(image: dict[str, Any]) -> dict[str, str]:
    """イメージの詳細（Os・Architecture・Variant）が示す、イメージ自身のプラットフォーム。"""
    platform = {"os": image.get("Os", "linux"), "architecture": image.get("Architecture", "amd64")}
    if image.get("Variant"):
        platform["variant"] = image["Variant"]
    return platform


def platform_name(platform: dict[str, str]) -> str:
    """`linux/arm64/v8` の形。"""
    return "/".join(platform[key] for key in ("os", "architecture", "variant") if platform.get(key))


def _matches(wanted: dict[str, str], platform: dict[str, str]) -> bool:
    """問い合わせのプラットフォームに合うか（variant は問い合わせにあるときだけ比べる）。"""
    return all(platform.get(key) == value for key, value in wanted.items() if value)


def image_archive(name: str, index: list[dict[str, str]], present: list[dict[str, str]]) -> bytes:
    """`docker save` の tar（OCI のレイアウトと manifest.json）。

    index.json は `index` のプラットフォームごとのマニフェストを指し、blobs には `present` の分だけがある。
    """
    blobs: dict[str, bytes] = {}
    manifests = []
    for platform in index:
        body = json.dumps({"schemaVersion": 2, "image": name, "platform": platform}, sort_keys=True).encode()
        digest = hashlib.sha256(body).hexdigest()
        manifests.append(
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": f"sha256:{digest}",
                "size": len(body),
                "platform": platform,
                "annotations": {"io.containerd.image.name": name},
            }
        )
        if platform in present:
            blobs[digest] = body
    files = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps({"schemaVersion": 2, "manifests": manifests}).encode(),
        "manifest.json": json.dumps([{"RepoTags": [name], "Layers": []}]).encode(),
        **{f"blobs/sha256/{digest}": body for digest, body in blobs.items()},
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, data in files.items():
            member = tarfile.TarInfo(path)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


def dockerfile_labels(context: bytes, buildargs: dict[str, str]) -> dict[str, str]:
    """コンテキストの Dockerfile の LABEL を、ビルド引数（無ければ ARG の既定値）で埋めた値。

    `${NAME}` の置き換えだけをする（ビルドの代役がラベルを本物の Dockerfile から作るため）。
    """
    with tarfile.open(fileobj=io.BytesIO(context)) as archive:
        member = archive.extractfile("Dockerfile")
        assert member is not None
        text = member.read().decode()
    instructions = re.sub(r"\\\n\s*", " ", text).splitlines()
    defaults: dict[str, str] = {}
    labels: dict[str, str] = {}
    for line in instructions:
        words = line.strip().split(None, 1)
        if len(words) < 2:
            continue
        if words[0] == "ARG":
            name, _, value = words[1].partition("=")
            if value or name not in defaults:
                defaults[name] = value
        elif words[0] == "LABEL":
            for pair in shlex.split(words[1]):
                key, _, value = pair.partition("=")
                labels[key] = re.sub(
                    r"\$\{(\w+)\}", lambda m: buildargs.get(m[1], defaults.get(m[1], "")), value
                )
    return labels


class FakeDockerEngine:
    """イメージ・ネットワーク・取れるイメージ（`pullable`）を持つ Docker エンジンの代役。"""

    def __init__(self) -> None:
        # テストが直接足す・書き換える: ローカルのイメージ、push の進み具合の行、ネットワーク、取れるイメージ
        self.images: list[dict[str, Any]] = []
        # None なら本物と同じ push の行（上の説明）。リストならその行をそのまま返す
        self.push_lines: list[dict[str, Any]] | None = None
        # レジストリにあるイメージ（`repo:tag` か `repo@sha256:...` -> イメージの詳細）。pull はここから取る
        self.remote: dict[str, dict[str, Any]] = {}
        # ビルドの要求: タグ・ビルド引数・pull・ネットワーク
        self.builds: list[dict[str, Any]] = []
        self.networks = ["bridge", "host", "none"]
        self.pullable: set[str] = set()
        # エンジンの API の版と、イメージストアの種類（上の説明）
        self.api_version = VERSION["ApiVersion"]
        self.containerd_store = False
        # `docker save` の要求: イメージの名前と、platform の問い合わせ（無ければ None）
        self.saves: list[dict[str, Any]] = []
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

            def _too_new(self) -> bool:
                """パスの版がエンジンより新しければ、本物と同じ 400 で断る。"""
                if _version(self._requested()) > _version(fake.api_version):
                    message = (
                        f"client version {self._requested()} is too new. "
                        f"Maximum supported API version is {fake.api_version}"
                    )
                    self._send(400, {"message": message})
                    return True
                return False

            def _requested(self) -> str:
                """要求のパスの版（`/v1.48/...` の 1.48。版の無いパスはエンジンの版）。"""
                found = re.match(r"/v(\d+\.\d+)/", self.path)
                return found.group(1) if found else fake.api_version

            def do_GET(self) -> None:
                fake.calls.append(f"GET {self.path}")
                parts = urlsplit(self.path)
                path = unquote(parts.path)
                if self._too_new():
                    return
                if any(path.endswith(suffix) for suffix in fake.failing):
                    self._send(500, {"message": "the engine is broken"})
                elif path.endswith("/_ping"):
                    self._send(200, b"OK", "text/plain")
                elif path.endswith("/version"):
                    self._send(200, {**VERSION, "ApiVersion": fake.api_version})
                elif path.endswith("/images/json"):
                    keys = ("Id", "RepoTags", "RepoDigests", "Created", "Size")
                    self._send(200, [{k: i[k] for k in keys if k in i} for i in fake.images])
                elif "/images/" in path and path.endswith("/get"):
                    name = path.split("/images/", 1)[1].removesuffix("/get")
                    query = parse_qs(parts.query).get("platform")
                    wanted = json.loads(query[0]) if query else None
                    fake.saves.append({"name": name, "platform": wanted})
                    code, body = fake.save(name, wanted, self._requested())
                    self._send(code, body, "application/x-tar" if code == 200 else "application/json")
                elif "/images/" in path and path.endswith("/json"):
                    name = path.split("/images/", 1)[1].removesuffix("/json")
                    found = fake.image(name)
                    if found is None:
                        self._send(404, {"message": f"No such image: {name}"})
                    else:
                        # `_` で始まる項目は代役だけのもの（本物の詳細には無い）
                        self._send(200, {k: v for k, v in found.items() if not k.startswith("_")})
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

            def _body(self) -> bytes:
                """要求の本文（Content-Length か chunked）。"""
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _lines(self, code: int, lines: list[dict[str, Any]]) -> None:
                """JSON の行の流れ（push・pull・ビルドの進み具合）で答える。

                本物と同じく chunked で 1 行ずつ送る（SDK は chunked でない応答を 1 つの JSON とみる）。
                """
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for line in lines:
                    data = json.dumps(line).encode() + b"\r\n"
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")

            def do_POST(self) -> None:
                fake.calls.append(f"POST {self.path}")
                parts = urlsplit(self.path)
                path = unquote(parts.path)
                query = {key: values[0] for key, values in parse_qs(parts.query).items()}
                body = self._body()
                if self._too_new():
                    return
                if "/images/" in path and path.endswith("/push"):
                    name = path.split("/images/", 1)[1].removesuffix("/push")
                    self._lines(200, fake.push(name, query.get("tag") or "latest"))
                elif "/images/" in path and path.endswith("/tag"):
                    name = path.split("/images/", 1)[1].removesuffix("/tag")
                    found = fake.image(name)
                    if found is None:
                        self._send(404, {"message": f"No such image: {name}"})
                        return
                    tagged = f"{query['repo']}:{query.get('tag') or 'latest'}"
                    for other in fake.images:
                        if tagged in other["RepoTags"]:
                            other["RepoTags"].remove(tagged)
                    found["RepoTags"].append(tagged)
                    self._send(201, b"", "text/plain")
                elif path.endswith("/images/create"):
                    code, lines = fake.pull(query["fromImage"], query.get("tag") or "latest")
                    if code == 200:
                        self._lines(200, lines)
                    else:
                        self._send(code, lines[0])
                elif path.endswith("/build"):
                    self._lines(200, fake.build(query, body))
                else:
                    self._send(201, b"", "text/plain")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        """DOCKER_HOST に書く URL。"""
        return f"tcp://127.0.0.1:{self.httpd.server_address[1]}"

    def image(self, name: str) -> dict[str, Any] | None:
        """ID・タグ・ダイジェストで探したイメージ（`名前:タグ@ダイジェスト` は本物どおりダイジェストで）。"""
        repository, at, digest = name.partition("@")
        if at:
            last = repository.rsplit("/", 1)[-1]
            if ":" in last:
                repository = repository.rsplit(":", 1)[0]
            name = f"{repository}@{digest}"
        found = [i for i in self.images if name in (i["Id"], *i["RepoTags"], *(i.get("RepoDigests") or []))]
        return found[0] if found else None

    @staticmethod
    def digest_of(image: dict[str, Any]) -> str:
        """push したときのマニフェストのダイジェスト（代役ではイメージ ID から決める）。"""
        return "sha256:" + hashlib.sha256(f"manifest of {image['Id']}".encode()).hexdigest()

    def push(self, repository: str, tag: str) -> list[dict[str, Any]]:
        """`docker push` の進み具合の行（`push_lines` があればそれ）。"""
        if self.push_lines is not None:
            return self.push_lines
        image = self.image(f"{repository}:{tag}")
        if image is None:
            message = f"tag does not exist: {repository}:{tag}"
            return [{"errorDetail": {"message": message}, "error": message}]
        digest, size = self.digest_of(image), 1234
        digests = image.setdefault("RepoDigests", [])
        if f"{repository}@{digest}" not in digests:
            digests.append(f"{repository}@{digest}")
        layer = image["Id"].removeprefix("sha256:")[:12]
        return [
            {"status": f"The push refers to repository [{repository}]"},
            {"status": "Preparing", "progressDetail": {}, "id": layer},
            {"status": "Pushed", "progressDetail": {}, "id": layer},
            {"status": f"{tag}: digest: {digest} size: {size}"},
            {"progressDetail": {}, "aux": {"Tag": tag, "Digest": digest, "Size": size}},
        ]

    def pull(self, repository: str, tag: str) -> tuple[int, list[dict[str, Any]]]:
        """`docker pull` の答え（`tag` はタグかダイジェスト）。レジストリに無ければ本物と同じ 404。"""
        by_digest = tag.startswith("sha256:")
        reference = f"{repository}@{tag}" if by_digest else f"{repository}:{tag}"
        remote = self.remote.get(reference)
        if remote is None:
            message = f"manifest for {reference} not found: manifest unknown: manifest unknown"
            return 404, [{"message": message}]
        image = self.image(remote["Id"])
        if image is None:
            image = {**json.loads(json.dumps(remote)), "RepoTags": [], "RepoDigests": []}
            self.images.append(image)
        for digest in remote.get("RepoDigests") or []:
            if digest not in image["RepoDigests"]:
                image["RepoDigests"].append(digest)
        if not by_digest and reference not in image["RepoTags"]:
            image["RepoTags"].append(reference)
        return 200, [
            {"status": f"Pulling from {repository}", "id": tag},
            {"status": f"Digest: {(remote.get('RepoDigests') or ['@none'])[0].split('@', 1)[1]}"},
            {"status": f"Status: Downloaded newer image for {reference}"},
        ]

    def build(self, query: dict[str, str], context: bytes) -> list[dict[str, Any]]:
        """ビルドの要求を残し、ビルド引数から決まる ID のイメージを作る（Dockerfile は実行しない）。"""
        buildargs = json.loads(query.get("buildargs") or "{}")
        tag = query.get("t") or ""
        self.builds.append(
            {
                "tag": tag,
                "buildargs": buildargs,
                "pull": query.get("pull"),
                "network": query.get("networkmode"),
                "context_bytes": len(context),
            }
        )
        labels = dockerfile_labels(context, buildargs)
        image_id = "sha256:" + hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()
        image = self.image(image_id)
        if image is None:
            image = {
                "Id": image_id,
                "RepoTags": [],
                "RepoDigests": [],
                "Created": "2026",
                "Size": 1000,
                "Config": {"Labels": labels},
            }
            self.images.append(image)
        if tag:
            tagged = tag if ":" in tag.rsplit("/", 1)[-1] else f"{tag}:latest"
            for other in self.images:
                if tagged in other["RepoTags"]:
                    other["RepoTags"].remove(tagged)
            image["RepoTags"].append(tagged)
        return [
            {"stream": "Step 1/2 : FROM ${BASE_IMAGE}\n"},
            {"stream": " ---> Using cache\n"},
            {"stream": "Step 2/2 : LABEL org.opencontainers.image.base.name=${BASE_IMAGE}\n"},
            {"aux": {"ID": image_id}},
            {"stream": f"Successfully built {image_id.removeprefix('sha256:')[:12]}\n"},
            {"stream": f"Successfully tagged {tag}\n"},
        ]

    def save(self, name: str, wanted: dict[str, str] | None, requested: str) -> tuple[int, Any]:
        """`docker save` の答え（状態コードと tar、または誤りの本文）。"""
        image = self.image(name)
        if image is None:
            return 404, {"message": f"No such image: {name}"}
        own = platform_of(image)
        honoured = (
            min(_version(requested), _version(self.api_version)) >= PLATFORM_SAVE_API and wanted is not None
        )
        if honoured:
            assert wanted is not None
            listed = image.get("_platforms") or [own]
            chosen = [p for p in listed if _matches(wanted, p)]
            if not chosen:
                return 404, {"message": f"image {name} has no platform {platform_name(wanted)}"}
            return 200, image_archive(name, chosen[:1], chosen[:1])
        if self.containerd_store:
            return 200, image_archive(name, image.get("_platforms") or [own], [own])
        return 200, image_archive(name, [own], [own])

    def client(self) -> Any:
        """この代役への Docker SDK のクライアント（エンジンと同じ API の版で話す）。"""
        return docker.DockerClient(base_url=self.url, version=self.api_version)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
