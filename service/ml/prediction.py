"""推論（ONNX Runtime）: 読み込み済みの表形式モデル `TabularModel`。

1 つの float 入力 `[N, F]` を取る任意の ONNX モデルを扱う。分類器（skl2onnx の ZipMap 出力、または
`zipmap=False` の確率テンソル。クラスラベルは整数でも文字列でもよい）と回帰器（float の出力
`[N]`・`[N, 1]`・`[N, K]`）。ファイルを読んでセッションを作り、形を確かめるのは
`service.ml.loading.load_model()` の仕事で、このモジュールは読み込んだ後の検証と推論だけを受け持つ
（MLServer の `MLModel.load()` と同じ分け方）。

推論は 1 スレッドで数十マイクロ秒のため、呼び出し側はスレッドプールを介さず直接呼んでよい。
"""

from __future__ import annotations

import math
import struct
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np

Task = Literal["classification", "regression"]
# BoundRow が鍵を持ったまま出力を読む関数の返す型
_Read = TypeVar("_Read")
SampleSource = Literal["facts", "option", "zeros"]

# float32 に丸めても有限な値の絶対値の上限（2^128 - 2^103: FLT_MAX と 2^128 の中間。これちょうどは
# 最近接偶数への丸めで inf になる）
FLOAT32_LIMIT = 3.4028235677973366e38
# 値の数がこれ以下なら Python で確かめる（numpy の呼び出しの固定費の方が高い）
_SMALL_BATCH_VALUES = 64

# ONNX Runtime の run: (出力名のリスト, {入力名: 配列}, RunOptions) -> 出力のリスト
SessionRun = Callable[[list[str], dict[str, np.ndarray], Any], list[Any]]


class ModelLoadError(Exception):
    """モデル・ラベル・サンプルが読めない・壊れている・食い違うときの例外。"""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class InvalidInputError(ValueError):
    """推論の入力が不正なときの例外（HTTP 400 に対応する）。"""


@dataclass(frozen=True)
class ModelInfo:
    """/metadata とイメージのラベルに出すモデルの情報。"""

    file_name: str
    sha256: str
    label_file_name: str | None
    label_sha256: str | None
    input_name: str
    input_shape: list[int | str | None]
    input_type: str
    outputs: list[dict[str, Any]]
    probability_output: str | None
    prediction_output: str
    output_format: str
    opset: dict[str, int]
    ir_version: int
    producer: str
    producer_version: str
    num_features: int
    num_classes: int | None
    task: Task
    classes: list[int] | list[str] | None
    num_outputs: int
    name: str
    version: str
    sample: list[float]
    sample_source: SampleSource
    training: dict[str, Any] | None = field(default=None)

    def as_dict(self) -> dict[str, Any]:
        """JSON にできる辞書を返す。"""
        return asdict(self)


@dataclass(frozen=True)
class TensorSpec:
    """V2 に出す入出力テンソル 1 つ（名前・V2 のデータ型・形。-1 は任意の長さ）。"""

    name: str
    datatype: str
    shape: list[int]


@dataclass(frozen=True)
class Runtime:
    """セッションの呼び方（読み込みで決まり、推論のたびに使う）。"""

    run: SessionRun
    input_name: str
    dtype: type[np.floating[Any]]
    main_output: str
    # ZipMap の出力名 -> クラス順のキー（その出力は [N, C] の float32 にして返す）。ONNX Runtime は
    # map をキーの順に辞書にするので、値の順はこのキーの順と同じ（読み込みで確かめる）
    zipmaps: dict[str, tuple[int | str, ...]]
    # 入力のバッチ次元が固定ならその行数（その行数ずつに分け、足りない分はゼロで埋めて動かす）
    fixed_batch: int | None = None
    # run に毎回渡す RunOptions（None を渡すと ONNX Runtime が 1 回ごとに既定のものを作り、約 1.5 µs かかる）
    options: Any = None


