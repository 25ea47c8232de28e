"""結果の直列化: dataclass のフィールド、宣言した計算値、JSON での名前、出さないフィールド。"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from mii_cli.results import Result, hidden, json_field, to_json


class Colour(Enum):
    red = "RED"


@dataclass(frozen=True)
class Inner(Result):
    value: float


@dataclass(frozen=True)
class Outer(Result):
    computed = ("total",)

    address: str = json_field("url")
    inner: list[Inner] = field(default_factory=list)
    secret: str = hidden(default="x")
    path: Path = Path("/tmp/a")
    colour: Colour = Colour.red
    pair: tuple[str, float] = (">=", 1.0)

    @property
    def total(self) -> float:
        return sum(item.value for item in self.inner)


def test_fields_nested_results_and_computed_values_become_json() -> None:
    data = to_json(Outer("http://x", [Inner(1.0), Inner(2.5)]))
    assert data == {
        "url": "http://x",
        "inner": [{"value": 1.0}, {"value": 2.5}],
        "path": "/tmp/a",
        "colour": "RED",
        "pair": [">=", 1.0],
        "total": 3.5,
    }
    assert json.loads(json.dumps(data)) == data


def test_plain_values_pass_through() -> None:
    assert to_json([{"a": (1, 2)}, None, "s"]) == [{"a": [1, 2]}, None, "s"]
