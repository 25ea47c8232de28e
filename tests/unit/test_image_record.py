"""デプロイするイメージのモデルの記録（image/record.py）と、その元になる mii build のサンプルの答え。

ラベルは Docker エンジンの代役（tests/fakes/docker_engine.py）から読む。代役のビルドは本物の
Dockerfile の LABEL をビルド引数で埋めるので、mii build が書いたラベルを mii deploy が読む流れを
そのまま通せる。
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from mii_cli.image import build as building
from mii_cli.image.record import (
    MODEL_FILE_LABEL,
    MODEL_SHA256_LABEL,
    SAMPLE_ANSWER_LABEL,
    ImageRecord,
    read_record,
    record_from_labels,
)
from service.ml.loading import load_model, sha256_of
from tests.fakes.docker_engine import FakeDockerEngine
from tests.support import LABELS, MODEL, ROOT, free_port

SHA = "0f0af8a3bdefcbc5741d23d17513adf13c5efdaed210aa58bcedf09e263bf5e8"
DIGEST = "sha256:" + "d" * 64
ANSWER = [0.9720988869667053, 0.01597398892045021, 0.011927163228392601]
LABELLED = {
    MODEL_FILE_LABEL: "iris_svc.onnx",
    MODEL_SHA256_LABEL: SHA,
    SAMPLE_ANSWER_LABEL: json.dumps(ANSWER),
    "org.opencontainers.image.version": "0.1.0",
}
IMAGE = "model-in-image:0.1.0-0f0af8a3bdef-fedcba987654"
LOCAL_BASE = building.BaseImage("localhost/python:3.11-slim", None, "sha256:" + "1" * 64)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


# --- record_from_labels ------------------------------------------------------------------------


def test_a_pinned_reference_is_split_into_tag_and_digest_and_the_labels_are_read() -> None:
    reference = f"127.0.0.1:5000/{IMAGE}@{DIGEST}"
    assert record_from_labels(reference, LABELLED) == ImageRecord(
        reference=reference,
        image_tag=f"127.0.0.1:5000/{IMAGE}",
        image_digest=DIGEST,
        model_file="iris_svc.onnx",
        model_sha256=SHA,
        sample_answer=ANSWER,
    )


def test_a_reference_without_a_digest_has_none() -> None:
    record = record_from_labels(IMAGE, LABELLED)
    assert (record.image_tag, record.image_digest) == (IMAGE, None)
    assert record.model_sha256 == SHA


@pytest.mark.parametrize("labels", [None, {}, {"org.opencontainers.image.version": "0.1.0"}])
def test_an_image_without_the_labels_has_no_model_facts(labels: dict[str, str] | None) -> None:
    record = record_from_labels(IMAGE, labels)
    assert record == ImageRecord(reference=IMAGE, image_tag=IMAGE, image_digest=None)
    assert (record.model_file, record.model_sha256, record.sample_answer) == (None, None, None)


@pytest.mark.parametrize("sha256", ["unknown", ""])
def test_an_unknown_or_empty_sha256_is_none(sha256: str) -> None:
    """Dockerfile の ARG の既定値（unknown）は、mii build を通らなかったイメージのしるし。"""
    assert record_from_labels(IMAGE, {**LABELLED, MODEL_SHA256_LABEL: sha256}).model_sha256 is None


def test_an_empty_model_file_is_none() -> None:
    assert record_from_labels(IMAGE, {**LABELLED, MODEL_FILE_LABEL: ""}).model_file is None


@pytest.mark.parametrize("answer", ["[0.97, 0.01", "not json", "{'a': 1}", ""])
def test_an_unparsable_or_empty_sample_answer_is_none(answer: str) -> None:
    record = record_from_labels(IMAGE, {**LABELLED, SAMPLE_ANSWER_LABEL: answer})
    assert record.sample_answer is None
    assert record.model_sha256 == SHA  # 他のラベルはそのまま


@pytest.mark.parametrize("answer", [[1.5], [[1.0, 2.0]], 12.25])
def test_the_sample_answer_keeps_its_json_shape(answer: Any) -> None:
    record = record_from_labels(IMAGE, {**LABELLED, SAMPLE_ANSWER_LABEL: json.dumps(answer)})
    assert record.sample_answer == answer


# --- read_record: Docker エンジンのラベル --------------------------------------------------------------


@pytest.fixture
def engine(fake_docker: FakeDockerEngine, monkeypatch: pytest.MonkeyPatch) -> FakeDockerEngine:
    """ラベル付きのイメージ IMAGE を持つエンジン（DOCKER_HOST が指す）。"""
    monkeypatch.setenv("DOCKER_HOST", fake_docker.url)
    fake_docker.images = [
        {
            "Id": "sha256:" + "b" * 64,
            "RepoTags": [IMAGE],
            "RepoDigests": [],
            "Created": "2026",
            "Config": {"Labels": dict(LABELLED)},
        }
    ]
    return fake_docker


def test_the_record_is_read_from_the_local_image_labels(engine: FakeDockerEngine) -> None:
    reference = f"127.0.0.1:5000/{IMAGE}@{DIGEST}"
    record = read_record(IMAGE, reference)
    assert record == record_from_labels(reference, LABELLED)
    assert record.sample_answer == ANSWER
    assert any(call.startswith("GET ") and call.endswith(f"/images/{IMAGE}/json") for call in engine.calls)


def test_the_record_is_read_through_a_given_client(fake_docker: FakeDockerEngine) -> None:
    fake_docker.images = [
        {"Id": "sha256:" + "c" * 64, "RepoTags": [IMAGE], "Config": {"Labels": dict(LABELLED)}}
    ]
    assert read_record(IMAGE, IMAGE, client=fake_docker.client()).model_sha256 == SHA


def test_an_image_without_labels_or_config_has_no_model_facts(fake_docker: FakeDockerEngine) -> None:
    fake_docker.images = [{"Id": "sha256:" + "c" * 64, "RepoTags": [IMAGE]}]
    record = read_record(IMAGE, IMAGE, client=fake_docker.client())
    assert record == ImageRecord(reference=IMAGE, image_tag=IMAGE, image_digest=None)


def test_an_image_that_is_not_local_has_no_model_facts(engine: FakeDockerEngine) -> None:
    reference = f"registry.example/other:1@{DIGEST}"
    record = read_record("registry.example/other:1", reference)
    assert record == ImageRecord(
        reference=reference, image_tag="registry.example/other:1", image_digest=DIGEST
    )


def test_an_engine_that_cannot_be_asked_gives_no_model_facts(engine: FakeDockerEngine) -> None:
    engine.failing.add(f"/images/{IMAGE}/json")
    assert read_record(IMAGE, IMAGE) == ImageRecord(reference=IMAGE, image_tag=IMAGE, image_digest=None)


def test_an_unreachable_engine_gives_no_model_facts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{free_port()}")
    reference = f"{IMAGE}@{DIGEST}"
    record = read_record(IMAGE, reference)
    assert record == ImageRecord(reference=reference, image_tag=IMAGE, image_digest=DIGEST)


# --- mii build のサンプルの答え ---------------------------------------------------------------------


def test_inspect_model_records_the_answer_the_service_gives_for_its_sample() -> None:
    facts = building.inspect_model(MODEL, LABELS)
    model = load_model(MODEL, LABELS)
    expected = model.predict(model.sample)[0]
    assert facts.sample_answer == expected
    assert len(expected) == 3
    assert sum(expected) == pytest.approx(1.0, abs=1e-3)
    args = building.build_args(ROOT, facts, LOCAL_BASE, now=NOW)
    assert args["MODEL_SAMPLE_ANSWER"] == json.dumps(expected)
    assert json.loads(args["MODEL_SAMPLE_ANSWER"]) == expected
    assert args["MODEL_SHA256"] == sha256_of(MODEL.read_bytes())


def test_a_given_sample_row_changes_the_recorded_answer(zoo: dict[str, Any]) -> None:
    regressor = zoo["regressor"]
    sample = [1.0, 2.0, 3.0]
    facts = building.inspect_model(regressor.path, None, sample)
    model = load_model(regressor.path, None, sample=sample)
    assert model.sample == [sample]
    assert facts.sample_answer == model.predict([sample])[0]
    # ゼロの行（既定のサンプル）とは違う答え
    assert facts.sample_answer != building.inspect_model(regressor.path, None).sample_answer
    args = building.build_args(ROOT, facts, LOCAL_BASE, now=NOW)
    assert json.loads(args["MODEL_SAMPLE_ANSWER"]) == facts.sample_answer


def test_the_built_image_carries_the_record_deploy_reads(
    fake_docker: FakeDockerEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mii build（代役のエンジン、本物の Dockerfile の LABEL）から mii deploy の記録まで。"""
    monkeypatch.setenv("DOCKER_HOST", fake_docker.url)
    fake_docker.images = [{"Id": LOCAL_BASE.image_id, "RepoTags": [LOCAL_BASE.reference], "RepoDigests": []}]
    request = building.BuildRequest(
        root=ROOT, model=MODEL, labels=LABELS, tag="model-in-image:unit", base_image=LOCAL_BASE.reference
    )
    built = building.build_image(request, client=fake_docker.client())
    reference = f"127.0.0.1:5000/{built.unique_tag}@{DIGEST}"
    record = read_record(built.unique_tag, reference)
    model = load_model(MODEL, LABELS)
    assert record.model_file == "iris_svc.onnx"
    assert record.model_sha256 == built.model_sha256 == sha256_of(MODEL.read_bytes())
    assert record.sample_answer == model.predict(model.sample)[0]
    assert (record.image_tag, record.image_digest) == (f"127.0.0.1:5000/{built.unique_tag}", DIGEST)
