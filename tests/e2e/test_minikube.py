"""利用者の道筋を本物の minikube（none ドライバー）で: レジストリなしの `mii up`（イメージは
`minikube image load` で入る）→ `mii smoke-test`（port-forward とクラスタ内の Job、2 つ以上の Pod）→
何も読み込まない `minikube image load` の前に `mii deploy` が 1 行のエラーで止まる → `mii teardown` →
何も無いときの `mii down`。

HPA が CPU を読むことは none では test_kube_lifecycle.py が（負荷で増えるまで）、docker ドライバーでは
test_minikube_docker.py が確かめる（同じことを 2 度確かめない）。

今の kube context が minikube のクラスタでなければスキップする。`MII_REQUIRE_MINIKUBE=1`（CI）では
スキップせず失敗にする。CI は `tests/e2e/minikube/minikube.sh up` で起動した minikube に対して動かす。
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import E2eSettings, Mii

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

# 利用者のデプロイ（既定の model-in-image）にも、ほかの e2e（mii-e2e）にも触れない Namespace
NAMESPACE = "mii-e2e-minikube"
SIZING = ("--replicas", "2", "--cpu", "250m")


@pytest.fixture(scope="module")
def profile(e2e: E2eSettings, cluster: tuple[Any, Any]) -> str:
    """今のクラスタの minikube プロファイル（minikube でなければスキップ、必須なら失敗）。"""
    import os

    from mii_cli.kube.cluster import MINIKUBE

    info = cluster[1]
    required = os.environ.get("MII_REQUIRE_MINIKUBE") == "1"
    reason = ""
    if info.flavor != MINIKUBE:
        reason = f"the current kube context {info.context!r} is a {info.flavor} cluster, not minikube"
    elif shutil.which("minikube") is None:
        reason = "minikube is not on PATH"
    if reason:
        script = "tests/e2e/minikube/minikube.sh"
        hint = f'start one with {script} up and eval "$({script} env)"'
        if required:
            pytest.fail(f"MII_REQUIRE_MINIKUBE=1 but {reason}; {hint}")
        pytest.skip(f"{reason}; {hint}")
    return str(info.name)


@pytest.fixture(scope="module")
def without_registry(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[None]:
    """レジストリの設定を外す（利用者の minikube の道筋: `minikube image load` で入れる）。"""
    from mii_cli.settings import get_cli_settings

    monkeypatch_module.delenv("MII_REGISTRY", raising=False)
    get_cli_settings.cache_clear()
    yield
    get_cli_settings.cache_clear()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def up(profile: str, mii: Mii, docker_client: Any, without_registry: None) -> Iterator[dict[str, Any]]:
    """`mii up` をレジストリなしで（ビルド → minikube image load → デプロイ → スモークテスト）。"""
    result: dict[str, Any] = mii.json("up", "-n", NAMESPACE, *SIZING, "--timeout", "420")
    yield result
    mii("teardown", "-n", NAMESPACE, "--timeout", "300")


def minikube_image_tags(profile: str) -> set[str]:
    """本物の `minikube image ls --format json` が挙げるタグ。"""
    listed = subprocess.run(
        ["minikube", "-p", profile, "image", "ls", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return {tag for image in json.loads(listed.stdout) or [] for tag in image.get("repoTags") or []}


def test_up_loads_the_image_through_minikube_without_a_registry(profile: str, up: dict[str, Any]) -> None:
    image = up["image"]
    assert "/" not in image.split(":", 1)[0], f"{image} names a registry; it should have been loaded"
    assert f"docker.io/library/{image}" in minikube_image_tags(profile)
    assert up["rollout"]["ready"] == 2
    assert up["smoke_test"]["passed"], up["smoke_test"]


def test_smoke_test_through_a_port_forward_and_in_cluster_sees_two_pods(mii: Mii, up: dict[str, Any]) -> None:
    report = mii.json("smoke-test", "-n", NAMESPACE, "--timeout", "10")
    assert report["passed"], report
    assert report["url"].startswith("http://127.0.0.1:")
    checks = {check["name"]: check for check in report["checks"]}
    assert checks["load_balancing"]["ok"], checks["load_balancing"]["detail"]
    assert len(report["served_by"]) >= 2


def test_a_load_that_loads_nothing_stops_deploy_with_one_clear_line(
    profile: str, mii: Mii, up: dict[str, Any]
) -> None:
    """minikube v1.38.1 は読み込めなかったイメージにも終了コード 0 を返す。mii は読み込む前に止まる。"""
    missing = "model-in-image:0.1.0-not-built-here"
    result = mii("deploy", "-n", NAMESPACE, "--image", missing, *SIZING)
    assert result.exit_code == 4, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    expected = (
        f"image {missing} is not in the local Docker engine, so minikube image load would load nothing "
        "(it exits 0 all the same)"
    )
    assert errors == [f"Error: {expected}"]
    # 何も適用していない: 動いているのは前のイメージのまま
    assert mii.json("status", "-n", NAMESPACE)["deployment"]["image"] == up["image"]


def test_teardown_leaves_no_namespace(mii: Mii, cluster: tuple[Any, Any], up: dict[str, Any]) -> None:
    from mii_cli.kube.namespace import namespace_phase

    result = mii.json("teardown", "-n", NAMESPACE, "--timeout", "300")
    assert result["deleted"] is True
    assert namespace_phase(cluster[0], NAMESPACE) is None


def test_down_on_nothing_is_a_no_op(mii: Mii, up: dict[str, Any]) -> None:
    result = mii("down", "-n", NAMESPACE)
    assert result.exit_code == 0, result.output
    assert "nothing to delete" in result.output


@pytest.fixture(scope="module")
def tiny_image(docker_client: Any) -> Iterator[str]:
    """ローカルの Docker にだけある小さなイメージ（1 ファイル）。"""
    import io
    import tarfile

    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in (("Dockerfile", b"FROM scratch\nCOPY hello /hello\n"), ("hello", b"hi\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    tag = f"mii-e2e-tiny:{int(time.time())}"
    docker_client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True, pull=False)
    yield tag
    docker_client.images.remove(tag, force=True)


def _answers(program: str, *args: str) -> tuple[int, str, str]:
    done = subprocess.run([program, *args], capture_output=True, text=True, timeout=300, check=False)
    first_error = next((line for line in done.stderr.splitlines() if line.strip()), "")
    return done.returncode, done.stdout, first_error


def test_the_fake_minikube_answers_like_the_real_one(profile: str, tiny_image: str, tmp_path: Any) -> None:
    """単体テストの偽の minikube（tests/fakes/cluster_tools.py）と本物に同じ呼び出しをして比べる。"""
    from tests.fakes.cluster_tools import FakeClusterTools

    fake = FakeClusterTools(tmp_path / "bin")
    fake.minikube_profile(profile)
    fake.local_images(tiny_image)
    real, stand_in = shutil.which("minikube") or "minikube", str(fake.folder / "minikube")
    calls = [
        ("-p", profile, "image", "load", "mii-e2e-tiny:not-built", "--daemon"),  # 0 で終わり、何も入らない
        ("-p", profile, "image", "load", tiny_image, "--daemon"),
        ("-p", "mii-no-such-profile", "image", "ls", "--format", "json"),
    ]
    for call in calls:
        real_code, _, real_error = _answers(real, *call)
        fake_code, _, fake_error = _answers(stand_in, *call)
        assert (fake_code, fake_error) == (real_code, real_error), call
    listing = ("-p", profile, "image", "ls", "--format", "json")
    real_list, fake_list = (json.loads(_answers(program, *listing)[1]) for program in (real, stand_in))
    loaded = f"docker.io/library/{tiny_image}"
    for listed in (real_list, fake_list):
        assert {key for image in listed for key in image} == {"id", "repoDigests", "repoTags", "size"}
        assert loaded in {tag for image in listed for tag in image["repoTags"]}
        assert not any("not-built" in tag for image in listed for tag in image["repoTags"])
