"""2 つの答えの比べ方（service/app/comparison.py）: 影（shadow）の答えと自分の答えを比べる。

答えは生成した値から作る（hypothesis）: 同じ答えは違いが 0、1 つの値をずらせばその差がそのまま最大の差、
分類器の行の最大の位置を入れ替えればラベルの変わった行が 1 つ。形の合わない答えは Incomparable になり、
それ以外の例外は決して上がらない（送り手のタスクが止まらない）。
"""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.app.comparison import (
    PREDICT,
    PREDICT_LABEL,
    V2,
    Comparison,
    Incomparable,
    compare,
    difference,
)

# JSON で往復しても同じになる有限の値（orjson は float を最短の表記で書くので往復で変わらない）
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
probability = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
labels = st.text(min_size=1, max_size=8)


@st.composite
def tables(draw: st.DrawFn, values: st.SearchStrategy[float] = finite) -> list[list[float]]:
    """N 行 × 幅 w の値（N・w は 1 以上）。"""
    width = draw(st.integers(1, 5))
    return draw(st.lists(st.lists(values, min_size=width, max_size=width), min_size=1, max_size=6))


def predict_answer(rows: list[list[Any]]) -> bytes:
    """サービスの /predict の答えの形: 1 行なら平らなリスト、N 行なら入れ子。"""
    return orjson.dumps({"prediction": rows[0] if len(rows) == 1 else rows})


def label_answer(names: list[Any]) -> bytes:
    """/predict/label の答えの形: 1 行なら名前 1 つ、N 行ならリスト。"""
    return orjson.dumps({"prediction": names[0] if len(names) == 1 else names})


def first_argmax(row: list[float]) -> int:
    return row.index(max(row))


# --- predict ------------------------------------------------------------------------------------


@given(rows=tables(), classification=st.booleans())
def test_identical_predict_answers_agree(rows: list[list[float]], classification: bool) -> None:
    body = predict_answer(rows)
    found = compare(PREDICT, body, body, classification=classification)
    assert found == Comparison(rows=len(rows), label_changes=0, max_difference=0.0)


@given(
    rows=tables(probability),
    data=st.data(),
    delta=st.floats(min_value=1e-9, max_value=2.0) | st.floats(min_value=-2.0, max_value=-1e-9),
    classification=st.booleans(),
)
def test_a_perturbed_value_is_exactly_the_max_difference(
    rows: list[list[float]], data: st.DataObject, delta: float, classification: bool
) -> None:
    i = data.draw(st.integers(0, len(rows) - 1), label="row")
    j = data.draw(st.integers(0, len(rows[0]) - 1), label="column")
    theirs = [list(row) for row in rows]
    theirs[i][j] = rows[i][j] + delta
    found = compare(PREDICT, predict_answer(rows), predict_answer(theirs), classification=classification)
    assert found.rows == len(rows)
    assert found.max_difference == abs(theirs[i][j] - rows[i][j])
    changed = first_argmax(rows[i]) != first_argmax(theirs[i])
    assert found.label_changes == (1 if classification and changed else 0)


@given(
    rows=tables(probability).filter(
        lambda rows: len(rows[0]) >= 2 and all(len(set(r)) == len(r) for r in rows)
    ),
    data=st.data(),
)
def test_a_swapped_argmax_is_one_label_change_for_a_classifier_and_none_for_a_regressor(
    rows: list[list[float]], data: st.DataObject
) -> None:
    i = data.draw(st.integers(0, len(rows) - 1), label="row")
    top = first_argmax(rows[i])
    other = data.draw(st.integers(0, len(rows[i]) - 1).filter(lambda k: k != top), label="other")
    theirs = [list(row) for row in rows]
    theirs[i][top], theirs[i][other] = rows[i][other], rows[i][top]
    ours, shadow = predict_answer(rows), predict_answer(theirs)
    expected = abs(rows[i][top] - rows[i][other])
    assert compare(PREDICT, ours, shadow, classification=True) == Comparison(len(rows), 1, expected)
    assert compare(PREDICT, ours, shadow, classification=False) == Comparison(len(rows), 0, expected)


