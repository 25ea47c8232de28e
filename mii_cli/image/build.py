"""`mii build`: モデルとサーバーを 1 つのイメージに焼き込む（Docker SDK）。

先に純粋な関数でビルドコンテキスト（ファイル一覧・tar）とビルド引数を作り、
最後に Docker エンジンへ送る。ビルドの各ステップの進み具合は `BuildProgress` でコールバックに渡す
（進捗バーを描くのは CLI の層）。
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mii_cli.errors import DockerError, ModelError
from mii_cli.image.daemon import DockerDaemon
from mii_cli.image.docker import DockerClient, docker_client, local_image, pull_image
from mii_cli.model.train import LABEL_FILENAME
from mii_cli.references import check_reference, repo_digest, split_reference
from mii_cli.results import Result
from service.constants import DEFAULT_LABEL_FILEPATH, IMAGE_ROOT, SERVICE_VERSION, TRAINING_FACTS_FILENAME
from service.ml.loading import load_model
from service.ml.prediction import ModelLoadError

# コンテキストに入れるプロジェクトのファイル（.dockerignore と同じ範囲）
_PROJECT_FILES = ("Dockerfile", "pyproject.toml", "uv.lock")
_LOG_TAIL = 15

# レジストリやパッケージの置き場に届かないときの Docker・pip・uv のメッセージ（小文字）
_UNREACHABLE_MARKERS = (
    "no such host",
    "name resolution",
    "name or service not known",
    "could not resolve",
    "dial tcp",
    "i/o timeout",
    "tls handshake timeout",
    "network is unreachable",
    "connection refused",
    "pull access denied",
    "manifest unknown",
    "repository does not exist",
    "failed to fetch",
)
# レジストリに届かないマシンでのビルドのしかた（`mii doctor` も使う）
LOCAL_BASE_HINT = (
    "build from a local base image with --base-image (or MII_BASE_IMAGE), e.g. localhost/python:3.13-slim, "
    "and give the RUN steps the host network with --network host (or MII_BUILD_NETWORK=host)"
)
OFFLINE_HINT = f"the build could not reach a registry or a package index: {LOCAL_BASE_HINT}"
_GENERIC_HINT = "read the build log above; `mii build --no-cache` rebuilds every step"


def failure_hint(message: str) -> str:
    """ビルドの失敗のメッセージから、次にすべきことを選ぶ（ネットワークの問題なら MII_* の設定）。"""
    lowered = message.lower()
    return OFFLINE_HINT if any(marker in lowered for marker in _UNREACHABLE_MARKERS) else _GENERIC_HINT


@dataclass(frozen=True)
class ModelFacts:
    """焼き込むモデルの検証結果（ラベルとタグに使う）。"""

    model_path: Path
    label_path: Path | None
    model_sha256: str
    label_sha256: str | None
    input_signature: str
    task: str
    num_features: int
    num_classes: int | None
    training: dict[str, Any] | None
    # --sample で渡したサンプルの 1 行（イメージの SAMPLE_ROW になる）
    sample: list[float] | None = None
    # サンプルの 1 行へのモデルの答え（`/predict/test` が返す値。デプロイ後の確認がラベルから読む）
    sample_answer: list[float] | None = None


@dataclass(frozen=True)
class BuildRequest:
    """何をどう焼き込むか（既定値は `mii_cli.settings.build_request` が埋める）。"""

    root: Path
    model: Path
    labels: Path | None
    tag: str
    base_image: str
    network: str | None = None
    sample: list[float] | None = None
    no_cache: bool = False

    def __post_init__(self) -> None:
        """ベースイメージの参照を確かめる（ダイジェスト付きなら sha256:<64 桁>。不正なら ConfigError）。"""
        check_reference(self.base_image, "base image (--base-image, MII_BASE_IMAGE)")


@dataclass(frozen=True)
class BaseImage:
    """ビルドに使うベースイメージ: 指定した参照、レジストリのダイジェスト、ローカルのイメージ ID。

    `digest` はその参照のリポジトリの RepoDigests（レジストリから取ったイメージのマニフェストの
    ダイジェスト）。ローカルで作った・読み込んだイメージには無い（None）。`image_id` は常にある。
    """

    reference: str
    digest: str | None
    image_id: str


@dataclass(frozen=True)
class BuildResult(Result):
    """ビルドの結果。"""

    image_id: str
    unique_tag: str
    tags: list[str]
    size_bytes: int
    model_sha256: str
    label_sha256: str | None
    # ベースイメージ: 指定の参照、レジストリのダイジェスト（無ければ None）、ローカルのイメージ ID
    base_image: str
    base_digest: str | None
    base_image_id: str
    steps: int
    cached_steps: int
    labels: dict[str, str] = field(default_factory=dict)
    # ビルドしたエンジン（minikube の docker-env ならノードの中のもの。CLI の層が埋める）
    daemon: DockerDaemon | None = None


# --- 描画（純粋な関数） -----------------------------------------------------------------------


def inspect_model(model: Path, labels: Path | None, sample: list[float] | None = None) -> ModelFacts:
    """サービス自身のローダでモデル（とラベル・サンプル）を読み、焼き込んでよいか確かめる。"""
    try:
        loaded = load_model(model, labels, sample=sample)
    except ModelLoadError as error:
        raise ModelError(
            f"refusing to build: {error}",
            hint="pass a model (and labels) that `mii serve --model ... [--labels ...]` can load",
        ) from None
    info = loaded.info
    shape = ",".join("None" if d is None or isinstance(d, str) else str(d) for d in info.input_shape)
    return ModelFacts(
        model_path=model,
        label_path=labels,
        model_sha256=info.sha256,
        label_sha256=info.label_sha256,
        input_signature=f"{info.input_name}:{info.input_type}[{shape}]",
        task=info.task,
        num_features=info.num_features,
        num_classes=info.num_classes,
        training=info.training,
        sample=sample,
        sample_answer=[float(value) for value in loaded.predict(loaded.sample)[0]],
    )


def context_files(root: Path, facts: ModelFacts) -> dict[str, Path]:
    """ビルドコンテキストの中身（tar 内のパス -> 元のファイル）を返す。

    モデルは自分のファイル名のまま（V2 のモデル名になる）、ラベルは label.json として入れる。
    学習の事実（training.json）はそのモデルのものだけを入れる。
    """
    files: dict[str, Path] = {}
    for name in _PROJECT_FILES:
        files[name] = root / name
    for path in sorted((root / "service").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files[path.relative_to(root).as_posix()] = path
    files[f"models/{facts.model_path.name}"] = facts.model_path
    if facts.label_path is not None:
        files[f"models/{LABEL_FILENAME}"] = facts.label_path
    training = facts.model_path.parent / TRAINING_FACTS_FILENAME
    if facts.training is not None and training.is_file():
        files[f"models/{TRAINING_FACTS_FILENAME}"] = training
    return files


def model_env(facts: ModelFacts) -> dict[str, str]:
    """イメージの中でサービスがモデルを見つける設定（MODEL_FILEPATH・LABEL_FILEPATH・SAMPLE_ROW）。"""
    models = f"{IMAGE_ROOT}/models"
    return {
        "MODEL_FILEPATH": f"{models}/{facts.model_path.name}",
        "LABEL_FILEPATH": DEFAULT_LABEL_FILEPATH if facts.label_path is not None else "",
        "SAMPLE_ROW": json.dumps(facts.sample) if facts.sample is not None else "",
    }


def context_tar(files: dict[str, Path]) -> io.BytesIO:
    """コンテキストの tar を作る。同じ中身なら同じバイト列にする。

    クラシックビルダーのキャッシュはファイルのメタデータも見るため、時刻は中身のハッシュから決める
    （固定の時刻だと、同じ大きさで中身だけ違うモデルがキャッシュに取り違えられる）。
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in sorted(files):
            data = files[name].read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if files[name].stat().st_mode & 0o111 else 0o644
            info.mtime = 946684800 + int(hashlib.sha256(data).hexdigest()[:7], 16)
            info.uid = info.gid = 0
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def _git(root: Path, *args: str) -> str | None:
    """git の出力（使えなければ None）。"""
    try:
        result = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def build_args(
    root: Path, facts: ModelFacts, base: BaseImage, *, now: datetime | None = None
) -> dict[str, str]:
    """Dockerfile の ARG（OCI ラベル、ベースイメージ、モデルの情報）を作る。

    BASE_IMAGE は指定の参照そのまま（`FROM ${BASE_IMAGE}` とラベル org.opencontainers.image.base.name）。
    BASE_DIGEST（ラベル org.opencontainers.image.base.digest）はレジストリのダイジェスト、無ければ空。
    BASE_IMAGE_ID（ラベル io.mii.base-image.id）はローカルのイメージ ID。
    """
    training = facts.training or {}
    training_summary: dict[str, Any] = {
        key: training[key] for key in ("accuracy", "seed", "algorithm", "dataset") if key in training
    }
    if "versions" in training:
        training_summary["versions"] = training["versions"]
    # 作成時刻はソースのコミット時刻（SOURCE_DATE_EPOCH と同じ考え方）。同じソースとモデルなら
    # 同じイメージ ID・同じ一意のタグになり、2 回目の mii deploy は何も変えない
    if now is None:
        committed = _git(root, "log", "-1", "--format=%ct")
        now = datetime.fromtimestamp(int(committed), UTC) if committed else datetime.now(UTC)
    created = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "BASE_IMAGE": base.reference,
        "BASE_DIGEST": base.digest or "",
        "BASE_IMAGE_ID": base.image_id,
        "VERSION": SERVICE_VERSION,
        "REVISION": _git(root, "rev-parse", "HEAD") or "unknown",
        "CREATED": created,
        "SOURCE": _git(root, "config", "--get", "remote.origin.url") or "unknown",
        **model_env(facts),
        "MODEL_FILE": facts.model_path.name,
        "MODEL_SHA256": facts.model_sha256,
        "LABEL_SHA256": facts.label_sha256 or "none",
        "MODEL_INPUT": facts.input_signature,
        "MODEL_SAMPLE_ANSWER": json.dumps(facts.sample_answer) if facts.sample_answer is not None else "",
        "TRAINING": json.dumps(training_summary, sort_keys=True, separators=(",", ":"))
        if training
        else "none",
    }