class BoundRow:
    """1 行の推論を、あらかじめ結び付けた入出力の配列で動かす（ONNX Runtime の IOBinding）。

    ONNX Runtime の run は呼ぶたびに入力の配列を包み、出力を確保して numpy の配列に変換する。1 行の
    推論ではその費用が計算そのものより大きいので、入力 `[1, F]` と出力の配列を読み込み時に 1 度だけ
    作って結び付けておき、値を書き込んで動かす（1 行の /predict で 1 回につき数 µs 速い）。
    配列は共有なので同時に使えるのは 1 つだけ: 使用中なら None を返し、呼び出し側は普通の run を使う。
    結び付けた出力で動かせなかったとき（例外）も None。作るのと確かめるのは `service.ml.loading`。
    """

    __slots__ = (
        "_binding",
        "_buffer",
        "_first_rows",
        "_flat",
        "_options",
        "_pack",
        "_run",
        "input",
        "lock",
        "outputs",
        "shapes",
    )

    def __init__(
        self,
        run: Callable[[Any, Any], None],
        binding: Any,
        options: Any,
        input_: np.ndarray,
        outputs: list[np.ndarray],
    ) -> None:
        """run_with_iobinding・結び付け・RunOptions・入力の配列・出力の配列（結び付けた順）を受け取る。"""
        self._run = run
        self._binding = binding
        self._options = options
        # 結び付けた配列を使っている間だけ持つ鍵
        self.lock = threading.Lock()
        self.input = input_
        self.outputs = outputs
        # 最初の出力を [1, 列] で見る（同じ配列の view。/predict の答えはこれを tolist する）
        self._first_rows = outputs[0].reshape(1, -1)
        # 各出力の形（1 行なので決まっている）と、平らに見た view（V2 の JSON の答えはこれを tolist する）
        self.shapes = [list(output.shape) for output in outputs]
        self._flat = [output.reshape(-1) for output in outputs]
        # リストの 1 行は struct で入力のバイト列に直接書く（numpy の代入は型と形を調べるので遅い）
        code = {np.dtype(np.float32): "f", np.dtype(np.float64): "d"}.get(input_.dtype)
        self._buffer = input_.data.cast("B")
        self._pack = None if code is None else struct.Struct(f"={input_.shape[1]}{code}").pack_into

    def __call__(self, batch: np.ndarray | list[list[float]]) -> list[np.ndarray] | None:
        """1 行（配列、または行のリスト）で推論し、出力の写しを返す（使用中・失敗なら None）。"""
        return self._infer(batch[0], self._copies)

    def flat_values(self, batch: np.ndarray | list[list[float]]) -> list[list[Any]] | None:
        """1 行で推論し、出力ごとの平らな値を返す（V2 の JSON。形は `shapes`。使用中・失敗なら None）。"""
        return self._infer(batch[0], self._flat_values)

    def first_as_rows(self, row: list[float]) -> list[list[float]] | None:
        """検証済みの 1 行で推論し、最初の出力を `[[...]]` のリストで返す（使用中・失敗なら None）。"""
        return self._infer(row, self._first_rows.tolist)

    def _infer(self, row: Any, read: Callable[[], _Read]) -> _Read | None:
        """1 行を入力に書いて動かし、鍵を持ったまま read で出力を読む（鍵が取れない・失敗なら None）。"""
        if not self.lock.acquire(blocking=False):
            return None
        try:
            if self._pack is not None and type(row) is list:
                self._pack(self._buffer, 0, *row)
            else:
                self.input[0] = row
            self._run(self._binding, self._options)
            return read()
        except Exception:  # noqa: BLE001  普通の run でやり直す（そちらの誤りがそのまま伝わる）
            return None
        finally:
            self.lock.release()

    def _copies(self) -> list[np.ndarray]:
        """出力の写し（結び付けた配列は次の推論で上書きされる）。"""
        return [output.copy() for output in self.outputs]

    def _flat_values(self) -> list[list[Any]]:
        """出力ごとの平らな値のリスト。"""
        return [flat.tolist() for flat in self._flat]


