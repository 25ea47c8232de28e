"""結果の型の共通部品: すべての結果は dataclass で、`--json` はそれを `to_json` 1 つで直列化したもの。

合否や要約のように他のフィールドから決まる値は、`Result.computed` に並べたプロパティとして JSON にも出す。
JSON での名前がフィールド名と違うときは `json_field` で名前を付け、JSON に出さないフィールドは `hidden`。
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from enum import Enum
from pathlib import PurePath
from typing import Any, ClassVar

# フィールドの metadata のキー: JSON での名前（None なら JSON に出さない）
_JSON_NAME = "json_name"


class Result:
    """結果の dataclass の基底。`computed` に並べたプロパティも `to_json` で JSON に出る。"""

    computed: ClassVar[tuple[str, ...]] = ()


def json_field(name: str) -> Any:
    """JSON では `name` という名前で出す（既定値の無い）フィールド。"""
    return dataclasses.field(metadata={_JSON_NAME: name})


def hidden(default: Any) -> Any:
    """JSON に出さないフィールド（表示や判定にだけ使う）。既定値は不変の値にする。"""
    return dataclasses.field(default=default, metadata={_JSON_NAME: None})


def to_json(value: Any) -> Any:
    """結果（dataclass とその入れ子、辞書・リスト・パス・列挙）を JSON にできる値にする。"""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data: dict[str, Any] = {}
        for item in dataclasses.fields(value):
            name = item.metadata.get(_JSON_NAME, item.name)
            if name is not None:
                data[name] = to_json(getattr(value, item.name))
        for name in getattr(value, "computed", ()):
            data[name] = to_json(getattr(value, name))
        return data
    if isinstance(value, Mapping):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    return value
