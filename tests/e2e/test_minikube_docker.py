"""利用者の多くが使う minikube を本物で: docker ドライバーと、仕様書 §7.2 の `eval $(minikube docker-env)`。

1. docker-env の下で（仕様書の手順）: `mii build` はノードのエンジンへ作り、`mii deploy` は読み込まずに
   デプロイする（レジストリも無し）→ `mii status`（HPA が CPU を読む）→ `mii smoke-test`（2 つ以上の Pod）→
   §7.2 と同じ `kubectl port-forward` と curl → `mii run` はノードの IP に公開し、
   `mii smoke-test --url` がそこに届く
2. 上書きの危うさ: docker-env の下で作りノードにだけあるイメージを、変数の無いまま `minikube image load`
   すると、本物の minikube はそれを消して 0 で終わる（偽の minikube も同じ）。mii は読み込まずに 1 行で止まる
3. docker-env の下のモデルの更新: 学習し直したモデルを作り、canary で比べ、昇格する
4. docker-env なしで: `mii up`（ホストの Docker で作り、`minikube image load` で入れる）→ ローカルに無い
   イメージの `mii deploy` は、何も読み込まない `image load` を走らせる前に 1 行で止まる

今の kube context が docker ドライバーの minikube でなければスキップする。
`MII_REQUIRE_MINIKUBE_DOCKER=1`（CI の 2 つ目のクラスタ）ではスキップせず失敗にする。CI は
`tests/e2e/minikube/minikube.sh up --driver=docker` で起動した minikube に対して動かす。
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import Mii, free_port, served_models

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

NAMESPACE = "mii-e2e-docker-env"
UP_NAMESPACE = "mii-e2e-docker-load"
SIZING = ("--replicas", "2", "--cpu", "250m")
# docker-env の変数（minikube v1.38.1 の dockerEnvVars）。「変数の無いシェル」ではこれらを消す
DOCKER_ENV_NAMES = ("DOCKER_TLS_VERIFY", "DOCKER_HOST", "DOCKER_CERT_PATH", "MINIKUBE_ACTIVE_DOCKERD")
WITHOUT_DOCKER_ENV: dict[str, str | None] = dict.fromkeys(DOCKER_ENV_NAMES)


def _run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout, check=False, env=env or host_environ()
    )


def host_environ() -> dict[str, str]:
    """docker-env の無いシェルの環境（このプロセスの環境から docker-env の変数を除く）。"""
    return {key: value for key, value in os.environ.items() if key not in DOCKER_ENV_NAMES}


@pytest.fixture(scope="module")
def profile(cluster: tuple[Any, Any], docker_client: Any) -> str:
    """今のクラスタの minikube のプロファイル（docker ドライバーでなければスキップ、必須なら失敗）。"""
    from mii_cli.kube.cluster import MINIKUBE

    info = cluster[1]
    required = os.environ.get("MII_REQUIRE_MINIKUBE_DOCKER") == "1"
    reason = ""
    if info.flavor != MINIKUBE:
        reason = f"the current kube context {info.context!r} is a {info.flavor} cluster, not minikube"
    elif shutil.which("minikube") is None:
        reason = "minikube is not on PATH"
    elif not docker_client.containers.list(filters={"label": f"name.minikube.sigs.k8s.io={info.name}"}):
        reason = f"minikube profile {info.name!r} has no node container: it does not use the docker driver"
    if reason:
        script = "tests/e2e/minikube/minikube.sh"
        hint = f'start one with {script} up --driver=docker and eval "$({script} env --driver=docker)"'
        if required:
            pytest.fail(f"MII_REQUIRE_MINIKUBE_DOCKER=1 but {reason}; {hint}")
        pytest.skip(f"{reason}; {hint}")
    return str(info.name)


@pytest.fixture(scope="module")
def docker_env(profile: str) -> dict[str, str]:
    """`eval $(minikube -p P docker-env)` が設定する変数（本物の minikube の出力を読む）。"""
    done = _run("minikube", "-p", profile, "docker-env", "--shell", "bash")
    assert done.returncode == 0, done.stderr
    found = dict(re.findall(r'^export (\w+)="(.*)"$', done.stdout, flags=re.MULTILINE))
    return {name: found[name] for name in DOCKER_ENV_NAMES if name in found}


@pytest.fixture(scope="module")
def node_docker(docker_env: dict[str, str]) -> Any:
    """ノードの中の dockerd（docker-env と同じ TLS の TCP で。mii と同じ接続のしかた）。"""
    from mii_cli.image.docker import docker_client

    return docker_client(timeout=300, environment=docker_env)


@pytest.fixture(scope="module")
def base_in_node(node_docker: Any, docker_client: Any) -> str:
    """ビルドのベースイメージをノードのエンジンにも置く。

    利用者のノードは python:3.13-slim を Docker Hub から pull する。ここにはレジストリが無いので、
    ホストのローカルのベース（MII_BASE_IMAGE）を写す。
    """
    from mii_cli.settings import get_cli_settings

    base = get_cli_settings().base_image
    try:
        node_docker.images.get(base)
    except Exception:  # noqa: BLE001  無ければ写す
        node_docker.images.load(b"".join(docker_client.images.get(base).save(named=True)))
    return base


def node_tags(profile: str) -> set[str]:
    """本物の `minikube image ls --format json` が挙げるタグ（docker ドライバーではノードの dockerd の）。"""
    done = _run("minikube", "-p", profile, "image", "ls", "--format", "json", timeout=120)
    assert done.returncode == 0, done.stderr
    return {tag for image in json.loads(done.stdout) or [] for tag in image.get("repoTags") or []}


def tiny_image(client: Any, tag: str) -> str:
    """1 ファイルだけの小さなイメージをそのエンジンに作る。"""
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in (("Dockerfile", b"FROM scratch\nCOPY hello /hello\n"), ("hello", tag.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True, pull=False)
    return tag


# --- 1. docker-env の下で: 仕様書 §7.2 の手順 -----------------------------------------------------


def test_docker_env_points_at_the_node_over_tls(
    docker_env: dict[str, str], profile: str, node_docker: Any
) -> None:
    assert docker_env["MINIKUBE_ACTIVE_DOCKERD"] == profile
    assert docker_env["DOCKER_TLS_VERIFY"] == "1"
    assert re.fullmatch(r"tcp://\d+\.\d+\.\d+\.\d+:2376", docker_env["DOCKER_HOST"]), docker_env
    certs = Path(docker_env["DOCKER_CERT_PATH"])
    assert {"ca.pem", "cert.pem", "key.pem"} <= {path.name for path in certs.iterdir()}
    assert node_docker.version()["Os"] == "linux"


def test_doctor_says_builds_go_to_the_node_and_need_no_load(
    mii: Mii, docker_env: dict[str, str], profile: str, base_in_node: str
) -> None:
    checks = {check["name"]: check for check in mii.json("doctor", env=docker_env)["checks"]}
    assert checks["docker"]["detail"].startswith(
        f"minikube {profile}'s Docker engine at {docker_env['DOCKER_HOST']}"
    )
    assert checks["build-target"]["ok"], checks["build-target"]
    assert "the cluster of" in checks["build-target"]["detail"]
    assert "without a load" in checks["build-target"]["detail"]
    assert (
        checks["image-loader"]["detail"]
        == f"none needed: builds go into minikube {profile}'s node (docker-env)"
    )


@pytest.fixture(scope="module")
def built(
    mii: Mii, docker_env: dict[str, str], base_in_node: str, docker_client: Any, profile: str
) -> dict[str, Any]:
    """docker-env の下の `mii build`（ノードのエンジンへ）。"""
    result: dict[str, Any] = mii.json("build", env=docker_env)
    return result


def test_build_under_docker_env_puts_the_image_in_the_node_only(
    built: dict[str, Any], profile: str, docker_client: Any
) -> None:
    from docker.errors import ImageNotFound

    assert built["daemon"] == {"host": built["daemon"]["host"], "minikube_profile": profile}
    image = built["unique_tag"]
    assert f"docker.io/library/{image}" in node_tags(profile)
    with pytest.raises(ImageNotFound):
        docker_client.images.get(image)


@pytest.fixture(scope="module")
def deployed(mii: Mii, docker_env: dict[str, str], built: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """docker-env の下の `mii deploy`（読み込みもレジストリも無し）。"""
    result: dict[str, Any] = mii.json("deploy", "-n", NAMESPACE, *SIZING, "--timeout", "420", env=docker_env)
    yield result
    mii("teardown", "-n", NAMESPACE, "--timeout", "300")


def test_deploy_under_docker_env_skips_the_load(deployed: dict[str, Any], built: dict[str, Any]) -> None:
    assert deployed["image"] == built["unique_tag"]
    assert deployed["delivery"]["action"] == "docker-env"
    assert deployed["delivery"]["detail"].endswith("no image load")
    assert deployed["rollout"]["ready"] == 2
    assert deployed["pods_check"]["passed"] is True


def test_smoke_test_sees_two_pods(mii: Mii, deployed: dict[str, Any]) -> None:
    report = mii.json("smoke-test", "-n", NAMESPACE, "--timeout", "10")
    assert report["passed"], report
    assert len(report["served_by"]) >= 2


def test_port_forward_and_curl_as_the_specification_does(deployed: dict[str, Any]) -> None:
    """§7.2: `kubectl -n NS port-forward svc/model-in-image 8000:8000` と curl（ポートは空いているもの）。"""
    port = free_port()
    forward = subprocess.Popen(
        ["kubectl", "-n", NAMESPACE, "port-forward", "svc/model-in-image", f"{port}:8000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=host_environ(),
    )
    try:
        assert forward.stdout is not None
        first = forward.stdout.readline()
        assert f"127.0.0.1:{port} -> 8000" in first, first
        done = _run(
            "curl", "-sS", "--max-time", "10", f"http://127.0.0.1:{port}/predict",
            "-H", "Content-Type: application/json", "-d", '{"data": [[5.1, 3.5, 1.4, 0.2]]}',
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        prediction = json.loads(done.stdout)["prediction"]
        assert len(prediction) == 3
        assert max(prediction) == prediction[0]  # setosa
    finally:
        forward.terminate()
        forward.wait(timeout=30)


def test_run_under_docker_env_publishes_where_this_machine_reaches_it(
    mii: Mii, docker_env: dict[str, str], built: dict[str, Any]
) -> None:
    node_ip = docker_env["DOCKER_HOST"].removeprefix("tcp://").rsplit(":", 1)[0]
    port = 18080
    started = mii.json("run", "--image", built["unique_tag"], "--port", str(port), "--detach", env=docker_env)
    try:
        assert started["url"] == f"http://{node_ip}:{port}"
        report = mii.json("smoke-test", "--url", started["url"])
        assert report["passed"], report
    finally:
        stopped = mii("stop", env=docker_env)
        assert stopped.exit_code == 0, stopped.output


# --- 2. 上書きの危うさ: ノードにだけあるイメージと、変数の無い `minikube image load` ---------------------


def _answers(program: str, *args: str) -> tuple[int, str]:
    done = _run(program, *args)
    first_error = next((line for line in done.stderr.splitlines() if line.strip()), "")
    return done.returncode, first_error


def test_a_load_without_docker_env_removes_a_node_only_image_and_exits_0(
    profile: str, node_docker: Any, tmp_path: Path
) -> None:
    """本物の minikube の `image load`（既定の --overwrite=true）はノードのイメージを消し、0 で終わる。

    偽の minikube（単体テストの相手）も同じに答える。
    """
    from tests.fakes.cluster_tools import FakeClusterTools

    image = tiny_image(node_docker, f"mii-e2e-node-only:{time.time_ns()}")
    loaded = f"docker.io/library/{image}"
    assert loaded in node_tags(profile)
    fake = FakeClusterTools(tmp_path / "bin")
    fake.minikube_profile(profile)
    fake.node_images(profile, image)
    call = ("-p", profile, "image", "load", image, "--daemon")
    real = _answers(shutil.which("minikube") or "minikube", *call)
    assert real == _answers(str(fake.folder / "minikube"), *call)
    assert real == (0, f"! The image '{image}' was not found; unable to add it to cache.")
    assert loaded not in node_tags(profile)
    assert loaded not in fake.minikube_images(profile)


def test_mii_does_not_load_over_an_image_only_in_the_node(
    mii: Mii, profile: str, node_docker: Any, deployed: dict[str, Any]
) -> None:
    image = tiny_image(node_docker, f"model-in-image:0.1.0-node-only-{time.time_ns()}")
    result = mii("deploy", "-n", NAMESPACE, "--image", image, *SIZING, env=WITHOUT_DOCKER_ENV)
    assert result.exit_code == 5, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1
    assert errors[0].startswith(
        f"Error: {image} is only in minikube {profile}'s node (built there under docker-env)"
    )
    assert f"docker.io/library/{image}" in node_tags(profile)
    assert mii.json("status", "-n", NAMESPACE)["deployment"]["image"] == deployed["image"]


def test_docker_env_for_another_profile_is_refused(
    mii: Mii, docker_env: dict[str, str], deployed: dict[str, Any]
) -> None:
    other = {**docker_env, "MINIKUBE_ACTIVE_DOCKERD": "someone-else"}
    result = mii("deploy", "-n", NAMESPACE, *SIZING, env=other)
    assert result.exit_code == 2, result.output
    (error,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert "point at minikube profile 'someone-else'" in error


# --- 3. docker-env の下のモデルの更新: canary と昇格 ----------------------------------------------------


def test_a_retrained_model_goes_out_as_a_canary_and_is_promoted(
    mii: Mii, cluster: tuple[Any, Any], docker_env: dict[str, str], deployed: dict[str, Any], tmp_path: Path
) -> None:
    trained = mii.json("train", "--output", str(tmp_path), "--seed", "7", "--test-size", "0.3")
    model, labels = tmp_path / "iris_svc.onnx", tmp_path / "label.json"
    built = mii.json("build", "--model", str(model), "--labels", str(labels), env=docker_env)
    rows = tmp_path / "rows.csv"
    rows.write_text("5.1,3.5,1.4,0.2\n6.3,2.8,5.1,1.5\n6.0,2.2,5.0,1.5\n")
    canary = mii.json(
        "deploy", "-n", NAMESPACE, "--image", built["unique_tag"], "--canary", "--compare-rows", str(rows),
        "--timeout", "300", *SIZING, env=docker_env,
    )  # fmt: skip
    assert canary["delivery"]["action"] == "docker-env"
    assert canary["deployment"] == "model-in-image-canary"
    verdict = canary["verdict"]
    assert verdict["canary_model"] == trained["model_sha256"] == built["model_sha256"]
    assert verdict["stable_model"] == deployed["model"]["model_sha256"]
    promoted = mii.json("promote", "-n", NAMESPACE, "--timeout", "300")
    assert promoted["model_sha256"] == trained["model_sha256"]
    status = mii.json("status", "-n", NAMESPACE)
    assert status["canary"] is None
    assert status["deployment"]["model_sha256"] == trained["model_sha256"]
    assert served_models(cluster[0], NAMESPACE) == {trained["model_sha256"]}


def test_status_shows_the_hpa_reading_cpu(mii: Mii, deployed: dict[str, Any]) -> None:
    # metrics-server（minikube のアドオン）は 60 秒ごとに集めるので、最初の値まで待つ（ここまでの手順で
    # 多くは過ぎている: デプロイの直後に待たないように、docker-env の手順の最後に置く）
    deadline = time.monotonic() + 240
    status = mii.json("status", "-n", NAMESPACE)
    while status["hpa"]["cpu_current"] is None and time.monotonic() < deadline:
        time.sleep(10)
        status = mii.json("status", "-n", NAMESPACE)
    assert status["hpa"]["cpu_current"] is not None, status["hpa"]
    assert sum(pod["ready"] for pod in status["pods"]) >= 2
    # 直前の昇格で Deployment は新しいモデルのイメージになっている（HPA はそのまま読み続ける）
    assert status["deployment"]["image"].startswith("model-in-image:")
    assert status["hpa"]["name"] == deployed["deployment"]


# --- 4. docker-env なしで: `mii up` と minikube image load ----------------------------------------------


@pytest.fixture(scope="module")
def up_without_docker_env(mii: Mii, profile: str, docker_client: Any) -> Iterator[dict[str, Any]]:
    result: dict[str, Any] = mii.json(
        "up", "-n", UP_NAMESPACE, *SIZING, "--timeout", "420", env=WITHOUT_DOCKER_ENV
    )
    yield result
    mii("teardown", "-n", UP_NAMESPACE, "--timeout", "300")


def test_up_without_docker_env_loads_the_image_through_minikube(
    profile: str, up_without_docker_env: dict[str, Any], docker_client: Any
) -> None:
    image = up_without_docker_env["image"]
    assert up_without_docker_env["delivery"]["action"] == "load"
    assert docker_client.images.get(image)  # ホストのエンジンで作った
    assert f"docker.io/library/{image}" in node_tags(profile)
    assert up_without_docker_env["rollout"]["ready"] == 2
    assert up_without_docker_env["smoke_test"]["passed"], up_without_docker_env["smoke_test"]
    assert len(up_without_docker_env["smoke_test"]["served_by"]) >= 2


def test_a_load_that_would_load_nothing_stops_deploy_with_one_line(
    mii: Mii, up_without_docker_env: dict[str, Any]
) -> None:
    missing = "model-in-image:0.1.0-not-built-here"
    result = mii("deploy", "-n", UP_NAMESPACE, "--image", missing, *SIZING, env=WITHOUT_DOCKER_ENV)
    assert result.exit_code == 4, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert errors == [
        f"Error: image {missing} is not in the local Docker engine, so minikube image load would load "
        "nothing (it exits 0 all the same)"
    ]
    assert mii.json("status", "-n", UP_NAMESPACE)["deployment"]["image"] == up_without_docker_env["image"]


def test_teardown_removes_both_namespaces(
    mii: Mii, cluster: tuple[Any, Any], deployed: dict[str, Any], up_without_docker_env: dict[str, Any]
) -> None:
    from mii_cli.kube.namespace import namespace_phase

    for namespace in (NAMESPACE, UP_NAMESPACE):
        assert mii.json("teardown", "-n", namespace, "--timeout", "300")["deleted"] is True
        assert namespace_phase(cluster[0], namespace) is None
