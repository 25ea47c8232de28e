"""`mii serve`: Docker なしで、モデルを 127.0.0.1 で配信する。"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mii_cli.commands.options import LogFormat, LogLevel, SampleOption, sample_row
from mii_cli.ui import console as out


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    model: Annotated[
        Path | None, typer.Option(help="ONNX model file (default: MODEL_FILEPATH or models/iris_svc.onnx).")
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            help="Label JSON file (default: LABEL_FILEPATH; models/label.json only for the bundled model)."
        ),
    ] = None,
    sample: SampleOption = None,
    log_level: Annotated[
        LogLevel | None, typer.Option(case_sensitive=False, help="Log level (default: LOG_LEVEL or DEBUG).")
    ] = None,
    log_format: Annotated[
        LogFormat | None, typer.Option(case_sensitive=False, help="Log format (default: LOG_FORMAT or TEXT).")
    ] = None,
) -> None:
    """Serve the model locally with uvicorn (no Docker needed). Ctrl-C stops it."""
    from mii_cli.commands.requests import serve_request
    from mii_cli.model import serve as serving

    request = serve_request(
        host=host,
        port=port,
        model=model,
        labels=labels,
        sample=sample_row(sample),
        log_level=log_level.value if log_level else None,
        log_format=log_format.value if log_format else None,
    )
    server = serving.prepare_server(request)
    out.info(f"serving {server.settings.model_filepath} on {server.url} (docs: /docs); Ctrl-C to stop")
    serving.serve_until_stopped(server)
    out.info("server stopped")


def register(app: typer.Typer) -> None:
    """コマンドを登録する。"""
    app.command()(serve)
