"""偽の minikube と kind: 一時ディレクトリの bin に書く本物のプログラム（PATH の先頭に置く）。

mii は subprocess で minikube・kind を呼ぶので、本物と同じ引数を受け、本物と同じ終了コードと
出力（標準エラー）を返すプログラムを相手にする。状態は 1 つの JSON ファイルに置き、テストが
`FakeClusterTools` で準備し、読み取る:
ローカルの Docker にあるイメージ（`daemon`）、Docker Hub にあるイメージ（`hub`）、
minikube のプロファイル、kind のクラスタ、呼ばれた引数（`calls`）。

minikube v1.38.1 に合わせたところ（cmd/minikube/cmd/image.go、pkg/minikube/machine/cache_images.go、
pkg/minikube/image/{cache,image}.go、pkg/minikube/cruntime/docker.go、pkg/minikube/reason）:
- `-p P image load IMG --daemon`: ローカルの Docker に IMG があれば、正規化した参照（AddDockerIO:
  `docker.io/library/x:1`）でプロファイルのイメージに加える。無ければ
  `! The image 'IMG' was not found; unable to add it to cache.` を標準エラーに出して **0 で終わる**。
  `--daemon` も `--remote` も無ければ、短い名前はまず Docker Hub に尋ね（`hub_lookups` に残る）、
  ローカルに無ければ Docker Hub のイメージを読み込む
- 既定の `--overwrite=true`（image.go）: 読み込み元の見つからないイメージでも、LoadCachedImages は
  ノードの同じ名前のイメージを先に消し（removeExistingImage）、それから無いキャッシュの tar で失敗する
  （警告だけで 0）。docker-env の下で作り、ノードにだけあるイメージはこうして消える。
  `--overwrite=false` ならノードにあるものは消さない。偽物は使用中のイメージ（本物では `docker rmi` が
  断り、消えない）とキャッシュに残った古い tar（本物はそれを読み込む）を写さない
- コンテナランタイムが止まったプロファイル（`running=False`）: `image load` は何も出さず、何も読み込まず
  0 で終わる。`image ls --format json` は空の配列 `[]`（ListImages は読めないノードを飛ばし、
  空のスライスを json.Marshal する）
- 無いプロファイル: `X Exiting due to MK_USAGE: loading profile: cluster "P" does not exist` と
  issue を案内する箱を標準エラーに出して 14（ExProgramUsage）で終わる
- `image ls --format json`: `ListImage`（id・repoDigests・repoTags・size）の配列。docker ランタイムの形
  （id は sha256: を除く、repoDigests は空、repoTags は AddDockerIO した 1 つ）

kind v0.30.0 に合わせたところ（pkg/cmd/kind/load/{docker-image,image-archive}、pkg/cluster/nodeutils、
cmd/kind/app/main.go）。出力はすべて標準エラー:
- `load docker-image IMG --name N`: ローカルに無ければ `ERROR: image: "IMG" not present locally`、
  クラスタが無ければ `ERROR: no nodes found for cluster "N"`（どちらも 1）。読み込むときは
  `Image: "IMG" with ID "sha256:..." not yet present on node "N-control-plane", loading...`。
  Docker が containerd のイメージストアを使うクラスタ（`containerd_store=True`）では、ノードの
  ctr import が `ctr: content digest sha256:...: not found` で失敗する（kind #3795、1 で終わる）
- `load image-archive FILE --name N`: ファイルが無ければ `ERROR: stat FILE: no such file or directory`。
  tar の index.json が指すマニフェストの中身（blobs/sha256/...）が欠けていれば、ctr import
  --all-platforms と同じく `content digest ...: not found` で失敗する。読み込んだ tar は写しを残す

このモジュールは標準ライブラリだけを読み込む（偽のプログラムが起動のたびに読み込むため）。
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent

# 起動済みの minikube のノードが最初から持つイメージ（一覧が空でないことを確かめるため）
MINIKUBE_SYSTEM_IMAGES = ("registry.k8s.io/pause:3.10", "gcr.io/k8s-minikube/storage-provisioner:v5")

MK_USAGE = 14  # minikube の ExProgramUsage
UNKNOWN = 64  # 偽物が知らない使い方（本物との違いがテストで目立つように）


def add_docker_io(name: str) -> str:
    """minikube v1.38.1 の AddDockerIO（cruntime/docker.go の addRegistryPreix）をそのまま写したもの。

    先頭の要素が `.`・`:` を含むか `localhost` を含めばレジストリとみなしてそのまま、
    そうでなければ `docker.io/` と（`/` が無ければ）`library/` を付ける。
    """
    parts = name.split("/", 1)
    if len(parts) > 1 and (any(c in parts[0] for c in ".:") or "localhost" in parts[0]):
        return name
    if len(parts) > 1:
        return f"docker.io/{parts[0]}/{parts[1]}"
    return f"docker.io/library/{name}"


def with_tag(name: str) -> str:
    """タグもダイジェストも無い名前に `:latest` を付ける（minikube の normalizeTagName）。"""
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last or "@" in last else f"{name}:latest"


def normalize(name: str) -> str:
    """`image ls` に出る形（`docker.io/library/model-in-image:1`）。"""
    return add_docker_io(with_tag(name))


def _image_id(name: str) -> str:
    return hashlib.sha256(normalize(name).encode()).hexdigest()


class FakeClusterTools:
    """偽の minikube・kind を `folder` に書き、その状態をテストから準備・読み取りする。"""

    def __init__(self, folder: Path, engine: Any = None) -> None:
        """`engine`（FakeDockerEngine）を渡すと、`local_images` がそのエンジンにもイメージを足す
        （mii は Docker SDK でローカルのイメージを確かめ、偽の minikube は状態のファイルを見る）。"""
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.engine = engine
        self.state_file = folder / "cluster-tools.json"
        self._save(
            {
                "daemon": [],
                "hub": [],
                "hub_lookups": [],
                "minikube": {},
                "kind": {},
                "calls": [],
                "hang": [],
                "image_ls": None,
            }
        )
        for tool in ("minikube", "kind"):
            program = folder / tool
            program.write_text(
                f"#!{sys.executable}\n"
                "import sys\n"
                f"sys.path.insert(0, {str(ROOT)!r})\n"
                "from tests.fakes.cluster_tools import main\n"
                f"sys.exit(main({tool!r}, sys.argv[1:], {str(self.state_file)!r}))\n"
            )
            program.chmod(program.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    # --- 状態 ---

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(self.state_file.read_text())
        return state

    def _save(self, state: dict[str, Any]) -> None:
        self.state_file.write_text(json.dumps(state, indent=1))

    def _change(self, key: str, value: Any) -> None:
        state = self.state()
        state[key] = value
        self._save(state)

    # --- テストが準備する ---

    def local_images(self, *images: str) -> None:
        """ローカルの Docker エンジンにあるイメージ（`docker image ls` に出る名前）。"""
        self._change("daemon", [*self.state()["daemon"], *images])
        if self.engine is not None:
            for image in images:
                if self.engine.image(image) is None:
                    digest = hashlib.sha256(image.encode()).hexdigest()
                    self.engine.images.append(
                        {"Id": f"sha256:{digest}", "RepoTags": [image], "Created": "2026-01-01T00:00:00Z"}
                    )

    def node_images(self, profile: str, *images: str) -> None:
        """minikube のノードにだけあるイメージ（docker-env の下で `docker build` したもの）。"""
        profiles = self.state()["minikube"]
        profiles[profile]["images"].extend(normalize(image) for image in images)
        self._change("minikube", profiles)

    def hub_images(self, *images: str) -> None:
        """Docker Hub にあるイメージ（--daemon を付けない minikube が取りに行く）。"""
        self._change("hub", [*self.state()["hub"], *images])

    def minikube_profile(self, name: str, *, running: bool = True) -> None:
        """minikube のプロファイル（`running=False` はコンテナランタイムが止まったノード）。"""
        profiles = self.state()["minikube"]
        profiles[name] = {"running": running, "images": list(MINIKUBE_SYSTEM_IMAGES)}
        self._change("minikube", profiles)

    def kind_cluster(self, name: str, *, containerd_store: bool = False) -> None:
        """kind のクラスタ（`containerd_store=True` は Docker の containerd イメージストアの下のもの）。"""
        clusters = self.state()["kind"]
        clusters[name] = {"containerd_store": containerd_store, "images": [], "archives": []}
        self._change("kind", clusters)

    def override_image_ls(self, *, code: int = 0, stdout: str = "", stderr: str = "") -> None:
        """`minikube image ls` の答えを差し替える。

        壊れた・想定外の出力を試すための注入で、本物の振る舞いを写したものではない。
        """
        self._change("image_ls", {"code": code, "stdout": stdout, "stderr": stderr})

    def hang(self, tool: str) -> None:
        """その道具を終わらないようにする（60 秒眠る）。"""
        self._change("hang", [*self.state()["hang"], tool])

    # --- テストが読み取る ---

    def calls(self, tool: str) -> list[list[str]]:
        """その道具が受けた引数（呼ばれた順）。"""
        return [call[1:] for call in self.state()["calls"] if call[0] == tool]

    def minikube_images(self, profile: str) -> list[str]:
        """プロファイルのノードにあるイメージ（正規化した参照）。"""
        images: list[str] = self.state()["minikube"][profile]["images"]
        return images

    def kind_images(self, cluster: str) -> list[str]:
        images: list[str] = self.state()["kind"][cluster]["images"]
        return images

    def kind_archives(self, cluster: str) -> list[dict[str, Any]]:
        """`kind load image-archive` が読み込んだ tar（写しの場所・イメージ・プラットフォーム）。"""
        archives: list[dict[str, Any]] = self.state()["kind"][cluster]["archives"]
        return archives


# --- 偽のプログラムの中身（別のプロセスで動く） ---


def main(tool: str, args: list[str], state_file: str) -> int:
    """偽の minikube・kind の入口。"""
    path = Path(state_file)
    state = json.loads(path.read_text())
    state["calls"].append([tool, *args])
    path.write_text(json.dumps(state, indent=1))
    if tool in state["hang"]:
        time.sleep(60)
    program = _minikube if tool == "minikube" else _kind
    code = program(args, state, path)
    path.write_text(json.dumps(state, indent=1))
    return code


def _err(*lines: str) -> None:
    sys.stderr.write("".join(f"{line}\n" for line in lines))
    sys.stderr.flush()


def _flag(args: list[str], *names: str, default: str = "") -> tuple[str, list[str]]:
    """`--name X`・`--name=X`・`-n X` を取り出し、(値, 残りの引数) を返す。"""
    rest: list[str] = []
    value = default
    items = iter(args)
    for arg in items:
        if arg in names:
            value = next(items, "")
        elif any(arg.startswith(f"{name}=") for name in names):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return value, rest


def _in(image: str, names: list[str]) -> bool:
    """Docker が短い名前を解決するのと同じく、正規化した参照で比べる。"""
    return normalize(image) in {normalize(name) for name in names}


def _minikube(args: list[str], state: dict[str, Any], path: Path) -> int:
    profile_name, args = _flag(args, "-p", "--profile", default="minikube")
    if args[:2] not in (["image", "load"], ["image", "ls"]):
        _err(f"fake minikube does not implement: {' '.join(args)}")
        return UNKNOWN
    profile = state["minikube"].get(profile_name)
    if profile is None:
        # exit.Error(reason.Usage, "loading profile", err): 理由の行と、issue を案内する箱
        _err(
            "",
            f'X Exiting due to MK_USAGE: loading profile: cluster "{profile_name}" does not exist',
            "",
            "╭───────────────────────────────────────────────────────────────────────────────────────────╮",
            "│    If the above advice does not help, please let us know:                                 │",
            "│    https://github.com/kubernetes/minikube/issues/new/choose                               │",
            "│    Please run `minikube logs --file=logs.txt` and attach logs.txt to the GitHub issue.    │",
            "│    Please also attach the following file to the GitHub issue:                             │",
            "│    - /tmp/minikube_image_0.log                                                            │",
            "╰───────────────────────────────────────────────────────────────────────────────────────────╯",
            "",
        )
        return MK_USAGE
    if args[1] == "ls":
        if state["image_ls"] is not None:
            injected = state["image_ls"]
            print(injected["stdout"])
            _err(injected["stderr"])
            return int(injected["code"])
        return _minikube_ls(args[2:], profile)
    daemon = "--daemon" in args
    remote = "--remote" in args
    # cobra の真偽のフラグ: `--overwrite`・`--overwrite=true` は真、`--overwrite=false` は偽
    overwrite = not any(arg in ("--overwrite=false", "--overwrite=0") for arg in args)
    images = [arg for arg in args[2:] if not arg.startswith("--")]
    if not daemon and not remote:
        daemon = remote = True  # image.go: ファイルでなければ両方から探す
    for image in images:
        found = _retrieve(image, state, daemon=daemon, remote=remote)
        if found is None:
            # cache.go SaveToDir: errCacheImageDoesntExist は警告だけで、エラーにしない
            _err(f"! The image '{image}' was not found; unable to add it to cache.")
            # LoadCachedImages（overwrite）: ノードのものを消してから、無い tar で失敗する（0 で終わる）
            if overwrite and profile["running"] and normalize(image) in profile["images"]:
                profile["images"].remove(normalize(image))
            continue
        # DoLoadImages: 動いていないノードは飛ばし、失敗しても 0 で終わる
        if profile["running"] and normalize(found) not in profile["images"]:
            profile["images"].append(normalize(found))
    return 0


def _retrieve(image: str, state: dict[str, Any], *, daemon: bool, remote: bool) -> str | None:
    """image.go の retrieveImage: ローカルの Docker、次に（許されていれば）Docker Hub から探す。"""
    if daemon:
        short = not image.startswith("localhost/") and normalize(image) != image
        if short and remote:
            state["hub_lookups"].append(image)
        if _in(image, state["daemon"]):
            return image
    if remote:
        state["hub_lookups"].append(image)
        if _in(image, state["hub"]):
            return image
    return None


def _minikube_ls(args: list[str], profile: dict[str, Any]) -> int:
    output, _ = _flag(args, "--format", default="short")
    # cache_images.go ListImages: 動いていないノードは飛ばす（空のスライスは [] になる）
    images = profile["images"] if profile["running"] else []
    if output == "json":
        listed = [
            {"id": _image_id(name), "repoDigests": [], "repoTags": [name], "size": "12345678"}
            for name in images
        ]
        print(json.dumps(listed, separators=(",", ":")))
    else:
        print("\n".join(sorted(images, reverse=True)))
    return 0


def _kind(args: list[str], state: dict[str, Any], path: Path) -> int:
    name, args = _flag(args, "--name", "-n", default="kind")
    if args[:2] not in (["load", "docker-image"], ["load", "image-archive"]) or len(args) < 3:
        _err(f"fake kind does not implement: {' '.join(args)}")
        return UNKNOWN
    targets = args[2:]
    if args[1] == "docker-image":
        return _kind_docker_image(name, targets, state)
    return _kind_image_archive(name, targets, state, path)


def _import_failed(node: str, output: str) -> int:
    """nodeutils.LoadImageArchive の ctr import が失敗したときの、main.go の出力。"""
    _err(
        f'ERROR: failed to load image: command "docker exec --privileged -i {node} ctr --namespace=k8s.io '
        'images import --all-platforms --digests --snapshotter=overlayfs -" failed with error: exit status 1',
        "",
        f"Command Output: {output}",
    )
    return 1


def _kind_docker_image(name: str, images: list[str], state: dict[str, Any]) -> int:
    for image in images:
        if not _in(image, state["daemon"]):
            _err(f'ERROR: image: "{image}" not present locally')
            return 1
    cluster = state["kind"].get(name)
    if cluster is None:
        _err(f'ERROR: no nodes found for cluster "{name}"')
        return 1
    node = f"{name}-control-plane"
    missing = [image for image in images if normalize(image) not in cluster["images"]]
    for image in images:
        said = f'Image: "{image}" with ID "sha256:{_image_id(image)}"'
        if image in missing:
            _err(f'{said} not yet present on node "{node}", loading...')
        else:
            _err(f"{said} found to be already present on all nodes.")
    if not missing:
        return 0
    if cluster["containerd_store"]:
        # `docker save` の tar がほかのプラットフォームのマニフェストを指すが、その中身が無い
        digest = hashlib.sha256(f"{missing[0]} other platform".encode()).hexdigest()
        return _import_failed(node, f"ctr: content digest sha256:{digest}: not found")
    cluster["images"].extend(normalize(image) for image in missing)
    return 0


def _kind_image_archive(name: str, archives: list[str], state: dict[str, Any], path: Path) -> int:
    for archive in archives:
        if not os.path.exists(archive):
            _err(f"ERROR: stat {archive}: no such file or directory")
            return 1
    cluster = state["kind"].get(name)
    if cluster is None:
        _err(f'ERROR: no nodes found for cluster "{name}"')
        return 1
    node = f"{name}-control-plane"
    for archive in archives:
        try:
            with tarfile.open(archive) as tar:
                members = set(tar.getnames())
                index = json.loads(_member(tar, "index.json"))
                manifest = json.loads(_member(tar, "manifest.json"))
        except (tarfile.TarError, KeyError, ValueError):
            return _import_failed(node, "ctr: unrecognized image format")
        # ctr import --all-platforms: index が指すすべてのマニフェストの中身が要る
        for entry in index["manifests"]:
            digest = entry["digest"]
            if f"blobs/sha256/{digest.removeprefix('sha256:')}" not in members:
                return _import_failed(node, f"ctr: content digest {digest}: not found")
        copy = path.parent / f"kind-{name}-archive-{len(cluster['archives'])}.tar"
        shutil.copyfile(archive, copy)
        tags = [tag for item in manifest for tag in item.get("RepoTags") or []]
        platforms = [_platform_name(entry.get("platform") or {}) for entry in index["manifests"]]
        cluster["archives"].append({"copy": str(copy), "images": tags, "platforms": platforms})
        cluster["images"].extend(normalize(tag) for tag in tags if normalize(tag) not in cluster["images"])
    return 0


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    """tar の中のファイルの中身（無ければ KeyError）。"""
    handle = tar.extractfile(name)
    if handle is None:
        raise KeyError(name)
    return handle.read()


def _platform_name(platform: dict[str, str]) -> str:
    return "/".join(platform[key] for key in ("os", "architecture", "variant") if platform.get(key))
