"""Kubernetes の量と名前を API サーバーと同じ規則で読む（apimachinery の ParseQuantity、DNS-1123）。"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mii_cli.kube.quantity import LABEL_MAX, label_problem, parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("300Mi", Decimal(300 * 2**20)),
        ("1Gi", Decimal(2**30)),
        ("1.5Gi", Decimal(3 * 2**29)),
        ("512M", Decimal(512 * 10**6)),
        ("1e3", Decimal(1000)),
        ("1E-2", Decimal("0.01")),
        ("1E", Decimal(10**18)),  # E だけなら 10 進の接尾辞（エクサ）
        ("100u", Decimal("0.0001")),
        (".5", Decimal("0.5")),
        ("+2", Decimal(2)),
        ("-1k", Decimal(-1000)),
        ("7Ei", Decimal(7 * 2**60)),
    ],
)
def test_quantities_the_api_server_accepts(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "",
        " 1",
        "1 ",
        "1 Gi",
        "lots",
        "1Xi",
        "1gi",
        "1KB",
        "0x10",
        "1e",
        "1e400",
        "8Ei",
        "1..5",
        "1,5",
        "Gi",
        "½",
    ],
)
def test_quantities_the_api_server_refuses(text: str) -> None:
    assert parse_quantity(text) is None


@given(st.text(max_size=12))
def test_any_text_is_a_quantity_or_refused_without_an_exception(text: str) -> None:
    value = parse_quantity(text)
    assert value is None or abs(value) <= 2**63 - 1


@pytest.mark.parametrize("name", ["model-in-image", "a", "mii-e2e", "x1", "1x", "a" * LABEL_MAX])
def test_namespace_names_that_are_labels(name: str) -> None:
    assert label_problem(name) is None


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "it is empty"),
        ("Bad_Name", "lower case letters"),
        ("UPPER", "lower case letters"),
        ("-start", "start and end"),
        ("end-", "start and end"),
        ("dots.are.not.labels", "lower case letters"),
        ("a" * (LABEL_MAX + 1), f"it is {LABEL_MAX + 1} characters long (at most {LABEL_MAX})"),
        ("ünicode", "lower case letters"),
    ],
)
def test_names_that_are_not_labels(name: str, problem: str) -> None:
    assert problem in (label_problem(name) or "")
