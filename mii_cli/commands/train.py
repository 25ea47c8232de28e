"""`mii train`: Iris の SVC を学習し、モデル・ラベル・学習の事実を書く。"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mii_cli.commands.options import JsonOption
from mii_cli.ui import console as out


def train(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder to write the model, labels and training facts to.")
    ] = Path("models"),
    seed: Annotated[int, typer.Option(help="Random seed for the split and the SVC.")] = 42,
    test_size: Annotated[float, typer.Option(help="Fraction of the data held out for accuracy.")] = 0.2,
    as_json: JsonOption = False,
) -> None:
    """Train the Iris SVC and write iris_svc.onnx, label.json and training.json."""
    from mii_cli.model import train as training

    with out.console.status("Training Pipeline(StandardScaler, SVC) on Iris..."):
        result = training.train(output, seed=seed, test_size=test_size)
    if as_json:
        out.print_json(result)
        return
    out.success(f"held-out accuracy: {result.accuracy:.4f} ({result.facts['test_rows']} rows)")
    out.success(f"model:  {result.model_path} (sha256 {result.model_sha256[:16]}…)")
    out.success(f"labels: {result.label_path}")
    out.info(f"training facts: {result.facts_path}")


def register(app: typer.Typer) -> None:
    """コマンドを登録する。"""
    app.command()(train)
