"""ハンドラ: 簡易 API と V2 の各エンドポイントの処理（本文を読んで応答を返す）。

ハンドラは `Handler` の形の関数で、(状態, `Call`, 本文, V2 の Inference-Header-Content-Length) を受け取り、
応答（`service.app.replies.Reply`）を返す。誤りは例外で上げ、ステータスと本文は呼ぶ側
（`service.app.endpoints.respond` から `service.app.errors.error_reply`）が決める。どのメソッドとパスで
どのハンドラを呼ぶかはエンドポイントの表（`service.app.endpoints.ENDPOINTS`）が決めるので、ここは
経路（高速経路か FastAPI か）を知らない。

ハンドラは HTTP の入出力だけを扱い、推論と入力の検証は `TabularModel` に、V2 のテンソルの読み書きは
`service.app.v2_codec` に任せる。モデルで決まる答え（/metadata・サンプルの答えなど）は起動時に
`cached_replies()` が 1 度だけ作り、いつも同じ答え（/health など）は定数の応答にしておく。
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import orjson
from prometheus_client import generate_latest
from pydantic import ValidationError

from service import constants
from service.app import v2_codec
from service.app.errors import NotFound, SchemaError, echo, echo_loc
from service.app.replies import METRICS_CONTENT_TYPE, Reply, json_reply, reply
from service.app.schemas import Data
from service.app.state import ServiceState
from service.ml.prediction import InvalidInputError


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


# --- 決まった応答 --------------------------------------------------------------------------------

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
        "v2_model": json_reply(200, v2_codec.model_metadata(model)),
        "v2_model_ready": json_reply(200, {"name": info.name, "ready": True}),
    }
    if model.labels is not None:
        replies["label"] = json_reply(200, model.labels)
        replies["predict_test_label"] = json_reply(200, {"prediction": model.labels_for([answer])[0]})
    return replies


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


# --- 簡易 API のハンドラ ------------------------------------------------------------------------

health = _constant(HEALTH, "health")
live = _constant(LIVE, "live")
metadata = _cached("metadata")


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
        if any(
            item["type"] == "json_invalid" and "number out of range" in item["msg"]
            for item in error.errors(include_url=False)
        ):
            # 桁の多すぎる数（`1` と 5000 個の 0）も、`1e400` と同じく値の誤り（400）: JSON としては正しい
            raise InvalidInputError("a number in the body is out of the float32 range") from None
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

v2_server = _constant(V2_SERVER, "v2_server")
v2_live = _constant(V2_LIVE, "v2_live")


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
    request = v2_codec.parse_infer(model, body, header_length)
    answer = v2_codec.answer_infer(model, request, state.v2_one_row)
    state.metrics.observe_prediction(call.route, len(request.batch))
    return answer
