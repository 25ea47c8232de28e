"""テストの並び: テストモジュールは互いを読み込まず、共有するものは fakes/・support.py・conftest.py に置く。

あるテストモジュールが別のテストモジュールから関数や fixture を読み込むと、読み込んだ側のテストが
読み込まれた側で「もう一度」集められたり、片方の変更がもう片方を黙って壊したりする。
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support import ROOT

TESTS = ROOT / "tests"
TEST_MODULES = sorted(p for p in TESTS.rglob("test_*.py") if ".venv" not in p.parts)


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


TEST_MODULE_NAMES = {_module_name(p) for p in TEST_MODULES}


def _imports(path: Path) -> set[str]:
    """モジュールが import するモジュール（from X import Y は X と X.Y の両方）。"""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_walk_finds_the_test_modules_of_every_kind() -> None:
    kinds = {p.relative_to(TESTS).parts[0] for p in TEST_MODULES}
    assert {"unit", "integration", "e2e"} <= kinds


@pytest.mark.parametrize("path", TEST_MODULES, ids=lambda p: str(p.relative_to(TESTS)))
def test_a_test_module_imports_no_other_test_module(path: Path) -> None:
    assert sorted(_imports(path) & TEST_MODULE_NAMES) == []


@pytest.mark.parametrize("path", TEST_MODULES, ids=lambda p: str(p.relative_to(TESTS)))
def test_a_test_module_re_exports_nothing(path: Path) -> None:
    tree = ast.parse(path.read_text())
    targets = [
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    ]
    assert "__all__" not in targets
