"""`mii build` の純粋な部分（モデルの検証・コンテキスト・ビルド引数・タグ・進捗・失敗のヒント）のテスト。"""

from __future__ import annotations

import io
import json
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mii_cli.errors import DockerError, ModelError
from mii_cli.image import build as building
from tests.support import ROOT

LOCAL_BASE = building.BaseImage("localhost/python:3.11-slim", None, "sha256:" + "1" * 64)


@pytest.fixture(scope="module")
def facts(model_path: Path, label_path: Path) -> building.ModelFacts:
    return building.inspect_model(model_path, label_path)


def test_inspect_model_reads_the_facts(facts: building.ModelFacts) -> None:
    assert facts.input_signature == "float_input:tensor(float)[None,4]"
    assert facts.num_classes == 3
    assert len(facts.model_sha256) == 64
    assert facts.training is not None


def test_inspect_model_refuses_a_broken_model(tmp_path: Path, label_path: Path) -> None:
    broken = tmp_path / "m.onnx"
    broken.write_bytes(b"nope")
    with pytest.raises(ModelError, match=r"refusing to build: .*not a valid ONNX model"):
        building.inspect_model(broken, label_path)


def test_context_holds_only_what_the_image_needs(facts: building.ModelFacts) -> None:
    files = building.context_files(ROOT, facts)
    assert {
        "Dockerfile",
        "pyproject.toml",
        "uv.lock",
        "service/run.sh",
        "service/app/app.py",
        "models/iris_svc.onnx",
        "models/label.json",
        "models/training.json",
    } <= set(files)
    assert not any(name.startswith(("tests/", "mii_cli/", ".git")) for name in files)
    assert not any("__pycache__" in name for name in files)


def test_a_custom_model_keeps_its_name_and_labels_become_label_json(
    tmp_path: Path, model_path: Path, label_path: Path
) -> None:
    model = tmp_path / "other.onnx"
    labels = tmp_path / "names.json"
    model.write_bytes(model_path.read_bytes())
    labels.write_bytes(label_path.read_bytes())
    facts = building.inspect_model(model, labels)
    files = building.context_files(ROOT, facts)
    assert files["models/other.onnx"] == model
    assert files["models/label.json"] == labels
    assert "models/iris_svc.onnx" not in files
    assert "models/training.json" not in files  # 学習情報の無いモデル
    env = building.model_env(facts)
    assert env["MODEL_FILEPATH"] == "/model_in_image_pattern/models/other.onnx"
    assert env["LABEL_FILEPATH"] == "/model_in_image_pattern/models/label.json"


def test_a_model_without_labels_and_with_a_sample_sets_the_image_env(zoo: dict[str, Any]) -> None:
    facts = building.inspect_model(zoo["regressor"].path, None, [1.0, 2.0, 3.0])
    assert facts.task == "regression"
    assert facts.num_features == 3
    assert facts.label_sha256 is None
    files = building.context_files(ROOT, facts)
    assert not any(name.endswith("label.json") for name in files)
    args = building.build_args(ROOT, facts, LOCAL_BASE, now=datetime(2026, 1, 2, tzinfo=UTC))
    assert args["MODEL_FILEPATH"] == "/model_in_image_pattern/models/regressor.onnx"
    assert args["LABEL_FILEPATH"] == ""
    assert json.loads(args["SAMPLE_ROW"]) == [1.0, 2.0, 3.0]
    assert args["MODEL_FILE"] == "regressor.onnx"


def test_inspect_model_refuses_a_sample_of_the_wrong_width(zoo: dict[str, Any]) -> None:
    with pytest.raises(ModelError, match="sample has 2 values; the model expects 3 features"):
        building.inspect_model(zoo["regressor"].path, None, [1.0, 2.0])


def test_context_tar_is_reproducible(facts: building.ModelFacts) -> None:
    files = building.context_files(ROOT, facts)
    first = building.context_tar(files).getvalue()
    assert first == building.context_tar(files).getvalue()
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        run_sh = tar.getmember("service/run.sh")
        model = tar.getmember("models/iris_svc.onnx")
        assert run_sh.mode == 0o755
        assert model.mode == 0o644
        assert tar.extractfile(model).read() == facts.model_path.read_bytes()  # type: ignore[union-attr]


