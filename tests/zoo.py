"""テストの中で学習する小さなモデル（任意の表形式モデルを配信できることを確かめるため）。

scikit-learn で学習し skl2onnx で ONNX にする（ダウンロード不要、固定シード）。幅・出力の形
（ZipMap・確率テンソル）・クラスラベル（整数・文字列）・回帰器・固定のバッチ次元を取りそろえる。
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ZooModel:
    """テスト用のモデル 1 つ。"""

    name: str
    path: Path
    width: int
    task: str
    # 期待するクラスラベル（回帰器は None）
    classes: list[Any] | None
    # 確かめに使う行
    rows: list[list[float]]


def _convert(
    estimator: Any, width: int, name: str, *, zipmap: bool = True, batch: int | None = None
) -> bytes:
    """skl2onnx で ONNX に変換する。"""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    options = {id(estimator): {"zipmap": zipmap}} if hasattr(estimator, "predict_proba") else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = convert_sklearn(
            estimator,
            name=name,
            initial_types=[("features", FloatTensorType([batch, width]))],
            target_opset={"": 17, "ai.onnx.ml": 3},
            options=options,
        )
    return bytes(model.SerializeToString())


def _sum_regressor(width: int) -> bytes:
    """行の和を返す回帰器（出力 [N]）を onnx.helper で作る。"""
    from onnx import TensorProto, helper

    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["total"], keepdims=0)],
        "sum",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, [None])],
        initializer=[axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


# build_zoo が作るモデルの名前（テストはこれで parametrize する）
ZOO_NAMES = (
    "wide_int_zipmap",
    "narrow_str_tensor",
    "str_zipmap",
    "fixed_batch",
    "regressor",
    "regressor_multi",
    "sum_regressor",
)


def slice_model(folder: Path, input_type: int, outputs: str = "prob", features: int = 4) -> Path:
    """onnx.helper で小さなモデル（入力の先頭 3 列をそのまま返す Slice）を作る。"""
    import onnx
    from onnx import TensorProto, helper

    starts = helper.make_tensor("starts", TensorProto.INT64, [1], [0])
    ends = helper.make_tensor("ends", TensorProto.INT64, [1], [3])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(
        [helper.make_node("Slice", ["x", "starts", "ends", "axes"], [outputs])],
        "tiny",
        [helper.make_tensor_value_info("x", input_type, [None, features])],
        [helper.make_tensor_value_info(outputs, input_type, [None, 3])],
        initializer=[starts, ends, axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "tiny.onnx"
    onnx.save(model, path)
    return path


def build_zoo(folder: Path) -> dict[str, ZooModel]:
    """モデルを学習して folder に書き、名前 -> ZooModel を返す。"""
    from sklearn.datasets import make_classification, make_regression
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(0)
    zoo: dict[str, ZooModel] = {}

    def add(name: str, data: bytes, width: int, task: str, classes: list[Any] | None) -> None:
        path = folder / f"{name}.onnx"
        path.write_bytes(data)
        rows = np.round(rng.normal(size=(5, width)), 3).tolist()
        zoo[name] = ZooModel(name, path, width, task, classes, rows)

    x, y = make_classification(n_samples=200, n_features=7, n_informative=4, n_classes=3, random_state=0)
    labels = np.array([3, 7, 9])[y]
    add(
        "wide_int_zipmap",
        _convert(LogisticRegression(max_iter=500).fit(x, labels), 7, "wide"),
        7,
        "classification",
        [3, 7, 9],
    )

    x, y = make_classification(n_samples=200, n_features=2, n_informative=2, n_redundant=0, random_state=1)
    names = np.array(["cat", "dog"])[y]
    add(
        "narrow_str_tensor",
        _convert(
            DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, names), 2, "narrow", zipmap=False
        ),
        2,
        "classification",
        ["cat", "dog"],
    )

    x, y = make_classification(n_samples=200, n_features=5, n_informative=3, n_classes=3, random_state=2)
    names = np.array(["alpha", "beta", "gamma"])[y]
    add(
        "str_zipmap",
        _convert(LogisticRegression(max_iter=500).fit(x, names), 5, "strzip"),
        5,
        "classification",
        ["alpha", "beta", "gamma"],
    )

    x, y = make_classification(n_samples=200, n_features=3, n_informative=3, n_redundant=0, random_state=3)
    add(
        "fixed_batch",
        _convert(LogisticRegression(max_iter=500).fit(x, y), 3, "fixed", zipmap=False, batch=1),
        3,
        "classification",
        [0, 1],
    )

    x, target = make_regression(n_samples=200, n_features=3, random_state=4)
    add("regressor", _convert(LinearRegression().fit(x, target), 3, "reg"), 3, "regression", None)

    x, target = make_regression(n_samples=200, n_features=6, n_targets=2, random_state=5)
    add("regressor_multi", _convert(LinearRegression().fit(x, target), 6, "regmulti"), 6, "regression", None)

    add("sum_regressor", _sum_regressor(4), 4, "regression", None)
    assert tuple(zoo) == ZOO_NAMES, sorted(zoo)
    return zoo


def onnxruntime_answers(
    model: ZooModel, rows: list[list[float]]
) -> tuple[list[list[float]], list[Any] | None]:
    """ONNX Runtime をそのまま動かした答え: (行ごとの確率または出力の値, 分類器ならラベル)。

    固定のバッチ次元のモデルは 1 行ずつ動かす。
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    fixed = session.get_inputs()[0].shape[0]
    batches = [[row] for row in rows] if isinstance(fixed, int) else [rows]
    answers: list[list[float]] = []
    labels: list[Any] = []
    for batch in batches:
        outputs = session.run(None, {name: np.asarray(batch, dtype=np.float32)})
        if model.task == "regression":
            answers.extend(np.asarray(outputs[0], dtype=np.float64).reshape(len(batch), -1).tolist())
            continue
        label, probabilities = outputs[0], outputs[1]
        labels.extend(label.tolist())
        if isinstance(probabilities, list):
            answers.extend([[float(row[k]) for k in sorted(row)] for row in probabilities])
        else:
            answers.extend(np.asarray(probabilities, dtype=np.float64).tolist())
    return answers, labels if model.task == "classification" else None


