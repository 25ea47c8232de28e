"""`mii train` の再現性と、同梱モデルが学習結果と一致することのテスト。"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mii_cli.errors import ModelError
from mii_cli.model.train import train
from service.ml.loading import load_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    train(out)
    return out


def _iris_rows() -> list[list[float]]:
    from sklearn.datasets import load_iris

    return [[float(v) for v in row] for row in load_iris().data]


def test_training_is_deterministic(trained: Path, tmp_path: Path) -> None:
    again = train(tmp_path)
    assert again.model_sha256 == json.loads((trained / "training.json").read_text())["model_sha256"]
    assert (tmp_path / "iris_svc.onnx").read_bytes() == (trained / "iris_svc.onnx").read_bytes()
    rows = _iris_rows()
    first = load_model(trained / "iris_svc.onnx", trained / "label.json").predict(rows)
    second = load_model(tmp_path / "iris_svc.onnx", tmp_path / "label.json").predict(rows)
    assert first == second


def test_trained_model_has_the_expected_signature(trained: Path) -> None:
    model = load_model(trained / "iris_svc.onnx", trained / "label.json")
    assert model.info.input_name == "float_input"
    assert model.info.input_shape == [None, 4]
    assert model.info.input_type == "tensor(float)"
    assert model.info.output_format == "zipmap"
    assert model.labels == {"0": "setosa", "1": "versicolor", "2": "virginica"}


def test_training_facts_are_written(trained: Path) -> None:
    facts = json.loads((trained / "training.json").read_text())
    assert facts["seed"] == 42
    assert facts["accuracy"] >= 0.9
    assert facts["test_rows"] == 30
    assert set(facts["versions"]) >= {"python", "scikit-learn", "skl2onnx", "onnx", "numpy"}


def test_committed_model_is_what_mii_train_produces(
    trained: Path, model_path: Path, label_path: Path
) -> None:
    rows = _iris_rows()
    committed = load_model(model_path, label_path).predict(rows)
    fresh = load_model(trained / "iris_svc.onnx", trained / "label.json").predict(rows)
    np.testing.assert_allclose(committed, fresh, rtol=0, atol=1e-6)
    assert label_path.read_bytes() == (trained / "label.json").read_bytes()


def test_another_seed_gives_another_model(trained: Path, tmp_path: Path) -> None:
    other = train(tmp_path, seed=7)
    assert other.model_sha256 != json.loads((trained / "training.json").read_text())["model_sha256"]


def test_bad_test_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="test size"):
        train(tmp_path, test_size=0.9)
