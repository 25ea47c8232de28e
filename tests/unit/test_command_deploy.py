"""`mii deploy` と `mii up` のコマンド（クラスタは今の kube context にした代役の API サーバー）。"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from mii_cli import cli
from mii_cli.image.build import BuildRequest
from mii_cli.kube import APP_NAME as APP
from mii_cli.kube import render as r
from mii_cli.probe import cluster as kube_smoke
from mii_cli.probe.smoke_test import CheckResult, SmokeReport
from mii_cli.workflows import deploy as deploying
from tests.fakes.kube_api import FakeApiServer
from tests.fakes.kube_objects import IMAGE, NAMESPACE

runner = CliRunner()
DEPLOYMENT = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/model-in-image"


def report(ok: bool, served_by: list[str]) -> SmokeReport:
    check = CheckResult(
        name="load_balancing",
        method="GET",
        path="/predict/test",
        expected=">= 2 pods",
        ok=ok,
        detail="2 pods",
        elapsed_ms=None,
    )
    return SmokeReport(base_url="http://127.0.0.1:1", checks=[check], served_by=served_by)


def test_deploy_json_is_the_deploy_result(kubeconfig: FakeApiServer) -> None:
    result = runner.invoke(cli.app, ["deploy", "--image", IMAGE, "--json", "--timeout", "30"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) == {
        "cluster",
        "namespace",
        "image",
        "applied",
        "metrics_api",
        "rollout",
        "deployment",
        "revision",
        "model",
        "pods_check",
        "verdict",
        "delivery",
        "analysis",
        "mirroring",
    }
    assert (payload["deployment"], payload["revision"], payload["verdict"]) == ("model-in-image", 1, None)
    assert payload["analysis"] is None
    assert payload["delivery"] == {
        "action": "use",
        "reference": IMAGE,
        "detail": f"docker-desktop runs on the local Docker engine, which has {IMAGE}",
    }
    assert payload["pods_check"]["passed"] is True
    assert [check["pod"] for check in payload["pods_check"]["pods"]] == [
        f"model-in-image-{i}" for i in range(4)
    ]
    assert payload["cluster"]["flavor"] == "docker-desktop"
    assert payload["applied"][0] == {"kind": "Namespace", "name": NAMESPACE, "action": "created"}
    assert (payload["rollout"]["ready"], payload["rollout"]["desired"]) == (4, 4)


def test_deploy_draws_each_step_as_a_line(kubeconfig: FakeApiServer) -> None:
    result = runner.invoke(cli.app, ["deploy", "--image", IMAGE, "--timeout", "30"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"• cluster: docker-desktop (docker-desktop, v1.34.0) at {kubeconfig.url}"
    assert lines[1] == f"• image: docker-desktop runs on the local Docker engine, which has {IMAGE}"
    assert lines[2:10] == [
        f"✓ image: {IMAGE}",
        f"✓ Namespace/{NAMESPACE} created",
        "✓ NetworkPolicy/model-in-image created",
        "✓ NetworkPolicy/model-in-image-checks created",
        "✓ Service/model-in-image created",
        "✓ Deployment/model-in-image created",
        "✓ PodDisruptionBudget/model-in-image created",
        "✓ HorizontalPodAutoscaler/model-in-image created",
    ]
    assert lines[10].startswith(f"! the metrics API ({deploying.METRICS_PATH}) is not served")
    assert "✓ deployment/model-in-image: 4/4 pods ready" in lines
    assert f"✓ deployed {IMAGE} to {APP} in namespace {NAMESPACE} (revision 1)" in lines


def test_deploy_says_how_to_reach_the_service(kubeconfig: FakeApiServer) -> None:
    result = runner.invoke(cli.app, ["deploy", "--image", IMAGE])
    assert result.exit_code == 0, result.output
    assert "port-forward svc/model-in-image 8000:8000" in result.output


def test_deploy_takes_the_namespace_option(kubeconfig: FakeApiServer) -> None:
    result = runner.invoke(cli.app, ["deploy", "-n", "staging", "--image", IMAGE, "--json"])
    assert result.exit_code == 0, result.output
    assert "/apis/apps/v1/namespaces/staging/deployments/model-in-image" in kubeconfig.objects


def test_the_registry_setting_is_used_when_the_option_is_left_out(
    kubeconfig: FakeApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mii_cli.settings import get_cli_settings

    monkeypatch.setenv("MII_REGISTRY", "127.0.0.1:5000")
    get_cli_settings.cache_clear()
    reference = f"127.0.0.1:5000/{IMAGE}"  # レジストリにあるイメージ: push せずにそのまま使う
    result = runner.invoke(cli.app, ["deploy", "--image", reference, "--json"])
    assert result.exit_code == 0, result.output
    assert "already in 127.0.0.1:5000" in result.output


def test_up_json_adds_the_cluster_smoke_test(
    kubeconfig: FakeApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kube_smoke, "cluster_smoke_test", lambda **kwargs: report(True, ["a", "b"]))
    result = runner.invoke(cli.app, ["up", "--image", IMAGE, "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["image"] == IMAGE
    assert payload["smoke_test"]["passed"] is True
    assert payload["smoke_test"]["summary"] == {"total": 1, "passed": 1, "failed": 0}


def test_up_fails_when_the_cluster_smoke_test_fails(
    kubeconfig: FakeApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kube_smoke, "cluster_smoke_test", lambda **kwargs: report(False, []))
    result = runner.invoke(cli.app, ["up", "--image", IMAGE])
    assert result.exit_code == 6
    assert "1 of 1 cluster smoke checks failed: load_balancing" in result.output


def test_up_builds_the_image_it_deploys(kubeconfig: FakeApiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from mii_cli.image import build as building

    built: list[BuildRequest] = []

    def build_image(request: BuildRequest, **kwargs: Any) -> Any:
        built.append(request)
        return SimpleNamespace(unique_tag=IMAGE)

    monkeypatch.setattr(building, "build_image", build_image)
    monkeypatch.setattr(kube_smoke, "cluster_smoke_test", lambda **kwargs: report(True, ["a", "b"]))
    result = runner.invoke(cli.app, ["up"])
    assert result.exit_code == 0, result.output
    assert built[0].tag == "model-in-image:0.1.0"
    assert f"✓ built {IMAGE}" in result.output
    live = kubeconfig.objects[DEPLOYMENT]
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE


def test_up_refuses_a_size_no_node_can_hold_before_building(
    kubeconfig: FakeApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mii_cli.image import build as building
    from tests.fakes.kube_objects import node

    kubeconfig.put("/api/v1/nodes/vm", node("vm", "2", "23Gi"))

    def never_build(*args: object, **kwargs: object) -> None:
        pytest.fail("built before checking the size")

    monkeypatch.setattr(building, "build_image", never_build)
    result = runner.invoke(cli.app, ["up", "--cpu", "4", "--memory", "1Ti"])
    assert result.exit_code == 2, result.output
    (error,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert error == (
        "Error: no node of the cluster can give one pod 4000m of CPU (the most a node has is 2000m) and "
        "1024.0Gi of memory (the most a node has is 23.0Gi)"
    )
    assert not kubeconfig.methods("PATCH")


@pytest.mark.parametrize("command", [["deploy", "--image", IMAGE], ["up", "--image", IMAGE]])
def test_without_a_cluster_the_command_is_one_message(no_kubeconfig: None, command: list[str]) -> None:
    result = runner.invoke(cli.app, command)
    assert result.exit_code == 5
    assert "Error: no kube config found" in result.output
    assert "Traceback" not in result.output


# --- --dry-run（クラスタ不要）と大きさのオプション ---


def test_dry_run_prints_yaml_of_the_exact_objects_without_a_cluster(no_kubeconfig: None) -> None:
    result = runner.invoke(cli.app, ["deploy", "--dry-run", "--image", IMAGE, "-n", "demo"])
    assert result.exit_code == 0, result.output
    assert list(yaml.safe_load_all(result.stdout)) == r.render(IMAGE, "demo")


def test_dry_run_json_is_a_list_of_objects() -> None:
    result = runner.invoke(cli.app, ["deploy", "--dry-run", "--json", "--image", IMAGE])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == r.render(IMAGE, NAMESPACE)


def test_dry_run_shows_the_network_policies_before_the_deployment() -> None:
    result = runner.invoke(cli.app, ["deploy", "--dry-run", "--image", IMAGE, "-n", "demo"])
    assert result.exit_code == 0, result.output
    objects = list(yaml.safe_load_all(result.stdout))
    names = [f"{o['kind']}/{o['metadata']['name']}" for o in objects]
    assert names.index("NetworkPolicy/model-in-image") < names.index("Deployment/model-in-image")
    assert names.index("NetworkPolicy/model-in-image-checks") < names.index("Deployment/model-in-image")
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    assert [(p["apiVersion"], p["metadata"]["namespace"]) for p in policies] == [
        ("networking.k8s.io/v1", "demo")
    ] * 2
    assert policies[0]["spec"]["egress"] == []


def test_a_canary_or_shadow_dry_run_prints_what_that_deploy_applies(no_kubeconfig: None) -> None:
    result = runner.invoke(
        cli.app, ["deploy", "--dry-run", "--image", IMAGE, "--canary", "--canary-replicas", "2"]
    )
    assert result.exit_code == 0, result.output
    assert list(yaml.safe_load_all(result.stdout)) == [r.canary_deployment(r.render(IMAGE, NAMESPACE), 2)]

    result = runner.invoke(
        cli.app, ["deploy", "--dry-run", "--json", "--image", IMAGE, "--shadow", "--mirror-percent", "5"]
    )
    assert result.exit_code == 0, result.output
    objects = json.loads(result.stdout)
    assert objects == r.shadow_objects(r.render(IMAGE, NAMESPACE), NAMESPACE)
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"] == ["model-in-image-shadow"]
    assert "mirror 5% of their predict requests" in result.stderr


def test_dry_run_without_docker_says_it_shows_the_manifests_image(monkeypatch: pytest.MonkeyPatch) -> None:
    from mii_cli.errors import DockerError

    def no_docker(_repository: str) -> str:
        raise DockerError("cannot reach the Docker engine")

    monkeypatch.setattr(deploying, "latest_local_image", no_docker)
    result = runner.invoke(cli.app, ["deploy", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    objects = json.loads(result.stdout)
    image = r.find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == deploying.manifest_image()
    assert f"showing the manifests' image {image}" in result.stderr


def _resources(objects: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = r.find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return container["resources"]  # type: ignore[no-any-return]


def test_the_dry_run_shows_the_sizing() -> None:
    options = ["--replicas", "2", "--cpu", "250m", "--memory", "256Mi"]
    result = runner.invoke(cli.app, ["deploy", "--dry-run", "--image", IMAGE, *options])
    assert result.exit_code == 0, result.output
    objects = list(yaml.safe_load_all(result.stdout))
    assert r.find(objects, "Deployment")["spec"]["replicas"] == 2
    assert _resources(objects)["requests"] == {"cpu": "250m", "memory": "256Mi", "ephemeral-storage": "256Mi"}
    assert r.find(objects, "HorizontalPodAutoscaler")["spec"]["minReplicas"] == 2


@pytest.mark.parametrize("command", ["deploy", "up"])
def test_invalid_sizing_on_the_command_line_is_one_line(command: str) -> None:
    result = runner.invoke(cli.app, [command, "--cpu", "half", "--image", IMAGE])
    assert result.exit_code == 2
    assert "Error: --cpu 'half' is not a CPU quantity" in result.output
    assert "Traceback" not in result.output


def test_replicas_below_one_is_refused_before_anything_is_printed() -> None:
    result = runner.invoke(cli.app, ["deploy", "--dry-run", "--image", IMAGE, "--replicas", "0", "--json"])
    assert result.exit_code == 2
    assert "--replicas 0 is out of range" in result.output
    assert result.stdout == ""


def test_the_sizing_can_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from mii_cli.settings import get_cli_settings

    monkeypatch.setenv("MII_REPLICAS", "2")
    monkeypatch.setenv("MII_POD_CPU", "250m")
    monkeypatch.setenv("MII_POD_MEMORY", "256Mi")
    get_cli_settings.cache_clear()
    result = runner.invoke(cli.app, ["deploy", "--dry-run", "--image", IMAGE, "--json"])
    assert result.exit_code == 0, result.output
    objects = json.loads(result.stdout)
    assert r.find(objects, "Deployment")["spec"]["replicas"] == 2
    assert _resources(objects)["limits"] == {"cpu": "250m", "memory": "256Mi", "ephemeral-storage": "256Mi"}


def test_the_sizing_option_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from mii_cli.settings import get_cli_settings

    monkeypatch.setenv("MII_POD_CPU", "250m")
    get_cli_settings.cache_clear()
    result = runner.invoke(cli.app, ["deploy", "--dry-run", "--image", IMAGE, "--json", "--cpu", "300m"])
    assert _resources(json.loads(result.stdout))["limits"]["cpu"] == "300m"


def test_the_default_image_follows_the_repository_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from mii_cli.settings import get_cli_settings

    asked: list[str] = []

    def newest(repository: str) -> str:
        asked.append(repository)
        return f"{repository}:0.1.0-abc-def"

    monkeypatch.setattr(deploying, "latest_local_image", newest)
    monkeypatch.setenv("MII_IMAGE_REPOSITORY", "team/iris")
    get_cli_settings.cache_clear()
    result = runner.invoke(cli.app, ["deploy", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    assert asked == ["team/iris"]
    assert (
        r.find(json.loads(result.stdout), "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
        == "team/iris:0.1.0-abc-def"
    )


def test_deploy_and_up_take_the_same_shared_options() -> None:
    """共通のオプションは 1 か所（SHARED_OPTIONS）で定義され、両方のコマンドに同じ既定値で載る。"""
    import typer.main

    from mii_cli.commands import deploy as commands

    group: Any = typer.main.get_command(cli.app)
    shared = {name for name, _, _ in commands.SHARED_OPTIONS}
    for name in ("deploy", "up"):
        command = group.commands[name]
        params = {param.name: param for param in command.params}
        assert shared <= set(params), (name, shared - set(params))
        assert params["timeout"].default == 300.0
        assert params["namespace"].opts == ["--namespace", "-n"]
    assert {"load", "dry_run"} <= {param.name for param in group.commands["deploy"].params}
    assert not {"load", "dry_run"} & {param.name for param in group.commands["up"].params}
