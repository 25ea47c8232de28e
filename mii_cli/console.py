"""端末出力（Rich）と機械可読な JSON 出力の共通部品。"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

# 人向けの出力（進捗・表）は標準エラー、--json の結果は標準出力に出す
console = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    """結果を JSON で標準出力に書く（--json 用）。"""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def success(message: str) -> None:
    """成功を 1 行で知らせる。"""
    console.print(f"[green]✓[/green] {message}")


def info(message: str) -> None:
    """補足を 1 行で知らせる。"""
    console.print(f"[dim]•[/dim] {message}")


def warn(message: str) -> None:
    """警告を 1 行で知らせる。"""
    console.print(f"[yellow]![/yellow] {message}")
