"""2 つの答え（自分と影のモデル）の比べ方: 行の数・ラベルの変わった行・出力の値のいちばん大きな差。

影（shadow）へ写したリクエストの答えを、安定版の Pod が自分の答えと比べるのに使う（service.app.mirror）。
答えの形はルートの種類ごとに決まっている:

- `predict`: `{"prediction": [p0, p1, ...]}`（1 行）か `[[...], ...]`（N 行）。分類器なら行ごとの最大の
  確率の位置（ラベル）が変わった行を数え、すべての値の差の最大を取る。回帰ならラベルは無い。
- `predict_label`: `{"prediction": "setosa"}`（1 行）か `[...]`。違う名前を数える。
- `v2`: V2 の `outputs`。名前で組にし、浮動小数の出力（`FP*`）は値の差、それ以外（ラベルの `INT64`・
  `BYTES` など）は違う要素を数える。

形が合わない（出力の名前・形・長さが違う、JSON でない）答えは比べられない（Incomparable）。
有限でない値（NaN・±無限大）は、答えの JSON では null になる（orjson がそう書く）: null は NaN として比べる。
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

# 写すルートの種類（service.app.mirror が、表のパスからこのどれかを決める）
PREDICT = "predict"
PREDICT_LABEL = "predict_label"
V2 = "v2"


@dataclass(frozen=True)
class Comparison:
    """1 組の答えの比べ: 行の数、ラベルの変わった行（要素）の数、値のいちばん大きな差（無ければ None）。"""

    rows: int
    label_changes: int
    max_difference: float | None


class Incomparable(ValueError):
    """2 つの答えの形が合わず、比べられない。"""


def compare(kind: str, ours: bytes, theirs: bytes, *, classification: bool) -> Comparison:
    """2 つの答え（JSON の本文）を比べる。形が合わなければ Incomparable。"""
    try:
        mine, other = orjson.loads(ours), orjson.loads(theirs)
    except orjson.JSONDecodeError:
        raise Incomparable("an answer is not JSON") from None
    if not isinstance(mine, dict) or not isinstance(other, dict):
        raise Incomparable("an answer is not a JSON object")
    if kind == PREDICT:
        return _predictions(mine.get("prediction"), other.get("prediction"), classification)
    if kind == PREDICT_LABEL:
        return _labels(mine.get("prediction"), other.get("prediction"))
    if kind == V2:
        return _v2(mine.get("outputs"), other.get("outputs"))
    raise Incomparable(f"unknown kind {kind!r}")


def _rows(value: Any) -> list[Any]:
    """1 行の答え（数のリストか名前）を N 行の形にそろえる。"""
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return value
    return [value]


def difference(a: Any, b: Any) -> float:
    """2 つの数の差の大きさ（数でなければ Incomparable。NaN は両方 NaN なら 0、片方なら無限大）。

    null（答えの JSON で有限でない値が書かれる形）は NaN として扱う。
    """
    if not _number_or_null(a) or not _number_or_null(b):
        raise Incomparable("a value is not a number")
    a_nan, b_nan = a is None or math.isnan(a), b is None or math.isnan(b)
    if a_nan or b_nan:
        return 0.0 if a_nan and b_nan else math.inf
    if a == b:  # 同じ符号の無限大も差は 0
        return 0.0
    return abs(float(a) - float(b))


def _number_or_null(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _largest(pairs: list[tuple[Any, Any]]) -> float:
    return max((difference(a, b) for a, b in pairs), default=0.0)


def _predictions(mine: Any, other: Any, classification: bool) -> Comparison:
    if not isinstance(mine, list) or not isinstance(other, list):
        raise Incomparable("prediction is not a list")
    rows, others = _rows(mine), _rows(other)
    if len(rows) != len(others):
        raise Incomparable(f"{len(rows)} rows against {len(others)}")
    largest, changes = 0.0, 0
    for row, theirs in zip(rows, others, strict=True):
        if not isinstance(row, list) or not isinstance(theirs, list) or len(row) != len(theirs) or not row:
            raise Incomparable("rows of different widths")
        largest = max(largest, _largest(list(zip(row, theirs, strict=True))))
        if classification and _argmax(row) != _argmax(theirs):
            changes += 1
    return Comparison(rows=len(rows), label_changes=changes, max_difference=largest)


def _argmax(row: list[float | None]) -> int:
    """いちばん大きな値の位置（null・NaN はどの数より小さいとみなす: 大小を比べられないので）。"""
    return max(range(len(row)), key=lambda i: _rank(row[i]))


def _rank(value: float | None) -> float:
    return -math.inf if value is None or math.isnan(value) else value


def _labels(mine: Any, other: Any) -> Comparison:
    # ラベルの答えは名前 1 つか、そのリスト（無い・ほかの型の答えは形が違う）
    if not isinstance(mine, str | list) or not isinstance(other, str | list):
        raise Incomparable("prediction is not a label or a list of labels")
    rows = mine if isinstance(mine, list) else [mine]
    others = other if isinstance(other, list) else [other]
    if len(rows) != len(others):
        raise Incomparable(f"{len(rows)} labels against {len(others)}")
    changes = sum(1 for a, b in zip(rows, others, strict=True) if a != b)
    return Comparison(rows=len(rows), label_changes=changes, max_difference=None)


def _v2(mine: Any, other: Any) -> Comparison:
    if not isinstance(mine, list) or not isinstance(other, list):
        raise Incomparable("outputs is not a list")
    # 名前は文字列（ほかの型は辞書の鍵にできないことがある: リスト・オブジェクト）
    theirs = {o["name"]: o for o in other if isinstance(o, dict) and isinstance(o.get("name"), str)}
    if len(theirs) != len(mine):
        raise Incomparable("different outputs")
    rows, changes, largest = 0, 0, None
    for output in mine:
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise Incomparable("an output is not an object with a name")
        match = theirs.get(output["name"])
        if match is None or match.get("datatype") != output.get("datatype"):
            raise Incomparable(f"output {output.get('name')!r} differs in name or type")
        shape, data, other_data = output.get("shape"), _flat(output.get("data")), _flat(match.get("data"))
        if shape != match.get("shape") or len(data) != len(other_data):
            raise Incomparable(f"output {output.get('name')!r} differs in shape")
        rows = max(rows, shape[0] if isinstance(shape, list) and shape and isinstance(shape[0], int) else 1)
        if str(output.get("datatype", "")).startswith("FP"):
            found = _largest(list(zip(data, other_data, strict=True)))
            largest = found if largest is None else max(largest, found)
        else:
            changes += sum(1 for a, b in zip(data, other_data, strict=True) if a != b)
    return Comparison(rows=rows, label_changes=changes, max_difference=largest)


def _flat(data: Any) -> list[Any]:
    """V2 の data（平らか、形のとおりに入れ子）を平らにする。"""
    if not isinstance(data, list):
        raise Incomparable("data is not a list")
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat
