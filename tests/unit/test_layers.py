"""層の境界: 端末に描く（Rich）のも CLI を組む（Typer）のも CLI の層だけ
（cli.py・__main__.py・commands/・ui/）。

下の層は結果の型とコールバックだけを返し、CLI の層を読み込まない。下の層の中の向きも決まっている
（`ALLOWED`）: kube/ は Kubernetes へのアダプタで、スモークテストも設定も知らない。設定（settings.py）を
読むのは CLI の層だけで、下の層は値を引数で受け取る。複数の層を組み合わせる流れは workflows/ にある。
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


# 下の層のパッケージごとに、読み込んでよい mii_cli のモジュール（前方一致）。どこからでも読める土台:
BASE = ("mii_cli.errors", "mii_cli.results", "mii_cli.paths", "mii_cli.references")
ALLOWED: dict[str, tuple[str, ...]] = {
    "mii_cli.settings": (),
    "mii_cli.kube": ("mii_cli.kube",),
    "mii_cli.model": ("mii_cli.model",),
    # イメージを作るときにモデルの事実を読み、クラスタへ渡すときにクラスタの種類（ClusterInfo）を見る。
    # ベンチマークはサービスの写しの数字を、verdict と同じ読み方（probe/mirror.py、純粋な関数）で読む
    "mii_cli.image": ("mii_cli.image", "mii_cli.model", "mii_cli.kube.cluster", "mii_cli.probe.mirror"),
    "mii_cli.probe": ("mii_cli.probe", "mii_cli.kube"),
    "mii_cli.workflows": (
        "mii_cli.workflows",
        "mii_cli.image",
        "mii_cli.kube",
        "mii_cli.probe",
        "mii_cli.model",
    ),
}


def package_of(module: str) -> str | None:
    return next((p for p in ALLOWED if module == p or module.startswith(p + ".")), None)


def test_every_lower_module_has_a_place_in_the_table() -> None:
    homeless = [m for m in LOWER if package_of(m) is None and m not in ("mii_cli", *BASE)]
    assert homeless == []


@pytest.mark.parametrize("module", [m for m in LOWER if package_of(m) is not None])
def test_lower_layers_import_only_in_the_allowed_directions(module: str) -> None:
    package = package_of(module)
    assert package is not None
    allowed = (*ALLOWED[package], *BASE, package)
    ours = {n for n in imported(modules()[module]) if n == "mii_cli" or n.startswith("mii_cli.")}
    # `from mii_cli.kube import api` は mii_cli.kube と mii_cli.kube.api の両方に見える: 名前の側で判断する
    wrong = sorted(
        n for n in ours if n != "mii_cli" and not any(n == a or n.startswith(a + ".") for a in allowed)
    )
    assert wrong == [], f"{module} imports {wrong}"


def test_only_the_cli_layer_reads_the_settings() -> None:
    readers = sorted(
        name
        for name, path in modules().items()
        if "mii_cli.settings" in imported(path) and not in_cli_layer(name)
    )
    assert readers == []