def base_image_facts(reference: str, attrs: dict[str, Any]) -> BaseImage:
    """ローカルのエンジンのイメージの詳細（`docker image inspect`）から、ベースイメージの記録を作る。"""
    return BaseImage(
        reference=reference,
        digest=repo_digest(list(attrs.get("RepoDigests") or []), reference),
        image_id=str(attrs.get("Id", "")),
    )


def unique_tag(repository: str, facts: ModelFacts, image_id: str) -> str:
    """モデルのダイジェストとイメージ ID から一意のタグを作る（同じタグで別の中身にならない）。"""
    short_id = image_id.removeprefix("sha256:")[:12]
    return f"{repository}:{SERVICE_VERSION}-{facts.model_sha256[:12]}-{short_id}"


# --- Docker とのやりとり（アダプタ） -----------------------------------------------------------


@dataclass
class BuildProgress:
    """ビルドのログからステップの進み具合を数える。"""

    total: int = 0
    current: int = 0
    cached: int = 0
    description: str = ""
    image_id: str | None = None
    log: list[str] = field(default_factory=list)

    def feed(self, event: dict[str, Any]) -> None:
        """Docker のビルドイベント 1 件を取り込む。エラーなら DockerError。"""
        if "error" in event:
            message = str(event.get("error", "")).strip()
            raise DockerError(
                f"docker build failed: {message.splitlines()[-1] if message else 'unknown error'}",
                hint=failure_hint("\n".join([*self.log[-_LOG_TAIL:], message])),
                details="\n".join(self.log[-_LOG_TAIL:] + ([message] if message else [])),
            )
        aux = event.get("aux")
        if isinstance(aux, dict) and "ID" in aux:
            self.image_id = str(aux["ID"])
        text = str(event.get("stream", ""))
        for line in text.splitlines():
            line = line.rstrip()
            if not line:
                continue
            self.log.append(line)
            if line.startswith("Step ") and "/" in line.split(" : ", 1)[0]:
                counter = line.split(" : ", 1)[0].removeprefix("Step ")
                current, total = counter.split("/", 1)
                self.current, self.total = int(current), int(total)
                self.description = line.split(" : ", 1)[1][:70] if " : " in line else ""
            elif line.strip() == "---> Using cache":
                self.cached += 1
            elif line.startswith("Successfully built "):
                self.image_id = self.image_id or line.removeprefix("Successfully built ").strip()


