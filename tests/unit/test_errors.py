"""エラーとステータスの対応（1 か所の表）と、プロトコルごとの本文の形のテスト。"""

from __future__ import annotations

import json

import pytest

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