class TabularModel:
    """読み込み済みの表形式モデル。入力の検証・推論・ラベル付けを行う（読み込みは loading.py）。"""

    def __init__(
        self,
        *,
        info: ModelInfo,
        runtime: Runtime,
        labels: dict[str, str] | None,
        inputs: list[TensorSpec],
        outputs: list[TensorSpec],
        max_batch_rows: int,
        bound: dict[tuple[str, ...], BoundRow] | None = None,
    ) -> None:
        """読み込みの結果を受け取る（ファイル・形の検証は loading.py が済ませている）。

        bound は 1 行の推論を結び付けた入出力で動かすもの（求める出力の名前の組ごと。無ければ普通の run）。
        """
        self.info = info
        self.runtime = runtime
        self.labels = labels
        self.inputs = inputs
        self.outputs = outputs
        self.width = info.num_features
        self.max_batch_rows = max_batch_rows
        self._label_list = None if labels is None else [labels[str(i)] for i in range(len(labels))]
        self._limit = FLOAT32_LIMIT if runtime.dtype is np.float32 else math.inf
        self._main = [runtime.main_output]
        self._main_keys = runtime.zipmaps.get(runtime.main_output)
        self.output_datatypes = {spec.name: spec.datatype for spec in outputs}
        self.output_names = [spec.name for spec in outputs]
        self.bound = bound or {}
        self._main_fetch = (runtime.main_output,)

    @property
    def task(self) -> Task:
        """classification か regression。"""
        return self.info.task

    @property
    def sample(self) -> list[list[float]]:
        """/predict/test のサンプル（1 行）。"""
        return [self.info.sample]

    # --- 入力の検証 ---------------------------------------------------------------------------

    def to_batch(self, rows: list[list[float]]) -> np.ndarray:
        """入力行を検証してモデルの型の 2 次元配列にする。不正なら InvalidInputError。"""
        return self._array(self.small_rows(rows))

    def small_rows(self, rows: list[list[float]]) -> np.ndarray | list[list[float]]:
        """入力行を検証する。値が少なければ（1 行の /predict・V2 の JSON など）配列にせずリストのまま返す。

        リストは `infer`・`infer_values`・結び付けた入力にそのまま渡せる（結び付けた入力には struct で
        直接書くので、配列を作る約 1.5 µs を省く）。値が多ければ numpy で確かめた配列。
        """
        count = self._check_shape(rows)
        if count * self.width > _SMALL_BATCH_VALUES:
            with np.errstate(over="ignore"):
                batch = np.array(rows, dtype=self.runtime.dtype)
            if not np.isfinite(batch).all():
                self._refuse_non_finite(rows)
            return batch
        self._check_values(rows)
        return rows

    def _array(self, batch: np.ndarray | list[list[float]]) -> np.ndarray:
        """検証済みの行をモデルの型の配列にする（もう配列ならそのまま）。"""
        return batch if isinstance(batch, np.ndarray) else np.array(batch, dtype=self.runtime.dtype)

    def _check_shape(self, rows: list[list[float]]) -> int:
        """行数（1 以上、上限以下）と各行の幅を確かめ、行数を返す。"""
        count = len(rows)
        if not count:
            raise InvalidInputError("data must contain at least one row")
        self.check_rows(count)
        width = self.width
        for index, row in enumerate(rows):
            if len(row) != width:
                raise InvalidInputError(
                    f"row {index} has {len(row)} values; the model expects {width} features"
                )
        return count

    def _check_values(self, rows: list[list[float]]) -> None:
        """値がすべて有限で、モデルの型に収まることを Python で確かめる（小さなバッチ用）。"""
        limit = self._limit
        for row in rows:
            for value in row:
                if not abs(value) < limit:
                    self._refuse_non_finite(rows)

    def check_rows(self, count: int) -> None:
        """行数が上限以下であることを確かめる。"""
        if count > self.max_batch_rows:
            raise InvalidInputError(
                f"data has {count} rows; at most {self.max_batch_rows} rows are accepted per request"
            )

    def check_finite(self, batch: np.ndarray) -> None:
        """配列（V2 のバイナリ入力）の値がすべて有限であることを確かめる。"""
        finite = np.isfinite(batch)
        if not finite.all():
            row, column = (int(v) for v in np.argwhere(~finite)[0])
            value = float(batch[row, column])
            raise InvalidInputError(f"row {row}, column {column}: value {value!r} is not finite")

    def _refuse_non_finite(self, rows: list[list[float]]) -> None:
        """最初の有限でない（または float32 に収まらない）値を示して InvalidInputError にする。"""
        limit = self._limit
        for row_index, row in enumerate(rows):
            for column, value in enumerate(row):
                if not abs(value) < limit:
                    reason = "is not finite" if not math.isfinite(value) else "is out of float32 range"
                    raise InvalidInputError(f"row {row_index}, column {column}: value {value!r} {reason}")

    # --- 推論 ---------------------------------------------------------------------------------

    def _session(self, batch: np.ndarray, names: list[str]) -> list[Any]:
        """セッションを動かす。バッチ次元が固定のモデルはその行数ずつに分けて動かし、つなぐ。"""
        runtime = self.runtime
        fixed = runtime.fixed_batch
        if fixed is None or len(batch) == fixed:
            return runtime.run(names, {runtime.input_name: batch}, runtime.options)
        parts: list[list[Any]] = []
        for start in range(0, len(batch), fixed):
            chunk = batch[start : start + fixed]
            rows = len(chunk)
            if rows < fixed:
                chunk = np.concatenate([chunk, np.zeros((fixed - rows, batch.shape[1]), dtype=batch.dtype)])
            outputs = runtime.run(names, {runtime.input_name: chunk}, runtime.options)
            parts.append([output[:rows] for output in outputs])
        joined: list[Any] = []
        for index in range(len(names)):
            pieces = [part[index] for part in parts]
            if isinstance(pieces[0], list):
                joined.append([row for piece in pieces for row in piece])
            else:
                joined.append(np.concatenate(pieces))
        return joined

    def run(self, batch: np.ndarray) -> list[list[float]]:
        """検証済みの配列で推論し、行ごとの答え（確率、または回帰の値）を float のリストで返す。"""
        runtime = self.runtime
        if runtime.fixed_batch is None:
            # よくある場合（バッチ次元が記号）は直接呼ぶ（1 リクエストに Python の関数を 1 段減らす）
            (output,) = runtime.run(self._main, {runtime.input_name: batch}, runtime.options)
        else:
            (output,) = self._session(batch, self._main)
        if self._main_keys is not None:
            return [list(row.values()) for row in output]
        return output.reshape(len(batch), -1).tolist()  # type: ignore[no-any-return]

    def predict(self, rows: list[list[float]]) -> list[list[float]]:
        """行ごとの答え（分類ならクラス順の確率、回帰なら出力の値）を返す。

        1 行は、結び付けた入力に値を直接書いて動かす（配列を作る・写す・形を変えるを省く）。
        """
        batch = self.small_rows(rows)
        if type(batch) is list and len(batch) == 1:
            binding = self.bound.get(self._main_fetch)
            if binding is not None:
                answer = binding.first_as_rows(batch[0])
                if answer is not None:
                    return answer
        return self.run(self._array(batch))

    def infer(self, batch: np.ndarray | list[list[float]], names: list[str]) -> list[Any]:
        """検証済みの行（配列、または `small_rows` のリスト）で推論し、指定の出力（V2）をそのまま返す。

        ZipMap の出力は行ごとの辞書のリスト。配列にするのは `as_array`、JSON の平らな値にするのは
        `as_values`。
        """
        if len(batch) == 1:
            bound = self.bound.get(tuple(names))
            if bound is not None:
                outputs = bound(batch)
                if outputs is not None:
                    return outputs
        return self._session(self._array(batch), names)

    def infer_values(
        self, batch: np.ndarray | list[list[float]], names: tuple[str, ...]
    ) -> list[list[Any]] | None:
        """1 行を結び付けた入出力で推論し、出力ごとの平らな値を返す（V2 の JSON の答え）。

        `infer` と `as_values` を続けて呼んだのと同じ値（形は結び付けの `shapes`）。names は `bound` の鍵と
        同じ出力の名前の組。結び付けが無い・使えないときは None。
        """
        if len(batch) != 1:
            return None
        binding = self.bound.get(names)
        return None if binding is None else binding.flat_values(batch)

    def as_array(self, name: str, output: Any) -> np.ndarray:
        """出力を配列にする。ZipMap は [N, C] の float32（クラスの順）。"""
        if name in self.runtime.zipmaps:
            return np.array([list(row.values()) for row in output], dtype=np.float32)
        return np.asarray(output)

    def as_values(self, name: str, output: Any) -> tuple[list[int], list[Any]]:
        """出力を (形, 行優先の平らな値のリスト) にする（V2 の JSON。numpy を通さない）。"""
        keys = self.runtime.zipmaps.get(name)
        if keys is not None:
            return [len(output), len(keys)], [value for row in output for value in row.values()]
        values: list[Any] = output.ravel().tolist()
        return list(output.shape), values

    def labels_for(self, answers: list[list[float]]) -> list[str]:
        """確率から最大のクラスのラベル名を返す（回帰器には無い）。"""
        labels = self._label_list
        if labels is None:
            raise RuntimeError("a regression model has no labels")
        return [labels[max(range(len(p)), key=p.__getitem__)] for p in answers]

    def predict_label(self, rows: list[list[float]]) -> list[str]:
        """行ごとのラベル名を返す。"""
        return self.labels_for(self.predict(rows))
