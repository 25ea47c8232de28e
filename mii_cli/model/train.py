"""`mii train`: Iris の SVC を学習し、ONNX とラベルと学習情報を書き出す。

scikit-learn 同梱の Iris データ（ダウンロード不要）を固定シードで分割・学習し、
skl2onnx で入力 `float_input`（float32 [None, 4]）の ONNX に変換する。
同じ環境なら何度実行しても同じバイト列・同じ予測になる。
学習の事実（training.json）にはサンプルの 1 行（Iris の 1 行目。/predict/test と /metadata が使う）と
モデルの版（Open Inference Protocol の版）も書く。
"""

from __future__ import annotations

import json
import platform
import warnings
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from mii_cli.errors import ModelError
from mii_cli.results import Result
from service.constants import SAMPLE_DATA, TRAINING_FACTS_FILENAME
from service.ml.loading import load_model, sha256_of
from service.ml.prediction import ModelLoadError

INPUT_NAME = "float_input"
MODEL_FILENAME = "iris_svc.onnx"
LABEL_FILENAME = "label.json"
# ONNX Runtime 1.18 以降で読める opset に固定する
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
# サンプルの 1 行（Iris の 1 行目、/predict/test の入力）とモデルの版
SAMPLE_ROW = list(SAMPLE_DATA[0])
MODEL_VERSION = "1"


@dataclass(frozen=True)
class TrainResult(Result):
    """学習の結果（書き出したファイルと指標）。"""

    model_path: str
    label_path: str
    facts_path: str
    accuracy: float
    model_sha256: str
    label_sha256: str
    facts: dict[str, Any]


def fit(seed: int, test_size: float) -> tuple[Any, float, list[str], dict[str, int]]:
    """Iris を分割して Pipeline(StandardScaler, SVC) を学習し、検証精度を返す。"""
    from sklearn.datasets import load_iris
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    iris = load_iris()
    x_train, x_test, y_train, y_test = train_test_split(
        iris.data,
        iris.target,
        test_size=test_size,
        random_state=seed,
        stratify=iris.target,
    )
    pipeline = Pipeline(
        [
            ("scaler", StandardScaler()),
            ("svc", SVC(probability=True, random_state=seed)),
        ]
    )
    with warnings.catch_warnings():
        # scikit-learn 1.9 は SVC(probability=True) を非推奨にしたが、元実装と同じこの構成で学習する
        warnings.simplefilter("ignore", FutureWarning)
        pipeline.fit(x_train, y_train)
        accuracy = float(accuracy_score(y_test, pipeline.predict(x_test)))
    sizes = {"train": len(x_train), "test": len(x_test)}
    return pipeline, accuracy, [str(n) for n in iris.target_names], sizes


def to_onnx(pipeline: Any, *, zipmap: bool = True) -> bytes:
    """学習済み Pipeline を ONNX のバイト列に変換する（既定は ZipMap 出力付き、元実装と同じ形）。"""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        onnx_model = convert_sklearn(
            pipeline,
            name="iris_svc",
            initial_types=[(INPUT_NAME, FloatTensorType([None, 4]))],
            target_opset=TARGET_OPSET,
            options={id(pipeline): {"zipmap": zipmap}},
        )
    # skl2onnx は opset の並びが文字列ハッシュ順で変わるので、並びを固定してバイト列を再現可能にする
    opsets = sorted((o.domain, o.version) for o in onnx_model.opset_import)
    del onnx_model.opset_import[:]
    for domain, opset_version in opsets:
        entry = onnx_model.opset_import.add()
        entry.domain, entry.version = domain, opset_version
    return bytes(onnx_model.SerializeToString())


def train(output_dir: Path, *, seed: int = 42, test_size: float = 0.2) -> TrainResult:
    """学習してモデル・ラベル・学習情報を output_dir に書き、サービスのローダで検証する。"""
    if not 0.05 <= test_size <= 0.5:
        raise ModelError(f"test size must be between 0.05 and 0.5, got {test_size}")
    pipeline, accuracy, names, sizes = fit(seed, test_size)
    model_bytes = to_onnx(pipeline)
    label_bytes = (json.dumps({str(i): n for i, n in enumerate(names)}, indent=2) + "\n").encode()

    output_dir.mkdir(parents=True, exist_ok=True)
    model_path = output_dir / MODEL_FILENAME
    label_path = output_dir / LABEL_FILENAME
    facts_path = output_dir / TRAINING_FACTS_FILENAME
    model_path.write_bytes(model_bytes)
    label_path.write_bytes(label_bytes)

    facts: dict[str, Any] = {
        "algorithm": "Pipeline(StandardScaler, SVC(probability=True))",
        "dataset": "iris (scikit-learn bundled)",
        "seed": seed,
        "test_size": test_size,
        "train_rows": sizes["train"],
        "test_rows": sizes["test"],
        "accuracy": round(accuracy, 6),
        "sample": SAMPLE_ROW,
        "version": MODEL_VERSION,
        "model_sha256": sha256_of(model_bytes),
        "label_sha256": sha256_of(label_bytes),
        "target_opset": {k or "ai.onnx": v for k, v in TARGET_OPSET.items()},
        "versions": {
            "python": platform.python_version(),
            **{pkg: version(pkg) for pkg in ("scikit-learn", "skl2onnx", "onnx", "numpy")},
        },
    }
    facts_path.write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n")

    try:
        load_model(model_path, label_path)
    except ModelLoadError as error:
        raise ModelError(f"the trained model does not load: {error}") from None
    return TrainResult(
        model_path=str(model_path),
        label_path=str(label_path),
        facts_path=str(facts_path),
        accuracy=accuracy,
        model_sha256=facts["model_sha256"],
        label_sha256=facts["label_sha256"],
        facts=facts,
    )
