"""`--help` の見た目: on/off のフラグに値の型（`<bool>`）を出さない。

Typer（0.29）はオプションの表の型の欄に、値を取らないフラグ（`--json`・`--help` など）にも `<bool>` と出す。
それでは `--json <bool>` と値を書くように読めるので、フラグの型の欄を空にする（値を取るものはそのまま）。
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperOption

_value_type = TyperOption.display_type_rich


def _flag_type(self: TyperOption, ctx: Any) -> str | None:
    """型の欄: フラグなら何も出さず、値を取るオプションは Typer のまま。"""
    if self.is_flag and not self.count:
        return None
    return _value_type(self, ctx)


def quiet_flag_types() -> None:
    """Typer のオプションの型の欄を、フラグでは空にする（何度呼んでもよい）。"""
    TyperOption.display_type_rich = _flag_type  # type: ignore[method-assign]
