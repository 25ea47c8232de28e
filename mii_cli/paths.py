"""プロジェクトのパス（同梱モデル・マニフェスト・Dockerfile）を解決する。"""

from __future__ import annotations

import os
from pathlib import Path

from mii_cli.errors import ConfigError


def project_root() -> Path:
    """プロジェクトのルート。MII_PROJECT_DIR があればそれ、無ければこのパッケージの親。"""
    override = os.environ.get("MII_PROJECT_DIR")
    root = Path(override) if override else Path(__file__).resolve().parent.parent
    if not (root / "models").is_dir():
        raise ConfigError(
            f"{root} is not a mii project (no models/ folder)",
            hint="run mii from a clone of the project, or set MII_PROJECT_DIR",
        )
    return root


def default_model() -> Path:
    """同梱モデルのパス。"""
    return project_root() / "models" / "iris_svc.onnx"


def default_labels() -> Path:
    """同梱ラベルのパス。"""
    return project_root() / "models" / "label.json"


def model_and_labels(model: Path | None, labels: Path | None) -> tuple[Path, Path | None]:
    """--model・--labels の既定: どちらも無ければ同梱のモデルとラベル。

    同梱の label.json は同梱のモデルのものなので、別のモデルを渡してラベルを省けばラベル無し。
    """
    if model is None:
        return default_model(), labels or default_labels()
    return model, labels
