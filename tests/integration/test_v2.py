"""Open Inference Protocol（V2）: ONNX Runtime をそのまま動かした答えと比べる。

- ASGI アプリ経由（高速経路と FastAPI の経路）で、同梱モデルとテストの中で学習したモデルの
  JSON のテンソル、バイナリテンソル拡張、求める出力、id、誤り（400・404）を確かめる。
- 本物のクライアント（tritonclient の HTTP クライアント）を `mii serve` に向けて、JSON とバイナリ、
  1 行とバッチで動かす。tritonclient.http は gevent を読み込むので、pytest のプロセスではなく
  子プロセスで動かし、結果を JSON で受け取る。
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.support import ROOT
from tests.zoo import ZOO_NAMES, ZooModel, onnxruntime_answers

SAMPLE = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [6.7, 3.0, 5.2, 2.3]


def _infer_body(input_name: str, rows: list[list[float]], **extra: Any) -> dict[str, Any]:
    tensor = {"name": input_name, "shape": [len(rows), len(rows[0])], "datatype": "FP32", "data": rows}
    return {"inputs": [tensor], **extra}


def _outputs(response: Any) -> dict[str, dict[str, Any]]:
    assert response.status_code == 200, response.text
    return {output["name"]: output for output in response.json()["outputs"]}


@pytest.fixture
def zoo_client(make_client: Callable[..., TestClient]) -> Callable[[ZooModel, bool], TestClient]:
    def factory(model: ZooModel, fast_path: bool) -> TestClient:
        return make_client(model_filepath=model.path, fast_path=fast_path)

    return factory


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "fastapi-routes"])
@pytest.mark.parametrize("name", ZOO_NAMES)
def test_json_infer_of_any_model_equals_onnxruntime(
    zoo: dict[str, ZooModel], zoo_client: Callable[[ZooModel, bool], TestClient], name: str, fast_path: bool
) -> None:
    model = zoo[name]
    client = zoo_client(model, fast_path)
    metadata = client.get(f"/v2/models/{name}").json()
    input_name = metadata["inputs"][0]["name"]
    assert metadata["inputs"][0] == {"name": input_name, "datatype": "FP32", "shape": [-1, model.width]}
    expected, labels = onnxruntime_answers(model, model.rows)
    main = client.get("/metadata").json()["model"]["prediction_output"]
    outputs = _outputs(client.post(f"/v2/models/{name}/infer", json=_infer_body(input_name, model.rows)))
    answer = outputs[main]
    assert answer["datatype"] == "FP32"
    assert answer["shape"][0] == len(model.rows)
    values = np.asarray(answer["data"], dtype=np.float64).reshape(len(model.rows), -1)
    np.testing.assert_allclose(values, expected, rtol=1e-6, atol=1e-7)
    if labels is not None:
        label_output = next(o for n, o in outputs.items() if n != main)
        assert label_output["data"] == labels
        assert label_output["datatype"] in ("INT64", "BYTES")
    # /predict と同じ答え
    predict = client.post("/predict", json={"data": model.rows}).json()["prediction"]
    np.testing.assert_allclose(values, predict, rtol=1e-7)


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "fastapi-routes"])
def test_binary_request_and_response_follow_the_triton_extension(
    make_client: Callable[..., TestClient], model_path: Path, label_path: Path, fast_path: bool
) -> None:
    client = make_client(model_filepath=model_path, label_filepath=label_path, fast_path=fast_path)
    rows = np.asarray([SAMPLE, VIRGINICA], dtype=np.float32)
    header = json.dumps(
        {
            "id": "bin-1",
            "inputs": [
                {
                    "name": "float_input",
                    "shape": [2, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 32},
                }
            ],
            "outputs": [
                {"name": "output_probability", "parameters": {"binary_data": True}},
                {"name": "output_label"},
            ],
        }
    ).encode()
    response = client.post(
        "/v2/models/iris_svc/versions/1/infer",
        content=header + rows.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers["inference-header-content-length"])
    meta = json.loads(response.content[:length])
    assert meta["id"] == "bin-1"
    assert meta["model_name"] == "iris_svc"
    assert meta["model_version"] == "1"
    probability, label = meta["outputs"]
    assert probability["parameters"] == {"binary_data_size": 24}
    assert label["data"] == [0, 2]
    values = np.frombuffer(response.content[length:], dtype="<f4").reshape(2, 3)
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    (zipmap,) = session.run(["output_probability"], {"float_input": rows})
    np.testing.assert_array_equal(
        values, np.asarray([[row[k] for k in sorted(row)] for row in zipmap], np.float32)
    )


def test_bytes_outputs_are_length_prefixed_in_binary(
    zoo: dict[str, ZooModel], zoo_client: Callable[[ZooModel, bool], TestClient]
) -> None:
    model = zoo["str_zipmap"]
    client = zoo_client(model, True)
    body = _infer_body("features", model.rows[:2], parameters={"binary_data_output": True})
    response = client.post("/v2/models/str_zipmap/infer", json=body)
    length = int(response.headers["inference-header-content-length"])
    meta = json.loads(response.content[:length])
    label = next(o for o in meta["outputs"] if o["name"] == "output_label")
    assert label["datatype"] == "BYTES"
    rest = response.content[length:]
    decoded = []
    for _ in range(2):
        (size,) = struct.unpack("<I", rest[:4])
        decoded.append(rest[4 : 4 + size].decode())
        rest = rest[4 + size :]
    _, labels = onnxruntime_answers(model, model.rows[:2])
    assert decoded == labels


def test_requested_outputs_are_honoured_and_the_id_is_echoed(client: TestClient) -> None:
    body = _infer_body("float_input", [SAMPLE], id="req-7", outputs=[{"name": "output_label"}])
    response = client.post("/v2/models/iris_svc/infer", json=body)
    assert response.json() == {
        "model_name": "iris_svc",
        "model_version": "1",
        "id": "req-7",
        "outputs": [{"name": "output_label", "datatype": "INT64", "shape": [1], "data": [0]}],
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": SAMPLE}]},
            "unknown input 'x'",
        ),
        (
            {"inputs": [{"name": "float_input", "shape": [1, 4], "datatype": "FP64", "data": SAMPLE}]},
            "has datatype 'FP64'; the model expects FP32",
        ),
        (
            {"inputs": [{"name": "float_input", "shape": [1, 3], "datatype": "FP32", "data": SAMPLE[:3]}]},
            "has shape [1, 3]; the model expects [N, 4]",
        ),
        (
            {"inputs": [{"name": "float_input", "shape": [2, 4], "datatype": "FP32", "data": SAMPLE}]},
            "has 4 values; shape [2, 4] needs 8",
        ),
        (
            {
                "inputs": [
                    {"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, "a", 4]}
                ]
            },
            "not a number: 'a'",
        ),
        (
            {
                "inputs": [
                    {"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 1e300, 4]}
                ]
            },
            "row 0, column 2: value 1e+300 is out of float32 range",
        ),
        (_infer_body("float_input", [SAMPLE], outputs=[{"name": "nope"}]), "unknown output 'nope'"),
        ({"inputs": []}, 'needs "inputs"'),
        ([1, 2], "must be a JSON object"),
        (_infer_body("float_input", [SAMPLE] * 51), "data has 51 rows; at most 50"),
        # 入れ子は形のとおりでなければならない: 値の数が合っていても、形 [1, 4] に 2 行 × 2 は断る
        (
            {
                "inputs": [
                    {"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": [[1, 2], [3, 4]]}
                ]
            },
            'has "data" nested as 2 rows of 2, 2 values; shape [1, 4] needs 1 rows of 4 values',
        ),
        (
            {"inputs": [{"name": "float_input", "shape": [2, 4], "datatype": "FP32", "data": [SAMPLE * 2]}]},
            "nested as 1 rows of 8 values; shape [2, 4] needs 2 rows of 4",
        ),
        (_infer_body("float_input", [SAMPLE], outputs=[]), '"outputs" is empty'),
        (_infer_body("float_input", [SAMPLE], id=7), "the request id must be a string, got 7"),
        (
            {
                "inputs": [
                    {
                        "name": "float_input",
                        "shape": [1, 4],
                        "datatype": "FP32",
                        "data": SAMPLE,
                        "parameters": [1],
                    }
                ]
            },
            "has parameters [1]; they must be a JSON object",
        ),
        (
            {"inputs": [{"name": "float_input", "shape": [1.5, 4], "datatype": "FP32", "data": SAMPLE}]},
            "has shape [1.5, 4]",
        ),
    ],
)
def test_bad_inference_requests_are_400_with_a_reason(client: TestClient, body: Any, message: str) -> None:
    response = client.post("/v2/models/iris_svc/infer", json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert set(response.json()) == {"error"}


def test_non_finite_and_malformed_bodies_are_400(client: TestClient) -> None:
    nan = (
        b'{"inputs": [{"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": [NaN, 1, 2, 3]}]}'
    )
    assert "not valid JSON" in client.post("/v2/models/iris_svc/infer", content=nan).json()["error"]
    tensor = {
        "name": "float_input",
        "shape": [1, 4],
        "datatype": "FP32",
        "parameters": {"binary_data_size": 16},
    }
    header = json.dumps({"inputs": [tensor]}).encode()
    binary = np.asarray([[1, np.nan, 1, 1]], dtype=np.float32).tobytes()
    headers = {"Inference-Header-Content-Length": str(len(header))}
    response = client.post("/v2/models/iris_svc/infer", content=header + binary, headers=headers)
    assert response.status_code == 400
    assert response.json() == {"error": "row 0, column 1: value nan is not finite"}
    short = client.post("/v2/models/iris_svc/infer", content=header + binary[:8], headers=headers)
    assert "declares 16 bytes of binary data; the body has 8" in short.json()["error"]
    wrong = client.post(
        "/v2/models/iris_svc/infer", content=header, headers={"Inference-Header-Content-Length": "x"}
    )
    assert "Inference-Header-Content-Length 'x'" in wrong.json()["error"]


def test_flat_data_and_data_nested_as_the_shape_says_are_the_same_request(client: TestClient) -> None:
    rows = [SAMPLE, [6.7, 3.0, 5.2, 2.3]]
    flat = _infer_body("float_input", rows)
    nested = {"inputs": [{**flat["inputs"][0], "data": rows}]}
    integral = {"inputs": [{**flat["inputs"][0], "shape": [2.0, 4.0]}]}  # JSON Schema の integer
    answers = [client.post("/v2/models/iris_svc/infer", json=body) for body in (flat, nested, integral)]
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert answers[0].json() == answers[1].json() == answers[2].json()


def test_unknown_model_and_version_are_404(client: TestClient) -> None:
    body = _infer_body("float_input", [SAMPLE])
    assert client.post("/v2/models/other/infer", json=body).json() == {
        "error": "unknown model 'other'; this server serves 'iris_svc'"
    }
    response = client.post("/v2/models/iris_svc/versions/9/infer", json=body)
    assert response.status_code == 404
    assert "unknown version '9'" in response.json()["error"]
    assert client.get("/v2/models/other/ready").status_code == 404


def test_server_and_model_metadata_and_health(client: TestClient) -> None:
    assert client.get("/v2").json() == {
        "name": "model-in-image",
        "version": "0.1.0",
        "extensions": ["binary_tensor_data"],
    }
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2/models/iris_svc/ready").json() == {"name": "iris_svc", "ready": True}
    assert client.get("/v2/models/iris_svc/versions/1").json()["outputs"] == [
        {"name": "output_label", "datatype": "INT64", "shape": [-1]},
        {"name": "output_probability", "datatype": "FP32", "shape": [-1, 3]},
    ]


def test_v2_requests_are_counted_in_metrics(client: TestClient) -> None:
    client.post("/v2/models/iris_svc/infer", json=_infer_body("float_input", [SAMPLE, VIRGINICA]))
    client.post("/v2/models/other/infer", json=_infer_body("float_input", [SAMPLE]))
    text = client.get("/metrics").text
    assert 'mii_http_requests_total{method="POST",route="/v2/models/{name}/infer",status="200"} 1.0' in text
    assert 'mii_http_requests_total{method="POST",route="/v2/models/{name}/infer",status="404"} 1.0' in text
    assert 'mii_predictions_total{endpoint="/v2/models/{name}/infer"} 1.0' in text
    assert "mii_prediction_rows_total 2.0" in text


def test_the_model_name_can_be_set(
    make_client: Callable[..., TestClient], model_path: Path, label_path: Path
) -> None:
    client = make_client(model_filepath=model_path, label_filepath=label_path, model_name="flowers")
    assert client.get("/v2/models/flowers").json()["name"] == "flowers"
    assert client.get("/v2/models/iris_svc").status_code == 404


# --- 本物のクライアント: tritonclient.http（子プロセスで）-----------------------------------------

_TRITON_SCRIPT = """
import json, sys
import numpy as np
import tritonclient.http as httpclient

