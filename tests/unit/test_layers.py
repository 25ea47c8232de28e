"""層の境界: 端末に描く（Rich）のも CLI を組む（Typer）のも CLI の層だけ
（cli.py・__main__.py・commands/・ui/）。

下の層（処理のモジュール、kube/）は結果の型とコールバックだけを返し、CLI の層を読み込まない。
モジュールの import 文（関数の中のものも）を構文木から読んで確かめる。
"""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import pytest

import mii_cli

PACKAGE = Path(mii_cli.__file__).parent
CLI_LAYER = ("mii_cli.__main__", "mii_cli.cli", "mii_cli.commands", "mii_cli.ui")
TERMINAL_LIBRARIES = ("rich", "typer", "click")


def modules() -> dict[str, Path]:
    """mii_cli のすべてのモジュールとそのファイル。"""
    found = {"mii_cli": PACKAGE / "__init__.py"}
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="mii_cli."):
        path = PACKAGE.joinpath(*info.name.split(".")[1:])
        found[info.name] = path / "__init__.py" if info.ispkg else path.with_suffix(".py")
    return found


def imported(path: Path) -> set[str]:
    """モジュールが import するモジュールと名前（関数の中の import も。mii_cli は相対 import を使わない）。"""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path} uses a relative import"
            base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def in_cli_layer(module: str) -> bool:
    return any(module == layer or module.startswith(layer + ".") for layer in CLI_LAYER)


LOWER = sorted(name for name in modules() if not in_cli_layer(name))


def test_the_walk_finds_both_layers() -> None:
    names = modules()
    assert {"mii_cli.cli", "mii_cli.ui.console", "mii_cli.commands.deploy"} <= set(names)
    assert {"mii_cli.workflows.deploy", "mii_cli.probe.smoke_test", "mii_cli.workflows.doctor"} <= set(LOWER)


@pytest.mark.parametrize("module", LOWER)
def test_lower_layers_do_not_draw_on_the_terminal(module: str) -> None:
    names = imported(modules()[module])
    drawing = sorted(n for n in names if n.split(".")[0] in TERMINAL_LIBRARIES)
    assert drawing == [], f"{module} imports {drawing}"


@pytest.mark.parametrize("module", LOWER)
def test_lower_layers_do_not_import_the_cli_layer(module: str) -> None:
    names = imported(modules()[module])
    assert sorted(n for n in names if in_cli_layer(n)) == []


def test_the_cli_layer_is_where_rich_is_imported() -> None:
    users = {name for name, path in modules().items() if any(n.startswith("rich") for n in imported(path))}
    assert users
    assert all(in_cli_layer(name) for name in users)
