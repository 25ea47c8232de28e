"""サービス自身の OpenAPI 文書から作った、形の違う正しい JSON で、5xx が返らないことを確かめる。

文書のすべての操作に、要求の本文のスキーマをたどって作った本文を送る: スキーマのどの場所にも、
合う値の代わりに任意の JSON（64 ビットを超える整数や桁の多い整数、極端に大きい・小さい数、
NaN・Infinity、深い入れ子、変わったキー、孤立したサロゲートを含む文字列、大きな値）が入りうる。
パスの引数（モデル名・版）には変わった文字列を入れる。返るステータスは 5xx でなく、その操作の
`responses` に載っていて、本文は載っているスキーマに合うこと。高速経路と FastAPI の経路の両方で。

件数は設定で決まった数だけ（`derandomize`: 毎回同じ例）。失敗した例は hypothesis が最小にして示す。
"""

from __future__ import annotations

import json
import math
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

# 1 つの操作と経路あたりの例の数（CI の時間の中に収まる数）
EXAMPLES = 150
SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Raw:
    """JSON の本文にそのまま書く字句（NaN・1e400・孤立したサロゲートなど、Python の値にできないもの）。"""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text!r})"


ODD_TOKENS = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1e400",
    "1e-400",
    "5e-324",
    "-0.0",
    '"\\ud800"',
    '"\\udfff\\ud800"',
    '"a\\u0000b"',
    "1" + "0" * 400,
]

huge_ints = st.sampled_from(
    [2**63, -(2**63) - 1, 2**64, 2**64 + 1, -(2**64), 478077284086472447983878144, 10**100, -(10**300)]
)
odd_strings = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", " ", "\u2028", "\ufeff", "😀", "../..", "%00", "a" * 5000, "é" * 300]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    huge_ints,
    st.floats(allow_nan=False, allow_infinity=False),
    odd_strings,
    st.sampled_from(ODD_TOKENS).map(Raw),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(odd_strings, children, max_size=5),
    ),
    max_leaves=30,
)


@st.composite
def deep(draw: st.DrawFn) -> Any:
    """深く入れ子になった配列かオブジェクト（パーサと本文を書くときの深さの上限を試す）。"""
    depth = draw(st.integers(min_value=50, max_value=400))
    leaf: Any = draw(scalars)
    for _ in range(depth):
        leaf = [leaf] if draw(st.booleans()) else {"data": leaf}
    return leaf


anything = st.one_of(json_values, deep())


def write(value: Any) -> str:
    """値を JSON の本文にする（Raw はそのまま、Python の json が書けない値も書く）。"""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{write(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(write(item) for item in value) + "]"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN"
    return json.dumps(value)


def from_schema(schema: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[Any]:
    """スキーマに合う値か、その場所に入った任意の JSON を作る。"""
    return st.one_of(_conforming(schema, defs), anything)


def _conforming(schema: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "$ref" in schema:
        return st.deferred(lambda: from_schema(defs[schema["$ref"].rsplit("/", 1)[-1]], defs))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([from_schema(option, defs) for option in schema[key]])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        properties = {name: from_schema(sub, defs) for name, sub in schema.get("properties", {}).items()}
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {name: strategy for name, strategy in properties.items() if name in required},
            optional={
                **{name: strategy for name, strategy in properties.items() if name not in required},
                "extra \u00e9": json_values,
            },
        )
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), defs), max_size=8)
    if kind == "number":
        return st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(), huge_ints)
    if kind == "integer":
        return st.one_of(st.integers(min_value=-3, max_value=60), huge_ints)
    if kind == "string":
        return odd_strings
    return json_values


