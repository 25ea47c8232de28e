"""1 つの契約: /openapi.json は正しい OpenAPI の文書で、それが受け付けるものをサーバーも受け付ける。

- 文書を OpenAPI の検証器（openapi-spec-validator）に通す: 形が正しく、どの `$ref` も文書の中で解決できる。
- 文書から要求を作る道具（Schemathesis）のすべての確かめ（`--checks all`: 5xx が無い、載っていない
  ステータス・Content-Type・ヘッダが無い、応答が載っているスキーマに合う、スキーマに合う要求は受け付けられ、
  合わない要求は 4xx で断られる、など）を本物のサーバー（`mii serve`）に対して走らせ、見つかったものが
  1 つでもあれば失敗する。警告（404 ばかりで中まで届かない操作、解決できない参照など）も失敗にする。

文書はモデルと設定で決まる（`service.app.openapi`）。V2 の形と `data` の関係を並べる数は 1 リクエストの
最大行数で決まるので、ここでは MAX_BATCH_ROWS=8 のサーバーで確かめる（既定の 1000 でも作り方は同じ）。
分類器（同梱の Iris）と回帰器（ラベルの操作は 404）の両方で。乱数の種は固定。
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.zoo import ZooModel

# 1 つの操作あたりの例の数と、Schemathesis が 1 つの要求を待つ秒数
EXAMPLES = 40
SEED = 20261206

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def servers(start_live_server: Callable[..., str], zoo: dict[str, ZooModel]) -> dict[str, str]:
    env = {"MAX_BATCH_ROWS": "8"}
    return {
        "classifier": start_live_server(env=env),
        "regressor": start_live_server("--model", str(zoo["regressor"].path), env=env),
    }


@pytest.mark.parametrize("model", ["classifier", "regressor"])
def test_the_document_is_valid_openapi_with_every_reference_resolved(
    servers: dict[str, str], model: str
) -> None:
    from openapi_spec_validator import validate

    document = httpx.get(f"{servers[model]}/openapi.json", timeout=10).json()
    validate(document)
    text = json.dumps(document)
    assert '"#/$defs/' not in text
    for reference in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        assert reference.startswith("#/components/schemas/"), reference
        assert reference.removeprefix("#/components/schemas/") in document["components"]["schemas"]


def run_schemathesis(url: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    """Schemathesis の CLI（`st run`）を、すべての確かめと固定の種で走らせる。"""
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json",
        "--checks", "all",
        "--phases", "examples,coverage,fuzzing,stateful",
        "--max-examples", str(EXAMPLES),
        "--seed", str(SEED),
        "--generation-database", "none",
        "--request-timeout", "10",
        "--no-color",
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=840, cwd=workdir, check=False)


@pytest.mark.parametrize("model", ["classifier", "regressor"])
def test_generated_requests_with_every_check_find_nothing(
    servers: dict[str, str], model: str, tmp_path: Path
) -> None:
    done = run_schemathesis(servers[model], tmp_path)
    output = done.stdout + done.stderr
    summary = output[output.rfind("SUMMARY") :] if "SUMMARY" in output else output[-3000:]
    print(f"\nSchemathesis against the {model}:\n{summary}")
    assert done.returncode == 0, output[-6000:]
    assert "Warnings:" not in summary, summary
    generated = [line for line in summary.splitlines() if "generated" in line]
    assert generated, summary


def test_a_request_the_old_document_promised_is_now_refused_by_the_document(servers: dict[str, str]) -> None:
    """`{"data": [[]]}` は前の文書では正しく、サーバーは 400 を返した。今は文書も断る（行の幅）。"""
    import jsonschema

    document: dict[str, Any] = httpx.get(f"{servers['classifier']}/openapi.json", timeout=10).json()
    body_schema = {"$ref": "#/components/schemas/PredictRequest", "components": document["components"]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"data": [[]]}, body_schema)
    jsonschema.validate({"data": [[5.1, 3.5, 1.4, 0.2]]}, body_schema)
    v2_schema = {"$ref": "#/components/schemas/V2InferRequest", "components": document["components"]}
    nested_wrong = {
        "inputs": [{"name": "float_input", "datatype": "FP32", "shape": [1, 4], "data": [[1, 2], [3, 4]]}]
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(nested_wrong, v2_schema)
    answer = httpx.post(f"{servers['classifier']}/v2/models/iris_svc/infer", json=nested_wrong, timeout=10)
    assert answer.status_code == 400
    assert "nested as 2 rows of 2, 2 values" in answer.json()["error"]