def stream_build(
    client: DockerClient,
    context: io.BytesIO,
    *,
    tag: str,
    buildargs: dict[str, str],
    network: str | None,
    no_cache: bool,
) -> Iterator[dict[str, Any]]:
    """クラシックビルダーでビルドし、イベントを順に返す。"""
    from docker.errors import APIError

    try:
        yield from client.api.build(
            fileobj=context,
            custom_context=True,
            tag=tag,
            buildargs=buildargs,
            network_mode=network,
            nocache=no_cache,
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
        )
    except APIError as error:
        message = str(error.explanation or error)
        raise DockerError(f"docker build failed: {message}", hint=failure_hint(message)) from None


def run_build(
    events: Iterable[dict[str, Any]], on_progress: Callable[[BuildProgress], None] | None = None
) -> BuildProgress:
    """ビルドイベントを最後まで読み、進捗を返す。"""
    progress = BuildProgress()
    for event in events:
        progress.feed(event)
        if on_progress is not None:
            on_progress(progress)
    if progress.image_id is None:
        raise DockerError(
            "docker build finished without an image id", details="\n".join(progress.log[-_LOG_TAIL:])
        )
    return progress


def resolve_base_image(
    client: DockerClient,
    reference: str,
    on_progress: Callable[[BuildProgress], None] | None = None,
) -> BaseImage:
    """ベースイメージをローカルのエンジンで調べる。無ければ（ビルドと同じく）レジストリから取る。

    ビルドはローカルにあるベースをそのまま使う（pull=False）。ここで先に取っておけば、ビルドと
    ラベルが同じイメージを指す。
    """
    image = local_image(client, reference)
    if image is None:
        if on_progress is not None:
            on_progress(BuildProgress(description=f"pulling the base image {reference}"[:70]))
        try:
            image = pull_image(client, reference)
        except DockerError as error:
            raise DockerError(error.message, hint=failure_hint(error.message)) from None
    return base_image_facts(reference, image.attrs)


