"""端末出力（Rich）と機械可読な JSON 出力の共通部品。

メッセージはそのまま出す（`[...]` を Rich のマークアップとして読まない）。
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape

from mii_cli.results import to_json

# 人向けの出力（進捗・表）は標準エラー、--json の結果は標準出力に出す
console = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(value: Any) -> None:
    """結果（dataclass または JSON にできる値）を JSON で標準出力に書く（--json 用）。"""
    sys.stdout.write(json.dumps(to_json(value), indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def success(message: str) -> None:
    """成功を 1 行で知らせる。"""
    console.print(f"[green]✓[/green] {escape(message)}")


def info(message: str) -> None:
    """補足を 1 行で知らせる。"""
    console.print(f"[dim]•[/dim] {escape(message)}")


def warn(message: str) -> None:
    """警告を 1 行で知らせる。"""
    console.print(f"[yellow]![/yellow] {escape(message)}")


def error(message: str, *, hint: str | None, details: str | None, trace: str | None = None) -> None:
    """エラーを標準エラーに出す: 補足（ログの末尾など）、`Error:` の 1 行、`Hint:` の 1 行。"""
    if trace:
        console.print(trace, markup=False)
    if details:
        console.print(details, markup=False, style="dim")
    console.print(f"[bold red]Error:[/bold red] {escape(message)}")
    if hint:
        console.print(f"[dim]Hint:[/dim] {escape(hint)}")
