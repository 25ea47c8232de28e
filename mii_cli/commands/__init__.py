"""`mii` のコマンド: 1 つのモジュールに 1 つのコマンド（または小さな組）。

各モジュールは `register(app)` でコマンドを登録する。オプションを受け取り、既定値を設定で埋め、
下の層（`mii_cli` の処理のモジュール）を呼び、結果を `mii_cli.ui` で描くか JSON にする。
処理のモジュールは関数の中で読み込む（`mii --help` を速く保ち、locust を読み込まない）。
"""

from __future__ import annotations

import typer

from mii_cli.commands import (
    benchmark,
    build,
    deploy,
    doctor,
    load_test,
    release,
    run,
    serve,
    smoke_test,
    status,
    teardown,
    train,
)

# `mii --help` に並ぶ順
MODULES = (
    train,
    serve,
    build,
    run,
    smoke_test,
    load_test,
    benchmark,
    deploy,
    release,
    status,
    teardown,
    doctor,
)


def register(app: typer.Typer) -> None:
    """すべてのコマンドを app に登録する。"""
    for module in MODULES:
        module.register(app)
