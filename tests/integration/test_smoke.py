"""`mii smoke-test --url`: 本物のサーバー・わざと誤るサーバー・届かない URL に対して確かめる。"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from mii_cli import cli
from mii_cli.probe.smoke_test import run_smoke_test, smoke_plan
from tests.fakes.http import asgi_server
from tests.fakes.services import broken_service, rewriting_proxy, subtly_wrong_service
from tests.support import free_port

runner = CliRunner()

ALL_CHECKS = [check.name for check in smoke_plan()]


@pytest.fixture(scope="module")
def subtly_wrong_server() -> Iterator[str]:
    with asgi_server(subtly_wrong_service()) as url:
        yield url


@pytest.fixture(scope="module")
def broken_server() -> Iterator[str]:
    with asgi_server(broken_service()) as url:
        yield url


@pytest.fixture(scope="module")
def lying_proxy(live_server: str) -> Iterator[str]:
    """/metadata の prediction_sample だけを参照モデルの値にすり替える。"""

    def rewrite(path: str, status: int, body: Any) -> Any:
        if path == "/metadata":
            body["prediction_sample"] = [0.97093159, 0.01558308, 0.01348537]
        return body

    with asgi_server(rewriting_proxy(live_server, rewrite)) as url:
        yield url


def _failed(url: str) -> dict[str, str]:
    report = run_smoke_test(url, timeout=5)
    assert [c.name for c in report.checks] == ALL_CHECKS
    return {c.name: c.detail for c in report.checks if not c.ok}


def test_passes_against_mii_serve_with_the_bundled_model(live_server: str) -> None:
    report = run_smoke_test(live_server)
    assert report.passed, [(c.name, c.detail) for c in report.failed]
    assert [c.name for c in report.checks] == ALL_CHECKS
    assert report.served_by == ["live-server"]
    assert report.model_sha256 is not None
    assert report.model_sha256 == httpx.get(f"{live_server}/metadata").json()["model"]["sha256"]
    assert all(c.status is not None and c.elapsed_ms is not None for c in report.checks)


def test_passes_against_mii_serve_with_the_reference_model(
    start_live_server: Callable[..., str], reference_dir: Path
) -> None:
    url = start_live_server(
        "--model",
        str(reference_dir / "iris_svc.onnx"),
        "--labels",
        str(reference_dir / "label.json"),
        "--sample",
        "[5.1, 3.5, 1.4, 0.2]",
    )
    report = run_smoke_test(url)
    assert report.passed, [(c.name, c.detail) for c in report.failed]
    assert report.model_sha256 == "53856dda7040348575b82319fef5506ad8479d800c87b5ba102b756d842f94e2"
    predict = next(c for c in report.checks if c.name == "predict")
    assert "[0.9709, 0.0156, 0.0135]" in predict.detail


def test_names_exactly_the_broken_promises(subtly_wrong_server: str) -> None:
    failed = _failed(subtly_wrong_server)
    assert set(failed) == {
        "health",
        "ready",
        "predict-test-label",
        "predict-batch-order",
        "reject-non-numeric",
        "reject-wrong-row-length",
        "reject-nan",
        "reject-too-large",
        "v2-ready",
        "v2-model",
        "v2-infer",
        "v2-infer-batch",
        "v2-reject-shape",
        "v2-unknown-model",
    }
    assert failed["health"] == 'expected {"health": "ok"}, got {"health":"OK!"}'
    assert failed["ready"].startswith("HTTP 503, expected 200")
    assert "expected 'setosa'" in failed["predict-test-label"]
    assert "rows are out of order" in failed["predict-batch-order"]
    assert failed["reject-non-numeric"] == "HTTP 500, expected 422: Internal Server Error"
    assert "does not mention 'row 1'" in failed["reject-wrong-row-length"]
    assert failed["reject-nan"].startswith("HTTP 200, expected 400")
    assert failed["reject-too-large"].startswith("HTTP 200, expected 413")
    assert failed["v2-ready"].startswith("HTTP 404, expected 200")
    assert failed["v2-unknown-model"] == 'error body has no error: {"detail":"Not Found"}'


def test_a_broken_service_fails_every_check_with_a_reason(broken_server: str) -> None:
    failed = _failed(broken_server)
    assert set(failed) == set(ALL_CHECKS)
    assert failed["health"] == "response is not JSON: ok"
    assert failed["metadata"].startswith("missing data_structure, data_sample")
    assert failed["label"].startswith("cannot compare: model.num_classes is unknown")
    assert failed["predict"] == "HTTP 500, expected 200: boom"
    assert failed["reject-empty-data"] == "HTTP 500, expected 400: boom"


def test_a_slow_answer_fails_only_its_own_check(broken_server: str) -> None:
    report = run_smoke_test(broken_server, timeout=0.2)
    ready = next(c for c in report.checks if c.name == "ready")
    assert ready.detail == "no answer within 0.2 s"
    assert ready.elapsed_ms is not None
    assert ready.elapsed_ms >= 150
    assert report.unreachable is None
    assert report.checks[-1].status == 500


def test_a_service_that_serves_another_model_than_it_reports(lying_proxy: str) -> None:
    failed = _failed(lying_proxy)
    assert set(failed) == {"predict"}
    assert "differs from /metadata prediction_sample [0.9709, 0.0156, 0.0135]" in failed["predict"]


def test_unreachable_service_fails_every_check_without_raising() -> None:
    report = run_smoke_test(f"http://127.0.0.1:{free_port()}", timeout=1)
    assert not report.passed
    assert report.unreachable is not None
    assert "cannot connect to http://127.0.0.1:" in report.unreachable
    assert report.checks[0].detail == report.unreachable
    assert all(c.detail == "not run: service unreachable" for c in report.checks[1:])
    assert len(report.checks) == len(ALL_CHECKS)


def test_cli_table_and_success_line(live_server: str) -> None:
    result = runner.invoke(cli.app, ["smoke-test", "--url", live_server + "/"])
    assert result.exit_code == 0, result.output
    assert f"Smoke test of {live_server}: {len(ALL_CHECKS)}/{len(ALL_CHECKS)} passed" in result.output
    for name in ALL_CHECKS:
        assert name in result.output
    assert "served by: live-server" in result.output
    assert f"all {len(ALL_CHECKS)} smoke checks passed" in result.output


def test_cli_json(live_server: str) -> None:
    result = runner.invoke(cli.app, ["smoke-test", "--url", live_server, "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["passed"] is True
    assert payload["summary"] == {"total": len(ALL_CHECKS), "passed": len(ALL_CHECKS), "failed": 0}
    assert [c["name"] for c in payload["checks"]] == ALL_CHECKS
    assert set(payload["checks"][0]) == {
        "name",
        "method",
        "path",
        "expected",
        "ok",
        "detail",
        "elapsed_ms",
        "status",
        "served_by",
    }
    assert payload["served_by"] == ["live-server"]


def test_cli_fails_with_the_names_of_the_failed_checks(subtly_wrong_server: str) -> None:
    result = runner.invoke(cli.app, ["smoke-test", "--url", subtly_wrong_server])
    assert result.exit_code == 6
    assert "FAIL" in result.output
    assert (
        f"Error: 14 of {len(ALL_CHECKS)} smoke checks failed: health, ready, predict-test-label"
        in result.output
    )
    assert "Hint:" in result.output
    assert "Traceback" not in result.output


def test_cli_json_still_prints_the_report_on_failure(subtly_wrong_server: str) -> None:
    result = runner.invoke(cli.app, ["smoke-test", "--url", subtly_wrong_server, "--json"])
    assert result.exit_code == 6
    payload = json.loads(result.stdout)
    assert payload["passed"] is False
    assert payload["summary"]["failed"] == 14


def test_cli_unreachable_is_one_message() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(cli.app, ["smoke-test", "--url", url, "--timeout", "1"])
    assert result.exit_code == 6
    lines = result.output.strip().splitlines()
    assert lines[0].startswith(f"Error: cannot connect to {url}")
    assert lines[1].startswith("Hint: start the service with `mii serve`")
    assert len(lines) == 2


@pytest.fixture(scope="module")
def consistent_liar(live_server: str) -> Iterator[str]:
    """同梱モデルの sha256 を名乗りながら、どこでも一貫して別の確率を返すサービス。"""
    fake = [0.5, 0.3, 0.2]

    def rewrite(path: str, status: int, body: Any) -> Any:
        if path == "/metadata":
            body["prediction_sample"] = fake
        elif path in ("/predict/test", "/predict") and status == 200:
            rows = body["prediction"]
            body["prediction"] = fake if not isinstance(rows[0], list) else [fake for _ in rows]
        return body

    with asgi_server(rewriting_proxy(live_server, rewrite)) as url:
        yield url


def test_a_service_that_agrees_with_itself_but_not_with_the_model_fails(consistent_liar: str) -> None:
    failed = _failed(consistent_liar)
    assert "predict" in failed
    assert "differs from the local model" in failed["predict"]


@pytest.mark.parametrize("name", ["regressor", "str_zipmap", "narrow_str_tensor", "fixed_batch"])
def test_passes_against_mii_serve_with_any_tabular_model(
    start_live_server: Callable[..., str], zoo: dict[str, Any], name: str
) -> None:
    model = zoo[name]
    url = start_live_server("--model", str(model.path))
    report = run_smoke_test(url, models=[(model.path, None)])
    assert report.passed, [(c.name, c.detail) for c in report.failed]
    checks = {c.name: c for c in report.checks}
    assert checks["predict"].detail.endswith(f"= local model {report.model_sha256[:12]}")  # type: ignore[index]
    assert checks["v2-model"].detail.startswith(f"{name} version 1")
    if model.task == "regression":
        assert checks["label"].status == 404
        assert checks["predict-label"].status == 404


def test_a_regressor_gets_its_sample_from_the_option(
    start_live_server: Callable[..., str], zoo: dict[str, Any]
) -> None:
    url = start_live_server("--model", str(zoo["regressor"].path), "--sample", "[1, 2, 3]")
    metadata = httpx.get(f"{url}/metadata").json()
    assert metadata["data_sample"] == [[1.0, 2.0, 3.0]]
    assert metadata["sample_source"] == "option"
    assert metadata["task"] == "regression"
    assert metadata["classes"] is None
    label = httpx.get(f"{url}/label")
    assert label.status_code == 404
    assert label.json() == {"detail": "model regressor is a regressor: it has no labels"}
