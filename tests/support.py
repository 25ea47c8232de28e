"""テストが共有する小さな道具（フィクスチャではないもの）: プロジェクトのパス、サービスの環境変数、
空きポート、e2e の設定、`mii` を呼ぶ道具。
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import Result
from typer.testing import CliRunner

from service.configurations import Settings

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
MODEL = MODELS / "iris_svc.onnx"
LABELS = MODELS / "label.json"
MANIFESTS = ROOT / "manifests"
REFERENCE = ROOT.parent / "shared" / "reference"

# サービスが読む環境変数（テストを動かす環境の設定で結果が変わらないように消す）: 設定のすべてのフィールド
SERVICE_ENV = tuple(name.upper() for name in Settings.model_fields)


def free_port() -> int:
    """ループバックの空きポートを返す。"""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _bindable(port: int) -> bool:
    """ループバックのそのポートに今 bind できるか。"""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pair(attempts: int = 50) -> int:
    """次の 2 つのポートも空いている、ループバックの空きポートを返す（`mii benchmark` の天井は --port の次、
    写しの測定の影はその次を使う）。

    空きポートはエフェメラルの範囲から来るので、次のポートは直前の接続（TIME_WAIT を含む）が
    使っていることがある。
    """
    for _ in range(attempts):
        port = free_port()
        if port >= 65534:
            continue
        if all(_bindable(port + step) for step in (1, 2)):
            return port
    raise RuntimeError(f"no pair of free loopback ports in {attempts} tries")


@dataclass(frozen=True)
class E2eSettings:
    """e2e テストの設定（環境変数 MII_E2E_*）。

    - `MII_E2E_CONTEXT`: kube context（既定は今のもの）
    - `MII_E2E_NAMESPACE`: Namespace（既定 mii-e2e。利用者のデプロイに触れない）
    - `MII_E2E_REPLICAS`・`MII_E2E_CPU`・`MII_E2E_MEMORY`: Deployment の大きさ（既定 2・250m・300Mi。
      2 コアのノードでもローリングアップデートの追加の Pod と HPA の増加が入る）
    - `MII_E2E_REGISTRY`（無ければ `MII_REGISTRY`）: イメージを push するレジストリ。
      無ければ minikube・kind へ読み込む
    - `MII_REQUIRE_CLUSTER=1`: クラスタや Docker が無いときにスキップせず失敗にする（CI）
    """

    namespace: str
    replicas: int
    cpu: str
    memory: str
    registry: str | None
    context: str | None
    required: bool

    @classmethod
    def from_environment(cls) -> E2eSettings:
        """環境変数から読む。"""
        env = os.environ
        return cls(
            namespace=env.get("MII_E2E_NAMESPACE", "mii-e2e"),
            replicas=int(env.get("MII_E2E_REPLICAS", "2")),
            cpu=env.get("MII_E2E_CPU", "250m"),
            memory=env.get("MII_E2E_MEMORY", "300Mi"),
            registry=env.get("MII_E2E_REGISTRY") or env.get("MII_REGISTRY") or None,
            context=env.get("MII_E2E_CONTEXT") or None,
            required=env.get("MII_REQUIRE_CLUSTER") == "1",
        )

    @property
    def sizing_args(self) -> list[str]:
        """Deployment の大きさと、イメージの渡し方のオプション。"""
        args = ["--replicas", str(self.replicas), "--cpu", self.cpu, "--memory", self.memory]
        return [*args, "--registry", self.registry] if self.registry else args


class Mii:
    """`mii` を CliRunner で実行する（終了コードは呼び出し側が確かめる）。

    `env` はその呼び出しのあいだだけの環境変数（値が None なら消す）: `eval $(minikube docker-env)` の
    あるシェルで打ったのと同じにする。
    """

    def __call__(self, *args: str, env: dict[str, str | None] | None = None) -> Result:
        from mii_cli import cli

        return CliRunner().invoke(cli.app, list(args), env=env)

    def json(self, *args: str, env: dict[str, str | None] | None = None) -> Any:
        """`mii ... --json` を実行し、成功を確かめて JSON を返す。"""
        result = self(*args, "--json", env=env)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


# 負荷の Job が動かすスクリプト（確認のスクリプト check_requests.py と同じ形の結果を出す）。
# 引数: URL・秒数・応答した Pod を示すヘッダの名前・（あれば）POST する JSON の本文
LOAD_SCRIPT = """
import collections, json, sys, time, urllib.request
url, seconds, header = sys.argv[1], float(sys.argv[2]), sys.argv[3]
body = sys.argv[4].encode() if len(sys.argv) > 4 else None
headers = {"Content-Type": "application/json"} if body else {}
counts, errors, sent = collections.Counter(), [], 0
deadline = time.monotonic() + seconds
while sent == 0 or time.monotonic() < deadline:
    sent += 1
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=5) as r:
            r.read()
            counts[r.headers.get(header) or "unknown"] += 1
    except Exception as error:
        errors.append(type(error).__name__ + ": " + str(error))
print(json.dumps({"url": url, "requests": sent, "errors": len(errors),
                  "first_errors": errors[:3], "served_by": dict(counts)}))
