"""Deployment と HPA の大きさ（`--replicas`・`--cpu`・`--memory`）の描画と値の検証。"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from mii_cli.errors import ConfigError
from mii_cli.kube import render as r
from mii_cli.kube.render import Sizing

IMAGE = "model-in-image:0.1.0-0123456789ab-fedcba987654"


def _manifest(kind: str) -> dict[str, Any]:
    """manifests/ にそのまま書かれたオブジェクト（既定値の唯一の定義）。"""
    return r.find(r.load_manifests(), kind)


def _resources(objects: list[dict[str, Any]]) -> dict[str, Any]:
    resources: dict[str, Any] = r.find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0][
        "resources"
    ]
    return resources


def test_without_sizing_the_specification_defaults_stay() -> None:
    objects = r.render(IMAGE, "demo", sizing=Sizing())
    deployment, manifest = r.find(objects, "Deployment"), _manifest("Deployment")
    assert deployment["spec"]["replicas"] == manifest["spec"]["replicas"] == 4
    assert _resources(objects) == manifest["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert _resources(objects)["limits"] == {"cpu": "500m", "memory": "300Mi", "ephemeral-storage": "256Mi"}
    hpa = r.find(objects, "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)


def test_a_small_node_sizing_sets_requests_equal_to_limits_and_the_hpa_minimum() -> None:
    objects = r.render(IMAGE, "demo", sizing=Sizing(replicas=2, cpu="250m", memory="256Mi"))
    assert r.find(objects, "Deployment")["spec"]["replicas"] == 2
    expected = {"cpu": "250m", "memory": "256Mi", "ephemeral-storage": "256Mi"}
    assert _resources(objects) == {"requests": expected, "limits": expected}
    hpa = r.find(objects, "HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)


def test_the_hpa_minimum_never_exceeds_the_manifest_and_the_maximum_makes_room() -> None:
    hpa = r.find(r.render(IMAGE, "demo", sizing=Sizing(replicas=12)), "HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 12)


def test_sized_objects_validate_against_the_official_schema() -> None:
    for obj in r.render(IMAGE, "demo", sizing=Sizing(replicas=1, cpu="0.25", memory="1Gi")):
        kubernetes_validate.validate(obj, "1.34", strict=True)


@pytest.mark.parametrize(
    ("text", "millicores"),
    [("250m", 250), ("0.5", 500), ("1", 1000), ("1.5", 1500), (".25", 250), ("1e0", 1000), ("+500m", 500)],
)
def test_cpu_quantities(text: str, millicores: int) -> None:
    assert r.cpu_millicores(text) == millicores


@pytest.mark.parametrize(
    ("text", "size"),
    [("300Mi", 300 * 2**20), ("1Gi", 2**30), ("512M", 512 * 10**6), ("1e9", 10**9), ("0.5Gi", 2**29)],
)
def test_memory_quantities(text: str, size: int) -> None:
    assert r.memory_bytes(text) == size


@pytest.mark.parametrize(
    ("sizing", "message"),
    [
        ({"replicas": 0}, "--replicas 0 is out of range"),
        ({"cpu": "fast"}, "--cpu 'fast' is not a CPU quantity"),
        ({"cpu": "250Mi"}, "--cpu '250Mi' is not a CPU quantity"),
        ({"cpu": "0.0005"}, "finer than a millicore"),
        ({"cpu": "10m"}, "below the 50m"),
        # API サーバーと同じく、空白・負の値・知らない接尾辞は量ではない
        ({"cpu": " 300m "}, "--cpu ' 300m ' is not a CPU quantity"),
        ({"cpu": "-500m"}, "--cpu '-500m' is not a CPU quantity"),
        ({"memory": "300 Mi"}, "--memory '300 Mi' is not a memory quantity"),
        ({"memory": "1e400"}, "--memory '1e400' is not a memory quantity"),
        ({"memory": "lots"}, "--memory 'lots' is not a memory quantity"),
        ({"memory": "300Xi"}, "--memory '300Xi' is not a memory quantity"),
        ({"memory": "300"}, "below the 96Mi"),
    ],
)
def test_invalid_sizing_is_a_config_error(sizing: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Sizing(**sizing)