def _in_front(
    source: Path, destination: Path, build: Callable[[str, int, Any], tuple[list[Any], list[Any], str]]
) -> Path:
    """元のグラフの前に節を足す: `build(入力の名前, 特徴の数, dtype)` が (重み, 節, 元のグラフに渡す値の名前)
    を返し、元のグラフは入力の代わりにその値を読む（onnx.helper で書き換える）。"""
    import onnx
    from onnx import helper

    model = onnx.load(source)
    graph = model.graph
    name = graph.input[0].name
    tensor_type = graph.input[0].type.tensor_type
    dtype = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
    initializers, nodes, passed = build(name, tensor_type.shape.dim[1].dim_value, dtype)
    for node in graph.node:
        node.input[:] = [passed if item == name else item for item in node.input]
    graph.initializer.extend(initializers)
    original = list(graph.node)
    del graph.node[:]
    graph.node.extend([*nodes, *original])
    onnx.save(model, destination)
    return destination


def slowed_model(source: Path, destination: Path, *, layers: int = 48, width: int = 1024) -> Path:
    """同じ答えで重いモデル: 入力に「重い計算 × 0」を足してから元のグラフに渡す。

    重い計算は 1 つの共有の重み（width × width）を `layers` 回掛ける MatMul と Tanh の鎖（1 行あたり
    layers × width² の積和。既定で約 5,000 万、1 コアで数 ms）。最後に 0 の行列を掛けて入力に足すので、
    元のモデルと同じ値が元のグラフに入り、答えはビット単位で同じになる（眠りではなく本物の計算）。
    """
    from onnx import helper, numpy_helper

    def build(name: str, features: int, dtype: Any) -> tuple[list[Any], list[Any], str]:
        rng = np.random.default_rng(0)
        weights = [
            numpy_helper.from_array(
                (rng.standard_normal((features, width)) * 0.5).astype(dtype), "slow_first"
            ),
            numpy_helper.from_array(
                (rng.standard_normal((width, width)) / np.sqrt(width)).astype(dtype), "slow_shared"
            ),
            numpy_helper.from_array(np.zeros((width, features), dtype), "slow_zero"),
        ]
        nodes = [helper.make_node("MatMul", [name, "slow_first"], ["slow_0"])]
        for layer in range(layers):
            nodes.append(helper.make_node("Tanh", [f"slow_{layer}"], [f"slow_tanh_{layer}"]))
            nodes.append(
                helper.make_node("MatMul", [f"slow_tanh_{layer}", "slow_shared"], [f"slow_{layer + 1}"])
            )
        nodes.append(helper.make_node("MatMul", [f"slow_{layers}", "slow_zero"], ["slow_nothing"]))
        nodes.append(helper.make_node("Add", [name, "slow_nothing"], [f"{name}_slowed"]))
        return weights, nodes, f"{name}_slowed"

    return _in_front(source, destination, build)


def failing_model(source: Path, destination: Path, *, above: float = 7.0) -> Path:
    """ある入力で失敗するモデル: どれかの値が `above` を超える行があると、ONNX Runtime の実行が誤りになる。

    入力の各値が `above` を超えるかを 0/1 の添字にし、長さ 1 の表を Gather で引く（1 は表の外なので、
    ONNX Runtime が「indices element out of data bounds」で実行を止める）。引いた値 × 0 を入力に足してから
    元のグラフに渡すので、失敗しない行の答えは元のモデルとビット単位で同じ（眠りでも例外の注入でもなく、
    本物のグラフの本物の実行時の誤り）。
    """
    from onnx import TensorProto, helper, numpy_helper

    def build(name: str, _features: int, dtype: Any) -> tuple[list[Any], list[Any], str]:
        weights = [
            numpy_helper.from_array(np.array(above, dtype), "fail_above"),
            numpy_helper.from_array(np.zeros(1, dtype), "fail_table"),
            numpy_helper.from_array(np.array(0, dtype), "fail_zero"),
        ]
        nodes = [
            helper.make_node("Greater", [name, "fail_above"], ["fail_over"]),
            helper.make_node("Cast", ["fail_over"], ["fail_index"], to=TensorProto.INT64),
            helper.make_node("Gather", ["fail_table", "fail_index"], ["fail_looked_up"], axis=0),
            helper.make_node("Mul", ["fail_looked_up", "fail_zero"], ["fail_nothing"]),
            helper.make_node("Add", [name, "fail_nothing"], [f"{name}_checked"]),
        ]
        return weights, nodes, f"{name}_checked"

    return _in_front(source, destination, build)
