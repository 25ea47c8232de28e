"""元実装との一致: 参照モデルで 150 行すべての確率とラベルが期待値どおりであること。"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def reference_client(make_client: Callable[..., TestClient], reference_dir: Path) -> TestClient:
    # 元実装のモデルの横には学習の事実が無いので、元実装のサンプルを明示する（mii serve --sample と同じ）
    return make_client(
        model_filepath=reference_dir / "iris_svc.onnx",
        label_filepath=reference_dir / "label.json",
        sample_row=[5.1, 3.5, 1.4, 0.2],
    )


def _close(actual: list[float], expected: list[float]) -> None:
    # float32 の精度で一致すること
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float32),
        np.asarray(expected, dtype=np.float32),
        rtol=0,
        atol=1e-7,
    )


def test_every_row_one_at_a_time(reference_client: TestClient, expected_cases: list[dict[str, Any]]) -> None:
    assert len(expected_cases) == 150
    for case in expected_cases:
        proba = reference_client.post("/predict", json={"data": [case["data"]]}).json()["prediction"]
        _close(proba, case["probabilities"])
        label = reference_client.post("/predict/label", json={"data": [case["data"]]}).json()
        assert label == {"prediction": case["label"]}, case["data"]


def test_all_rows_as_one_batch(reference_client: TestClient, expected_cases: list[dict[str, Any]]) -> None:
    rows = [case["data"] for case in expected_cases]
    probabilities = reference_client.post("/predict", json={"data": rows}).json()["prediction"]
    assert len(probabilities) == 150
    for actual, case in zip(probabilities, expected_cases, strict=True):
        _close(actual, case["probabilities"])
    labels = reference_client.post("/predict/label", json={"data": rows}).json()["prediction"]
    assert labels == [case["label"] for case in expected_cases]


def test_sample_matches_the_specification(reference_client: TestClient) -> None:
    proba = reference_client.get("/predict/test").json()["prediction"]
    assert proba == pytest.approx([0.97093159, 0.01558308, 0.01348537], abs=1e-8)
    assert reference_client.get("/predict/test/label").json() == {"prediction": "setosa"}
    assert reference_client.get("/metadata").json()["model"]["sha256"] == (
        "53856dda7040348575b82319fef5506ad8479d800c87b5ba102b756d842f94e2"
    )