def test_one_row_is_flat_and_n_rows_are_nested() -> None:
    one = orjson.dumps({"prediction": [0.7, 0.2, 0.1]})
    assert compare(PREDICT, one, one, classification=True) == Comparison(1, 0, 0.0)
    two = orjson.dumps({"prediction": [[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]]})
    swapped = orjson.dumps({"prediction": [[0.7, 0.2, 0.1], [0.7, 0.2, 0.1]]})
    assert compare(PREDICT, two, swapped, classification=True) == Comparison(2, 1, pytest.approx(0.6))
    # 1 出力の回帰器の N 行は [[v], [v], ...]
    regression = orjson.dumps({"prediction": [[1.5], [2.5], [-3.0]]})
    moved = orjson.dumps({"prediction": [[1.5], [2.0], [-3.0]]})
    assert compare(PREDICT, regression, moved, classification=False) == Comparison(3, 0, 0.5)


# --- predict_label ------------------------------------------------------------------------------


@given(names=st.lists(labels, min_size=1, max_size=8), data=st.data())
def test_predict_label_counts_the_names_that_differ(names: list[str], data: st.DataObject) -> None:
    changed = data.draw(st.sets(st.integers(0, len(names) - 1)), label="changed")
    theirs = [name + "*" if k in changed else name for k, name in enumerate(names)]
    found = compare(PREDICT_LABEL, label_answer(names), label_answer(theirs), classification=True)
    assert found == Comparison(rows=len(names), label_changes=len(changed), max_difference=None)


def test_predict_label_of_one_row_is_one_name() -> None:
    setosa, virginica = b'{"prediction":"setosa"}', b'{"prediction":"virginica"}'
    assert compare(PREDICT_LABEL, setosa, setosa, classification=True) == Comparison(1, 0, None)
    assert compare(PREDICT_LABEL, setosa, virginica, classification=True) == Comparison(1, 1, None)


# --- V2 -----------------------------------------------------------------------------------------


def v2_answer(outputs: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"model_name": "m", "model_version": "1", "outputs": outputs})


def nested(flat: list[Any], width: int) -> list[list[Any]]:
    return [flat[k : k + width] for k in range(0, len(flat), width)]


def iris_like(classes: list[int], probabilities: list[list[float]], *, nest: bool) -> list[dict[str, Any]]:
    width = len(probabilities[0])
    flat = [value for row in probabilities for value in row]
    return [
        {"name": "output_label", "datatype": "INT64", "shape": [len(classes)], "data": classes},
        {
            "name": "output_probability",
            "datatype": "FP32",
            "shape": [len(probabilities), width],
            "data": nested(flat, width) if nest else flat,
        },
    ]


@given(probabilities=tables(probability), data=st.data())
def test_v2_outputs_are_paired_by_name_and_nested_data_equals_flat_data(
    probabilities: list[list[float]], data: st.DataObject
) -> None:
    classes = [first_argmax(row) for row in probabilities]
    ours = iris_like(classes, probabilities, nest=False)
    theirs = list(reversed(iris_like(classes, probabilities, nest=data.draw(st.booleans(), label="nest"))))
    found = compare(V2, v2_answer(ours), v2_answer(theirs), classification=True)
    assert found == Comparison(rows=len(probabilities), label_changes=0, max_difference=0.0)


@given(probabilities=tables(probability), data=st.data(), delta=st.floats(min_value=1e-6, max_value=1.0))
def test_v2_counts_changed_label_elements_and_the_largest_float_difference(
    probabilities: list[list[float]], data: st.DataObject, delta: float
) -> None:
    classes = [first_argmax(row) for row in probabilities]
    changed = data.draw(st.sets(st.integers(0, len(classes) - 1)), label="changed")
    i = data.draw(st.integers(0, len(probabilities) - 1), label="row")
    j = data.draw(st.integers(0, len(probabilities[0]) - 1), label="column")
    other_probabilities = [list(row) for row in probabilities]
    other_probabilities[i][j] = probabilities[i][j] - delta
    other_classes = [c + 10 if k in changed else c for k, c in enumerate(classes)]
    found = compare(
        V2,
        v2_answer(iris_like(classes, probabilities, nest=True)),
        v2_answer(iris_like(other_classes, other_probabilities, nest=False)),
        classification=True,
    )
    assert found.rows == len(probabilities)
    assert found.label_changes == len(changed)
    assert found.max_difference == abs(other_probabilities[i][j] - probabilities[i][j])