url, model, input_name, rows, binary, version = sys.argv[1:7]
binary = binary == "1"
client = httpclient.InferenceServerClient(url=url)
batch = np.asarray(json.loads(rows), dtype=np.float32)
tensor = httpclient.InferInput(input_name, list(batch.shape), "FP32")
tensor.set_data_from_numpy(batch, binary_data=binary)
metadata = client.get_model_metadata(model)
outputs = [httpclient.InferRequestedOutput(o["name"], binary_data=binary) for o in metadata["outputs"]]
result = client.infer(
    model, [tensor], model_version=version, outputs=None if binary else outputs, request_id="t-1"
)
answer = {
    "live": client.is_server_live(),
    "ready": client.is_server_ready(),
    "model_ready": client.is_model_ready(model),
    "id": result.get_response()["id"],
    "outputs": {},
}
for output in metadata["outputs"]:
    array = result.as_numpy(output["name"])
    values = [v.decode() if isinstance(v, bytes) else v for v in array.ravel().tolist()]
    shape, dtype = list(array.shape), str(array.dtype)
    answer["outputs"][output["name"]] = {"shape": shape, "dtype": dtype, "values": values}
print(json.dumps(answer))
"""


def _triton(
    url: str, model: str, input_name: str, rows: list[list[float]], *, binary: bool, version: str = ""
) -> Any:
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            _TRITON_SCRIPT,
            url.removeprefix("http://"),
            model,
            input_name,
            json.dumps(rows),
            "1" if binary else "0",
            version,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize(
    "rows", [[SAMPLE], [SAMPLE, VIRGINICA, [5.9, 3.0, 4.2, 1.5]]], ids=["one-row", "batch"]
)
def test_tritonclient_against_mii_serve_with_the_bundled_model(
    live_server: str, model_path: Path, binary: bool, rows: list[list[float]]
) -> None:
    import onnxruntime as ort

    answer = _triton(live_server, "iris_svc", "float_input", rows, binary=binary, version="1")
    assert (answer["live"], answer["ready"], answer["model_ready"]) == (True, True, True)
    assert answer["id"] == "t-1"
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    label, zipmap = session.run(None, {"float_input": np.asarray(rows, dtype=np.float32)})
    probabilities = answer["outputs"]["output_probability"]
    assert probabilities["shape"] == [len(rows), 3]
    assert probabilities["dtype"] == "float32"
    expected = np.asarray([[row[k] for k in sorted(row)] for row in zipmap], dtype=np.float32)
    np.testing.assert_array_equal(
        np.asarray(probabilities["values"], np.float32).reshape(len(rows), 3), expected
    )
    assert answer["outputs"]["output_label"]["values"] == label.tolist()


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_against_mii_serve_with_a_string_label_model(
    start_live_server: Callable[..., str], zoo: dict[str, ZooModel], binary: bool
) -> None:
    model = zoo["str_zipmap"]
    url = start_live_server("--model", str(model.path))
    answer = _triton(url, "str_zipmap", "features", model.rows, binary=binary)
    expected, labels = onnxruntime_answers(model, model.rows)
    assert answer["outputs"]["output_label"]["values"] == labels
    values = np.asarray(answer["outputs"]["output_probability"]["values"], dtype=np.float64).reshape(5, 3)
    np.testing.assert_allclose(values, expected, rtol=1e-6)


def test_tritonclient_against_mii_serve_with_a_regressor(
    start_live_server: Callable[..., str], zoo: dict[str, ZooModel]
) -> None:
    model = zoo["regressor_multi"]
    url = start_live_server("--model", str(model.path))
    answer = _triton(url, "regressor_multi", "features", model.rows, binary=True)
    expected, _ = onnxruntime_answers(model, model.rows)
    values = answer["outputs"]["variable"]
    assert values["shape"] == [5, 2]
    np.testing.assert_allclose(np.asarray(values["values"]).reshape(5, 2), expected, rtol=1e-6)
