"""`mii status` のコマンド: JSON は ClusterStatus そのもの、人向けは 1 画面。"""

from __future__ import annotations

import json

from typer.testing import CliRunner

from mii_cli import cli
from tests.fakes.kube_api import FakeApiServer
from tests.fakes.kube_objects import IMAGE

runner = CliRunner()


def deploy(fake: FakeApiServer) -> None:
    result = runner.invoke(cli.app, ["deploy", "--image", IMAGE, "--json", "--timeout", "30"])
    assert result.exit_code == 0, result.output


def test_status_json_has_the_deployment_pods_service_hpa_and_policies(kubeconfig: FakeApiServer) -> None:
    deploy(kubeconfig)
    result = runner.invoke(cli.app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) == {
        "namespace",
        "deployment",
        "pods",
        "service",
        "hpa",
        "network_policies",
        "canary",
        "shadow",
    }
    assert payload["network_policies"] == [
        {
            "name": "model-in-image",
            "pod_selector": "app.kubernetes.io/name=model-in-image",
            "ingress": "8000/TCP",
            "egress": "none",
        },
        {
            "name": "model-in-image-checks",
            "pod_selector": "app.kubernetes.io/component=check",
            "ingress": "none",
            "egress": "app.kubernetes.io/name=model-in-image:8000/TCP",
        },
    ]
    assert payload["deployment"]["ready"] == 4
    # タグとダイジェストは参照を分けたもの（タグだけでデプロイしたならダイジェストは無い）
    assert (payload["deployment"]["image"], payload["deployment"]["tag"]) == (IMAGE, IMAGE.split(":")[1])
    assert (payload["deployment"]["repository"], payload["deployment"]["digest"]) == ("model-in-image", None)
    assert set(payload["pods"][0]) == {
        "name",
        "ready",
        "state",
        "restarts",
        "node",
        "ip",
        "age",
        "model_sha256",
        "canary",
    }
    assert payload["canary"] is None
    assert payload["shadow"] is None
    assert payload["hpa"]["cpu_current"] is None


def test_status_shows_ready_pods_on_one_screen(kubeconfig: FakeApiServer) -> None:
    deploy(kubeconfig)
    result = runner.invoke(cli.app, ["status"])
    assert result.exit_code == 0, result.output
    assert "ready 4/4" in result.output
    assert "8000/TCP" in result.output
    assert (
        "NetworkPolicy model-in-image: pods app.kubernetes.io/name=model-in-image, "
        "ingress 8000/TCP, egress none" in result.output
    )
    assert "egress app.kubernetes.io/name=model-in-image:8000/TCP" in result.output
    assert "network plugin supports NetworkPolicy" in result.output


def test_status_without_a_cluster_is_one_message(no_kubeconfig: None) -> None:
    result = runner.invoke(cli.app, ["status"])
    assert result.exit_code == 5
    assert "Error: no kube config found" in result.output


def test_status_shows_the_tag_and_digest_of_an_image_deployed_by_digest(kubeconfig: FakeApiServer) -> None:
    digest = "sha256:" + "c" * 64
    pinned = f"127.0.0.1:5000/{IMAGE}@{digest}"  # レジストリにあるイメージ: そのまま使う
    deployed = runner.invoke(cli.app, ["deploy", "--image", pinned, "--json", "--timeout", "30"])
    assert deployed.exit_code == 0, deployed.output
    assert json.loads(deployed.stdout)["image"] == pinned
    shown = runner.invoke(cli.app, ["status"])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert "image 127.0.0.1:5000/model-in-image" in shown.output
    assert f"  tag {IMAGE.split(':')[1]}" in lines
    assert f"  digest {digest}" in lines
    payload = json.loads(runner.invoke(cli.app, ["status", "--json"]).stdout)["deployment"]
    assert payload["image"] == pinned
    assert (payload["repository"], payload["tag"], payload["digest"]) == (
        "127.0.0.1:5000/model-in-image",
        IMAGE.split(":")[1],
        digest,
    )


def test_status_shows_a_running_shadow_beside_the_stable_deployment(kubeconfig: FakeApiServer) -> None:
    from mii_cli.kube import NAMESPACE
    from mii_cli.kube.apply import apply_all
    from mii_cli.kube.render import render, shadow_objects

    deploy(kubeconfig)
    shadow_image = IMAGE.replace("0123", "4567") if "0123" in IMAGE else f"{IMAGE}-shadow"
    apply_all(kubeconfig.client(), shadow_objects(render(shadow_image, NAMESPACE), NAMESPACE))
    payload = json.loads(runner.invoke(cli.app, ["status", "--json"]).stdout)
    assert payload["shadow"]["name"] == "model-in-image-shadow"
    assert payload["canary"] is None
    shown = runner.invoke(cli.app, ["status"])
    assert shown.exit_code == 0, shown.output
    assert "Shadow" in shown.output
    assert "NetworkPolicy model-in-image-mirror" in shown.output
