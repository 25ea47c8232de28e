"""API エンドポイント: 1 つの表（`ENDPOINTS`）に、エンドポイントごとに 1 度だけ定義する。

各エンドポイントは「メソッド・パス・ハンドラ・リクエストとレスポンスのスキーマ・起こりうるエラーコード」
の 1 行で、この表から次の 2 つを作る。
- FastAPI のルート（`service.app.routers.routes.add_routes`）: OpenAPI のドキュメントと、FAST_PATH=false の
  ときの経路。FastAPI の import は重い（0.5 CPU で約 0.5 s）ので、このモジュールは FastAPI を import しない。
  FastAPI のアプリは最初に要るとき（/docs・/openapi.json・表に無いパスやメソッド）、FAST_PATH=false なら
  起動時に作る（`service.app.app`）。
- 高速経路の表（`fast_routes`）: ミドルウェアが FastAPI を通さずに呼ぶ (メソッド, パス) の辞書。

どちらの経路も `respond()` でハンドラを呼び、例外は `service.app.errors.error_reply()` だけが
ステータスと本文に変えるので、応答はバイト単位で同じになる（テストで確かめる）。
ハンドラは HTTP の入出力だけを扱い、推論と入力の検証は `TabularModel` に任せる。

API は 2 つ: 仕様書の簡易 API（`/predict` など、エラーは `{"detail": ...}`）と、
Open Inference Protocol（V2、`/v2/...`、エラーは `{"error": "..."}`）。
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, ValidationError

from service import constants
from service.app import v2
from service.app.errors import (
    MAPPED_ERRORS,
    NotFound,
    Protocol,
    Reply,
    SchemaError,
    echo,
    echo_loc,
    error_reply,
    json_reply,
    protocol_of,
    reply,
)
from service.app.state import FastRoute, ServiceState
from service.logs import request_id_var

logger = logging.getLogger("service.access")

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST.encode()


class Call(NamedTuple):
    """ハンドラへの、リクエストの本文以外の入力: パスの引数（V2 のモデル名と版）とルート名（メトリクス）。

    高速経路では (メソッド, パス) ごとに決まっているので、表を作るときに 1 度だけ作る。
    """

    name: str
    version: str | None
    route: str


# ハンドラ: (状態, 入力, 本文, V2 の Inference-Header-Content-Length) -> 応答。
# 誤りは例外で（ステータスは errors.py の表が決める）
Handler = Callable[[ServiceState, Call, bytes, "str | None"], Reply]


# --- スキーマ（OpenAPI のドキュメント。本文の検証は rows_from_body と v2.parse_infer が行う） -----


class Data(BaseModel):
    """推論の入力。`data` は特徴量の 2 次元配列（N 行 × 特徴量数）。"""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"data": [[5.1, 3.5, 1.4, 0.2]]}]},
    )

    data: list[list[StrictFloat]] = Field(
        description="Rows of features, one list of numbers per sample (as many as the model's width).",
    )


class ProbabilityResponse(BaseModel):
    """推論結果。1 行なら答えのリスト（分類はクラスごとの確率、回帰は出力の値）、N 行ならリストのリスト。"""

    prediction: list[float] | list[list[float]]


class LabelResponse(BaseModel):
    """ラベルの推論結果。1 行ならラベル名、N 行ならラベル名のリスト。"""

    prediction: str | list[str]


class HealthResponse(BaseModel):
    """ヘルスチェックの結果。"""

    health: str


class StatusResponse(BaseModel):
    """liveness / readiness の結果。"""

    status: str


class ErrorResponse(BaseModel):
    """エラー応答（400・404・408・413・500）。"""

    detail: str


class ValidationErrorItem(BaseModel):
    """本文がスキーマに合わない箇所 1 つ（FastAPI の 422 と同じ項目）。"""

    type: str
    loc: list[str | int]
    msg: str
    input: Any = Field(default=None, description="The offending value (absent for malformed JSON).")


class ValidationErrorResponse(BaseModel):
    """422 の応答: スキーマに合わない箇所のリスト。"""

    detail: list[ValidationErrorItem]


class V2Error(BaseModel):
    """V2 のエラー応答。"""

    error: str


class V2Live(BaseModel):
    """V2 のサーバーの liveness。"""

    live: bool


class V2Ready(BaseModel):
    """V2 のサーバーの readiness。"""

    ready: bool


class V2ModelReady(BaseModel):
    """V2 のモデルの readiness。"""

    name: str
    ready: bool


class V2ServerMetadata(BaseModel):
    """V2 のサーバーのメタデータ。"""

    name: str
    version: str
    extensions: list[str]


class V2TensorMetadata(BaseModel):
    """V2 のテンソルのメタデータ（-1 は任意の長さ）。"""

    name: str
    datatype: str
    shape: list[int]


class V2ModelMetadata(BaseModel):
    """V2 のモデルのメタデータ。"""

    name: str
    versions: list[str]
    platform: str
    inputs: list[V2TensorMetadata]
    outputs: list[V2TensorMetadata]


class V2RequestInput(BaseModel):
    """V2 の入力テンソル。`data` は行優先（平らでも入れ子でもよい）、バイナリなら binary_data_size。"""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class V2RequestOutput(BaseModel):
    """V2 で求める出力（parameters.binary_data でバイナリ）。"""

    name: str
    parameters: dict[str, Any] | None = None


class V2InferenceRequest(BaseModel):
    """V2 の推論リクエスト。"""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "1",
                    "inputs": [
                        {
                            "name": "float_input",
                            "shape": [1, 4],
                            "datatype": "FP32",
                            "data": [5.1, 3.5, 1.4, 0.2],
                        }
                    ],
                }
            ]
        },
    )

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[V2RequestInput]
    outputs: list[V2RequestOutput] | None = None


class V2ResponseOutput(BaseModel):
    """V2 の出力テンソル（バイナリなら data の代わりに parameters.binary_data_size）。"""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class V2InferenceResponse(BaseModel):
    """V2 の推論の応答。"""

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[V2ResponseOutput]


# --- 簡易 API のハンドラ ------------------------------------------------------------------------


def rows_from_body(body: bytes) -> list[list[float]]:
    """`{"data": [[...], ...]}` の本文から行を取り出す（Content-Type は問わない）。

    よくある正しい本文は orjson で読み、型を手で確かめる（pydantic の約 1/4 の時間）。それ以外
    （壊れた JSON、NaN・Infinity を含む JSON、形の違う本文）は pydantic の JSON パーサで読み直すので、
    受け付ける本文・値・422 の detail は pydantic だけで読んでいたときと同じ。
    """
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _rows_by_pydantic(body)
    data = parsed.get("data") if type(parsed) is dict else None
    if type(data) is not list:
        return _rows_by_pydantic(body)
    for row in data:
        if type(row) is not list:
            return _rows_by_pydantic(body)
        for value in row:
            kind = type(value)
            if kind is not float and kind is not int:
                return _rows_by_pydantic(body)
    return data


def _rows_by_pydantic(body: bytes) -> list[list[float]]:
    """pydantic の JSON パーサで検証して行を返す。合わなければ FastAPI と同じ形の 422。"""
    try:
        return Data.model_validate_json(body).data
    except ValidationError as error:
        errors = []
        for item in error.errors(include_url=False):
            entry = {"type": item["type"], "loc": ["body", *echo_loc(item["loc"])], "msg": item["msg"]}
            if item["type"] != "json_invalid":
                # 壊れた JSON 全体は送り返さない。値も、書けて小さいときだけそのまま返す
                entry["input"] = echo(item.get("input"))
            errors.append(entry)
        raise SchemaError(errors) from None


def _one_or_many(values: list[Any]) -> Any:
    """1 行なら要素そのもの、N 行ならリストを返す。"""
    return values[0] if len(values) == 1 else values


def _cached(name: str) -> Handler:
    """起動時に作った決まった応答を返すハンドラ（/metadata など、モデルで決まるもの）。"""

    def handler(state: ServiceState, _call: Call, _body: bytes, _header_length: str | None) -> Reply:
        return state.cached[name]

    handler.__name__ = name
    return handler


def _constant(answer: Reply, name: str) -> Handler:
    """いつも同じ応答を返すハンドラ（/health など、モデルの読み込み前から答えるもの）。"""

    def handler(_state: ServiceState, _call: Call, _body: bytes, _header_length: str | None) -> Reply:
        return answer

    handler.__name__ = name
    return handler


def _labelled(state: ServiceState) -> None:
    """ラベルの無いモデル（回帰器）なら 404。"""
    if state.model.labels is None:
        raise NotFound(f"model {state.model.info.name} is a regressor: it has no labels")


def metrics(state: ServiceState, _call: Call, _body: bytes, _header_length: str | None) -> Reply:
    """Prometheus 形式のメトリクス（読まれたときにだけ形にする）。"""
    return reply(200, generate_latest(state.metrics.registry), METRICS_CONTENT_TYPE)


def ready(state: ServiceState, _call: Call, _body: bytes, _header_length: str | None) -> Reply:
    """readiness。モデル読み込みと試し推論が済んでいれば 200、それ以外は 503。"""
    return READY if state.ready else NOT_READY


def label(state: ServiceState, _call: Call, _body: bytes, _header_length: str | None) -> Reply:
    """クラスインデックスとラベル名の対応。"""
    _labelled(state)
    return state.cached["label"]


def predict_test(state: ServiceState, call: Call, _body: bytes, _header_length: str | None) -> Reply:
    """サンプルの答え（起動時に 1 度だけ推論したもの）。"""
    state.metrics.observe_prediction(call.route, 1)
    return state.cached["predict_test"]


def predict_test_label(state: ServiceState, call: Call, _body: bytes, _header_length: str | None) -> Reply:
    """サンプルのラベル。"""
    _labelled(state)
    state.metrics.observe_prediction(call.route, 1)
    return state.cached["predict_test_label"]


def predict(state: ServiceState, call: Call, body: bytes, _header_length: str | None) -> Reply:
    """行ごとの答え（1 行なら [p0, p1, p2]、N 行なら [[...], ...]）。"""
    answers = state.model.predict(rows_from_body(body))
    state.metrics.observe_prediction(call.route, len(answers))
    return json_reply(200, {"prediction": _one_or_many(answers)})


def predict_label(state: ServiceState, call: Call, body: bytes, _header_length: str | None) -> Reply:
    """行ごとのラベル名（1 行なら "setosa"、N 行ならリスト）。"""
    _labelled(state)
    labels = state.model.predict_label(rows_from_body(body))
    state.metrics.observe_prediction(call.route, len(labels))
    return json_reply(200, {"prediction": _one_or_many(labels)})


# --- V2 のハンドラ -------------------------------------------------------------------------------


def _served(state: ServiceState, call: Call) -> None:
    """パスのモデル名と版が配信中のものでなければ 404。"""
    info = state.model.info
    if call.name != info.name:
        raise NotFound(f"unknown model {call.name!r}; this server serves {info.name!r}")
    if call.version is not None and call.version != info.version:
        raise NotFound(
            f"unknown version {call.version!r} of model {info.name!r}; "
            f"this server serves version {info.version!r}"
        )


def v2_ready(state: ServiceState, _call: Call, _body: bytes, _header_length: str | None) -> Reply:
    """V2 のサーバーの readiness。"""
    return V2_READY if state.ready else V2_NOT_READY


def v2_model_metadata(state: ServiceState, call: Call, _body: bytes, _header_length: str | None) -> Reply:
    """V2 のモデルのメタデータ（入力と出力の名前・データ型・形）。"""
    _served(state, call)
    return state.cached["v2_model"]


def v2_model_ready(state: ServiceState, call: Call, _body: bytes, _header_length: str | None) -> Reply:
    """V2 のモデルの readiness。"""
    _served(state, call)
    if not state.ready:
        return json_reply(503, {"name": call.name, "ready": False})
    return state.cached["v2_model_ready"]


def v2_infer(state: ServiceState, call: Call, body: bytes, header_length: str | None) -> Reply:
    """V2 の推論（JSON のテンソル、または Triton のバイナリテンソル拡張）。"""
    _served(state, call)
    model = state.model
    request = v2.parse_infer(model, body, header_length)
    answer = v2.answer_infer(model, request, state.v2_one_row)
    state.metrics.observe_prediction(call.route, len(request.batch))
    return answer


HEALTH = json_reply(200, {"health": "ok"})
LIVE = json_reply(200, {"status": "alive"})
READY = json_reply(200, {"status": "ready"})
NOT_READY = json_reply(503, {"status": "not ready"})
V2_SERVER = json_reply(
    200,
    {"name": "model-in-image", "version": constants.SERVICE_VERSION, "extensions": ["binary_tensor_data"]},
)
V2_LIVE = json_reply(200, {"live": True})
V2_READY = json_reply(200, {"ready": True})
V2_NOT_READY = json_reply(503, {"ready": False})


def cached_replies(state: ServiceState) -> dict[str, Reply]:
    """決まった応答を作る（起動時に 1 度。モデルは決定的なのでサンプルの答えも変わらない）。"""
    model = state.model
    info = model.info
    answer = model.predict(model.sample)[0]
    metadata = {
        "data_type": constants.DATA_TYPE if info.input_type == "tensor(float)" else "float64",
        "data_structure": f"(1,{info.num_features})",
        "data_sample": model.sample,
        "prediction_type": constants.PREDICTION_TYPE,
        "prediction_structure": f"(1,{info.num_outputs})",
        "prediction_sample": answer,
        "task": info.task,
        "num_features": info.num_features,
        "classes": None if model.labels is None else list(model.labels.values()),
        "sample_source": info.sample_source,
        "model": info.as_dict(),
        "service_version": constants.SERVICE_VERSION,
    }
    replies = {
        "metadata": json_reply(200, metadata),
        "predict_test": json_reply(200, {"prediction": answer}),
        "v2_model": json_reply(200, v2.model_metadata(model)),
        "v2_model_ready": json_reply(200, {"name": info.name, "ready": True}),
    }
    if model.labels is not None:
        replies["label"] = json_reply(200, model.labels)
        replies["predict_test_label"] = json_reply(200, {"prediction": model.labels_for([answer])[0]})
    return replies


# --- エンドポイントの表 --------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """1 つのエンドポイントの定義（これだけから FastAPI のルートと高速経路を作る）。"""

    method: str
    path: str
    handler: Handler
    summary: str
    response_model: Any
    errors: tuple[int, ...] = ()
    request_body: type[BaseModel] | None = None
    tags: tuple[str, ...] = ()
    # 200 以外の決まった応答（503 の readiness など）: ステータス -> (スキーマ, 説明)
    other: tuple[tuple[int, Any, str], ...] = ()
    # OpenAPI のドキュメントに載せるか（/metrics は載せない）
    documented: bool = True

    @property
    def protocol(self) -> Protocol:
        """エラーの本文の形（`/v2` の下は V2）。"""
        return protocol_of(self.path)

    @property
    def reads_body(self) -> bool:
        """本文を読むか（POST）。"""
        return self.method == "POST"


# どのルートでも起こりうる（本文の上限はミドルウェアがすべてのリクエストで確かめる）
_ALWAYS = (413, 500)
# 本文を読む簡易 API のルート
_BODY = (400, 408, 413, 422, 500)
_V2_BODY = (400, 404, 408, 413, 500)
_V2_MODEL = (404, 413, 500)
_LABELS = (404, 413, 500)


def _v2_model_forms(
    suffix: str,
    method: str,
    handler: Handler,
    summary: str,
    model: Any,
    errors: tuple[int, ...],
    **extra: Any,
) -> list[Endpoint]:
    """V2 のモデルの操作の 2 つの形（版なしと `/versions/{version}` 付き）。"""
    return [
        Endpoint(
            method, f"/v2/models/{{name}}{suffix}", handler, summary, model, errors, tags=("v2",), **extra
        ),
        Endpoint(
            method,
            f"/v2/models/{{name}}/versions/{{version}}{suffix}",
            handler,
            f"{summary} (a given version)",
            model,
            errors,
            tags=("v2",),
            **extra,
        ),
    ]


_NOT_READY = ((503, StatusResponse, "Model not loaded yet"),)
_V2_NOT_READY_SERVER = ((503, V2Ready, "Model not loaded yet"),)
_V2_NOT_READY_MODEL = ((503, V2ModelReady, "Model not loaded yet"),)

ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "GET",
        "/health",
        _constant(HEALTH, "health"),
        "Server health (ok when the process answers)",
        HealthResponse,
        _ALWAYS,
        tags=("health",),
    ),
    Endpoint(
        "GET",
        "/health/live",
        _constant(LIVE, "live"),
        "Liveness probe",
        StatusResponse,
        _ALWAYS,
        tags=("health",),
    ),
    Endpoint(
        "GET",
        "/health/ready",
        ready,
        "Readiness probe: 200 after the model is loaded and tried",
        StatusResponse,
        _ALWAYS,
        tags=("health",),
        other=_NOT_READY,
    ),
    Endpoint(
        "GET",
        "/metadata",
        _cached("metadata"),
        "Input and output types, shapes, the sample and the model's facts",
        dict[str, Any],
        _ALWAYS,
        tags=("model",),
    ),
    Endpoint(
        "GET",
        "/label",
        label,
        "Class index -> label name (404 for a regressor)",
        dict[str, str],
        _LABELS,
        tags=("model",),
    ),
    Endpoint(
        "GET",
        "/predict/test",
        predict_test,
        "Answer for the sample row",
        ProbabilityResponse,
        _ALWAYS,
        tags=("predict",),
    ),
    Endpoint(
        "GET",
        "/predict/test/label",
        predict_test_label,
        "Label for the sample row (404 for a regressor)",
        LabelResponse,
        _LABELS,
        tags=("predict",),
    ),
    Endpoint(
        "POST",
        "/predict",
        predict,
        "Answer per row: class probabilities, or a regressor's output values",
        ProbabilityResponse,
        _BODY,
        Data,
        ("predict",),
    ),
    Endpoint(
        "POST",
        "/predict/label",
        predict_label,
        "Label per row (404 for a regressor)",
        LabelResponse,
        (*_BODY, 404),
        Data,
        ("predict",),
    ),
    Endpoint(
        "GET",
        "/v2",
        _constant(V2_SERVER, "v2_server"),
        "Open Inference Protocol: server metadata",
        V2ServerMetadata,
        _ALWAYS,
        tags=("v2",),
    ),
    Endpoint(
        "GET",
        "/v2/health/live",
        _constant(V2_LIVE, "v2_live"),
        "Open Inference Protocol: server live",
        V2Live,
        _ALWAYS,
        tags=("v2",),
    ),
    Endpoint(
        "GET",
        "/v2/health/ready",
        v2_ready,
        "Open Inference Protocol: server ready",
        V2Ready,
        _ALWAYS,
        tags=("v2",),
        other=_V2_NOT_READY_SERVER,
    ),
    *_v2_model_forms(
        "", "GET", v2_model_metadata, "Open Inference Protocol: model metadata", V2ModelMetadata, _V2_MODEL
    ),
    *_v2_model_forms(
        "/ready",
        "GET",
        v2_model_ready,
        "Open Inference Protocol: model ready",
        V2ModelReady,
        _V2_MODEL,
        other=_V2_NOT_READY_MODEL,
    ),
    *_v2_model_forms(
        "/infer",
        "POST",
        v2_infer,
        "Open Inference Protocol: inference (JSON or binary tensors)",
        V2InferenceResponse,
        _V2_BODY,
        request_body=V2InferenceRequest,
    ),
    Endpoint(
        "GET",
        "/metrics",
        metrics,
        "Prometheus metrics",
        None,
        _ALWAYS,
        tags=("health",),
        documented=False,
    ),
]


def respond(
    endpoint: Endpoint,
    state: ServiceState,
    call: Call,
    body: bytes,
    header_length: str | None,
    request_id: bytes,
) -> Reply:
    """ハンドラを呼び、例外をそのエンドポイントの形のエラー応答にする（高速経路とルートで共通）。

    想定外の例外はスタックトレースをログにだけ出し、500 にする。リクエスト ID はそのログのため。
    """
    try:
        return endpoint.handler(state, call, body, header_length)
    except MAPPED_ERRORS as error:
        return error_reply(error, endpoint.protocol)
    except Exception as error:  # noqa: BLE001  想定外の例外はログに出して 500
        token = request_id_var.set(request_id.decode("latin-1"))
        try:
            logger.exception("unhandled error in %s %s", endpoint.method, call.route)
        finally:
            request_id_var.reset(token)
        return error_reply(error, endpoint.protocol)


# --- 表から作るもの: 高速経路（FastAPI のルートは routes.py） -----------------------------------------


def fast_routes(state: ServiceState) -> dict[tuple[str, str], FastRoute]:
    """高速経路の表を作る（モデルを読み込んだ後。パスの {name}・{version} は配信中のモデルのもの）。

    答える関数は `respond` に (エンドポイント, 状態, 入力) を partial で結んだもの（C の呼び出しで、
    リクエストごとに Python の関数を 1 段増やさない）。
    """
    info = state.model.info
    table: dict[tuple[str, str], FastRoute] = {}
    for endpoint in ENDPOINTS:
        concrete = endpoint.path.format(name=info.name, version=info.version)
        version = info.version if "{version}" in endpoint.path else None
        call = Call(info.name, version, endpoint.path)
        table[(endpoint.method, concrete)] = FastRoute(
            answer=functools.partial(respond, endpoint, state, call),
            stats=state.metrics.route(endpoint.method, endpoint.path),
            protocol=endpoint.protocol,
            reads_body=endpoint.reads_body,
        )
    return table
