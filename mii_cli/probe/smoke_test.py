"""`mii smoke-test`: 動いている推論サービスの全エンドポイントを確かめる。

「先に描き、後で動かす」: `smoke_plan()` は何を送り何を期待するかを並べるだけの純粋な関数で、
`run_smoke_test()` がその計画を順に実行して `SmokeReport` を返す。応答の検証は確認ごとの
検証関数（`VERIFIERS`）が行い、前の確認で得た事実（`Facts`: /metadata のクラス数やサンプルの確率など）と
照らし合わせる。サービスに届かないときも例外にせず、すべての確認を失敗として報告する。

計画は配信中のモデルに合わせる: `run_smoke_test()` は最初に /metadata からモデルの幅・サンプル・
タスク（分類か回帰か）・V2 の名前を読み（`ServedModel`）、その行で計画を作る。読めなければ同梱の
Iris モデルの計画を使う（確認はそれぞれ失敗として報告される）。回帰器ではラベルの確認が 404 を期待する。
Open Inference Protocol（V2）の確認（ready・モデルのメタデータ・1 行とバッチの推論・誤りの 400/404）も含む。
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from mii_cli.errors import ConfigError
from mii_cli.probe.targets import BATCH_ROWS, normalize_url
from mii_cli.results import Result, json_field
from service import constants

# 確率の一致とみなす誤差（float32 の精度。同じモデルなら同じ値が返る）
PROBABILITY_TOLERANCE = 1e-6
# 確率の合計が 1 とみなす誤差
SUM_TOLERANCE = 1e-3

# /metadata が必ず持つ項目（元実装と同じ）
METADATA_KEYS = (
    "data_type",
    "data_structure",
    "data_sample",
    "prediction_type",
    "prediction_structure",
    "prediction_sample",
)

_JSON = "application/json"
_UNKNOWN_MODEL = "mii-smoke-no-such-model"


@dataclass(frozen=True)
class ServedModel:
    """配信中のモデルについて計画に要ること（/metadata から読む）。"""

    name: str
    version: str
    width: int
    sample: list[float]
    task: str
    num_outputs: int
    input_name: str
    datatype: str
    prediction_output: str

    @property
    def batch_rows(self) -> list[list[float]]:
        """バッチの確認の 3 行（先頭はサンプル。Iris のサンプルなら 3 品種の行）。"""
        if self.sample == BATCH_ROWS[0]:
            return [list(row) for row in BATCH_ROWS]
        return [list(self.sample), [v + 1.0 for v in self.sample], [v * 2.0 + 0.5 for v in self.sample]]


# 同梱の Iris モデル（/metadata が読めないときの計画）
IRIS = ServedModel(
    name="iris_svc",
    version="1",
    width=4,
    sample=list(constants.SAMPLE_DATA[0]),
    task="classification",
    num_outputs=3,
    input_name="float_input",
    datatype="FP32",
    prediction_output="output_probability",
)


def served_model(metadata: Any) -> ServedModel | None:
    """/metadata の応答から ServedModel を読む（形が違えば None）。"""
    try:
        model = metadata["model"]
        sample = metadata["data_sample"][0]
        width = int(model["num_features"])
        if not isinstance(sample, list) or len(sample) != width:
            return None
        return ServedModel(
            name=str(model["name"]),
            version=str(model["version"]),
            width=width,
            sample=[float(v) for v in sample],
            task=str(model["task"]),
            num_outputs=int(model["num_outputs"]),
            input_name=str(model["input_name"]),
            datatype="FP32" if model["input_type"] == "tensor(float)" else "FP64",
            prediction_output=str(model["prediction_output"]),
        )
    except (KeyError, IndexError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Check:
    """1 件の確認: 送るリクエストと期待する結果（人が読む説明）。"""

    name: str
    method: str
    path: str
    expected: str
    body: bytes | None = field(default=None, repr=False)

    @property
    def request(self) -> str:
        """表に出すリクエストの要約（例: `POST /predict`）。"""
        return f"{self.method} {self.path}"


@dataclass(frozen=True, kw_only=True)
class CheckResult(Result):
    """1 件の確認の結果（名前付きの引数だけで作る）。"""

    name: str
    method: str
    path: str
    expected: str
    ok: bool
    detail: str
    elapsed_ms: float | None
    status: int | None = None
    served_by: str | None = None


@dataclass
class SmokeReport(Result):
    """スモークテスト全体の結果。`base_url` は確かめた URL（JSON では `url`）。"""

    computed = ("passed", "summary")

    base_url: str = json_field("url")
    checks: list[CheckResult] = field(default_factory=list)
    served_by: list[str] = field(default_factory=list)
    model_sha256: str | None = None
    unreachable: str | None = None

    @property
    def passed(self) -> bool:
        """すべての確認が通ったか（確認が 1 件も無ければ不合格）。"""
        return bool(self.checks) and self.unreachable is None and all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[CheckResult]:
        """通らなかった確認。"""
        return [c for c in self.checks if not c.ok]

    @property
    def summary(self) -> dict[str, int]:
        """件数の要約（total・passed・failed）。"""
        failed = len(self.failed)
        return {"total": len(self.checks), "passed": len(self.checks) - failed, "failed": failed}


def _json_body(value: Any) -> bytes:
    """JSON の本文を作る。"""
    return json.dumps(value).encode()


def _oversized_body(size: int, sample: list[float]) -> bytes:
    """ちょうど `size` バイトの、JSON としては正しい本文を作る（空白で水増しする）。"""
    head = b'{"data": ' + _json_body([sample])
    return head + b" " * (size - len(head) - 1) + b"}"


def _v2_body(model: ServedModel, rows: list[list[float]]) -> bytes:
    """V2 の推論リクエスト（JSON のテンソル）。"""
    tensor = {
        "name": model.input_name,
        "shape": [len(rows), len(rows[0]) if rows else 0],
        "datatype": model.datatype,
        "data": [v for row in rows for v in row],
    }
    return _json_body({"id": "mii-smoke", "inputs": [tensor], "outputs": [{"name": model.prediction_output}]})


def smoke_plan(model: ServedModel = IRIS) -> list[Check]:
    """スモークテストの計画（送るリクエストと期待）を返す。副作用は無い。

    順序に意味がある: 後の確認は前の確認で得た事実（クラス数・ラベル・確率）と照らし合わせる。
    `model` は配信中のモデル（既定は同梱の Iris モデル）。
    """
    sample = _json_body({"data": [model.sample]})
    rows = model.batch_rows
    batch = _json_body({"data": rows})
    too_large = constants.DEFAULT_MAX_BODY_BYTES + 1
    width = model.width
    short = [float(i + 1) for i in range(width - 1 if width > 1 else 2)]
    nan_row = b"[NaN" + b"".join(b", " + str(i + 1).encode() for i in range(width - 1)) + b"]"
    classifier = model.task == "classification"
    answers = "num_classes probabilities summing to 1" if classifier else f"{model.num_outputs} output values"
    infer = f"/v2/models/{model.name}/infer"
    return [
        Check("health", "GET", "/health", '200 {"health": "ok"}'),
        Check("ready", "GET", "/health/ready", "200 (model loaded, test prediction done)"),
        Check(
            "metadata",
            "GET",
            "/metadata",
            "200 with data_type … prediction_sample, model.sha256, task and the model's width",
        ),
        Check(
            "label",
            "GET",
            "/label",
            'one label per class: {"0": str, "1": str, ...}'
            if classifier
            else "404 (a regressor has no labels)",
        ),
        Check("predict-test", "GET", "/predict/test", answers),
        Check(
            "predict-test-label",
            "GET",
            "/predict/test/label",
            "label of the most probable class" if classifier else "404 (a regressor has no labels)",
        ),
        Check(
            "predict",
            "POST",
            "/predict",
            "one row: equals /metadata prediction_sample and /predict/test",
            sample,
        ),
        Check(
            "predict-label",
            "POST",
            "/predict/label",
            "one row: equals /predict/test/label" if classifier else "404 (a regressor has no labels)",
            sample,
        ),
        Check("predict-batch", "POST", "/predict", "3 rows in order; row 0 equals the one-row answer", batch),
        Check(
            "predict-batch-order",
            "POST",
            "/predict",
            "the same 3 rows reversed give the answers reversed",
            _json_body({"data": rows[::-1]}),
        ),
        Check(
            "predict-label-batch",
            "POST",
            "/predict/label",
            "3 labels, one per row, of the most probable classes"
            if classifier
            else "404 (a regressor has no labels)",
            batch,
        ),
        Check("reject-missing-data", "POST", "/predict", "422 (no data field)", _json_body({"rows": []})),
        Check(
            "reject-non-numeric",
            "POST",
            "/predict",
            "422 (strings instead of numbers)",
            _json_body({"data": [["a"] * width]}),
        ),
        Check(
            "reject-wrong-row-length",
            "POST",
            "/predict",
            f"400 naming row 1 ({len(short)} values instead of {width})",
            _json_body({"data": [model.sample, short]}),
        ),
        Check("reject-nan", "POST", "/predict", "400 (NaN is not a number)", b'{"data": [' + nan_row + b"]}"),
        Check("reject-empty-data", "POST", "/predict", "400 (no rows)", _json_body({"data": []})),
        Check(
            "reject-too-large",
            "POST",
            "/predict",
            f"413 (body of {too_large} bytes, 1 MiB + 1)",
            _oversized_body(too_large, model.sample),
        ),
        Check("v2-ready", "GET", "/v2/health/ready", "200 (Open Inference Protocol: server ready)"),
        Check(
            "v2-model",
            "GET",
            f"/v2/models/{model.name}",
            f"V2 model metadata: input {model.input_name} {model.datatype} [-1, {width}]",
        ),
        Check(
            "v2-infer",
            "POST",
            infer,
            "V2 one row (JSON): equals the /predict answer",
            _v2_body(model, rows[:1]),
        ),
        Check("v2-infer-batch", "POST", infer, "V2 3 rows: equal the /predict batch", _v2_body(model, rows)),
        Check(
            "v2-reject-shape",
            "POST",
            infer,
            f'400 {{"error": ...}} (rows of {len(short)} values instead of {width})',
            _v2_body(model, [short]),
        ),
        Check(
            "v2-unknown-model", "GET", f"/v2/models/{_UNKNOWN_MODEL}", '404 {"error": ...} (no such model)'
        ),
    ]


class Mismatch(Exception):
    """検証の不一致（メッセージが表の detail になる）。"""


@dataclass
class Facts:
    """前の確認で得た事実。後の確認がこれと照らし合わせる。"""

    num_classes: int | None = None
    prediction_sample: list[float] | None = None
    labels: dict[str, str] | None = None
    predict_test: list[float] | None = None
    one_row: list[float] | None = None
    batch: list[list[float]] | None = None
    model_sha256: str | None = None
    # 配信中のモデル（/metadata から。分類か回帰か、サンプル、V2 の名前）
    served: ServedModel = IRIS
    # 手元にあるモデルの sha256 -> 1 行の答えを手元の ONNX Runtime で計算する関数
    reference: dict[str, Callable[[list[float]], list[float]]] = field(default_factory=dict)

    @property
    def classifier(self) -> bool:
        """分類器か（回帰器ならラベルの確認は 404 を期待する）。"""
        return self.served.task == "classification"


def _snippet(response: httpx.Response, limit: int = 120) -> str:
    """応答本文の先頭（detail に載せる長さ）。"""
    text = response.text.strip().replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "…"


def _ok_json(response: httpx.Response) -> Any:
    """200 で JSON の応答なら中身を返し、それ以外は Mismatch にする。"""
    if response.status_code != 200:
        raise Mismatch(f"HTTP {response.status_code}, expected 200: {_snippet(response)}")
    try:
        return response.json()
    except ValueError:
        raise Mismatch(f"response is not JSON: {_snippet(response)}") from None


def _prediction(response: httpx.Response) -> Any:
    """`{"prediction": ...}` の中身を返す。"""
    body = _ok_json(response)
    if not isinstance(body, dict) or set(body) != {"prediction"}:
        raise Mismatch(f'expected {{"prediction": ...}}, got {_snippet(response)}')
    return body["prediction"]


def _need(value: Any, what: str) -> Any:
    """前の確認で得ているはずの事実を返す（無ければ比べられないので失敗）。"""
    if value is None:
        raise Mismatch(f"cannot compare: {what} is unknown because an earlier check failed")
    return value


def _require_number_list(value: Any, what: str) -> None:
    """数（bool ではない int か float）だけのリストであることを確かめる。"""
    if not isinstance(value, list) or not all(
        isinstance(p, int | float) and not isinstance(p, bool) for p in value
    ):
        raise Mismatch(f"{what} is not a list of numbers: {str(value)[:120]}")


def _numbers(value: Any, count: int, what: str) -> list[float]:
    """`count` 個の有限の数のリストであることを確かめる。"""
    _require_number_list(value, what)
    if len(value) != count:
        raise Mismatch(f"{what} has {len(value)} values; the model has {count} outputs")
    if not all(math.isfinite(p) for p in value):
        raise Mismatch(f"{what} has values that are not finite: {value}")
    return [float(p) for p in value]


def _probabilities(value: Any, num_classes: int, what: str) -> list[float]:
    """クラス数ぶんの 0..1 の数で合計がほぼ 1 の確率であることを確かめる。"""
    _require_number_list(value, what)
    if len(value) != num_classes:
        raise Mismatch(f"{what} has {len(value)} probabilities; the model has {num_classes} classes")
    if not all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in value):
        raise Mismatch(f"{what} has values outside 0..1: {value}")
    total = math.fsum(value)
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise Mismatch(f"{what} sums to {total:.6f}, not 1")
    return [float(p) for p in value]


def _answer(value: Any, facts: Facts, what: str) -> list[float]:
    """1 行の答え: 分類器なら確率、回帰器なら出力の値の数だけの数。"""
    count = _need(facts.num_classes, "the number of outputs (/metadata)")
    if facts.classifier:
        return _probabilities(value, count, what)
    return _numbers(value, count, what)


def _same(actual: list[float], expected: list[float]) -> bool:
    """答えの列が float32 の精度で一致するか（回帰の大きな値は相対誤差で）。"""
    return len(actual) == len(expected) and all(
        abs(a - e) <= PROBABILITY_TOLERANCE * max(1.0, abs(e)) for a, e in zip(actual, expected, strict=True)
    )


def argmax_label(probabilities: list[float], labels: dict[str, str]) -> str:
    """最も確率の高いクラスのラベル名。"""
    index = max(range(len(probabilities)), key=probabilities.__getitem__)
    return labels.get(str(index), f"<no label {index}>")


def _short(probabilities: list[float]) -> str:
    """確率を短く表示する。"""
    return "[" + ", ".join(f"{p:.4f}" for p in probabilities) + "]"


def _verify_health(response: httpx.Response, facts: Facts) -> str:
    body = _ok_json(response)
    if body != {"health": "ok"}:
        raise Mismatch(f'expected {{"health": "ok"}}, got {_snippet(response)}')
    return '{"health": "ok"}'


def _verify_ready(response: httpx.Response, facts: Facts) -> str:
    if response.status_code != 200:
        raise Mismatch(f"HTTP {response.status_code}, expected 200 (not ready): {_snippet(response)}")
    return "ready"


def _verify_metadata(response: httpx.Response, facts: Facts) -> str:
    body = _ok_json(response)
    if not isinstance(body, dict):
        raise Mismatch(f"expected a JSON object, got {_snippet(response)}")
    missing = [key for key in (*METADATA_KEYS, "model") if key not in body]
    if missing:
        raise Mismatch(f"missing {', '.join(missing)}")
    model = body["model"]
    sha256 = model.get("sha256") if isinstance(model, dict) else None
    if not isinstance(sha256, str) or len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise Mismatch(f"model.sha256 is not a sha256 hex digest: {sha256!r}")
    task = model.get("task", "classification")
    key = "num_classes" if task == "classification" else "num_outputs"
    count = model.get(key)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise Mismatch(f"model.{key} is not a positive integer: {count!r}")
    if body["data_sample"] != [facts.served.sample]:
        raise Mismatch(f"data_sample is {body['data_sample']!r}, expected {[facts.served.sample]!r}")
    facts.model_sha256 = sha256
    facts.num_classes = count
    facts.prediction_sample = _answer(body["prediction_sample"], facts, "prediction_sample")
    name = model.get("file_name", "model")
    what = f"{count} classes" if task == "classification" else f"regressor, {count} outputs"
    return f"{name} sha256 {sha256[:12]}…, {what}"


def _no_labels(response: httpx.Response) -> str:
    """回帰器のラベルの確認: 404 とその理由。"""
    return _rejects(404)(response, Facts())


def _verify_label(response: httpx.Response, facts: Facts) -> str:
    if not facts.classifier:
        return _no_labels(response)
    body = _ok_json(response)
    num_classes = _need(facts.num_classes, "model.num_classes")
    expected_keys = [str(i) for i in range(num_classes)]
    if not isinstance(body, dict) or sorted(body, key=lambda k: (len(k), k)) != expected_keys:
        raise Mismatch(f"expected keys {', '.join(expected_keys)} (one per class), got {_snippet(response)}")
    if not all(isinstance(v, str) and v for v in body.values()):
        raise Mismatch(f"every label must be a non-empty string: {_snippet(response)}")
    facts.labels = {key: body[key] for key in expected_keys}
    return ", ".join(facts.labels.values())


def _verify_predict_test(response: httpx.Response, facts: Facts) -> str:
    prediction = _prediction(response)
    facts.predict_test = _answer(prediction, facts, "prediction")
    return _short(facts.predict_test)


def _verify_predict_test_label(response: httpx.Response, facts: Facts) -> str:
    if not facts.classifier:
        return _no_labels(response)
    prediction = _prediction(response)
    expected = argmax_label(_need(facts.predict_test, "/predict/test"), _need(facts.labels, "/label"))
    if prediction != expected:
        raise Mismatch(f"got {prediction!r}, expected {expected!r} (most probable class of /predict/test)")
    return str(prediction)


def _verify_predict(response: httpx.Response, facts: Facts) -> str:
    prediction = _prediction(response)
    row = _answer(prediction, facts, "prediction")
    # 形が正しければ後の確認のために記録する（不一致はこの確認だけの失敗にする）
    facts.one_row = row
    sample = _need(facts.prediction_sample, "/metadata prediction_sample")
    if not _same(row, sample):
        raise Mismatch(f"{_short(row)} differs from /metadata prediction_sample {_short(sample)}")
    test = _need(facts.predict_test, "/predict/test")
    if not _same(row, test):
        raise Mismatch(f"{_short(row)} differs from /predict/test {_short(test)}")
    sha256 = facts.model_sha256 or ""
    local_model = facts.reference.get(sha256)
    if local_model is None:
        return f"{_short(row)} = prediction_sample = /predict/test (no local copy of model {sha256[:12]})"
    # サービスが名乗るモデルを手元で動かした答えと一致すること（サービス同士の自己一致だけにしない）
    local = local_model(facts.served.sample)
    if not _same(row, local):
        raise Mismatch(f"{_short(row)} differs from the local model {sha256[:12]}… {_short(local)}")
    return f"{_short(row)} = prediction_sample = /predict/test = local model {sha256[:12]}"


def _verify_predict_label(response: httpx.Response, facts: Facts) -> str:
    if not facts.classifier:
        return _no_labels(response)
    prediction = _prediction(response)
    expected = argmax_label(_need(facts.one_row, "/predict"), _need(facts.labels, "/label"))
    if prediction != expected:
        raise Mismatch(f"got {prediction!r}, expected {expected!r}")
    return str(prediction)


def _batch(response: httpx.Response, facts: Facts) -> list[list[float]]:
    """バッチの行数（BATCH_ROWS と同じ 3 行）ぶんの答えのリストであることを確かめて返す。"""
    prediction = _prediction(response)
    if not isinstance(prediction, list) or len(prediction) != len(BATCH_ROWS):
        raise Mismatch(f"expected {len(BATCH_ROWS)} rows, got {str(prediction)[:120]}")
    return [_answer(row, facts, f"row {i}") for i, row in enumerate(prediction)]


def _verify_predict_batch(response: httpx.Response, facts: Facts) -> str:
    rows = _batch(response, facts)
    facts.batch = rows
    one_row = _need(facts.one_row, "/predict (one row)")
    if not _same(rows[0], one_row):
        raise Mismatch(f"row 0 {_short(rows[0])} differs from the one-row answer {_short(one_row)}")
    return f"{len(rows)} rows, row 0 = one-row answer"


def _verify_predict_batch_order(response: httpx.Response, facts: Facts) -> str:
    rows = _batch(response, facts)
    forward = _need(facts.batch, "/predict (3 rows)")
    for index, (actual, expected) in enumerate(zip(rows, forward[::-1], strict=True)):
        if not _same(actual, expected):
            raise Mismatch(
                f"row {index} {_short(actual)} should be {_short(expected)}: rows are out of order"
            )
    return "answers follow the order of the rows"


def _verify_predict_label_batch(response: httpx.Response, facts: Facts) -> str:
    if not facts.classifier:
        return _no_labels(response)
    prediction = _prediction(response)
    labels = _need(facts.labels, "/label")
    expected = [argmax_label(row, labels) for row in _need(facts.batch, "/predict (3 rows)")]
    if prediction != expected:
        raise Mismatch(f"got {prediction!r}, expected {expected!r}")
    return ", ".join(expected)


def _rejects(
    status: int, mention: str | None = None, key: str = "detail"
) -> Callable[[httpx.Response, Facts], str]:
    """決まった 4xx で断ることを確かめる検証関数を作る（mention があれば理由に含むこと）。

    `key` は理由の項目（簡易 API は detail、V2 は error）。
    """

    def verify(response: httpx.Response, facts: Facts) -> str:
        if response.status_code != status:
            raise Mismatch(f"HTTP {response.status_code}, expected {status}: {_snippet(response)}")
        try:
            detail = response.json().get(key)
        except (ValueError, AttributeError):
            raise Mismatch(f"error body is not {{'{key}': ...}}: {_snippet(response)}") from None
        if detail is None:
            raise Mismatch(f"error body has no {key}: {_snippet(response)}")
        text = detail if isinstance(detail, str) else json.dumps(detail)
        if mention is not None and mention not in text:
            raise Mismatch(f"{key} does not mention {mention!r}: {text[:120]}")
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            text = str(detail[0].get("msg", text))
        return f"{status}: {text[:100]}"

    return verify


def _verify_v2_ready(response: httpx.Response, facts: Facts) -> str:
    _ok_json(response)
    return "ready"


def _verify_v2_model(response: httpx.Response, facts: Facts) -> str:
    body = _ok_json(response)
    served = facts.served
    expected = [{"name": served.input_name, "datatype": served.datatype, "shape": [-1, served.width]}]
    if not isinstance(body, dict) or body.get("name") != served.name or body.get("inputs") != expected:
        raise Mismatch(f"expected model {served.name!r} with inputs {expected}, got {_snippet(response)}")
    outputs = [str(o.get("name")) for o in body.get("outputs", []) if isinstance(o, dict)]
    if served.prediction_output not in outputs:
        raise Mismatch(f"output {served.prediction_output!r} is not in the model's outputs {outputs}")
    return (
        f"{served.name} version {', '.join(map(str, body.get('versions', [])))}: outputs {', '.join(outputs)}"
    )


def _v2_rows(response: httpx.Response, facts: Facts, rows: int) -> list[list[float]]:
    """V2 の応答から /predict と同じ出力を行に分けて返す。"""
    body = _ok_json(response)
    served = facts.served
    outputs = body.get("outputs") if isinstance(body, dict) else None
    match = [o for o in outputs or [] if isinstance(o, dict) and o.get("name") == served.prediction_output]
    if not match or body.get("id") != "mii-smoke":
        raise Mismatch(
            f"expected output {served.prediction_output!r} and id 'mii-smoke', got {_snippet(response)}"
        )
    data, shape = match[0].get("data"), match[0].get("shape")
    count = _need(facts.num_classes, "the number of outputs (/metadata)")
    if (
        not isinstance(data, list)
        or len(data) != rows * count
        or not isinstance(shape, list)
        or shape[0] != rows
    ):
        raise Mismatch(f"expected {rows} rows of {count} values, got shape {shape} and {str(data)[:80]}")
    return [[float(v) for v in data[i * count : (i + 1) * count]] for i in range(rows)]


def _verify_v2_infer(response: httpx.Response, facts: Facts) -> str:
    (row,) = _v2_rows(response, facts, 1)
    expected = _need(facts.one_row, "/predict (one row)")
    if not _same(row, expected):
        raise Mismatch(f"{_short(row)} differs from the /predict answer {_short(expected)}")
    return f"{_short(row)} = /predict"


def _verify_v2_infer_batch(response: httpx.Response, facts: Facts) -> str:
    rows = _v2_rows(response, facts, len(BATCH_ROWS))
    expected = _need(facts.batch, "/predict (3 rows)")
    for index, (actual, wanted) in enumerate(zip(rows, expected, strict=True)):
        if not _same(actual, wanted):
            raise Mismatch(f"row {index} {_short(actual)} differs from /predict {_short(wanted)}")
    return "3 rows = /predict batch"


VERIFIERS: dict[str, Callable[[httpx.Response, Facts], str]] = {
    "health": _verify_health,
    "ready": _verify_ready,
    "metadata": _verify_metadata,
    "label": _verify_label,
    "predict-test": _verify_predict_test,
    "predict-test-label": _verify_predict_test_label,
    "predict": _verify_predict,
    "predict-label": _verify_predict_label,
    "predict-batch": _verify_predict_batch,
    "predict-batch-order": _verify_predict_batch_order,
    "predict-label-batch": _verify_predict_label_batch,
    "reject-missing-data": _rejects(422),
    "reject-non-numeric": _rejects(422),
    "reject-wrong-row-length": _rejects(400, "row 1"),
    "reject-nan": _rejects(400),
    "reject-empty-data": _rejects(400),
    "reject-too-large": _rejects(413),
    "v2-ready": _verify_v2_ready,
    "v2-model": _verify_v2_model,
    "v2-infer": _verify_v2_infer,
    "v2-infer-batch": _verify_v2_infer_batch,
    "v2-reject-shape": _rejects(400, key="error"),
    "v2-unknown-model": _rejects(404, _UNKNOWN_MODEL, key="error"),
}


def _result(
    check: Check,
    ok: bool,
    detail: str,
    elapsed_ms: float | None,
    *,
    status: int | None = None,
    served_by: str | None = None,
) -> CheckResult:
    """確認と結果から CheckResult を作る。"""
    return CheckResult(
        name=check.name,
        method=check.method,
        path=check.path,
        expected=check.expected,
        ok=ok,
        detail=detail,
        elapsed_ms=None if elapsed_ms is None else round(elapsed_ms, 2),
        status=status,
        served_by=served_by,
    )


def local_reference(
    models: Sequence[tuple[Path, Path | None]] | None = None,
) -> dict[str, Callable[[list[float]], list[float]]]:
    """手元のモデル（既定は同梱の models/）をサービス自身のローダで読み、sha256 -> 1 行の答えの関数を返す。

    読めないモデルは無視する（比べる相手が無いだけで、確認は続ける）。
    """
    from service.ml.loading import load_model
    from service.ml.prediction import ModelLoadError

    if models is None:
        from mii_cli.paths import model_and_labels

        try:
            models = [model_and_labels(None, None)]
        except ConfigError:
            models = []
    reference: dict[str, Callable[[list[float]], list[float]]] = {}
    for model_path, labels in models:
        try:
            model = load_model(model_path, labels)
        except ModelLoadError:
            continue
        reference[model.info.sha256] = lambda row, model=model: model.predict([row])[0]  # type: ignore[misc]
    return reference


def _discover(client: httpx.Client) -> ServedModel:
    """/metadata から配信中のモデルを読む（読めなければ同梱の Iris モデル）。"""
    try:
        response = client.get("/metadata", headers={constants.REQUEST_ID_HEADER: "mii-smoke-discover"})
        return served_model(response.json()) or IRIS
    except (httpx.HTTPError, ValueError):
        return IRIS


def run_smoke_test(
    base_url: str, *, timeout: float = 5.0, models: Sequence[tuple[Path, Path | None]] | None = None
) -> SmokeReport:
    """`smoke_plan()` の確認を `base_url` に対して順に実行し、結果を返す。

    計画は /metadata が名乗るモデル（幅・サンプル・分類か回帰か・V2 の名前）に合わせる。
    `models`（既定は同梱のモデル）のうちサービスが名乗る sha256 のものがあれば、1 行の推論を
    手元で同じモデルを動かした答えとも比べる。
    サービスに接続できなければ、そこで送るのをやめ、残りの確認をすべて失敗として
    `unreachable` に理由を入れて返す（例外にはしない）。
    """
    base_url = normalize_url(base_url)
    results: list[CheckResult] = []
    served_by: list[str] = []
    unreachable: str | None = None
    with httpx.Client(base_url=base_url, timeout=timeout, follow_redirects=False) as client:
        facts = Facts(served=_discover(client), reference=local_reference(models))
        for check in smoke_plan(facts.served):
            if unreachable is not None:
                results.append(_result(check, False, "not run: service unreachable", None))
                continue
            headers = {constants.REQUEST_ID_HEADER: f"mii-smoke-{check.name}"}
            if check.body is not None:
                headers["Content-Type"] = _JSON
            start = time.perf_counter()
            try:
                response = client.request(check.method, check.path, content=check.body, headers=headers)
            except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                unreachable = f"cannot connect to {base_url} ({error or type(error).__name__})"
                results.append(_result(check, False, unreachable, None))
                continue
            except httpx.TimeoutException:
                elapsed = (time.perf_counter() - start) * 1000
                results.append(_result(check, False, f"no answer within {timeout:g} s", elapsed))
                continue
            except httpx.HTTPError as error:
                elapsed = (time.perf_counter() - start) * 1000
                results.append(_result(check, False, f"{type(error).__name__}: {error}", elapsed))
                continue
            elapsed = (time.perf_counter() - start) * 1000
            pod = response.headers.get(constants.SERVED_BY_HEADER)
            if pod and pod not in served_by:
                served_by.append(pod)
            try:
                ok, detail = True, VERIFIERS[check.name](response, facts)
            except Mismatch as failure:
                ok, detail = False, str(failure)
            results.append(_result(check, ok, detail, elapsed, status=response.status_code, served_by=pod))
    return SmokeReport(
        base_url=base_url,
        checks=results,
        served_by=served_by,
        model_sha256=facts.model_sha256,
        unreachable=unreachable,
    )
