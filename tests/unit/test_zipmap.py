"""ZipMap を外したモデル（配信用のセッション）のテスト: 元のモデルと同じ値を配列で出すこと。"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from service.ml import loading
from service.ml.loading import load_model
from service.ml.zipmap import without_zipmap

IRIS_ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]], dtype=np.float32)


def _session(model: bytes | str) -> ort.InferenceSession:
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def _class_order(maps: list[dict[Any, float]]) -> np.ndarray:
    return np.array([[row[key] for key in sorted(row)] for row in maps], dtype=np.float32)


def test_the_stripped_iris_model_gives_the_zipmap_values_as_a_float_tensor(model_path: Path) -> None:
    original = _session(str(model_path))
    stripped = without_zipmap(model_path.read_bytes(), "output_probability")
    assert stripped is not None
    session = _session(stripped)
    feeds = {original.get_inputs()[0].name: IRIS_ROWS}
    labels, maps = original.run(None, feeds)
    new_labels, probabilities = session.run(None, feeds)
    assert [o.name for o in session.get_outputs()] == ["output_label", "output_probability"]
    assert session.get_outputs()[1].type == "tensor(float)"
    assert np.array_equal(new_labels, labels)
    assert np.array_equal(probabilities, _class_order(maps))


@pytest.mark.parametrize("name", ["str_zipmap", "wide_int_zipmap"])
def test_stripped_zoo_models_keep_their_values(zoo: dict[str, Any], name: str) -> None:
    case = zoo[name]
    raw = case.path.read_bytes()
    original = _session(raw)
    stripped = without_zipmap(raw, "output_probability")
    assert stripped is not None
    feeds = {original.get_inputs()[0].name: np.asarray(case.rows, dtype=np.float32)}
    (maps,) = original.run(["output_probability"], feeds)
    (probabilities,) = _session(stripped).run(["output_probability"], feeds)
    assert np.array_equal(probabilities, _class_order(maps))


def test_an_output_that_is_not_a_zipmap_is_left_alone(model_path: Path) -> None:
    assert without_zipmap(model_path.read_bytes(), "output_label") is None


def test_a_model_without_zipmap_is_left_alone(tensor_model: Path) -> None:
    assert without_zipmap(tensor_model.read_bytes(), "output_probability") is None


def test_bytes_that_are_not_a_model_are_left_alone() -> None:
    assert without_zipmap(b"\xff" * 12, "output_probability") is None


def test_loading_a_zipmap_model_serves_from_the_stripped_session(model_path: Path, label_path: Path) -> None:
    model = load_model(model_path, label_path)
    assert model.runtime.zipmaps == {}
    # モデルの説明は元のモデルのまま（ZipMap の出力、V2 では FP32 [N, 3]）
    assert model.info.output_format == "zipmap"
    assert {o["name"]: o["type"] for o in model.info.outputs}[
        "output_probability"
    ] == "seq(map(int64,tensor(float)))"
    assert model.outputs[1].datatype == "FP32"
    assert model.outputs[1].shape == [-1, 3]
    (maps,) = _session(str(model_path)).run(["output_probability"], {model.info.input_name: IRIS_ROWS})
    assert model.predict(IRIS_ROWS.tolist()) == _class_order(maps).tolist()


def test_loading_keeps_the_zipmap_session_when_the_stripped_one_answers_differently(
    model_path: Path, label_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mii_cli.model.train import fit, to_onnx

    # 別のシードで学習した（答えの違う）モデルから ZipMap を外したもの（入出力の名前は同じ）を渡す
    other = without_zipmap(to_onnx(fit(7, 0.5)[0]), "output_probability")
    assert other is not None
    assert [o.name for o in _session(other).get_outputs()] == ["output_label", "output_probability"]
    monkeypatch.setattr(loading, "without_zipmap", lambda _bytes, _output: other)
    model = load_model(model_path, label_path)
    assert model.runtime.zipmaps == {"output_probability": (0, 1, 2)}
    (maps,) = _session(str(model_path)).run(["output_probability"], {model.info.input_name: IRIS_ROWS})
    assert model.predict(IRIS_ROWS.tolist()) == _class_order(maps).tolist()


def test_loading_keeps_the_zipmap_session_when_the_stripped_one_does_not_load(
    model_path: Path, label_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loading, "without_zipmap", lambda _bytes, _output: b"\x08\x07")
    model = load_model(model_path, label_path)
    assert model.runtime.zipmaps == {"output_probability": (0, 1, 2)}