""".strip()
LOAD_JOB_NAME = "mii-e2e-load"


def load_job(
    image: str,
    namespace: str,
    url: str,
    *,
    seconds: float,
    name: str = LOAD_JOB_NAME,
    parallelism: int = 1,
    body: str | None = None,
    cpu_limit: str = "200m",
) -> dict[str, Any]:
    """確認の Job（mii の check_job）を、`url` へ `seconds` 秒送り続ける負荷の Job に変えたもの。

    セキュリティコンテキストや NetworkPolicy の印は mii の Job のまま。`parallelism` 個の Pod が
    同時に送り、`body` があれば POST する。
    """
    from mii_cli.probe import in_cluster
    from service.constants import SERVED_BY_HEADER

    job = in_cluster.check_job(image, namespace, url, name=name)
    spec = job["spec"]
    spec.update(parallelism=parallelism, completions=parallelism, activeDeadlineSeconds=int(180 + seconds))
    container = spec["template"]["spec"]["containers"][0]
    container["command"] = ["python", "-c", LOAD_SCRIPT, url, f"{seconds:g}", SERVED_BY_HEADER]
    container["command"] += [body] if body is not None else []
    container["resources"]["limits"]["cpu"] = cpu_limit
    if cpu_limit.endswith("m") and int(cpu_limit[:-1]) < 100:
        # requests は limits を超えられない: 小さな上限（負荷を絞る）なら requests も同じにする
        container["resources"]["requests"]["cpu"] = cpu_limit
    return job


class BackgroundLoad:
    """クラスタ内の負荷の Job（`load_job`）で Service へ送り続けるスレッド。

    `with BackgroundLoad(client, namespace, seconds=90) as load:` の中で障害を起こし、
    `load.result()` で Job の集計（失敗の数など）を受け取る。スレッドの例外は result() が投げ直す。
    """

    def __init__(self, client: Any, namespace: str, *, timeout: float = 300.0, **options: Any) -> None:
        import threading

        self.name = options.get("name", LOAD_JOB_NAME)
        self._outcome: dict[str, Any] = {}
        self._thread = threading.Thread(
            target=self._run, args=(client, namespace, timeout, options), daemon=True
        )

    def _run(self, client: Any, namespace: str, timeout: float, options: dict[str, Any]) -> None:
        from mii_cli.probe import in_cluster
        from mii_cli.probe.in_cluster import run_job

        try:
            path = options.pop("path", "/predict/test")
            url = in_cluster.service_url(in_cluster.cluster_ip(client, namespace), path)
            job = load_job(in_cluster.deployed_image(client, namespace), namespace, url, **options)
            self._outcome["result"] = run_job(client, job, timeout=timeout + options["seconds"])
        except Exception as error:  # noqa: BLE001  スレッドの失敗を本体へ渡す
            self._outcome["error"] = error

    def __enter__(self) -> BackgroundLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._thread.join(timeout=900)

    def result(self) -> Any:
        """Job の結果（LbCheckResult）。負荷の途中で失敗していればその例外。"""
        self._thread.join(timeout=900)
        assert not self._thread.is_alive(), "the in-cluster load did not finish"
        if "error" in self._outcome:
            raise self._outcome["error"]
        return self._outcome["result"]


def wait_for_running_job(client: Any, namespace: str, job: str, timeout: float = 120.0) -> None:
    """Job の Pod が動き出す（負荷がかかり始める）まで待つ。"""
    import time

    from kubernetes.client import CoreV1Api

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = CoreV1Api(client).list_namespaced_pod(namespace, label_selector=f"job-name={job}").items
        if any(pod.status.phase == "Running" for pod in pods):
            return
        time.sleep(1)
    raise AssertionError(f"the pod of job {job} did not start within {timeout:.0f}s")


def relabelled_image(docker_client: Any, image: str, made_images: list[str]) -> str:
    """同じ中身で ID だけ違うイメージ（ラベルを 1 つ足す）を作り、一意のタグを返す（made_images に足す）。"""
    import io
    import time

    stamp = str(time.time_ns())
    dockerfile = f"FROM {image}\nLABEL io.mii.e2e.rollout={stamp}\n".encode()
    built, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile), rm=True, pull=False)
    repository, _, tag = image.rpartition(":")
    new_tag = f"{tag.split('-')[0]}-e2e-{stamp}"
    built.tag(repository, new_tag)
    made_images.append(f"{repository}:{new_tag}")
    return f"{repository}:{new_tag}"


def served_models(client: Any, namespace: str) -> set[str]:
    """Service の背後の Ready な Pod がそれぞれ /metadata で名乗るモデルの sha256（ポートフォワード越し）。"""
    import httpx
    from kubernetes.client import CoreV1Api

    from mii_cli.kube import APP_NAME, SERVICE_LABEL_KEY
    from mii_cli.kube.pods import is_ready
    from mii_cli.kube.portforward import forward_to_pod

    pods = (
        CoreV1Api(client)
        .list_namespaced_pod(namespace, label_selector=f"{SERVICE_LABEL_KEY}={APP_NAME}")
        .items
    )
    found = set()
    for pod in pods:
        if not is_ready(pod):
            continue
        with forward_to_pod(client, namespace, pod.metadata.name, 8000) as forwarder:
            found.add(httpx.get(f"{forwarder.url}/metadata", timeout=10).json()["model"]["sha256"])
    return found
