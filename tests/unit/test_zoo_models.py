"""e2e が使う、書き換えたモデル（tests/zoo.py）が言うとおりのモデルであること（本物の ONNX Runtime で）。"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.support import MODELS
from tests.zoo import failing_model, slowed_model

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.1, 2.8, 4.7, 1.2], [6.9, 3.1, 5.4, 2.1]], np.float32)


def run(path: Path, rows: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [np.asarray(output) for output in session.run(["output_label"], {"float_input": rows})]


@pytest.mark.parametrize("make", [slowed_model, failing_model], ids=["slowed", "failing"])
def test_the_rewritten_model_gives_the_same_answers_bit_for_bit(
    make: Callable[[Path, Path], Path], tmp_path: Path
) -> None:
    original = MODELS / "iris_svc.onnx"
    rewritten = make(original, tmp_path / "model.onnx")
    full = ort.InferenceSession(str(rewritten), providers=["CPUExecutionProvider"])
    base = ort.InferenceSession(str(original), providers=["CPUExecutionProvider"])
    for mine, theirs in zip(
        full.run(None, {"float_input": ROWS}), base.run(None, {"float_input": ROWS}), strict=True
    ):
        assert np.array_equal(np.asarray(mine), np.asarray(theirs))


def test_the_failing_model_fails_in_onnx_runtime_on_a_value_above_the_limit(tmp_path: Path) -> None:
    path = failing_model(MODELS / "iris_svc.onnx", tmp_path / "fails.onnx", above=7.0)
    with pytest.raises(Exception, match="out of data bounds"):
        run(path, np.array([[7.7, 3.0, 6.1, 2.3]], np.float32))
    # 境目ちょうどは失敗しない（超えたときだけ）
    assert run(path, np.array([[7.0, 3.0, 6.1, 2.3]], np.float32))[0].shape == (1,)