def test_v2_bytes_outputs_count_differing_strings_and_int_only_answers_have_no_difference() -> None:
    ours = [{"name": "label", "datatype": "BYTES", "shape": [3], "data": ["cat", "dog", "cat"]}]
    theirs = [{"name": "label", "datatype": "BYTES", "shape": [3], "data": ["cat", "cat", "dog"]}]
    assert compare(V2, v2_answer(ours), v2_answer(theirs), classification=True) == Comparison(3, 2, None)
    ints = [{"name": "label", "datatype": "INT64", "shape": [2, 1], "data": [[1], [2]]}]
    assert compare(V2, v2_answer(ints), v2_answer(ints), classification=True) == Comparison(2, 0, None)


def test_v2_regression_outputs_have_a_difference_and_no_label_changes() -> None:
    ours = [{"name": "variable", "datatype": "FP32", "shape": [2, 2], "data": [1.0, 2.0, 3.0, 4.0]}]
    theirs = [{"name": "variable", "datatype": "FP32", "shape": [2, 2], "data": [[1.0, 2.25], [3.0, 4.0]]}]
    assert compare(V2, v2_answer(ours), v2_answer(theirs), classification=False) == Comparison(2, 0, 0.25)


# --- NaN・無限大 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (math.nan, math.nan, 0.0),
        (math.nan, 1.0, math.inf),
        (1.0, math.nan, math.inf),
        (math.inf, math.inf, 0.0),
        (-math.inf, -math.inf, 0.0),
        (math.inf, -math.inf, math.inf),
        (math.inf, 1e308, math.inf),
        (3, 3.0, 0.0),
        (-2, 0.5, 2.5),
        # null は答えの JSON での NaN・±無限大（orjson がそう書く）
        (None, None, 0.0),
        (None, 1.0, math.inf),
        (0.0, None, math.inf),
    ],
)
def test_difference_of_special_values(a: Any, b: Any, expected: float) -> None:
    assert difference(a, b) == expected
    assert difference(b, a) == expected


@pytest.mark.parametrize("value", [True, False, "1", [1.0], {"x": 1}])
def test_a_difference_with_something_that_is_not_a_number_is_incomparable(value: Any) -> None:
    with pytest.raises(Incomparable):
        difference(value, 1.0)
    with pytest.raises(Incomparable):
        difference(1.0, value)


def test_non_finite_outputs_written_as_null_compare_like_nan() -> None:
    # サービスは有限でない出力を null で書く（例: 回帰器の和が float32 をあふれる）: 同じ答えは同じ
    regression = b'{"prediction":[[null],[10.0]]}'
    assert compare(PREDICT, regression, regression, classification=False) == Comparison(2, 0, 0.0)
    finite_answer = b'{"prediction":[[3.5],[10.0]]}'
    assert compare(PREDICT, regression, finite_answer, classification=False) == Comparison(2, 0, math.inf)
    # 分類器の確率に null があっても、ラベルの位置は数の中から選ぶ（例外にならない）
    ours, theirs = b'{"prediction":[null,0.8,0.2]}', b'{"prediction":[0.1,0.8,0.2]}'
    assert compare(PREDICT, ours, theirs, classification=True) == Comparison(1, 0, math.inf)
    v2 = v2_answer([{"name": "total", "datatype": "FP32", "shape": [1], "data": [None]}])
    assert compare(V2, v2, v2, classification=False) == Comparison(1, 0, 0.0)


# --- 比べられない形 ---------------------------------------------------------------------------------

PROBABILITIES = b'{"prediction":[0.7,0.2,0.1]}'
TWO_ROWS = b'{"prediction":[[0.7,0.2,0.1],[0.1,0.2,0.7]]}'
IRIS_V2 = v2_answer(iris_like([0], [[0.7, 0.2, 0.1]], nest=False))


def _v2_with(**changes: Any) -> bytes:
    outputs = iris_like([0], [[0.7, 0.2, 0.1]], nest=False)
    outputs[1] = {**outputs[1], **changes}
    return v2_answer(outputs)


