"""テスト全体で共有するフィクスチャ。"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import service  # noqa: F401  テストのプロセス（と子プロセス）でも ONNX Runtime のテレメトリを止める
from tests.fakes.kube_api import FakeApiServer
from tests.support import LABELS, MODEL, REFERENCE, SERVICE_ENV

# 端末の色を強制する変数（GitHub Actions などの CI が置く）を消す: typer は読み込み時に
# GITHUB_ACTIONS・FORCE_COLOR・PY_COLORS を見て色付きで出し、CLI の出力を文字で比べるテストが崩れる。
# テストの CLI はまだ読み込まれていない（conftest はテストのモジュールより先に読まれる）
for _name in ("GITHUB_ACTIONS", "FORCE_COLOR", "PY_COLORS", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
    os.environ.pop(_name, None)


@pytest.fixture(scope="session")
def model_path() -> Path:
    """同梱モデルのパス。"""
    return MODEL


@pytest.fixture(scope="session")
def label_path() -> Path:
    """同梱ラベルのパス。"""
    return LABELS


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """元実装のモデルと期待値のフォルダ（無ければテストをスキップ）。"""
    if not (REFERENCE / "expected.json").is_file():
        pytest.skip(f"reference folder {REFERENCE} is absent (it ships beside the project in CI)")
    return REFERENCE


@pytest.fixture(scope="session")
def expected_cases(reference_dir: Path) -> list[dict[str, Any]]:
    """元実装が返した 150 行分の確率とラベル。"""
    cases: list[dict[str, Any]] = json.loads((reference_dir / "expected.json").read_text())["cases"]
    return cases


@pytest.fixture(scope="session")
def tensor_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """zipmap=False で変換した（確率をテンソルで返す）モデル。"""
    from mii_cli.model.train import fit, to_onnx

    pipeline, *_ = fit(42, 0.2)
    model = to_onnx(pipeline, zipmap=False)
    path = tmp_path_factory.mktemp("tensor") / "iris_tensor.onnx"
    path.write_bytes(model)
    return path


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """サービスの環境変数を消した状態にする。"""
    for name in SERVICE_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """テストの中で学習した小さなモデル一式（幅・出力・ラベルの型・回帰・固定バッチ）。"""
    from tests.zoo import build_zoo

    return build_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture
def fake_api() -> Iterator[FakeApiServer]:
    """起動した Kubernetes API サーバーの代役（127.0.0.1）。"""
    server = FakeApiServer().start()
    yield server
    server.stop()
