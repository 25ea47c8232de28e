"""推論ロジック（ONNX Runtime）。

`Classifier` はモデルとラベルを読み込み、入力を検証し、クラスごとの確率とラベルを返す。
skl2onnx の ZipMap 出力（map の列）と、`zipmap=False` で変換した確率テンソルの両方に対応する。
推論は 1 スレッドで数十マイクロ秒のため、呼び出し側はスレッドプールを介さず直接呼んでよい。
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from service import constants
from service.ml.onnx_header import OnnxHeaderError, read_onnx_header

logger = logging.getLogger(__name__)

# テレメトリは service/__init__.py が読み込み前に環境変数で止めている。実行時の API でも止める
ort.disable_telemetry_events()

# 対応する入力テンソルの型と numpy の型
_INPUT_DTYPES: dict[str, type[np.floating[Any]]] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
}


class ModelLoadError(Exception):
    """モデルまたはラベルファイルが読めない・壊れている・食い違うときの例外。"""

    def __init__(self, path: Path | str, problem: str) -> None:
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
    label_file_name: str
    label_sha256: str
    input_name: str
    input_shape: list[int | str | None]
    input_type: str
    outputs: list[dict[str, Any]]
    probability_output: str
    output_format: str
    opset: dict[str, int]
    ir_version: int
    producer: str
    producer_version: str
    num_features: int | None
    num_classes: int
    training: dict[str, Any] | None = field(default=None)

    def as_dict(self) -> dict[str, Any]:
        """JSON にできる辞書を返す。"""
        return asdict(self)


def sha256_of(data: bytes) -> str:
    """バイト列の sha256（16 進）を返す。"""
    return hashlib.sha256(data).hexdigest()


def _read_bytes(path: Path, what: str) -> bytes:
    """ファイルを読み、無い・読めない場合は ModelLoadError にする。"""
    if not path.exists():
        raise ModelLoadError(path, f"{what} file not found")
    if not path.is_file():
        raise ModelLoadError(path, f"{what} path is not a regular file")
    try:
        return path.read_bytes()
    except OSError as error:
        raise ModelLoadError(path, f"cannot read {what} file ({error.strerror})") from None


def load_labels(path: Path) -> dict[str, str]:
    """label.json を読み、{"0": "setosa", ...} の形であることを確かめる。"""
    raw = _read_bytes(path, "label")
    try:
        labels = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise ModelLoadError(path, f"label file is not valid JSON ({error})") from None
    if not isinstance(labels, dict) or not labels:
        raise ModelLoadError(path, "label file must be a non-empty JSON object of index -> name")
    for key, value in labels.items():
        if not (key.isascii() and key.isdigit()) or str(int(key)) != key:
            raise ModelLoadError(path, f"label key {key!r} is not a class index (0, 1, 2, ...)")
        if not isinstance(value, str) or not value:
            raise ModelLoadError(path, f"label {key!r} must be a non-empty string")
    expected = {str(i) for i in range(len(labels))}
    if set(labels) != expected:
        raise ModelLoadError(path, f"label keys must be 0..{len(labels) - 1} without gaps")
    return {str(i): labels[str(i)] for i in range(len(labels))}


def _load_training_facts(model_path: Path) -> dict[str, Any] | None:
    """モデルと同じディレクトリの training.json を読む（無ければ None）。"""
    path = model_path.parent / constants.TRAINING_FACTS_FILENAME
    try:
        facts = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return facts if isinstance(facts, dict) else None


class Classifier:
    """ONNX の分類モデルとラベルを保持し、確率とラベルを返す推論器。"""

    def __init__(
        self,
        model_path: Path | str,
        label_path: Path | str,
        *,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        max_batch_rows: int = constants.DEFAULT_MAX_BATCH_ROWS,
    ) -> None:
        """モデルとラベルを読み込み、試し推論で整合性を確かめる。失敗時は ModelLoadError。"""
        self.model_path = Path(model_path)
        self.label_path = Path(label_path)
        self.max_batch_rows = max_batch_rows

        model_bytes = _read_bytes(self.model_path, "model")
        label_bytes = _read_bytes(self.label_path, "label")
        self.labels = load_labels(self.label_path)
        self._label_list = [self.labels[str(i)] for i in range(len(self.labels))]

        try:
            header = read_onnx_header(model_bytes)
        except OnnxHeaderError as error:
            raise ModelLoadError(self.model_path, f"not a valid ONNX model ({error})") from None
        self._session = self._create_session(model_bytes, intra_op_threads, inter_op_threads)

        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelLoadError(self.model_path, f"model must have one input, it has {len(inputs)}")
        model_input = inputs[0]
        if model_input.type not in _INPUT_DTYPES:
            raise ModelLoadError(
                self.model_path,
                f"unsupported input type {model_input.type} (expected tensor(float))",
            )
        self.input_name: str = model_input.name
        self._dtype = _INPUT_DTYPES[model_input.type]
        shape = list(model_input.shape)
        last = shape[-1] if shape else None
        self.num_features: int | None = last if isinstance(last, int) and last > 0 else None
        sample_width = len(constants.SAMPLE_DATA[0])
        if self.num_features is not None and self.num_features != sample_width:
            raise ModelLoadError(
                self.model_path,
                f"model expects {self.num_features} features; this service serves Iris models "
                f"with {sample_width} (the /predict/test sample)",
            )

        self._output_name, self._zipmap = self._find_probability_output()
        self.num_classes = self._probe_num_classes()
        if self.num_classes != len(self.labels):
            raise ModelLoadError(
                self.label_path,
                f"label file has {len(self.labels)} entries but the model has {self.num_classes} classes",
            )

        outputs = [
            {"name": o.name, "type": o.type, "shape": list(o.shape)} for o in self._session.get_outputs()
        ]
        self.info = ModelInfo(
            file_name=self.model_path.name,
            sha256=sha256_of(model_bytes),
            label_file_name=self.label_path.name,
            label_sha256=sha256_of(label_bytes),
            input_name=self.input_name,
            input_shape=shape,
            input_type=model_input.type,
            outputs=outputs,
            probability_output=self._output_name,
            output_format="zipmap" if self._zipmap else "tensor",
            opset=header.opsets,
            ir_version=header.ir_version,
            producer=header.producer_name,
            producer_version=header.producer_version,
            num_features=self.num_features,
            num_classes=self.num_classes,
            training=_load_training_facts(self.model_path),
        )

    def _create_session(self, model_bytes: bytes, intra: int, inter: int) -> ort.InferenceSession:
        """スレッド数を絞った ONNX Runtime のセッションを作る。"""
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra
        options.inter_op_num_threads = inter
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # 500m の Pod で CPU を空回りさせないようスピン待ちを止める
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001  ORT は多様な例外型を投げる
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelLoadError(self.model_path, f"not a valid ONNX model ({first_line})") from None

    def _find_probability_output(self) -> tuple[str, bool]:
        """確率を返す出力を探す。戻り値は (出力名, ZipMap かどうか)。"""
        candidates: list[tuple[int, str, bool]] = []
        for order, output in enumerate(self._session.get_outputs()):
            is_zipmap = output.type.startswith("seq(map(")
            is_tensor = output.type in ("tensor(float)", "tensor(double)") and len(output.shape) == 2
            if not (is_zipmap or is_tensor):
                continue
            # 名前に prob を含む出力を優先する
            rank = 0 if "prob" in output.name.lower() else 1
            candidates.append((rank * 100 + order, output.name, is_zipmap))
        if not candidates:
            raise ModelLoadError(
                self.model_path,
                "model has no probability output (a sequence of maps or a float tensor [N, classes])",
            )
        _, name, is_zipmap = min(candidates)
        return name, is_zipmap

    def _probe_num_classes(self) -> int:
        """ゼロの 1 行で試し推論し、クラス数を確かめる。"""
        width = self.num_features or len(constants.SAMPLE_DATA[0])
        try:
            rows = self._run(np.zeros((1, width), dtype=self._dtype))
        except Exception as error:  # noqa: BLE001
            raise ModelLoadError(self.model_path, f"test prediction failed ({error})") from None
        if len(rows) != 1 or not rows[0]:
            raise ModelLoadError(self.model_path, "test prediction returned no probabilities")
        return len(rows[0])

    def _run(self, batch: np.ndarray) -> list[list[float]]:
        """検証済みの配列で推論し、行ごとにクラス順の確率（float）を返す。"""
        (output,) = self._session.run([self._output_name], {self.input_name: batch})
        if self._zipmap:
            return [[float(row[k]) for k in sorted(row)] for row in output]
        return np.asarray(output, dtype=np.float64).tolist()  # type: ignore[no-any-return]

    def to_batch(self, rows: list[list[float]]) -> np.ndarray:
        """入力行を検証してモデルの型の 2 次元配列にする。不正なら InvalidInputError。"""
        if not rows:
            raise InvalidInputError("data must contain at least one row")
        if len(rows) > self.max_batch_rows:
            raise InvalidInputError(
                f"data has {len(rows)} rows; at most {self.max_batch_rows} rows are accepted per request"
            )
        width = self.num_features
        if width is None:
            width = len(rows[0])
        for index, row in enumerate(rows):
            if len(row) != width:
                raise InvalidInputError(
                    f"row {index} has {len(row)} values; the model expects {width} features"
                )
        with np.errstate(over="ignore"):
            batch = np.asarray(rows, dtype=self._dtype)
        finite = np.isfinite(batch)
        if not finite.all():
            row_index, column = (int(v) for v in np.argwhere(~finite)[0])
            value = rows[row_index][column]
            reason = "is not finite" if not math.isfinite(value) else "is out of float32 range"
            raise InvalidInputError(f"row {row_index}, column {column}: value {value!r} {reason}")
        return batch

    def predict_proba(self, rows: list[list[float]]) -> list[list[float]]:
        """行ごとのクラス確率を返す。"""
        return self._run(self.to_batch(rows))

    def labels_for(self, probabilities: list[list[float]]) -> list[str]:
        """確率から最大のクラスのラベル名を返す。"""
        labels = self._label_list
        return [labels[max(range(len(p)), key=p.__getitem__)] for p in probabilities]

    def predict_label(self, rows: list[list[float]]) -> list[str]:
        """行ごとのラベル名を返す。"""
        return self.labels_for(self.predict_proba(rows))

    def warm_up(self) -> list[float]:
        """サンプル入力で推論し（初回の遅延を起動時に払う）、その確率を返す。"""
        return self.predict_proba(constants.SAMPLE_DATA)[0]
