"""エラーとステータスの対応（1 か所の表）と、プロトコルごとの本文の形のテスト。"""

from __future__ import annotations

import json

import orjson
import pytest

from service.app import errors
from service.app.errors import (
    BodyTimeout,
    BodyTooLarge,
    NotFound,
    SchemaError,
    error_reply,
    protocol_of,
    status_of,
)
from service.ml.prediction import InvalidInputError


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidInputError("bad row"), 400),
        (NotFound("no labels"), 404),
        (BodyTimeout(10), 408),
        (BodyTooLarge(64), 413),
        (SchemaError([{"type": "missing", "loc": ["body", "data"], "msg": "Field required"}]), 422),
        (RuntimeError("boom"), 500),
    ],
)
def test_every_error_has_one_status(error: Exception, status: int) -> None:
    assert status_of(error) == status
    assert error_reply(error, "simple")[0] == error_reply(error, "v2")[0] == status


def test_the_simple_api_answers_detail_and_v2_answers_error() -> None:
    status, body, headers = error_reply(InvalidInputError("row 0 has 3 values"), "simple")
    assert (status, json.loads(body)) == (400, {"detail": "row 0 has 3 values"})
    assert (b"content-type", b"application/json") in headers
    assert (b"content-length", str(len(body)).encode()) in headers
    status, body, _ = error_reply(InvalidInputError("row 0 has 3 values"), "v2")
    assert json.loads(body) == {"error": "row 0 has 3 values"}


def test_a_server_fault_never_shows_its_message() -> None:
    _, body, _ = error_reply(RuntimeError("secret path /etc/x"), "simple")
    assert json.loads(body) == {"detail": "Internal server error"}
    _, body, _ = error_reply(RuntimeError("secret"), "v2")
    assert json.loads(body) == {"error": "Internal server error"}


def test_schema_errors_keep_the_fastapi_list_in_the_simple_api_only() -> None:
    errors = [{"type": "missing", "loc": ["body", "data"], "msg": "Field required"}]
    assert json.loads(error_reply(SchemaError(errors), "simple")[1]) == {"detail": errors}
    assert json.loads(error_reply(SchemaError(errors), "v2")[1]) == {
        "error": "request body does not match the schema"
    }


def test_connection_close_only_when_the_body_was_not_read_out() -> None:
    close = (b"connection", b"close")
    assert close not in error_reply(BodyTooLarge(64, drained=True), "simple")[2]
    assert close in error_reply(BodyTooLarge(64, drained=False), "simple")[2]
    assert close in error_reply(BodyTimeout(1.5), "v2")[2]
    assert json.loads(error_reply(BodyTimeout(1.5), "v2")[1]) == {
        "error": "request body not received within 1.5 s"
    }


@pytest.mark.parametrize(
    ("path", "protocol"),
    [
        ("/v2", "v2"),
        ("/v2/models/x/infer", "v2"),
        ("/predict", "simple"),
        ("/v2x", "simple"),
        ("/", "simple"),
    ],
)
def test_the_protocol_follows_the_path(path: str, protocol: str) -> None:
    assert protocol_of(path) == protocol


# --- クライアントの値を書くこと: 失敗せず、大きさに上限がある -------------------------------------


def test_echo_returns_small_writable_values_as_they_are() -> None:
    assert errors.echo({"x": [1, 2.5, "a", None]}) == {"x": [1, 2.5, "a", None]}


@pytest.mark.parametrize(
    ("value", "described"),
    [
        (478077284086472447983878144, "<integer of 89 bits>"),
        (10**5000, "<integer of 16610 bits>"),  # str() ではこの桁数を書けない
        ("a" * 5000, "<string of 5000 characters>"),
        ("\ud800", "<string of 1 character>"),
        ([2**64] * 3, "<array of 3 items>"),
        ({"x": [2**70]}, "<object with 1 key>"),
    ],
    ids=["int-89-bits", "int-5001-digits", "long-string", "lone-surrogate", "array", "object"],
)
def test_echo_describes_what_cannot_be_written_or_is_too_big(value: object, described: str) -> None:
    assert errors.echo(value) == described


def test_echo_loc_cuts_long_keys_and_keeps_indexes() -> None:
    assert errors.echo_loc(["data", 0, "k" * 100, True]) == ["data", 0, "k" * 64 + "...", "True"]


def test_render_never_fails_and_describes_only_the_unwritable_parts() -> None:
    deep: list[object] = []
    node = deep
    for _ in range(300):
        node.append([])
        node = node[0]  # type: ignore[assignment]
    payload = {"detail": [{"input": 2**80, "ok": "fine", "\ud800": 1, "deep": deep}]}
    written = orjson.loads(errors.render(payload))
    item = written["detail"][0]
    assert item["input"] == "<integer of 81 bits>"
    assert item["ok"] == "fine"
    assert item["<string of 1 character>"] == 1
    assert json.dumps(item["deep"]).count("[") <= 40


def test_an_error_reply_with_an_unwritable_detail_is_still_its_status() -> None:
    error = errors.SchemaError([{"type": "x", "loc": ["body"], "input": 2**99}])
    status, body, _ = errors.error_reply(error, "simple")
    assert status == 422
    assert orjson.loads(body)["detail"][0]["input"] == "<integer of 100 bits>"
