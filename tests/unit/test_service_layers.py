"""サービスの層の境界（service/）。

- モデルの層（`service.ml`）は設定（`service.configurations`）もアプリ（`service.app`）も読み込まない。
  読み込みの指定は `load_model()` の引数で受け取り、サンプルの行の形式は `service.ml.sample` が持つ。
- FastAPI（と Starlette）を読み込むのは FastAPI のアプリを組み立てる `service.app.fastapi_app` だけで、
  それを読み込むのも `service.app.app` の関数の中（最初に要るとき）だけ。高速経路は FastAPI を通らない。

モジュールの import 文（関数の中のものも）を構文木から読んで確かめる。型の検査のときだけの
`if TYPE_CHECKING:` の中は実行されないので数えない。実行時に FastAPI が読み込まれないことは
tests/integration/test_api.py が子プロセスで確かめる。
"""

from __future__ import annotations

import ast
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import service

PACKAGE = Path(service.__file__).parent
MODEL_CORE = "service.ml"
FORBIDDEN_IN_MODEL_CORE = ("service.configurations", "service.app")
WEB_FRAMEWORKS = ("fastapi", "starlette")
FASTAPI_APP = "service.app.fastapi_app"


def modules() -> dict[str, Path]:
    """service のすべてのモジュールとそのファイル。"""
    found = {"service": PACKAGE / "__init__.py"}
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="service."):
        path = PACKAGE.joinpath(*info.name.split(".")[1:])
        found[info.name] = path / "__init__.py" if info.ispkg else path.with_suffix(".py")
    return found


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _import_nodes(node: ast.AST, *, in_function: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """node の中の import 文と、それが関数の中にあるか（`if TYPE_CHECKING:` の枝は除く）。"""
    for child in ast.iter_child_nodes(node):
        if _is_type_checking(child):
            assert isinstance(child, ast.If)
            for other in child.orelse:  # else の枝は実行される
                yield from _visit(other, in_function=in_function)
            continue
        yield from _visit(child, in_function=in_function)


def _visit(node: ast.AST, *, in_function: bool) -> Iterator[tuple[ast.AST, bool]]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node, in_function
    inner = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
    yield from _import_nodes(node, in_function=inner)


def imported(path: Path, *, top_level_only: bool = False) -> set[str]:
    """モジュールが import するモジュールと名前（service は相対 import を使わない）。

    top_level_only なら、読み込んだときに実行される import だけ（関数の中のものを除く）。
    """
    names: set[str] = set()
    for node, in_function in _import_nodes(ast.parse(path.read_text())):
        if top_level_only and in_function:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path} uses a relative import"
            base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


MODEL_CORE_MODULES = sorted(name for name in modules() if _within(name, MODEL_CORE))
OTHER_MODULES = sorted(name for name in modules() if name != FASTAPI_APP)


def test_the_walk_finds_the_model_core_and_the_app() -> None:
    names = modules()
    assert {"service.ml.loading", "service.ml.sample", "service.ml.prediction"} <= set(MODEL_CORE_MODULES)
    assert {
        "service.app.app",
        "service.app.endpoints",
        "service.app.handlers",
        "service.app.schemas",
        "service.app.replies",
        "service.app.errors",
        "service.app.v2_codec",
        FASTAPI_APP,
    } <= set(names)


def test_the_reader_sees_imports_in_functions_but_not_for_type_checking(tmp_path: Path) -> None:
    source = tmp_path / "example.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "import service.configurations\n"
        "if TYPE_CHECKING:\n"
        "    from fastapi import FastAPI\n"
        "def later():\n"
        "    from service.app.fastapi_app import build_framework\n"
    )
    everything = imported(source)
    assert "service.configurations" in everything
    assert "service.app.fastapi_app.build_framework" in everything
    assert not any(_within(name, "fastapi") for name in everything)
    assert "service.app.fastapi_app" not in imported(source, top_level_only=True)


@pytest.mark.parametrize("module", MODEL_CORE_MODULES)
def test_the_model_core_imports_neither_the_settings_nor_the_app(module: str) -> None:
    names = imported(modules()[module])
    forbidden = sorted(n for n in names if any(_within(n, layer) for layer in FORBIDDEN_IN_MODEL_CORE))
    assert forbidden == [], f"{module} imports {forbidden}"


def test_the_settings_take_the_sample_row_format_from_the_model_core() -> None:
    assert "service.ml.sample.parse_sample" in imported(modules()["service.configurations"])


@pytest.mark.parametrize("module", OTHER_MODULES)
def test_only_the_fastapi_assembly_imports_fastapi(module: str) -> None:
    names = imported(modules()[module])
    web = sorted(n for n in names if n.split(".")[0] in WEB_FRAMEWORKS)
    assert web == [], f"{module} imports {web}"


def test_the_fastapi_assembly_is_where_fastapi_is_imported() -> None:
    assert "fastapi" in imported(modules()[FASTAPI_APP])


def test_the_fastapi_assembly_is_imported_only_when_first_needed() -> None:
    importers = {
        name for name, path in modules().items() if any(_within(n, FASTAPI_APP) for n in imported(path))
    }
    assert importers == {"service.app.app"}
    eager = {
        name
        for name, path in modules().items()
        if any(_within(n, FASTAPI_APP) for n in imported(path, top_level_only=True))
    }
    assert eager == set()
