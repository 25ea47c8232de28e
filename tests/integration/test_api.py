"""全エンドポイントと全エラーコードを ASGI アプリ経由で確かめる。"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.ml.loading import load_model
from service.ml.prediction import TabularModel

SAMPLE = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [6.7, 3.0, 5.2, 2.3]


@pytest.fixture(scope="module")
def direct(model_path: Path, label_path: Path) -> TabularModel:
    return load_model(model_path, label_path)


def test_health(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"health": "ok"}


def test_liveness_and_readiness(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "alive"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}


def test_startup_renders_the_one_row_v2_answers_for_every_bound_output_set(
    clean_env: pytest.MonkeyPatch, model_path: Path, label_path: Path
) -> None:
    from service.app.app import create_app
    from service.configurations import load_settings

    app = create_app(load_settings(model_filepath=model_path, label_filepath=label_path))
    with TestClient(app):
        state = app.state.service
        assert (
            set(state.v2_one_row)
            == set(state.model.bound)
            == {
                ("output_probability",),
                ("output_label", "output_probability"),
            }
        )


@pytest.mark.parametrize(
    ("fast_path", "expected"),
    [(True, ["False", "True", "True"]), (False, ["True", "False", "True"])],
    ids=["fast-path-builds-fastapi-on-first-need", "fastapi-routes-build-it-at-startup"],
)
def test_fastapi_is_imported_only_when_a_route_needs_it(
    clean_env: pytest.MonkeyPatch, model_path: Path, label_path: Path, fast_path: bool, expected: list[str]
) -> None:
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from service.app.app import create_app\n"
        "from service.configurations import load_settings\n"
        f"settings = load_settings(model_filepath={str(model_path)!r}, label_filepath={str(label_path)!r},\n"
        f"                         fast_path={fast_path!r})\n"
        "app = create_app(settings)\n"
        "app.start()\n"
        "web = lambda: any(m.split('.')[0] in ('fastapi', 'starlette') for m in sys.modules)\n"
        "print(web(), ('GET', '/metrics') in app.state.service.fast_routes)\n"
        "app.framework()\n"
        "print(web())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == expected


def test_metrics_is_served_as_prometheus_text_and_left_out_of_the_spec(client: TestClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert "mii_http_requests_total" in response.text
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_a_model_that_cannot_load_fails_the_lifespan_startup(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, label_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio

    from service.app.app import create_app
    from service.configurations import load_settings
    from service.ml.prediction import ModelLoadError

    app = create_app(load_settings(model_filepath=tmp_path / "missing.onnx", label_filepath=label_path))
    incoming = [{"type": "lifespan.startup"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with caplog.at_level(logging.ERROR), pytest.raises(ModelLoadError):
        asyncio.run(app({"type": "lifespan"}, receive, send))
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert sent[0]["message"].startswith("Traceback")
    assert "model file not found" in sent[0]["message"]
    assert any(r.getMessage() == "application startup failed" and r.exc_info for r in caplog.records)
    assert app.state.service.ready is False


def test_readiness_is_503_until_the_model_is_loaded(
    clean_env: pytest.MonkeyPatch, model_path: Path, label_path: Path
) -> None:
    from service.app.app import create_app
    from service.configurations import load_settings

    app = create_app(load_settings(model_filepath=model_path, label_filepath=label_path))
    client = TestClient(app)  # lifespan を回さない: モデルは未読み込み
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json() == {"status": "not ready"}
    assert client.get("/health/live").status_code == 200
    with TestClient(app) as started:
        assert started.get("/health/ready").status_code == 200
    # 終了後は再び ready ではない
    assert app.state.service.ready is False


def test_label(client: TestClient) -> None:
    assert client.get("/label").json() == {"0": "setosa", "1": "versicolor", "2": "virginica"}


def test_metadata_has_the_original_fields_and_model_facts(client: TestClient, direct: TabularModel) -> None:
    body = client.get("/metadata").json()
    assert body["data_type"] == "float32"
    assert body["data_structure"] == "(1,4)"
    assert body["data_sample"] == [SAMPLE]
    assert body["prediction_type"] == "float32"
    assert body["prediction_structure"] == "(1,3)"
    assert body["prediction_sample"] == direct.predict([SAMPLE])[0]
    model = body["model"]
    assert model["file_name"] == "iris_svc.onnx"
    assert model["sha256"] == direct.info.sha256
    assert model["input_name"] == "float_input"
    assert model["input_shape"] == [None, 4]
    assert model["input_type"] == "tensor(float)"
    assert {o["name"] for o in model["outputs"]} == {"output_label", "output_probability"}
    assert "ai.onnx.ml" in model["opset"]
    assert model["producer"] == "skl2onnx"
    assert model["num_classes"] == 3
    assert model["training"]["seed"] == 42
    assert body["service_version"] == "0.1.0"


def test_predict_test(client: TestClient, direct: TabularModel) -> None:
    assert client.get("/predict/test").json() == {"prediction": direct.predict([SAMPLE])[0]}
    assert client.get("/predict/test/label").json() == {"prediction": "setosa"}


def test_predict_one_row(client: TestClient, direct: TabularModel) -> None:
    response = client.post("/predict", json={"data": [VIRGINICA]})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"prediction": direct.predict([VIRGINICA])[0]}
    assert client.post("/predict/label", json={"data": [VIRGINICA]}).json() == {"prediction": "virginica"}


def test_predict_batch_answers_every_row_in_order(client: TestClient, direct: TabularModel) -> None:
    rows = [SAMPLE, VIRGINICA, [5.9, 3.0, 4.2, 1.5]]
    probabilities = client.post("/predict", json={"data": rows}).json()["prediction"]
    assert probabilities == direct.predict(rows)
    labels = client.post("/predict/label", json={"data": rows}).json()["prediction"]
    assert labels == ["setosa", "virginica", "versicolor"]


def test_integers_are_accepted_as_numbers(client: TestClient) -> None:
    response = client.post("/predict/label", json={"data": [[5, 3, 1, 0]]})
    assert response.status_code == 200
    assert response.json() == {"prediction": "setosa"}


def test_body_without_json_content_type_is_still_parsed(client: TestClient) -> None:
    response = client.post("/predict/label", content=json.dumps({"data": [SAMPLE]}))
    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/predict", "/predict/label"])
@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ("{}", ["body", "data"]),
        ('{"data": "x"}', ["body", "data"]),
        ('{"data": [1, 2, 3, 4]}', ["body", "data", 0]),
        ('{"data": [["a", 1, 2, 3]]}', ["body", "data", 0, 0]),
        ('{"data": [[true, 1, 2, 3]]}', ["body", "data", 0, 0]),
        ('{"data": [[null, 1, 2, 3]]}', ["body", "data", 0, 0]),
        ("not json", ["body"]),
        ("", ["body"]),
        ("[1, 2]", ["body"]),
    ],
)
def test_schema_mismatch_is_422_in_fastapi_format(
    client: TestClient, path: str, body: str, loc: list[object]
) -> None:
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, list)
    assert detail[0]["loc"] == loc
    assert detail[0]["msg"]
    assert detail[0]["type"]


@pytest.mark.parametrize("path", ["/predict", "/predict/label"])
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"data": []}', "data must contain at least one row"),
        ('{"data": [[5.1, 3.5, 1.4]]}', "row 0 has 3 values; the model expects 4 features"),
        ('{"data": [[5.1, 3.5, 1.4, 0.2], [1, 2, 3, 4, 5]]}', "row 1 has 5 values"),
        ('{"data": [[NaN, 3.5, 1.4, 0.2]]}', "row 0, column 0: value nan is not finite"),
        ('{"data": [[5.1, Infinity, 1.4, 0.2]]}', "row 0, column 1: value inf is not finite"),
        ('{"data": [[5.1, 3.5, -Infinity, 0.2]]}', "row 0, column 2"),
        ('{"data": [[5.1, 3.5, 1.4, 1e300]]}', "out of float32 range"),
    ],
)
def test_rows_the_model_cannot_take_are_400(client: TestClient, path: str, body: str, message: str) -> None:
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert message in response.json()["detail"]


def test_too_many_rows_is_400(client: TestClient) -> None:
    response = client.post("/predict", json={"data": [SAMPLE] * 51})
    assert response.status_code == 400
    assert response.json() == {"detail": "data has 51 rows; at most 50 rows are accepted per request"}
    assert client.post("/predict", json={"data": [SAMPLE] * 50}).status_code == 200


def test_body_over_the_limit_is_413(client: TestClient) -> None:
    big = json.dumps({"data": [SAMPLE] * 400})
    assert len(big) > 4096
    response = client.post("/predict", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json() == {"detail": "request body is larger than 4096 bytes"}


def test_streamed_body_over_the_limit_is_413(client: TestClient) -> None:
    def chunks():  # Content-Length の無いチャンク転送
        for _ in range(20):
            yield b" " * 1000

    response = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_unknown_route_and_method(client: TestClient) -> None:
    assert client.get("/nope").status_code == 404
    assert client.get("/predict").status_code == 405


def test_server_fault_is_a_generic_500_and_logged(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    model = client.app.state.service.model  # type: ignore[attr-defined]

    def broken(_rows: object) -> object:
        raise RuntimeError("onnxruntime exploded")

    monkeypatch.setattr(model, "predict", broken)
    with caplog.at_level(logging.ERROR):
        response = client.post("/predict", json={"data": [SAMPLE]}, headers={"X-Request-ID": "trace-me"})
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error"}
    assert "onnxruntime exploded" not in response.text
    assert response.headers["x-request-id"] == "trace-me"
    assert any("onnxruntime exploded" in (r.exc_text or "") for r in caplog.records)
    assert any(getattr(r, "request_id", None) == "trace-me" for r in caplog.records)


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    echoed = client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = client.get("/health").headers["x-request-id"]
    assert len(generated) == 32
    assert generated != client.get("/health").headers["x-request-id"]
    # 制御文字や長すぎる ID は引き継がずに作り直す
    assert client.get("/health", headers={"X-Request-ID": "x" * 200}).headers["x-request-id"] != "x" * 200


def test_served_by_header_names_the_pod(client: TestClient) -> None:
    assert client.get("/predict/test").headers["x-served-by"] == "pod-a"


def test_metrics_count_requests_predictions_and_rows(client: TestClient) -> None:
    client.post("/predict", json={"data": [SAMPLE, SAMPLE, VIRGINICA]})
    client.post("/predict/label", json={"data": []})
    client.get("/predict/test")
    text = client.get("/metrics").text
    assert 'mii_http_requests_total{method="POST",route="/predict",status="200"} 1.0' in text
    assert 'mii_http_requests_total{method="POST",route="/predict/label",status="400"} 1.0' in text
    assert 'mii_predictions_total{endpoint="/predict"} 1.0' in text
    assert "mii_prediction_rows_total 4.0" in text
    assert 'mii_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/predict"}' in text
    client.get("/does-not-exist")
    client.get("/openapi.json")
    text = client.get("/metrics").text
    assert 'route="unmatched",status="404"' in text
    assert 'mii_http_requests_total{method="GET",route="/openapi.json",status="200"} 1.0' in text


def test_openapi_documents_the_endpoints(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in [
        "/health",
        "/metadata",
        "/label",
        "/predict/test",
        "/predict/test/label",
        "/predict",
        "/predict/label",
        "/health/ready",
        "/health/live",
    ]:
        assert path in spec["paths"], path
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/PredictRequest"}
    data = spec["components"]["schemas"]["PredictRequest"]["properties"]["data"]
    # このクライアントのモデル（4 特徴量）と設定（1 リクエスト最大 50 行）に合わせた形
    assert (data["type"], data["minItems"], data["maxItems"]) == ("array", 1, 50)
    row = spec["components"]["schemas"]["InputRow"]
    assert (row["minItems"], row["maxItems"]) == (4, 4)
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize(
    "path", ["/health", "/health/live", "/health/ready", "/metadata", "/predict/test", "/v2/health/ready"]
)
def test_head_answers_like_get_without_a_body(client: TestClient, path: str) -> None:
    got, head = client.get(path), client.head(path)
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers["content-length"] == got.headers["content-length"]


def test_a_number_out_of_range_is_400_however_it_is_spelled(client: TestClient) -> None:
    """`1e400` も `1` と 3000 個の `0` も、float32 に収まらない値（400）。JSON としては正しい。"""
    for number in (b"1e400", b"-1e400", b"1" + b"0" * 3000, b"3.5e38"):
        response = client.post("/predict", content=b'{"data": [[' + number + b", 1, 2, 3]]}")
        assert response.status_code == 400, (number[:20], response.text)
        assert "float32" in response.json()["detail"] or "not finite" in response.json()["detail"]


def test_duplicate_keys_take_the_last_value_on_both_paths(client: TestClient) -> None:
    """RFC 8259 は重複した名前の結果を決めていない: 多くのパーサと同じく最後のものを使う（docs/api.md）。"""
    body = b'{"data": [[1, 1, 1, 1]], "data": [[5.1, 3.5, 1.4, 0.2]]}'
    assert (
        client.post("/predict", content=body).json()
        == client.post("/predict", json={"data": [[5.1, 3.5, 1.4, 0.2]]}).json()
    )
    # よくある本文を外れた（pydantic で読み直す）本文でも同じ
    odd = b'{"data": "x", "data": [[5.1, 3.5, 1.4, 0.2]]}'
    assert client.post("/predict", content=odd).json() == client.post("/predict", content=body).json()


def test_access_log_when_enabled(
    make_client: Callable[..., TestClient],
    model_path: Path,
    label_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client(model_filepath=model_path, label_filepath=label_path, access_log=True)
    with caplog.at_level(logging.INFO, logger="service.access"):
        client.get("/health", headers={"X-Request-ID": "log-me"})
    record = next(r for r in caplog.records if r.name == "service.access")
    assert '"GET /health" 200' in record.getMessage()
    assert record.request_id == "log-me"  # type: ignore[attr-defined]


def test_fast_path_and_fastapi_routes_answer_byte_for_byte_alike(
    make_client: Callable[..., TestClient], model_path: Path, label_path: Path
) -> None:
    common = {"model_filepath": model_path, "label_filepath": label_path, "max_batch_rows": 5}
    fast = make_client(**common, fast_path=True)
    slow = make_client(**common, fast_path=False)
    requests: list[tuple[str, str, str | None]] = [
        ("GET", "/health", None),
        ("GET", "/health/live", None),
        ("GET", "/health/ready", None),
        ("GET", "/metadata", None),
        ("GET", "/label", None),
        ("GET", "/predict/test", None),
        ("GET", "/predict/test/label", None),
        ("POST", "/predict", '{"data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}'),
        ("POST", "/predict/label", '{"data": [[5.1, 3.5, 1.4, 0.2]]}'),
        ("POST", "/predict", '{"data": [[5.1, 3.5]]}'),
        ("POST", "/predict", json.dumps({"data": [[1, 2, 3, 4]] * 6})),
        ("POST", "/predict/label", '{"data": [["x", 1, 2, 3]]}'),
        ("POST", "/predict", "{broken"),
        ("POST", "/predict", '{"data": [[NaN, 1, 2, 3]]}'),
        ("GET", "/v2", None),
        ("GET", "/v2/health/live", None),
        ("GET", "/v2/health/ready", None),
        ("GET", "/v2/models/iris_svc", None),
        ("GET", "/v2/models/iris_svc/versions/1/ready", None),
        ("GET", "/v2/models/other", None),
        ("POST", "/v2/models/iris_svc/infer", V2_ONE_ROW),
        ("POST", "/v2/models/iris_svc/versions/1/infer", V2_ONE_ROW.replace('"FP32"', '"FP64"')),
        ("POST", "/v2/models/iris_svc/versions/2/infer", V2_ONE_ROW),
        ("POST", "/v2/models/iris_svc/infer", "{broken"),
    ]
    for method, path, body in requests:
        a = fast.request(method, path, content=body)
        b = slow.request(method, path, content=body)
        assert (a.status_code, a.content) == (b.status_code, b.content), (method, path, body)
        assert a.headers["content-type"] == b.headers["content-type"] == "application/json"
    # バイナリテンソル拡張の応答も同じバイト列
    tensor = {
        "name": "float_input",
        "shape": [1, 4],
        "datatype": "FP32",
        "parameters": {"binary_data_size": 16},
    }
    header = json.dumps({"inputs": [tensor], "parameters": {"binary_data_output": True}})
    binary = header.encode() + bytes(16)
    headers = {"Inference-Header-Content-Length": str(len(header))}
    a = fast.post("/v2/models/iris_svc/infer", content=binary, headers=headers)
    b = slow.post("/v2/models/iris_svc/infer", content=binary, headers=headers)
    assert (a.status_code, a.content, a.headers["inference-header-content-length"]) == (
        b.status_code,
        b.content,
        b.headers["inference-header-content-length"],
    )


V2_ONE_ROW = (
    '{"inputs": [{"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}'
)


def test_a_regressor_answers_values_and_404_for_labels_through_either_path(
    make_client: Callable[..., TestClient], zoo: dict[str, Any]
) -> None:
    from tests.zoo import onnxruntime_answers

    model = zoo["regressor_multi"]
    fast = make_client(model_filepath=model.path, fast_path=True)
    slow = make_client(model_filepath=model.path, fast_path=False)
    expected, _ = onnxruntime_answers(model, model.rows)
    for client in (fast, slow):
        answers = client.post("/predict", json={"data": model.rows}).json()["prediction"]
        assert [len(row) for row in answers] == [2] * len(model.rows)
        np.testing.assert_allclose(answers, expected, rtol=1e-6)
        one = client.post("/predict", json={"data": model.rows[:1]}).json()["prediction"]
        # 1 行と N 行では ONNX Runtime の行列積のカーネルが違い、float32 の丸めだけ違いうる
        np.testing.assert_allclose(one, answers[0], rtol=1e-6)
        for path in ("/label", "/predict/test/label"):
            response = client.get(path)
            assert response.status_code == 404
            assert response.json() == {"detail": "model regressor_multi is a regressor: it has no labels"}
        assert client.post("/predict/label", json={"data": model.rows}).status_code == 404
        metadata = client.get("/metadata").json()
        assert metadata["task"] == "regression"
        assert metadata["prediction_structure"] == "(1,2)"
        assert metadata["data_sample"] == [[0.0] * 6]
        assert metadata["sample_source"] == "zeros"


@pytest.mark.parametrize(("path", "key"), [("/predict", "detail"), ("/v2/models/iris_svc/infer", "error")])
def test_a_fault_outside_the_handlers_is_a_500_in_the_shape_of_the_api(
    make_client: Callable[..., TestClient],
    model_path: Path,
    label_path: Path,
    caplog: pytest.LogCaptureFixture,
    path: str,
    key: str,
) -> None:
    client = make_client(model_filepath=model_path, label_filepath=label_path)
    routes = client.app.state.service.fast_routes  # type: ignore[attr-defined]

    def broken(*_args: object) -> object:
        raise RuntimeError("the fast path broke")

    from dataclasses import replace

    routes[("POST", path)] = replace(routes[("POST", path)], answer=broken)
    with caplog.at_level(logging.ERROR):
        response = client.post(path, content=b"{}", headers={"X-Request-ID": "fault-1"})
    assert response.status_code == 500
    assert response.json() == {key: "Internal server error"}
    assert response.headers["x-request-id"] == "fault-1"
    assert any(getattr(r, "request_id", None) == "fault-1" and r.exc_text for r in caplog.records)
    text = client.get("/metrics").text
    assert f'route="{path.replace("iris_svc", "{name}")}",status="500"' in text
