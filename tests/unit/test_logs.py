"""ログ設定（TEXT / JSON と request_id）のテスト。"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from service.logs import configure_logging, request_id_var


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_the_request_id(restore_root: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "JSON")
    token = request_id_var.set("req-42")
    try:
        logging.getLogger("test").info("hello %s", "world")
        logging.getLogger("test").debug("hidden")
    finally:
        request_id_var.reset(token)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["message"] == "hello world"
    assert record["request_id"] == "req-42"
    assert record["level"] == "INFO"
    assert record["time"].endswith("Z")


def test_json_includes_the_exception(restore_root: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("ERROR", "JSON")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("test").exception("failed")
    record = json.loads(capsys.readouterr().err.strip())
    assert "ValueError: boom" in record["exception"]


def test_text_format(restore_root: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("DEBUG", "TEXT")
    logging.getLogger("test").debug("plain")
    line = capsys.readouterr().err.strip()
    assert line.endswith("DEBUG [test] [request_id=-] plain")