def build_image(
    request: BuildRequest,
    *,
    client: DockerClient | None = None,
    on_progress: Callable[[BuildProgress], None] | None = None,
) -> BuildResult:
    """モデルを検証し、イメージをビルドして、既定のタグと一意のタグを付ける。"""
    facts = inspect_model(request.model, request.labels, request.sample)
    client = client or docker_client()
    base = resolve_base_image(client, request.base_image, on_progress)
    args = build_args(request.root, facts, base)
    context = context_tar(context_files(request.root, facts))
    events = stream_build(
        client,
        context,
        tag=request.tag,
        buildargs=args,
        network=request.network,
        no_cache=request.no_cache,
    )
    progress = run_build(events, on_progress)
    assert progress.image_id is not None
    image = client.images.get(progress.image_id)
    repository, _ = split_reference(request.tag)
    unique = unique_tag(repository, facts, image.id)
    image.tag(*split_reference(unique))
    image.reload()
    return BuildResult(
        image_id=image.id,
        unique_tag=unique,
        tags=sorted(image.tags),
        size_bytes=int(image.attrs.get("Size", 0)),
        model_sha256=facts.model_sha256,
        label_sha256=facts.label_sha256,
        base_image=request.base_image,
        base_digest=base.digest,
        base_image_id=base.image_id,
        steps=progress.total,
        cached_steps=progress.cached,
        labels=dict(image.labels or {}),
    )
