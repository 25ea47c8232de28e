"""単体テストの共通フィクスチャ: MII_* の設定の隔離と、クラスタ・Docker・Pod の代役。"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mii_cli.kube.cluster import ClusterInfo
from tests.fakes.docker_engine import FakeDockerEngine
from tests.fakes.http import HttpStandIn
from tests.fakes.kube_api import FakeApiServer, write_kubeconfig
from tests.fakes.kube_objects import IMAGE, NAMESPACE, become_ready

# ローカルの Docker のイメージをそのまま使えるクラスタ（イメージを読み込まない）
DOCKER_DESKTOP = ClusterInfo(
    context="docker-desktop",
    server="http://127.0.0.1",
    flavor="docker-desktop",
    name="docker-desktop",
    version="v1.34.0",
)


@pytest.fixture(autouse=True)
def _no_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """CI や利用者がテストのクラスタのために設定する MII_REGISTRY・docker-env に単体テストは左右されない。"""
    from mii_cli.settings import get_cli_settings

    for name in ("MII_REGISTRY", "MII_REPLICAS", "MII_POD_CPU", "MII_POD_MEMORY"):
        monkeypatch.delenv(name, raising=False)
    # minikube の docker-env（e2e が設定することがある）にも左右されない: Docker は既定のエンジン
    for name in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "MINIKUBE_ACTIVE_DOCKERD"):
        monkeypatch.delenv(name, raising=False)
    get_cli_settings.cache_clear()
    yield
    get_cli_settings.cache_clear()


@pytest.fixture
def docker_desktop() -> ClusterInfo:
    """Docker Desktop のクラスタの情報（イメージの読み込みが要らない）。"""
    return DOCKER_DESKTOP


@pytest.fixture
def kubeconfig(fake_api: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeApiServer:
    """代役の API サーバーを今の kube context にする（Docker Desktop の扱い: イメージの読み込み不要）。

    Deployment を適用すると、コントローラの代わりに Pod が Ready になる。
    """
    path = write_kubeconfig(tmp_path / "config", fake_api.url, context="docker-desktop")
    monkeypatch.setenv("KUBECONFIG", str(path))
    fake_api.on_apply.append(become_ready(fake_api))
    return fake_api


@pytest.fixture
def no_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kube config も Pod の中の設定も無い（クラスタが無い）。"""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


@pytest.fixture
def deployed_api(fake_api: FakeApiServer) -> FakeApiServer:
    """アプリをデプロイ済み（Ready な Pod と ClusterIP の Service）の代役の API サーバー。"""
    from mii_cli.workflows.deploy import DeployRequest, deploy

    fake_api.on_apply.append(become_ready(fake_api))
    request = DeployRequest(namespace=NAMESPACE, image=IMAGE, wait=False)
    deploy(request, client=fake_api.client(), info=DOCKER_DESKTOP)
    return fake_api


@pytest.fixture
def pod_stand_in() -> Iterator[HttpStandIn]:
    """アプリの Pod の代わりの HTTP サーバー（どのパスにも 200、X-Served-By: model-in-image-0）。"""
    server = HttpStandIn(served_by="model-in-image-0")
    yield server
    server.close()


@pytest.fixture
def fake_docker() -> Iterator[FakeDockerEngine]:
    """Docker エンジンの代役（イメージ無し、bridge・host・none のネットワークで始まる。テストが足す）。"""
    engine = FakeDockerEngine()
    yield engine
    engine.close()


class PodChecks:
    """デプロイの後の新しい Pod の確かめ（ポートフォワード）の代わり: 呼ばれた Pod を記録し、既定では通す。

    本物の確かめ（check_service）は tests/integration でループバックの本物のサーバーに対して確かめる。
    `failing` に Deployment の Pod の名前の先頭を入れると、その Pod は通らない。
    """

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], str | None, Any]] = []
        self.failing: set[str] = set()

    def __call__(self, client: Any, namespace: str, pods: list[Any], **expected: Any) -> Any:
        from mii_cli.probe.pods import PodCheck, PodsCheck

        names = sorted(pod.metadata.name for pod in pods)
        self.calls.append((names, expected.get("model_sha256"), expected.get("sample_answer")))
        checks = [
            PodCheck(pod=name, ok=not any(name.startswith(p) for p in self.failing), detail="stand-in")
            for name in names
        ]
        return PodsCheck(pods=checks)


@pytest.fixture(autouse=True)
def pod_checks(monkeypatch: pytest.MonkeyPatch) -> PodChecks:
    """新しい Pod の確かめとイメージのラベルの読み出しを、単体テストの中で完結させる。"""
    from mii_cli.image.record import record_from_labels
    from mii_cli.workflows import deploy as deploying

    checks = PodChecks()
    monkeypatch.setattr(deploying, "check_pods", checks)
    monkeypatch.setattr(deploying, "read_record", lambda image, reference: record_from_labels(reference, {}))
    return checks
