"""Kubernetes の量（`500m`・`300Mi`・`1e3`）と名前を、API サーバーと同じ規則で読む。

API サーバーが断る値（`--namespace Bad_Name`、`--cpu " 300m "`）を mii が受け付けてクラスタへ送ると、
適用の途中で失敗する。ここで先に同じ規則で確かめ、1 行のエラーにする。

- 量: apimachinery の `resource.ParseQuantity` の文法（符号つきの 10 進数と、2 進の接尾辞
  Ki・Mi・Gi・Ti・Pi・Ei、10 進の接尾辞 n・u・m・（なし）・k・M・G・T・P・E、または指数 `e3`・`E-2`）。
  大きさの上限も同じ（2^63 - 1 を超える値は断る）。
- 名前: Namespace は DNS-1123 のラベル（英小文字・数字・`-`、英数字で始まり英数字で終わる、63 文字まで）。
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_QUANTITY = re.compile(rf"(?P<number>{_NUMBER})(?:(?P<exponent>[eE][+-]?[0-9]+)|(?P<suffix>[A-Za-z]*))")
# apimachinery は 2^63 - 1 を超える量を断る（"quantities must be ... (maximum ...)")
_MAXIMUM = Decimal(2**63 - 1)

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
LABEL_MAX = 63


def parse_quantity(text: str) -> Decimal | None:
    """量を 10 進数にする（`300Mi` -> 314572800、`250m` -> 0.25）。API サーバーが断る形なら None。"""
    match = _QUANTITY.fullmatch(text)
    if match is None:
        return None
    try:
        number = Decimal(match["number"])
    except InvalidOperation:
        return None
    if match["exponent"] is not None:
        exponent = int(match["exponent"][1:])
        if abs(exponent) > 64:
            return None
        value = number.scaleb(exponent)
    else:
        suffix = match["suffix"]
        if suffix in _BINARY:
            value = number * _BINARY[suffix]
        elif suffix in _DECIMAL:
            value = number * _DECIMAL[suffix]
        else:
            return None
    if abs(value) > _MAXIMUM:
        return None
    return value


def label_problem(name: str) -> str | None:
    """DNS-1123 のラベル（Namespace の名前）として何がいけないか（良ければ None）。"""
    if not name:
        return "it is empty"
    if len(name) > LABEL_MAX:
        return f"it is {len(name)} characters long (at most {LABEL_MAX})"
    if _LABEL.fullmatch(name) is None:
        return (
            "it must consist of lower case letters, digits and '-', and start and end with a letter or digit"
        )
    return None
