"""モデルの読み込み: ファイル・ヘッダ・セッション・試し推論から `TabularModel` を作る。

`load_model()` がすべての検証を行い、失敗は `ModelLoadError`（ファイル名と問題を 1 行で）にする。
- 入力: float（または double）のテンソル 1 つ、形 `[N, F]`（F は固定、N は固定でも記号でもよい）。
- 分類器: ZipMap 出力、ラベル出力（int64・文字列のテンソル）、グラフのクラスラベル、ラベルファイルの
  どれかがあるもの。確率は ZipMap か float のテンソル `[N, C]`（名前に prob を含むものを優先）。
- 回帰器: それ以外で、float の出力 `[N]`・`[N, 1]`・`[N, K]` を持つもの。ラベルは無い。
- ラベル: ラベルファイル（あれば）、無ければモデル自身のクラスラベル（分類器のみ）。
- サンプル（/predict/test 用の 1 行）: 明示の指定、モデルの横の training.json の `sample`、
  ゼロの 1 行の順に選ぶ。行の形式の検査は `service.ml.sample`。

モデルの層（`service.ml`）は設定（`service.configurations`）もアプリ（`service.app`）も読み込まない:
読み込みの指定はすべて `load_model()` の引数で受け取る。
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import onnxruntime as ort

from service import constants
from service.ml.onnx_header import OnnxHeader, OnnxHeaderError, read_onnx_header
from service.ml.prediction import (
    BoundRow,
    ModelInfo,
    ModelLoadError,
    Runtime,
    SampleSource,
    TabularModel,
    Task,
    TensorSpec,
)
from service.ml.sample import parse_sample
from service.ml.zipmap import without_zipmap

logger = logging.getLogger(__name__)

# テレメトリは service/__init__.py が読み込み前に環境変数で止めている。実行時の API でも止める
ort.disable_telemetry_events()

# 対応する入力テンソルの型と numpy の型
_INPUT_DTYPES: dict[str, type[np.floating[Any]]] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
}
# ONNX Runtime の型 -> Open Inference Protocol（V2）のデータ型
V2_DATATYPES = {
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(int64)": "INT64",
    "tensor(int32)": "INT32",
    "tensor(string)": "BYTES",
    "tensor(bool)": "BOOL",
}
_FLOAT_OUTPUTS = ("tensor(float)", "tensor(double)")
_LABEL_OUTPUTS = ("tensor(int64)", "tensor(int32)", "tensor(string)")


def _short(value: str) -> str:
    """メッセージに出す値（長ければ切る）。"""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


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
    """label.json を読み、{"0": "setosa", ...} の形であることを確かめる。

    ファイルは `MAX_LABEL_FILE_BYTES` まで、ラベル名 1 つは `MAX_LABEL_NAME_CHARS` 文字まで（ラベルは
    /label・/metadata・/predict/label の応答にそのまま載る）。
    """
    try:
        size = path.stat().st_size
    except OSError:
        size = 0  # 無い・読めないファイルは次の読み込みが伝える
    if size > constants.MAX_LABEL_FILE_BYTES:
        raise ModelLoadError(
            path, f"label file is {size} bytes; the limit is {constants.MAX_LABEL_FILE_BYTES} bytes"
        )
    raw = _read_bytes(path, "label")
    try:
        labels = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise ModelLoadError(path, f"label file is not valid JSON ({error})") from None
    if not isinstance(labels, dict) or not labels:
        raise ModelLoadError(path, "label file must be a non-empty JSON object of index -> name")
    for key, value in labels.items():
        if not (key.isascii() and key.isdigit()) or len(key) > 9 or str(int(key)) != key:
            raise ModelLoadError(path, f"label key {_short(key)} is not a class index (0, 1, 2, ...)")
        if not isinstance(value, str) or not value:
            raise ModelLoadError(path, f"label {key!r} must be a non-empty string")
        if len(value) > constants.MAX_LABEL_NAME_CHARS:
            raise ModelLoadError(
                path,
                f"label {key!r} is {len(value)} characters; the limit is {constants.MAX_LABEL_NAME_CHARS}",
            )
    expected = {str(i) for i in range(len(labels))}
    if set(labels) != expected:
        raise ModelLoadError(path, f"label keys must be 0..{len(labels) - 1} without gaps")
    return {str(i): labels[str(i)] for i in range(len(labels))}


def load_facts(model_path: Path, model_sha256: str) -> dict[str, Any] | None:
    """モデルと同じディレクトリの training.json を読む（無い・別のモデルのものなら None）。"""
    path = model_path.parent / constants.TRAINING_FACTS_FILENAME
    try:
        facts = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(facts, dict) or facts.get("model_sha256", model_sha256) != model_sha256:
        return None
    return facts


def _create_session(path: Path, model_bytes: bytes, intra: int, inter: int) -> ort.InferenceSession:
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
        raise ModelLoadError(path, f"not a valid ONNX model ({first_line})") from None


def _session_run(session: ort.InferenceSession) -> Any:
    """セッションの run。公開 API の入力検査（1 リクエストに数 µs）を省ける内部の run があればそれ。"""
    inner = getattr(session, "_sess", None)
    return inner.run if inner is not None and hasattr(inner, "run") else session.run


def _dims(shape: list[Any]) -> list[int]:
    """ORT の形を V2 の形にする（記号や不明の次元は -1）。"""
    return [d if isinstance(d, int) and d >= 0 else -1 for d in shape]


def _check_input(path: Path, session: ort.InferenceSession) -> tuple[Any, int, int | None]:
    """入力が 1 つの float の [N, F] であることを確かめ、(入力, F, 固定のバッチ行数) を返す。"""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelLoadError(path, f"model must have one input, it has {len(inputs)}")
    model_input = inputs[0]
    if model_input.type not in _INPUT_DTYPES:
        raise ModelLoadError(
            path, f"unsupported input type {model_input.type} (expected tensor(float) or tensor(double))"
        )
    shape = list(model_input.shape)
    width = shape[-1] if len(shape) == 2 else None
    if not isinstance(width, int) or width <= 0:
        raise ModelLoadError(
            path,
            f"input {model_input.name} has shape {shape}; expected [N, F] with a fixed number of features F",
        )
    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    return model_input, width, batch


def _choose_outputs(
    path: Path, session: ort.InferenceSession, header: OnnxHeader, has_label_file: bool
) -> tuple[Task, Any]:
    """タスク（分類・回帰）と、/predict が返す出力を選ぶ。"""
    outputs = session.get_outputs()
    zipmaps = [o for o in outputs if o.type.startswith("seq(map(")]
    floats = [o for o in outputs if o.type in _FLOAT_OUTPUTS and len(o.shape) in (1, 2)]
    label_outputs = [o for o in outputs if o.type in _LABEL_OUTPUTS]
    classifier = bool(zipmaps or label_outputs) or header.class_labels is not None or has_label_file
    if classifier:
        candidates = [*zipmaps, *(o for o in floats if len(o.shape) == 2)]
        if not candidates:
            raise ModelLoadError(
                path,
                "model has no probability output (a sequence of maps or a float tensor [N, classes])",
            )
        # 名前に prob を含む出力を優先し、同じならモデルの出力の順
        order = {o.name: i for i, o in enumerate(outputs)}
        chosen = min(candidates, key=lambda o: (0 if "prob" in o.name.lower() else 1, order[o.name]))
        return "classification", chosen
    if not floats:
        raise ModelLoadError(
            path,
            "model has no output to serve: a classifier needs a probability output, "
            "a regressor a float tensor [N], [N, 1] or [N, K]",
        )
    return "regression", floats[0]


def _probe(path: Path, width: int, runtime: Runtime, output: Any) -> tuple[int, tuple[int | str, ...] | None]:
    """幅 width のゼロの行で試し推論し、(列の数, ZipMap ならクラス順のキー) を返す。"""
    rows = runtime.fixed_batch or 1
    try:
        (result,) = runtime.run(
            [output.name], {runtime.input_name: np.zeros((rows, width), dtype=runtime.dtype)}, runtime.options
        )
    except Exception as error:  # noqa: BLE001  ORT は多様な例外型を投げる
        raise ModelLoadError(path, f"test prediction failed ({error})") from None
    if isinstance(result, list):
        if len(result) != rows or not isinstance(result[0], dict) or not result[0]:
            raise ModelLoadError(path, "test prediction returned no probabilities")
        keys = tuple(result[0])
        if list(keys) != sorted(keys):  # pragma: no cover  ONNX Runtime の map は常にキーの順
            raise ModelLoadError(path, "test prediction returned the classes out of order")
        return len(keys), keys
    array = np.asarray(result)
    if array.shape[:1] != (rows,) or array.size == 0:
        raise ModelLoadError(path, f"test prediction returned shape {list(array.shape)} for {rows} row(s)")
    return int(array.size // rows), None


def _stripped_session(
    path: Path,
    model_bytes: bytes,
    session: ort.InferenceSession,
    probe: Runtime,
    rows: list[list[float]],
    threads: tuple[int, int],
) -> ort.InferenceSession | None:
    """ZipMap を外したセッション（同じ答えを出すと確かめられたときだけ）。使えなければ None。

    確かめ方: 与えた行（ゼロの行とサンプル）で、元のセッションのすべての出力と値が一致すること
    （ZipMap の辞書はクラスの順の float32 の配列にして比べる）。
    """
    stripped = without_zipmap(model_bytes, probe.main_output)
    if stripped is None:
        return None
    try:
        candidate = _create_session(path, stripped, *threads)
    except ModelLoadError:
        return None
    names = [o.name for o in session.get_outputs()]
    if [o.name for o in candidate.get_outputs()] != names:
        return None
    run = _session_run(candidate)
    for row in rows:
        batch = np.tile(np.asarray(row, dtype=probe.dtype), (probe.fixed_batch or 1, 1))
        feeds = {probe.input_name: batch}
        try:
            expected = probe.run(names, feeds, probe.options)
            actual = run(names, feeds, probe.options)
        except Exception:  # noqa: BLE001  ORT は多様な例外型を投げる
            return None
        for name, before, after in zip(names, expected, actual, strict=True):
            if name == probe.main_output:
                before = np.array([list(r.values()) for r in before], dtype=np.float32)
            if not isinstance(after, np.ndarray) or not np.array_equal(np.asarray(before), after):
                return None
    return candidate


def _bind_one_row(
    session: ort.InferenceSession, runtime: Runtime, names: list[str], rows: list[list[float]], width: int
) -> BoundRow | None:
    """出力 names の 1 行の推論を結び付けた入出力で動かす `BoundRow`。使えなければ None。

    数値のテンソルの出力だけを結び付けられる（文字列のラベル・ZipMap の辞書は普通の run）。
    与えた行（ゼロの行とサンプル）で、普通の run と同じ形・型・値を返すと確かめたときだけ使う。
    """

    def feeds(row: list[float]) -> dict[str, np.ndarray]:
        return {runtime.input_name: np.asarray([row], dtype=runtime.dtype)}

    try:
        expected = runtime.run(names, feeds([0.0] * width), runtime.options)
        if not all(isinstance(a, np.ndarray) and a.dtype.kind in "fiub" for a in expected):
            return None
        io = session.io_binding()
        input_array = np.zeros((1, width), dtype=runtime.dtype)
        io.bind_cpu_input(runtime.input_name, input_array)
        outputs = [np.empty(a.shape, dtype=a.dtype) for a in expected]
        for name, output in zip(names, outputs, strict=True):
            io.bind_output(name, "cpu", 0, output.dtype.type, list(output.shape), output.ctypes.data)
        inner = getattr(session, "_sess", None)
        if inner is not None and hasattr(inner, "run_with_iobinding") and hasattr(io, "_iobinding"):
            bound = BoundRow(inner.run_with_iobinding, io._iobinding, runtime.options, input_array, outputs)
        else:  # pragma: no cover  公開 API だけの版の ONNX Runtime
            bound = BoundRow(session.run_with_iobinding, io, runtime.options, input_array, outputs)
        for row in rows:
            want = runtime.run(names, feeds(row), runtime.options)
            # 配列の行（V2 のバイナリ）とリストの行（/predict・V2 の JSON。struct で書く）の両方。毎回入力を
            # NaN で埋めてから動かす（書き込みが届かなければ、前の行の値で偶然合うことがないように）
            for given in (feeds(row)[runtime.input_name], [row]):
                input_array.fill(np.nan)
                got = bound(given)
                if got is None or any(
                    g.dtype != w.dtype or g.shape != w.shape or not np.array_equal(g, w)
                    for g, w in zip(got, want, strict=True)
                ):
                    return None
    except Exception:  # noqa: BLE001  結び付けられないモデルは普通の run で
        return None
    return bound


def _sample(
    path: Path, width: int, option: list[float] | None, facts: dict[str, Any] | None
) -> tuple[list[float], SampleSource]:
    """/predict/test のサンプルを選ぶ: 明示の指定、学習の事実、ゼロの 1 行の順。"""
    if option is not None:
        chosen, source, where = list(option), "option", "sample"
    elif facts is not None and facts.get("sample") is not None:
        chosen, source, where = facts["sample"], "facts", str(path.parent / constants.TRAINING_FACTS_FILENAME)
    else:
        return [0.0] * width, "zeros"
    try:
        row = parse_sample(chosen)
    except ValueError as error:
        raise ModelLoadError(where, f"sample {error}, got {chosen!r}") from None
    if len(row) != width:
        raise ModelLoadError(where, f"sample has {len(row)} values; the model expects {width} features")
    return row, source  # type: ignore[return-value]


class _Files(NamedTuple):
    """読んだファイル: モデルのバイト列と、ラベルファイル（あれば）のバイト列とその中身。"""

    model_bytes: bytes
    label_bytes: bytes | None
    labels: dict[str, str] | None


def _read_files(model_path: Path, label_file: Path | None) -> _Files:
    """モデルとラベルファイルを読む（ラベルファイルは index -> 名前 の形であることも確かめる）。"""
    model_bytes = _read_bytes(model_path, "model")
    label_bytes = None if label_file is None else _read_bytes(label_file, "label")
    file_labels = None if label_file is None else load_labels(label_file)
    return _Files(model_bytes, label_bytes, file_labels)


def _read_header(path: Path, model_bytes: bytes) -> OnnxHeader:
    """ONNX のヘッダ（opset・作成者・グラフのクラスラベル）を読む。読めなければ ModelLoadError。"""
    try:
        return read_onnx_header(model_bytes)
    except OnnxHeaderError as error:
        raise ModelLoadError(path, f"not a valid ONNX model ({error})") from None


def _probe_runtime(
    session: ort.InferenceSession, model_input: Any, output: Any, fixed_batch: int | None
) -> Runtime:
    """読み込んだセッションの呼び方（試し推論に使い、配信用の呼び方もこれを元にする）。"""
    dtype = _INPUT_DTYPES[model_input.type]
    run = _session_run(session)
    options = ort.RunOptions()
    # 求めた出力に要るノードだけを動かす（/predict はラベルの出力を計算しない）
    options.only_execute_path_to_fetches = True
    return Runtime(run, model_input.name, dtype, output.name, {}, fixed_batch, options)


def _class_labels(
    task: Task,
    keys: tuple[int | str, ...] | None,
    header: OnnxHeader,
    columns: int,
    file_labels: dict[str, str] | None,
    label_file: Path | None,
) -> tuple[list[int] | list[str] | None, dict[str, str] | None]:
    """分類器の (クラスラベル, 応答に使うラベル名)。回帰器はどちらも None。

    クラスラベルは ZipMap のキー、無ければグラフの分類器ノードの属性（列の数と合うときだけ）。
    ラベル名はラベルファイル（クラスの数と合わなければ ModelLoadError）、無ければクラスラベル、
    それも無ければ列の番号。
    """
    classes: list[int] | list[str] | None = None
    labels: dict[str, str] | None = None
    if task == "classification":
        if keys is not None:
            classes = list(keys)  # type: ignore[assignment]
        elif header.class_labels is not None and len(header.class_labels) == columns:
            classes = header.class_labels
        if file_labels is not None:
            if len(file_labels) != columns:
                raise ModelLoadError(
                    label_file,
                    f"label file has {len(file_labels)} entries but the model has {columns} classes",
                )
            labels = file_labels
        else:
            names = classes if classes is not None else list(range(columns))
            labels = {str(i): str(c) for i, c in enumerate(names)}
    return classes, labels


def _output_specs(
    session: ort.InferenceSession, output: Any, keys: tuple[int | str, ...] | None
) -> tuple[dict[str, tuple[int | str, ...]], list[TensorSpec]]:
    """(配列にして返す ZipMap の出力 -> クラスの順のキー, V2 に見せる出力のテンソル)。

    ZipMap の出力は /predict が返すものだけを `[N, C]` の FP32 として見せ、V2 のデータ型に無い出力は見せない。
    """
    zipmaps: dict[str, tuple[int | str, ...]] = {}
    outputs: list[TensorSpec] = []
    for item in session.get_outputs():
        if item.type.startswith("seq(map("):
            if item.name == output.name and keys is not None:
                zipmaps[item.name] = keys
                outputs.append(TensorSpec(item.name, "FP32", [-1, len(keys)]))
            continue
        if item.type in V2_DATATYPES:
            shape = _dims(list(item.shape))
            outputs.append(TensorSpec(item.name, V2_DATATYPES[item.type], [-1, *shape[1:]]))
    return zipmaps, outputs


def _serving_runtime(
    path: Path,
    model_bytes: bytes,
    session: ort.InferenceSession,
    probe: Runtime,
    keys: tuple[int | str, ...] | None,
    zipmaps: dict[str, tuple[int | str, ...]],
    rows: list[list[float]],
    threads: tuple[int, int],
) -> tuple[ort.InferenceSession, Runtime]:
    """配信に使う (セッション, 呼び方)。

    ZipMap の出力があれば、ZipMap を外したセッション（同じ値を辞書でなく配列で得る）で配信し、
    元のセッションは捨てる。外せない・同じ答えと確かめられないときは元のセッションと ZipMap のまま。
    """
    serving = session
    if keys is not None:
        stripped = _stripped_session(path, model_bytes, session, probe, rows, threads)
        if stripped is not None:
            serving, zipmaps = stripped, {}
    return serving, replace(probe, run=_session_run(serving), zipmaps=zipmaps)


def _bind_rows(
    serving: ort.InferenceSession,
    runtime: Runtime,
    outputs: list[TensorSpec],
    rows: list[list[float]],
    width: int,
) -> dict[tuple[str, ...], BoundRow]:
    """1 行の推論（/predict の主な出力と、V2 の既定のすべての出力）を結び付けた入出力で動かす準備。

    バッチ次元が固定のモデルは結び付けない（その行数ずつに分けて普通の run で動かす）。
    """
    bound: dict[tuple[str, ...], BoundRow] = {}
    if runtime.fixed_batch is None:
        for fetches in ([runtime.main_output], [spec.name for spec in outputs]):
            row_binding = _bind_one_row(serving, runtime, fetches, rows, width)
            if row_binding is not None:
                bound[tuple(fetches)] = row_binding
    return bound


def _model_info(
    *,
    model_path: Path,
    label_file: Path | None,
    files: _Files,
    sha256: str,
    header: OnnxHeader,
    session: ort.InferenceSession,
    model_input: Any,
    width: int,
    task: Task,
    output: Any,
    keys: tuple[int | str, ...] | None,
    columns: int,
    classes: list[int] | list[str] | None,
    name: str | None,
    facts: dict[str, Any] | None,
    sample_row: list[float],
    sample_source: SampleSource,
) -> ModelInfo:
    """/metadata とイメージのラベルに出すモデルの情報をまとめる（V2 の名前と版もここで決まる）。"""
    version = facts.get("version") if facts is not None else None
    return ModelInfo(
        file_name=model_path.name,
        sha256=sha256,
        label_file_name=None if label_file is None else label_file.name,
        label_sha256=None if files.label_bytes is None else sha256_of(files.label_bytes),
        input_name=model_input.name,
        input_shape=list(model_input.shape),
        input_type=model_input.type,
        outputs=[{"name": o.name, "type": o.type, "shape": list(o.shape)} for o in session.get_outputs()],
        probability_output=output.name if task == "classification" else None,
        prediction_output=output.name,
        output_format="zipmap" if keys is not None else "tensor",
        opset=header.opsets,
        ir_version=header.ir_version,
        producer=header.producer_name,
        producer_version=header.producer_version,
        num_features=width,
        num_classes=columns if task == "classification" else None,
        task=task,
        classes=classes,
        num_outputs=columns,
        name=name or model_path.stem,
        version=str(version) if isinstance(version, str | int) and str(version) else "1",
        sample=sample_row,
        sample_source=sample_source,
        training=facts,
    )


def _try_the_sample(path: Path, model: TabularModel) -> None:
    """できあがったモデルでサンプルを推論してみる（配信と同じ経路で答えられることを確かめる）。"""
    try:
        model.predict(model.sample)
    except Exception as error:  # noqa: BLE001
        raise ModelLoadError(path, f"test prediction of the sample failed ({error})") from None


def load_model(
    model_path: Path | str,
    label_path: Path | str | None = None,
    *,
    sample: list[float] | None = None,
    name: str | None = None,
    intra_op_threads: int = 1,
    inter_op_threads: int = 1,
    max_batch_rows: int = constants.DEFAULT_MAX_BATCH_ROWS,
) -> TabularModel:
    """モデル（とラベル）を読み込み、試し推論で整合性を確かめて返す。失敗時は ModelLoadError。

    手順: ファイルを読む → ヘッダを読む → セッションを開く → 入力を確かめる → タスクと出力を選ぶ →
    ゼロの行で試し推論する → クラスラベルを決める → 学習の事実とサンプルを選ぶ → V2 の出力を決める →
    配信用のセッション（ZipMap を外す）→ 1 行の推論の結び付け → 情報をまとめる → サンプルで試す。
    """
    model_path = Path(model_path)
    label_file = None if label_path is None else Path(label_path)
    threads = (intra_op_threads, inter_op_threads)
    files = _read_files(model_path, label_file)
    header = _read_header(model_path, files.model_bytes)
    session = _create_session(model_path, files.model_bytes, *threads)
    model_input, width, fixed_batch = _check_input(model_path, session)
    task, output = _choose_outputs(model_path, session, header, label_file is not None)
    probe_runtime = _probe_runtime(session, model_input, output, fixed_batch)
    columns, keys = _probe(model_path, width, probe_runtime, output)
    classes, labels = _class_labels(task, keys, header, columns, files.labels, label_file)
    sha256 = sha256_of(files.model_bytes)
    facts = load_facts(model_path, sha256)
    sample_row, sample_source = _sample(model_path, width, sample, facts)
    zipmaps, outputs = _output_specs(session, output, keys)
    trial_rows = [[0.0] * width, sample_row]
    serving, runtime = _serving_runtime(
        model_path, files.model_bytes, session, probe_runtime, keys, zipmaps, trial_rows, threads
    )
    bound = _bind_rows(serving, runtime, outputs, trial_rows, width)
    info = _model_info(
        model_path=model_path,
        label_file=label_file,
        files=files,
        sha256=sha256,
        header=header,
        session=session,
        model_input=model_input,
        width=width,
        task=task,
        output=output,
        keys=keys,
        columns=columns,
        classes=classes,
        name=name,
        facts=facts,
        sample_row=sample_row,
        sample_source=sample_source,
    )
    model = TabularModel(
        info=info,
        runtime=runtime,
        labels=labels,
        inputs=[TensorSpec(model_input.name, V2_DATATYPES[model_input.type], [-1, width])],
        outputs=outputs,
        max_batch_rows=max_batch_rows,
        bound=bound,
    )
    _try_the_sample(model_path, model)
    return model