# --- 操作 ---------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=[True, False], ids=["fast-path", "fastapi-routes"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[TestClient, dict[str, Any]]]:
    """同梱モデルのアプリと、そのアプリ自身の OpenAPI 文書。"""
    from service.app.app import create_app
    from service.configurations import load_settings
    from tests.support import LABELS, MODEL

    app = create_app(
        load_settings(
            model_filepath=MODEL,
            label_filepath=LABELS,
            max_batch_rows=50,
            max_body_bytes=65536,
            fast_path=request.param,
        )
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, client.get("/openapi.json").json()


def operations(spec: dict[str, Any], method: str) -> list[tuple[str, dict[str, Any]]]:
    return [(path, item[method]) for path, item in spec["paths"].items() if method in item]


def check_answer(spec: dict[str, Any], method: str, path: str, response: Any) -> None:
    """5xx でなく、ステータスが操作の responses にあり、本文がそのスキーマに合うこと。"""
    status = response.status_code
    assert status < 500, f"{method} {path} answered {status}: {response.text[:300]}"
    documented = spec["paths"][path][method]["responses"]
    assert str(status) in documented, f"{method} {path} answered {status}, documented: {sorted(documented)}"
    schema = documented[str(status)].get("content", {}).get("application/json", {}).get("schema")
    if schema and response.headers["content-type"] == "application/json":
        jsonschema.validate(response.json(), {**schema, "components": spec["components"]})


def concrete(path: str, name: str, version: str) -> str:
    return path.replace("{name}", urllib.parse.quote(name, safe="")).replace(
        "{version}", urllib.parse.quote(version, safe="")
    )


def post_bodies(client: TestClient, spec: dict[str, Any], path: str, operation: dict[str, Any]) -> None:
    """1 つの POST の操作に、要求のスキーマから作った本文を送る。"""
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    target = concrete(path, "iris_svc", "1")

    @SETTINGS
    @given(body=st.one_of(from_schema(schema, spec["components"]["schemas"]), anything))
    @example(body={"x": [478077284086472447983878144]})  # 64 ビットを超える整数（そのままでは書けない値）
    @example(body={"data": [[478077284086472447983878144, 1, 2, 3]]})
    @example(body={"data": Raw('"\\ud800"')})
    def post(body: Any) -> None:
        text = write(body).encode("utf-8", "surrogatepass")
        response = client.post(target, content=text, headers={"content-type": "application/json"})
        check_answer(spec, "post", path, response)

    post()


def get_odd_paths(client: TestClient, spec: dict[str, Any], path: str) -> None:
    """1 つの GET の操作のパスの引数に、変わった文字列を入れる。"""

    @SETTINGS
    @given(name=odd_strings, version=odd_strings)
    def get(name: str, version: str) -> None:
        check_answer(spec, "get", path, client.get(concrete(path, name or "x", version or "1")))

    get()


def test_every_post_operation_answers_generated_bodies_with_a_documented_status(
    served: tuple[TestClient, dict[str, Any]],
) -> None:
    client, spec = served
    posts = operations(spec, "post")
    assert {path for path, _ in posts} >= {"/predict", "/predict/label", "/v2/models/{name}/infer"}
    for path, operation in posts:
        post_bodies(client, spec, path, operation)


def test_every_get_operation_answers_odd_path_arguments_with_a_documented_status(
    served: tuple[TestClient, dict[str, Any]],
) -> None:
    client, spec = served
    for path, _ in operations(spec, "get"):
        if "{" in path:
            get_odd_paths(client, spec, path)
        else:
            check_answer(spec, "get", path, client.get(path))


def test_the_reported_request_gets_a_422_that_says_what_was_wrong(
    make_client: Callable[..., TestClient], model_path: Path, label_path: Path
) -> None:
    """64 ビットを超える整数を含む形の違う本文: エラーの本文はその値を書かずに説明し、422 で答える。"""
    for fast_path in (True, False):
        client = make_client(model_filepath=model_path, label_filepath=label_path, fast_path=fast_path)
        for path in ("/predict", "/predict/label"):
            body = b'{"x": [478077284086472447983878144]}'
            response = client.post(path, content=body, headers={"content-type": "application/json"})
            assert response.status_code == 422
            assert response.json() == {
                "detail": [
                    {
                        "type": "missing",
                        "loc": ["body", "data"],
                        "msg": "Field required",
                        "input": "<object with 1 key>",
                    }
                ]
            }
