"""README と docs/ のコードブロックにある `uv run mii ...` が、いまの CLI のとおりに打てること。

利用者は文書のコマンドをそのまま打つ。コマンドや選択肢の名前が変わって文書が古くなれば、ここで分かる。
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import typer.core
import typer.main

from mii_cli.cli import app
from tests.support import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def documented_commands() -> list[tuple[str, list[str]]]:
    """(どこにあるか, `mii` の後の引数) を、シェルのコードブロックの 1 コマンドずつ。"""
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            if match.group(1) not in ("bash", "sh", "shell", "console", ""):
                continue
            start = text.count("\n", 0, match.start(2)) + 1
            block = match.group(2).replace("\\\n", " ")  # 行の継続をつなぐ
            for offset, line in enumerate(block.splitlines()):
                if "uv run mii" not in line:
                    continue
                lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
                lexer.whitespace_split = True
                command: list[str] = []
                for token in [*lexer, ";"]:
                    if token and set(token) <= set("();<>|&"):
                        if command[:3] == ["uv", "run", "mii"]:
                            found.append((f"{path.relative_to(ROOT)}:{start + offset}", command[3:]))
                        command = []
                    else:
                        command.append(token)
    return found


COMMANDS = documented_commands()


def test_the_docs_show_the_lifecycle() -> None:
    shown = {args[0] for _, args in COMMANDS if args and not args[0].startswith("-")}
    assert {"train", "serve", "build", "run", "deploy", "up", "status", "smoke-test", "load-test"} <= shown
    assert {"promote", "rollback", "history", "teardown", "down", "doctor", "benchmark"} <= shown


@pytest.mark.parametrize(("where", "args"), COMMANDS, ids=[where for where, _ in COMMANDS])
def test_a_documented_command_parses(where: str, args: list[str]) -> None:
    check(where, args)


def test_a_wrong_name_is_caught() -> None:
    with pytest.raises(AssertionError, match="mii deploy has no option --canery"):
        check("here", ["deploy", "--canery"])
    with pytest.raises(AssertionError, match="mii has no command 'promot'"):
        check("here", ["promot"])
    with pytest.raises(AssertionError, match=r"mii status takes no argument \['extra-argument'\]"):
        check("here", ["status", "extra-argument"])


def check(where: str, args: list[str]) -> None:
    """args を `mii` の後に打ったとき、コマンドと選択肢がいまの CLI にあり、click が受け付けること。"""
    command = typer.main.get_command(app)
    context = command.make_context("mii", [], resilient_parsing=True)
    words = list(args)
    # グループを下りる（`mii --debug status` のようにグループの選択肢が先に来てもよい）
    while isinstance(command, typer.core.TyperGroup) and words:
        word = words[0]
        if word.startswith("-"):
            assert _takes(command, word), f"{where}: mii has no option {word}"
            words.pop(0)
            continue
        sub = command.get_command(context, word)
        assert sub is not None, f"{where}: mii has no command {word!r}"
        command = sub
        words.pop(0)
    for word in words:
        if word.startswith("--"):
            assert _takes(command, word.split("=", 1)[0]), f"{where}: mii {command.name} has no option {word}"
    # 位置引数の数まで含めて受け付けること（ファイルの有無や値の検証は、打つ人の手元の話なので見ない）
    if not isinstance(command, typer.core.TyperGroup) and "--help" not in words:
        leaf = command.make_context(command.name or "", list(words), resilient_parsing=True)
        assert not leaf.args, f"{where}: mii {command.name} takes no argument {leaf.args}"


def _takes(command: Any, option: str) -> bool:
    if option == "--help":
        return True
    return any(option in param.opts or option in param.secondary_opts for param in command.params)