@pytest.mark.parametrize(
    ("kind", "theirs"),
    [
        (PREDICT, TWO_ROWS),
        (PREDICT, b'{"prediction":[0.7,0.2]}'),
        (PREDICT, b'{"prediction":[0.7,0.2,0.1,0.0]}'),
        (PREDICT, b'{"prediction":"setosa"}'),
        (PREDICT, b'{"prediction":[]}'),
        (PREDICT, b'{"prediction":["a","b","c"]}'),
        (PREDICT, b'{"prediction":[true,false,true]}'),
        (PREDICT, b'{"detail":"Not Found"}'),
        (PREDICT, b"[0.7,0.2,0.1]"),
        (PREDICT, b"not json"),
        (PREDICT, b""),
        (PREDICT_LABEL, b'{"prediction":["setosa","setosa"]}'),
        (PREDICT_LABEL, b'{"detail":"Not Found"}'),
        (PREDICT_LABEL, b'{"prediction":3}'),
        (V2, v2_answer(iris_like([0], [[0.7, 0.2, 0.1]], nest=False)[:1])),
        (V2, v2_answer([*iris_like([0], [[0.7, 0.2, 0.1]], nest=False), {"name": "x", "data": []}])),
        (V2, _v2_with(name="probabilities")),
        (V2, _v2_with(datatype="FP64")),
        (V2, _v2_with(shape=[3, 1])),
        (V2, _v2_with(data=[0.7, 0.2])),
        (V2, _v2_with(data="0.7")),
        (V2, b'{"outputs":{"output_label":[0]}}'),
        (V2, b'{"outputs":[{"name":["not","hashable"]},{"name":{"x":1}}]}'),
        (V2, b'{"error":"boom"}'),
    ],
)
def test_answers_of_another_shape_are_incomparable(kind: str, theirs: bytes) -> None:
    ours = {PREDICT: PROBABILITIES, PREDICT_LABEL: b'{"prediction":"setosa"}', V2: IRIS_V2}[kind]
    with pytest.raises(Incomparable):
        compare(kind, ours, theirs, classification=True)
    with pytest.raises(Incomparable):
        compare(kind, theirs, ours, classification=True)


def test_an_unknown_kind_is_incomparable() -> None:
    with pytest.raises(Incomparable, match="unknown kind"):
        compare("explain", PROBABILITIES, PROBABILITIES, classification=True)


# --- どんな答えでも、比べるか Incomparable か ----------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=4)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=12,
)
outputs = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "name": st.sampled_from(["a", "b"]) | json_values,
            "datatype": st.sampled_from(["FP32", "INT64", "BYTES"]) | json_values,
            "shape": st.lists(st.integers(-1, 3), max_size=2) | json_values,
            "data": st.lists(json_scalars | st.lists(json_scalars, max_size=3), max_size=4) | json_values,
        },
    )
    | json_values,
    max_size=3,
)
answers = st.one_of(
    st.fixed_dictionaries({"prediction": json_values}).map(orjson.dumps),
    st.fixed_dictionaries({"outputs": outputs}).map(orjson.dumps),
    json_values.map(orjson.dumps),
    st.binary(max_size=20),
)


@settings(max_examples=400)
@given(
    kind=st.sampled_from([PREDICT, PREDICT_LABEL, V2]),
    ours=answers,
    theirs=answers,
    classification=st.booleans(),
)
def test_any_two_answers_compare_or_are_incomparable_never_anything_else(
    kind: str, ours: bytes, theirs: bytes, classification: bool
) -> None:
    try:
        found = compare(kind, ours, theirs, classification=classification)
    except Incomparable:
        return
    assert found.rows >= 0
    assert found.label_changes >= 0
    assert found.max_difference is None or found.max_difference >= 0  # NaN にはならない


@settings(max_examples=300)
@given(ours=st.fixed_dictionaries({"outputs": outputs}), theirs=st.fixed_dictionaries({"outputs": outputs}))
def test_any_two_v2_outputs_compare_or_are_incomparable(ours: Any, theirs: Any) -> None:
    try:
        compare(V2, orjson.dumps(ours), orjson.dumps(theirs), classification=True)
    except Incomparable:
        pass


@given(answer=answers, kind=st.sampled_from([PREDICT, PREDICT_LABEL, V2]))
def test_an_answer_compared_with_itself_has_no_label_changes(answer: bytes, kind: str) -> None:
    try:
        found = compare(kind, answer, answer, classification=True)
    except Incomparable:
        return
    assert found.label_changes == 0
    assert found.max_difference in (None, 0.0)
