"""1 行の推論を結び付けた入出力で動かす `BoundRow` のテスト: 普通の run と同じ答え、使えないときの戻り道。"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from service.ml.loading import load_model
from service.ml.prediction import FLOAT32_LIMIT, BoundRow
from tests.zoo import ZOO_NAMES, ZooModel, onnxruntime_answers, slice_model

IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


def _session_outputs(path: Path, row: list[float]) -> list[Any]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: np.asarray([row], dtype=np.float32)})


def test_the_iris_model_binds_the_predict_output_and_the_v2_default(
    model_path: Path, label_path: Path
) -> None:
    model = load_model(model_path, label_path)
    assert set(model.bound) == {("output_probability",), ("output_label", "output_probability")}


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_one_row_answers_match_onnxruntime_for_every_zoo_model(zoo: dict[str, ZooModel], name: str) -> None:
    case = zoo[name]
    model = load_model(case.path)
    for row in case.rows:
        expected, labels = onnxruntime_answers(case, [row])
        np.testing.assert_allclose(model.predict([row]), expected, rtol=1e-6, atol=1e-7)
        if labels is not None:
            assert model.predict_label([row]) == [str(label) for label in labels]


def test_a_double_input_model_is_bound_and_keeps_every_bit_of_the_row(tmp_path: Path) -> None:
    from onnx import TensorProto

    model = load_model(slice_model(tmp_path, TensorProto.DOUBLE, "scores"))
    assert set(model.bound) == {("scores",)}
    # float32 に丸めれば変わる値: 結び付けた入力に float64 のまま書かれていること
    row = [0.1, 1 / 3, 2.0**-30 + 1.0, 9.0]
    assert model.predict([row]) == [row[:3]]
    assert model.infer_values([row], ("scores",)) == [row[:3]]


def test_list_and_array_rows_give_the_plain_runs_v2_values(model_path: Path, label_path: Path) -> None:
    model = load_model(model_path, label_path)
    names = model.output_names
    binding = model.bound.pop(tuple(names))
    plain = {
        tuple(row): [model.as_values(n, o)[1] for n, o in zip(names, model.infer([row], names), strict=True)]
        for row in IRIS_ROWS
    }
    model.bound[tuple(names)] = binding
    for row in IRIS_ROWS:
        assert model.infer_values([row], tuple(names)) == plain[tuple(row)]
        assert model.infer_values(model.to_batch([row]), tuple(names)) == plain[tuple(row)]


def test_string_labels_are_not_bound_but_the_probabilities_are(zoo: dict[str, ZooModel]) -> None:
    model = load_model(zoo["str_zipmap"].path)
    assert set(model.bound) == {("output_probability",)}


def test_a_fixed_batch_model_is_not_bound(zoo: dict[str, ZooModel]) -> None:
    assert load_model(zoo["fixed_batch"].path).bound == {}


def test_v2_one_row_outputs_match_onnxruntime_and_are_not_overwritten_by_the_next_row(
    model_path: Path, label_path: Path
) -> None:
    model = load_model(model_path, label_path)
    first = model.infer(model.to_batch([IRIS_ROWS[0]]), model.output_names)
    second = model.infer(model.to_batch([IRIS_ROWS[1]]), model.output_names)
    for row, answer in ((IRIS_ROWS[0], first), (IRIS_ROWS[1], second)):
        label, maps = _session_outputs(model_path, row)
        assert np.array_equal(answer[0], label)
        assert np.array_equal(answer[1], np.array([list(maps[0].values())], dtype=np.float32))
    assert first[0].tolist() != second[0].tolist()


def test_a_binding_in_use_falls_back_to_the_plain_run(model_path: Path, label_path: Path) -> None:
    model = load_model(model_path, label_path)
    bound = model.bound[("output_probability",)]
    expected = model.predict([IRIS_ROWS[2]])
    assert bound.lock.acquire(blocking=False)
    try:
        assert bound(model.to_batch([IRIS_ROWS[2]])) is None
        assert model.predict([IRIS_ROWS[2]]) == expected
    finally:
        bound.lock.release()


def test_a_binding_that_fails_falls_back_to_the_plain_run(model_path: Path, label_path: Path) -> None:
    model = load_model(model_path, label_path)
    expected = model.predict([IRIS_ROWS[1]])

    def broken(_binding: Any, _options: Any) -> None:
        raise RuntimeError("bound run failed")

    real = model.bound[("output_probability",)]
    failing = BoundRow(broken, None, None, real.input, real.outputs)
    model.bound[("output_probability",)] = failing
    assert failing(model.to_batch([IRIS_ROWS[1]])) is None
    assert model.predict([IRIS_ROWS[1]]) == expected
    # 失敗のあとも使える（鍵は返っている）
    assert failing.lock.acquire(blocking=False)
    failing.lock.release()


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"id": "r-1"},
        {"id": 'quote " slash \\ ünïcode \u2028'},
        {"outputs": [{"name": "output_probability"}]},
    ],
    ids=["all-outputs", "with-id", "with-id-to-escape", "one-output"],
)
def test_a_v2_json_answer_from_the_binding_is_byte_identical_to_the_plain_one(
    model_path: Path, label_path: Path, extra: dict[str, Any]
) -> None:
    import orjson

    from service.app import v2_codec

    model = load_model(model_path, label_path)
    tensor = {"name": model.info.input_name, "shape": [1, 4], "datatype": "FP32", "data": IRIS_ROWS[1]}
    body = orjson.dumps({"inputs": [tensor], **extra})
    request = v2_codec.parse_infer(model, body, None)
    assert isinstance(request.batch, list)  # 1 行の JSON は配列にせず、struct で結び付けた入力に書く
    one_row = v2_codec.one_row_json(model)
    assert model.infer_values(request.batch, tuple(request.outputs)) is not None
    bound = v2_codec.answer_infer(model, request, one_row)
    plain = v2_codec.render_infer(model, request, model.infer(request.batch, request.outputs))
    assert bound == plain == v2_codec.answer_infer(model, request, {})
    model.bound.clear()
    assert model.infer_values(request.batch, tuple(request.outputs)) is None
    assert v2_codec.answer_infer(model, request, one_row) == plain


def test_a_v2_json_answer_while_the_binding_is_in_use_is_the_same_bytes(
    model_path: Path, label_path: Path
) -> None:
    import orjson

    from service.app import v2_codec

    model = load_model(model_path, label_path)
    tensor = {"name": model.info.input_name, "shape": [1, 4], "datatype": "FP32", "data": IRIS_ROWS[2]}
    request = v2_codec.parse_infer(model, orjson.dumps({"inputs": [tensor]}), None)
    one_row = v2_codec.one_row_json(model)
    free = v2_codec.answer_infer(model, request, one_row)
    binding = model.bound[tuple(model.output_names)]
    assert binding.lock.acquire(blocking=False)
    try:
        assert model.infer_values(request.batch, tuple(request.outputs)) is None
        assert v2_codec.answer_infer(model, request, one_row) == free
    finally:
        binding.lock.release()


def test_a_list_row_keeps_every_float32_bit_the_plain_run_sees(tmp_path: Path) -> None:
    from onnx import TensorProto

    path = slice_model(tmp_path, TensorProto.FLOAT, "scores")
    model = load_model(path)
    assert ("scores",) in model.bound
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    below_limit = float(np.nextafter(FLOAT32_LIMIT, 0.0))
    rows = [
        [-0.0, 1e-45, 16777217, 1.0],
        [2.0**60 + 2.0**36 + 1, 0.1, 1 / 3, 1.0],
        [below_limit, -below_limit, 1.4e-45, 1.0],
    ]
    for row in rows:
        (want,) = session.run(None, {"x": np.asarray([row], dtype=np.float32)})
        got = model.bound[("scores",)]([row])
        assert got is not None
        assert got[0].tobytes() == want.tobytes()
        assert model.predict([row]) == want.tolist()


def test_a_list_write_that_misses_the_input_is_caught_at_load(
    model_path: Path, label_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import service.ml.prediction as prediction

    class Lost:
        """書き込みがどこにも届かない struct（結び付けた入力は前の値のまま）。"""

        def __init__(self, _format: str) -> None:
            pass

        def pack_into(self, *_args: Any) -> None:
            pass

    monkeypatch.setattr(prediction, "struct", SimpleNamespace(Struct=Lost))
    model = load_model(model_path, label_path)
    assert model.bound == {}
    monkeypatch.undo()
    assert model.predict([IRIS_ROWS[0]]) == load_model(model_path, label_path).predict([IRIS_ROWS[0]])