def test_same_size_models_get_different_tar_times(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"1234")
    b.write_bytes(b"5678")
    with (
        tarfile.open(fileobj=building.context_tar({"x": a})) as first,
        tarfile.open(fileobj=building.context_tar({"x": b})) as second,
    ):
        assert first.getmember("x").mtime != second.getmember("x").mtime


def test_build_args_carry_labels(facts: building.ModelFacts) -> None:
    args = building.build_args(ROOT, facts, LOCAL_BASE, now=datetime(2026, 1, 2, tzinfo=UTC))
    assert args["BASE_IMAGE"] == "localhost/python:3.11-slim"
    assert args["BASE_DIGEST"] == ""  # ローカルで作ったベース: レジストリのダイジェストは無い
    assert args["BASE_IMAGE_ID"] == LOCAL_BASE.image_id
    assert args["CREATED"] == "2026-01-02T00:00:00Z"
    assert args["MODEL_SHA256"] == facts.model_sha256
    assert args["LABEL_SHA256"] == facts.label_sha256
    assert args["VERSION"] == "0.1.0"
    assert len(args["REVISION"]) in (40, 7) or args["REVISION"] == "unknown"
    assert json.loads(args["TRAINING"])["seed"] == 42


def test_unique_tag_names_model_and_image(facts: building.ModelFacts) -> None:
    tag = building.unique_tag("model-in-image", facts, "sha256:" + "ab" * 32)
    assert tag == f"model-in-image:0.1.0-{facts.model_sha256[:12]}-abababababab"


def test_progress_counts_steps_cache_and_image_id() -> None:
    events = [
        {"stream": "Step 1/3 : FROM base\n"},
        {"stream": " ---> Using cache\n"},
        {"stream": "Step 2/3 : COPY models/ ./models/\n"},
        {"stream": "Step 3/3 : RUN python -m service.check\n"},
        {"aux": {"ID": "sha256:feed"}},
        {"stream": "Successfully built feed\n"},
    ]
    seen: list[int] = []
    progress = building.run_build(iter(events), lambda p: seen.append(p.current))
    assert (progress.total, progress.current, progress.cached) == (3, 3, 1)
    assert progress.image_id == "sha256:feed"
    assert progress.description == "RUN python -m service.check"
    assert seen[-1] == 3


def test_build_error_carries_the_log_tail() -> None:
    events = [
        {"stream": "Step 29/30 : RUN python -m service.check\n"},
        {"stream": "model check failed: label.json: label file has 2 entries\n"},
        {"error": "The command '/bin/sh -c python -m service.check' returned a non-zero code: 1"},
    ]
    with pytest.raises(DockerError) as error:
        building.run_build(iter(events))
    assert "returned a non-zero code: 1" in error.value.message
    assert "model check failed" in (error.value.details or "")


def test_unreachable_registry_hint_names_the_base_image_and_network_settings() -> None:
    events = [
        {"stream": "Step 2/30 : FROM ${BASE_IMAGE} AS builder\n"},
        {
            "error": 'Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io '
            "on 10.255.255.53:53: no such host"
        },
    ]
    with pytest.raises(DockerError) as error:
        building.run_build(iter(events))
    hint = error.value.hint or ""
    for name in ("--base-image", "MII_BASE_IMAGE", "MII_BUILD_NETWORK"):
        assert name in hint


def test_a_package_index_out_of_reach_in_a_run_step_gets_the_network_hint() -> None:
    events = [
        {"stream": "Step 6/30 : RUN python -m pip install uv\n"},
        {
            "stream": "WARNING: Retrying ... Failed to establish a new connection: [Errno -3] "
            "Temporary failure in name resolution\n"
        },
        {"error": "The command '/bin/sh -c python -m pip install uv' returned a non-zero code: 1"},
    ]
    with pytest.raises(DockerError) as error:
        building.run_build(iter(events))
    assert "MII_BUILD_NETWORK" in (error.value.hint or "")


def test_a_failing_model_check_keeps_the_generic_hint() -> None:
    events = [{"error": "The command '/bin/sh -c python -m service.check' returned a non-zero code: 1"}]
    with pytest.raises(DockerError) as error:
        building.run_build(iter(events))
    assert "MII_BUILD_NETWORK" not in (error.value.hint or "")
    assert "--no-cache" in (error.value.hint or "")


def test_build_without_image_id_is_an_error() -> None:
    with pytest.raises(DockerError, match="without an image id"):
        building.run_build(iter([{"stream": "Step 1/1 : FROM x\n"}]))
