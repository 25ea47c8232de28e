"""影（shadow）への写し（service/app/mirror.py）と、その数字（service/app/metrics.py の ShadowStats）。

- 設定の読み（`parse_config`）: 正しい設定・写さない設定・不正な設定。どんなバイト列も MirrorConfig・None・
  MirrorConfigError のどれかで、ほかの例外は上がらない（hypothesis）。
- 影の答えの頭の読み（`_read_head`）。
- 割合の数え（端数の持ち越しで正確）・待ち行列のあふれ・表の関数の差し替えと戻し（元の同じオブジェクト）。
- 影への接続（`ShadowClient`）と送り手のタスク: ループバックの本物のソケットで動く小さなサーバーが影の役をする
  （keep-alive・閉じられた接続・HTTP/1.0・期限切れ・壊れた答え）。
- 設定のファイルの読み直し（`Mirror.watch`）と、`/metrics` の `mii_shadow_*`（prometheus_client の本文）。
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import re
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service import constants
from service.app.app import create_app
from service.app.comparison import PREDICT, PREDICT_LABEL, V2
from service.app.metrics import Metrics, ShadowStats
from service.app.mirror import (
    Copy,
    Mirror,
    MirrorConfig,
    MirrorConfigError,
    ShadowClient,
    _read_head,
    mirrored_kind,
    parse_config,
)
from service.app.state import FastRoute, ServiceState
from service.configurations import load_settings
from service.ml.loading import load_model
from service.ml.prediction import TabularModel
from tests.support import LABELS, MODEL, free_port

# 止まったテストは 1 件だけ、早く失敗させる
pytestmark = pytest.mark.timeout(30)

ROW = b'{"data":[[5.1,3.5,1.4,0.2]]}'
ROWS = b'{"data":[[5.1,3.5,1.4,0.2],[6.7,3.0,5.2,2.3]]}'
V2_JSON = orjson.dumps(
    {"inputs": [{"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}
)
PREDICT_ROUTE = ("POST", "/predict")
MIRRORED_ROUTES = {
    ("POST", "/predict"),
    ("POST", "/predict/label"),
    ("POST", "/v2/models/iris_svc/infer"),
    ("POST", "/v2/models/iris_svc/versions/1/infer"),
}


def run(scenario: Awaitable[None], timeout: float = 20.0) -> None:
    """シナリオをイベントループで動かす（止まれば TimeoutError で失敗する）。"""

    async def bounded() -> None:
        await asyncio.wait_for(scenario, timeout)

    asyncio.run(bounded())


async def until(condition: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    """条件が成り立つまで待つ（期限を過ぎれば失敗）。"""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.005)


# --- 設定の読み -----------------------------------------------------------------------------------


def config_bytes(document: Any) -> bytes:
    return orjson.dumps(document)


@pytest.mark.parametrize(
    ("document", "expected", "target"),
    [
        (
            {"target": "10.96.0.12:8000", "percent": 10},
            MirrorConfig("10.96.0.12", 8000, 10.0),
            "10.96.0.12:8000",
        ),
        ({"target": "127.0.0.1:1", "percent": 100}, MirrorConfig("127.0.0.1", 1, 100.0), "127.0.0.1:1"),
        (
            {"target": "[fd00::12]:65535", "percent": 0.5},
            MirrorConfig("fd00::12", 65535, 0.5),
            "[fd00::12]:65535",
        ),
        ({"target": "[::1]:8000", "percent": 1}, MirrorConfig("::1", 8000, 1.0), "[::1]:8000"),
        # 先頭の 0 は数の一部（どれほど長くても）
        (
            {"target": "10.0.0.1:" + "0" * 5000 + "80", "percent": 1},
            MirrorConfig("10.0.0.1", 80, 1.0),
            "10.0.0.1:80",
        ),
        # ほかの鍵は読まない（ConfigMap に後で足されても読める）
        (
            {"target": "10.0.0.1:80", "percent": 50, "note": "x"},
            MirrorConfig("10.0.0.1", 80, 50.0),
            "10.0.0.1:80",
        ),
    ],
)
def test_a_valid_configuration_is_an_address_a_port_and_a_percent(
    document: dict[str, Any], expected: MirrorConfig, target: str
) -> None:
    config = parse_config(config_bytes(document))
    assert config == expected
    assert config.target == target
    assert isinstance(config.percent, float)


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"  \n\t",
        b"{}",
        b'{"target": "10.0.0.1:80"}',
        b'{"target": "10.0.0.1:80", "percent": 0}',
        b'{"target": "10.0.0.1:80", "percent": 0.0}',
        b'{"percent": 10}',
        b'{"percent": 10, "target": ""}',
        b'{"percent": 10, "target": null}',
        # 0 % なら、写し先は読まない
        b'{"percent": 0, "target": "not an address"}',
    ],
)
def test_an_empty_file_an_empty_object_and_zero_percent_mean_off(text: bytes) -> None:
    assert parse_config(text) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"{", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'"10.0.0.1:80"', "not a JSON object"),
        (b"10", "not a JSON object"),
        (b"null", "not a JSON object"),
        (b'{"target": "shadow.mii.svc:8000", "percent": 10}', "not an IP address"),
        (b'{"target": "localhost:8000", "percent": 10}', "not an IP address"),
        (b'{"target": "10.0.0.1", "percent": 10}', "not an IP address"),
        (b'{"target": ":8000", "percent": 10}', "not an IP address"),
        (b'{"target": "10.0.0.1:", "percent": 10}', "no port"),
        (b'{"target": "10.0.0.1:0", "percent": 10}', "no port"),
        (b'{"target": "10.0.0.1:65536", "percent": 10}', "no port"),
        (b'{"target": "10.0.0.1:80a", "percent": 10}', "no port"),
        (b'{"target": "10.0.0.1:+80", "percent": 10}', "no port"),
        (b'{"target": "10.0.0.1:-80", "percent": 10}', "no port"),
        ('{"target": "10.0.0.1:٨٠", "percent": 10}'.encode(), "no port"),
        # 数字だけでも長すぎる（int() は 4,300 桁を超えると MirrorConfigError でない ValueError を上げる）
        (b'{"target": "10.0.0.1:' + b"8" * 5000 + b'", "percent": 10}', "no port"),
        (b'{"target": "10.0.0.1:' + b"0" * 5000 + b'", "percent": 10}', "no port"),
        (b'{"target": 8000, "percent": 10}', "not host:port"),
        (b'{"target": ["10.0.0.1:80"], "percent": 10}', "not host:port"),
        (b'{"target": "10.0.0.1:80", "percent": true}', "percent True"),
        (b'{"target": "10.0.0.1:80", "percent": false}', "percent False"),
        (b'{"target": "10.0.0.1:80", "percent": "10"}', "percent '10'"),
        (b'{"target": "10.0.0.1:80", "percent": null}', "percent None"),
        (b'{"target": "10.0.0.1:80", "percent": -1}', "percent -1"),
        (b'{"target": "10.0.0.1:80", "percent": 100.5}', "percent 100.5"),
        (b'{"target": "10.0.0.1:80", "percent": 1e400}', "not JSON"),
    ],
)
def test_an_invalid_configuration_says_why(text: bytes, message: str) -> None:
    with pytest.raises(MirrorConfigError, match=re.escape(message)):
        parse_config(text)


def _check(text: bytes) -> MirrorConfig | None:
    """どんなバイト列も MirrorConfig・None・MirrorConfigError のどれか（ほかの例外は上がる）。"""
    try:
        config = parse_config(text)
    except MirrorConfigError:
        return None
    if config is not None:
        assert 0 < config.percent <= 100
        assert 1 <= config.port <= 65535
        ipaddress.ip_address(config.host)
        # 書き戻して読み直しても同じ
        assert parse_config(config_bytes({"target": config.target, "percent": config.percent})) == config
    return config


@settings(max_examples=300)
@given(st.binary(max_size=60))
def test_any_bytes_are_a_configuration_off_or_a_configuration_error(text: bytes) -> None:
    _check(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)
addresses = st.ip_addresses().map(lambda a: str(a) if a.version == 4 else f"[{a}]")
ports = st.integers(-1, 70000).map(str) | st.text("0123456789٠+- ", max_size=8) | st.text(max_size=4)
targets = st.builds(lambda host, port: f"{host}:{port}", addresses | st.text(max_size=8), ports) | json_values
percents = st.integers(-5, 105) | st.floats() | json_values


@settings(max_examples=300)
@given(st.fixed_dictionaries({}, optional={"target": targets, "percent": percents}))
def test_any_json_object_is_a_configuration_off_or_a_configuration_error(document: dict[str, Any]) -> None:
    try:
        text = orjson.dumps(document)
    except (orjson.JSONEncodeError, TypeError):
        return  # JSON に書けない値（大きすぎる整数など）
    config = _check(text)
    percent, target = document.get("percent"), document.get("target")
    if config is not None:
        assert config.percent == percent
        assert target is not None
        host, _, port = target.rpartition(":")
        assert config.host == host.removeprefix("[").removesuffix("]")
        assert config.port == int(port.lstrip("0"))  # 先頭の 0 は数の一部


@given(address=st.ip_addresses(), port=st.integers(1, 65535), percent=st.integers(1, 100))
def test_every_address_and_port_is_read_back(address: Any, port: int, percent: int) -> None:
    host = str(address) if address.version == 4 else f"[{address}]"
    config = parse_config(config_bytes({"target": f"{host}:{port}", "percent": percent}))
    assert config == MirrorConfig(str(address), port, float(percent))


# --- 写すルート -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("POST", "/predict", PREDICT),
        ("POST", "/predict/label", PREDICT_LABEL),
        ("POST", "/v2/models/iris_svc/infer", V2),
        ("POST", "/v2/models/iris_svc/versions/1/infer", V2),
        ("GET", "/predict/test", None),
        ("GET", "/predict", None),
        ("HEAD", "/predict/label", None),
        ("POST", "/predict/test", None),
        ("GET", "/v2/models/iris_svc/ready", None),
        ("POST", "/v2/models/iris_svc/ready", None),
        ("GET", "/metrics", None),
    ],
)
def test_only_the_inference_routes_are_mirrored(method: str, path: str, kind: str | None) -> None:
    assert mirrored_kind(method, path) == kind


# --- 影の答えの頭 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n", (200, 12, False)),
        (b"HTTP/1.1 200\r\nContent-Length:   7  \r\n\r\n", (200, 7, False)),
        (b"HTTP/1.1 500 Internal Server Error\r\nCONTENT-LENGTH: 0\r\n\r\n", (500, 0, False)),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n", (200, 2, True)),
        (b"HTTP/1.1 200 OK\r\nConnection: Close\r\ncontent-length: 2\r\n\r\n", (200, 2, True)),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\n", (200, 2, False)),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: upgrade, close\r\n\r\n", (200, 2, True)),
        # HTTP/1.0 は、keep-alive と書かれていなければ答えの後に閉じられる
        (b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n", (200, 2, True)),
        (b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\nConnection: keep-alive\r\n\r\n", (200, 2, False)),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % constants.MIRROR_MAX_ANSWER_BYTES,
            (200, constants.MIRROR_MAX_ANSWER_BYTES, False),
        ),
    ],
)
def test_the_head_of_an_answer_gives_status_length_and_whether_it_closes(
    head: bytes, expected: tuple[int, int, bool]
) -> None:
    assert _read_head(head) == expected


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\n\r\n",  # Content-Length が無い
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (constants.MIRROR_MAX_ANSWER_BYTES + 1),
        b"HTTP/1.1 200 OK\r\ncontent-length: 1234567890\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 12a\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 1, 1\r\n\r\n",
        b"HTTP/2 200 OK\r\ncontent-length: 2\r\n\r\n",
        b"HTTP/1.1 20 OK\r\ncontent-length: 2\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\ncontent-length: 2\r\n\r\n",
        b"HTTP/1.1 abc OK\r\ncontent-length: 2\r\n\r\n",
        b"HTTP/1.1\r\ncontent-length: 2\r\n\r\n",
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"\r\n\r\n",
    ],
)
def test_an_unreadable_or_too_large_head_is_a_value_error(head: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  どれも同じ ValueError（影の誤りとして数える）
        _read_head(head)


@given(st.binary(max_size=80))
def test_any_head_is_read_or_a_value_error(head: bytes) -> None:
    try:
        status, length, closes = _read_head(head)
    except ValueError:
        return
    assert 0 <= status <= 999
    assert 0 <= length <= constants.MIRROR_MAX_ANSWER_BYTES
    assert isinstance(closes, bool)


# --- 状態（本物のモデルと高速経路の表） ---------------------------------------------------------------


@pytest.fixture(scope="module")
def iris() -> TabularModel:
    return load_model(MODEL, LABELS)


@pytest.fixture
def state(iris: TabularModel, clean_env: pytest.MonkeyPatch) -> ServiceState:
    """同梱モデルを読み込み、高速経路の表を作った状態（lifespan の起動と同じ）。"""
    app = create_app(load_settings(model_filepath=MODEL, label_filepath=LABELS, pod_name="unit"), model=iris)
    app.start()
    service: ServiceState = app.state.service
    return service


def route(state: ServiceState, path: str, method: str = "POST") -> FastRoute:
    return state.fast_routes[(method, path)]


def queued(mirror: Mirror) -> list[Copy]:
    """待ち行列の写し（取り出さずに覗く）。"""
    queue = mirror._queue
    assert queue is not None
    return list(queue._queue)  # type: ignore[attr-defined]


def test_ten_percent_of_a_thousand_requests_is_exactly_a_hundred_copies(state: ServiceState) -> None:
    mirror = Mirror(state, senders=0, queue_size=1000)
    mirror.configure(MirrorConfig("127.0.0.1", 9, 10))
    answer = route(state, "/predict").answer
    for k in range(1000):
        assert answer(ROW, None, b"req-%d" % k)[0] == 200
    assert mirror.stats.mirrored == 100
    assert mirror.stats.dropped == 0
    copies = queued(mirror)
    assert len(copies) == 100
    # 端数を持ち越すので、10 件ごとに 1 件（乱数を使わない）
    assert [c.request_id for c in copies[:3]] == [b"req-9", b"req-19", b"req-29"]
    mirror.close()


@settings(max_examples=40, deadline=None)
@given(percent=st.integers(1, 100) | st.floats(0.01, 100.0), offers=st.integers(0, 400))
def test_the_share_of_copies_is_the_percent_without_drift(percent: float, offers: int) -> None:
    mirror = Mirror(ServiceState(metrics=Metrics(), served_by="unit"), senders=0, queue_size=1000)
    mirror.config, mirror._queue = MirrorConfig("127.0.0.1", 9, float(percent)), asyncio.Queue(1000)
    copy = Copy("/predict", PREDICT, ROW, b"{}", b"id")
    for _ in range(offers):
        mirror.offer(copy)
    expected = offers * percent / 100
    if isinstance(percent, int):
        assert mirror.stats.mirrored == offers * percent // 100
    else:
        assert abs(mirror.stats.mirrored - expected) <= 1
    assert mirror.stats.dropped == 0


def test_a_full_queue_drops_the_copy_and_counts_it(state: ServiceState) -> None:
    mirror = Mirror(state, senders=0, queue_size=5)
    mirror.configure(MirrorConfig("127.0.0.1", 9, 100))
    answer = route(state, "/predict/label").answer
    replies = [answer(ROW, None, b"id") for _ in range(12)]
    # 利用者への答えは写しが捨てられても同じ
    assert {r[1] for r in replies} == {b'{"prediction":"setosa"}'}
    assert (mirror.stats.mirrored, mirror.stats.dropped) == (5, 7)
    assert len(queued(mirror)) == 5
    mirror.close()


def test_only_successful_json_answers_of_the_inference_routes_are_copied(state: ServiceState) -> None:
    mirror = Mirror(state, senders=0, queue_size=100)
    mirror.configure(MirrorConfig("127.0.0.1", 9, 100))
    predict = route(state, "/predict").answer(ROWS, None, b"a")
    label = route(state, "/predict/label").answer(ROW, None, b"b")
    v2 = route(state, "/v2/models/iris_svc/infer").answer(V2_JSON, None, b"c")
    v2_version = route(state, "/v2/models/iris_svc/versions/1/infer").answer(V2_JSON, None, b"d")
    # 写さない: 誤りの答え・バイナリのテンソルのリクエスト・JSON のリクエストへのバイナリの答え・ほかのルート
    assert route(state, "/predict").answer(b'{"data":[[1,2]]}', None, b"e")[0] == 400
    assert route(state, "/predict").answer(b"{", None, b"f")[0] == 422
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "float_input",
                    "shape": [1, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 16},
                }
            ]
        }
    )
    binary = route(state, "/v2/models/iris_svc/infer").answer(
        header + b"\x00\x00\x80?" * 4, str(len(header)), b"g"
    )
    assert binary[0] == 200
    binary_output = route(state, "/v2/models/iris_svc/infer").answer(
        orjson.dumps({**orjson.loads(V2_JSON), "parameters": {"binary_data_output": True}}), None, b"h"
    )
    assert binary_output[0] == 200
    assert dict(binary_output[2])[b"content-type"] == b"application/octet-stream"
    assert route(state, "/predict/test", "GET").answer(b"", None, b"i")[0] == 200
    copies = queued(mirror)
    assert [(c.path, c.kind, c.request_id) for c in copies] == [
        ("/predict", PREDICT, b"a"),
        ("/predict/label", PREDICT_LABEL, b"b"),
        ("/v2/models/iris_svc/infer", V2, b"c"),
        ("/v2/models/iris_svc/versions/1/infer", V2, b"d"),
    ]
    assert [c.body for c in copies] == [ROWS, ROW, V2_JSON, V2_JSON]
    assert [c.answer for c in copies] == [predict[1], label[1], v2[1], v2_version[1]]
    assert mirror.stats.mirrored == 4
    mirror.close()


def test_mirroring_replaces_only_the_inference_entries_and_off_restores_the_same_objects(
    state: ServiceState,
) -> None:
    table = state.fast_routes
    originals = dict(table)
    mirror = Mirror(state, senders=0, queue_size=100)
    mirror.configure(MirrorConfig("127.0.0.1", 9, 100))
    replaced = {key for key, value in table.items() if value is not originals[key]}
    assert replaced == MIRRORED_ROUTES
    assert table.keys() == originals.keys()
    for key in replaced:
        # 答える関数だけが変わる（メトリクス・エラーの形・本文を読むかは元のまま）
        assert table[key].stats is originals[key].stats
        assert (table[key].protocol, table[key].reads_body) == (
            originals[key].protocol,
            originals[key].reads_body,
        )
        # 利用者への答えは元の関数と同じ
        body = V2_JSON if "v2" in key[1] else ROW
        assert table[key].answer(body, None, b"x") == originals[key].answer(body, None, b"x")
    # 割合を変えても包み直さない（1 つの答えで写しは 1 つ）
    mirror.configure(MirrorConfig("127.0.0.1", 9, 100.0 - 1e-9))
    mirror.configure(MirrorConfig("127.0.0.1", 9, 100))
    before = mirror.stats.mirrored
    table[PREDICT_ROUTE].answer(ROW, None, b"x")
    assert mirror.stats.mirrored == before + 1
    mirror.configure(None)
    assert all(table[key] is originals[key] for key in originals)
    assert mirror.stats.percent == 0.0
    # 切っている間の答えは写さない（表の関数が元のもの）
    table[PREDICT_ROUTE].answer(ROW, None, b"x")
    assert mirror.stats.mirrored == before + 1
    mirror.configure(MirrorConfig("127.0.0.1", 9, 50))
    assert {key for key, value in table.items() if value is not originals[key]} == MIRRORED_ROUTES
    mirror.close()
    assert all(table[key] is originals[key] for key in originals)
    assert (mirror.config, mirror.stats.percent) == (None, 0.0)


def test_the_numbers_start_again_for_a_new_target_or_after_off_but_not_for_a_new_percent(
    state: ServiceState,
) -> None:
    mirror = Mirror(state, senders=0, queue_size=100)
    stats = mirror.stats
    mirror.configure(MirrorConfig("127.0.0.1", 9, 100))
    assert stats.percent == 100.0
    stats.mirrored, stats.answers = 3, {"200": 3}
    mirror.configure(MirrorConfig("127.0.0.1", 9, 20))
    assert (stats.mirrored, stats.answers, stats.percent) == (3, {"200": 3}, 20.0)
    mirror.configure(MirrorConfig("127.0.0.2", 9, 20))
    assert (stats.mirrored, stats.answers) == (0, {})
    stats.mirrored = 4
    mirror.configure(None)
    assert (stats.mirrored, stats.percent) == (4, 0.0)  # 切っても数字は残る（/metrics で読める）
    mirror.configure(MirrorConfig("127.0.0.2", 9, 20))
    assert stats.mirrored == 0  # 同じ写し先でも、入れ直せば新しい影
    mirror.close()


def test_a_new_percent_keeps_the_queued_copies_and_the_senders(state: ServiceState) -> None:
    mirror = Mirror(state, senders=0, queue_size=10)
    mirror.configure(MirrorConfig("127.0.0.1", 9, 100))
    route(state, "/predict").answer(b'{"data": [[5.1, 3.5, 1.4, 0.2]]}', None, b"id-1")
    queue = mirror._queue
    assert len(queued(mirror)) == 1
    mirror.configure(MirrorConfig("127.0.0.1", 9, 50))
    # 写した数に数えた写しは、割合が変わっても送られる（同じ待ち行列のまま）
    assert mirror._queue is queue
    assert len(queued(mirror)) == 1
    assert mirror.stats.percent == 50.0
    mirror.close()


def test_without_the_fast_path_nothing_is_mirrored_and_the_percent_says_so(
    iris: TabularModel, clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(model_filepath=MODEL, label_filepath=LABELS, pod_name="unit", fast_path=False)
    app = create_app(settings, model=iris)
    app.start()
    mirror = Mirror(app.state.service, senders=0)
    with caplog.at_level("WARNING", logger="service.app.mirror"):
        mirror.configure(MirrorConfig("127.0.0.1", 9, 10))
    assert (mirror.config, mirror.stats.percent) == (None, 0.0)
    assert any("FAST_PATH=true" in record.getMessage() for record in caplog.records)


# --- ループバックの影 ----------------------------------------------------------------------------


def http(status: int, body: bytes, *, version: bytes = b"HTTP/1.1", extra: bytes = b"") -> bytes:
    return (
        b"%s %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n"
        % (
            version,
            status,
            len(body),
            extra,
        )
        + body
    )


Behaviour = Callable[[bytes, bytes], Awaitable[bytes | None]]


class LoopbackShadow:
    """127.0.0.1（か ::1）で聞く小さな HTTP サーバー: 受けたリクエストを覚え、`behaviour` の答えを書く。

    `behaviour` が None を返せば答えない（クライアントが閉じるまで待つ）。`close_after` なら答えるたびに
    接続を閉じる（Connection: close と書かずに: keep-alive の期限切れや HTTP/1.0 の閉じ方）。
    """

    def __init__(self, behaviour: Behaviour, *, host: str = "127.0.0.1", close_after: bool = False) -> None:
        self.behaviour, self.host, self.close_after = behaviour, host, close_after
        self.requests: list[tuple[bytes, bytes]] = []
        self.connections = 0
        self.closed_by_client = 0
        self.port = 0

    async def __aenter__(self) -> LoopbackShadow:
        self.server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                found = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
                body = await reader.readexactly(int(found.group(1)) if found else 0)
                self.requests.append((head, body))
                answer = await self.behaviour(head, body)
                if answer is None:
                    await reader.read()  # クライアントが閉じるまで
                    self.closed_by_client += 1
                    return
                writer.write(answer)
                await writer.drain()
                if self.close_after:
                    return
        except asyncio.IncompleteReadError:
            self.closed_by_client += 1
        except ConnectionError:
            pass
        finally:
            writer.close()


def answering(answer: bytes, delay: float = 0.0) -> Behaviour:
    async def behaviour(_head: bytes, _body: bytes) -> bytes:
        if delay:
            await asyncio.sleep(delay)
        return answer

    return behaviour


async def never(_head: bytes, _body: bytes) -> None:
    return None


COPY = Copy("/predict", PREDICT, ROW, b'{"prediction":[1.0,0.0,0.0]}', b"req-42")
OK = http(200, b'{"prediction":[1.0,0.0,0.0]}')


def test_the_client_sends_one_json_post_with_the_request_id_and_keeps_the_connection() -> None:
    async def scenario() -> None:
        async with LoopbackShadow(answering(OK)) as shadow:
            client = ShadowClient("127.0.0.1", shadow.port, 2.0)
            for _ in range(3):
                assert await client.send(COPY) == (200, b'{"prediction":[1.0,0.0,0.0]}')
            client.close()
        assert shadow.connections == 1
        head, body = shadow.requests[0]
        assert body == ROW
        assert head == (
            b"POST /predict HTTP/1.1\r\nhost: 127.0.0.1:%d\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nx-request-id: req-42\r\nx-mirrored: 1\r\n\r\n" % (shadow.port, len(ROW))
        )

    run(scenario())


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")
def test_an_ipv6_shadow_gets_a_host_header_in_brackets() -> None:
    async def scenario() -> None:
        async with LoopbackShadow(answering(OK), host="::1") as shadow:
            client = ShadowClient("::1", shadow.port, 2.0)
            assert (await client.send(COPY))[0] == 200
            client.close()
        assert b"\r\nhost: [::1]:%d\r\n" % shadow.port in shadow.requests[0][0]

    run(scenario())


def test_a_connection_the_shadow_closed_while_idle_is_opened_again() -> None:
    """uvicorn は keep-alive の期限を過ぎた接続を黙って閉じる: 次の写しは新しい接続で送る（誤りにしない）。"""

    async def scenario() -> None:
        async with LoopbackShadow(answering(OK), close_after=True) as shadow:
            client = ShadowClient("127.0.0.1", shadow.port, 2.0)
            assert (await client.send(COPY))[0] == 200
            await until(lambda: client._reader is not None and client._reader.at_eof(), what="the close")
            assert (await client.send(COPY))[0] == 200
            client.close()
        assert shadow.connections == 2

    run(scenario())


@pytest.mark.parametrize(
    "answer",
    [
        http(200, b"{}", version=b"HTTP/1.0"),
        http(200, b"{}", extra=b"connection: close\r\n"),
    ],
    ids=["http-1.0", "connection-close"],
)
def test_an_answer_that_closes_the_connection_is_followed_by_a_new_connection(answer: bytes) -> None:
    async def scenario() -> None:
        async with LoopbackShadow(answering(answer), close_after=True) as shadow:
            client = ShadowClient("127.0.0.1", shadow.port, 2.0)
            # 続けて送る（閉じたことを EOF で知る前に）
            for _ in range(3):
                assert await client.send(COPY) == (200, b"{}")
            client.close()
        assert shadow.connections == 3

    run(scenario())


def test_a_shadow_that_does_not_answer_times_out_and_the_connection_is_closed() -> None:
    async def scenario() -> None:
        async with LoopbackShadow(never) as shadow:
            client = ShadowClient("127.0.0.1", shadow.port, 0.2)
            start = time.monotonic()
            with pytest.raises(TimeoutError):
                await client.send(COPY)
            assert 0.15 < time.monotonic() - start < 2.0
            # 遅れて届く答えを次の写しの答えと取り違えない: 接続は閉じた
            await until(lambda: shadow.closed_by_client == 1, what="the shadow sees the close")

    run(scenario())


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", ValueError),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", ValueError),
        (
            b"HTTP/1.1 200 OK\r\nx-pad: " + b"a" * (constants.MIRROR_MAX_HEAD_BYTES + 10) + b"\r\n\r\n",
            asyncio.LimitOverrunError,
        ),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{}", asyncio.IncompleteReadError),
    ],
    ids=["not-http", "chunked", "huge-head", "short-body"],
)
def test_a_broken_answer_raises_and_closes(answer: bytes, error: type[Exception]) -> None:
    async def scenario() -> None:
        async with LoopbackShadow(answering(answer), close_after=True) as shadow:
            client = ShadowClient("127.0.0.1", shadow.port, 2.0)
            with pytest.raises(error):
                await client.send(COPY)
            assert client._writer is None

    run(scenario())


# --- 送り手のタスクと数え ---------------------------------------------------------------------------

OUR_PROBABILITIES = b'{"prediction":[0.9720988869667053,0.01597398892045021,0.011927163228392601]}'


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        (
            answering(http(200, OUR_PROBABILITIES)),
            {"answers": {"200": 6}, "compared": 6, "agreed": 6, "rows": 6, "label_changes": 0, "max": 0.0},
        ),
        (
            answering(
                http(200, b'{"prediction":[0.01597398892045021,0.9720988869667053,0.011927163228392601]}')
            ),
            {
                "answers": {"200": 6},
                "compared": 6,
                "agreed": 0,
                "rows": 6,
                "label_changes": 6,
                "max": 0.9561249,
            },
        ),
        (answering(http(500, b'{"detail":"boom"}')), {"answers": {"500": 6}, "compared": 0}),
        (answering(http(404, b'{"detail":"Not Found"}')), {"answers": {"404": 6}, "compared": 0}),
        (answering(http(200, b"<html>")), {"answers": {"200": 6}, "compared": 0, "incomparable": 6}),
        (
            answering(http(200, b'{"prediction":[[1,0,0],[0,1,0]]}')),
            {"answers": {"200": 6}, "incomparable": 6},
        ),
        (answering(b"garbage\r\n\r\n"), {"answers": {"unreachable": 6}, "compared": 0}),
        (answering(b"HTTP/1.1 200 OK\r\n\r\n"), {"answers": {"unreachable": 6}, "compared": 0}),
        (never, {"answers": {"timeout": 6}, "compared": 0}),
        (answering(OK, delay=1.0), {"answers": {"timeout": 6}, "compared": 0}),
    ],
    ids=[
        "same",
        "other-label",
        "500",
        "404",
        "not-json",
        "other-shape",
        "not-http",
        "no-length",
        "no-answer",
        "too-slow",
    ],
)
def test_the_senders_count_every_shadow_answer(
    state: ServiceState, behaviour: Behaviour, expected: dict[str, Any]
) -> None:
    async def scenario() -> None:
        async with LoopbackShadow(behaviour) as shadow:
            mirror = Mirror(state, senders=2, timeout=0.3)
            mirror.configure(MirrorConfig("127.0.0.1", shadow.port, 100))
            answer = route(state, "/predict").answer
            for k in range(6):
                assert answer(ROW, None, b"req-%d" % k)[1] == OUR_PROBABILITIES
            stats = mirror.stats
            await until(lambda: sum(stats.answers.values()) == 6, what="six shadow answers")
            mirror.close()
            assert stats.mirrored == 6
            assert stats.answers == expected["answers"]
            assert stats.latency.count == 6
            assert stats.compared_requests == expected.get("compared", 0)
            assert stats.agreed == expected.get("agreed", 0)
            assert stats.rows == expected.get("rows", 0)
            assert stats.label_changes == expected.get("label_changes", 0)
            assert stats.incomparable == expected.get("incomparable", 0)
            assert stats.max_difference == pytest.approx(expected.get("max", 0.0))
            # どの写しも、利用者のリクエスト ID を付けて影に届いた
            sent = [re.search(rb"x-request-id: (\S+)", head) for head, _ in shadow.requests]
            assert sorted(found.group(1) for found in sent if found) == [b"req-%d" % k for k in range(6)]

    run(scenario())


def test_a_closed_port_is_unreachable(state: ServiceState) -> None:
    async def scenario() -> None:
        mirror = Mirror(state, senders=2, timeout=1.0)
        mirror.configure(MirrorConfig("127.0.0.1", free_port(), 100))
        for _ in range(3):
            route(state, "/predict/label").answer(ROW, None, b"x")
        await until(lambda: sum(mirror.stats.answers.values()) == 3)
        mirror.close()
        assert mirror.stats.answers == {"unreachable": 3}

    run(scenario())


def test_the_senders_outlive_malformed_answers(state: ServiceState) -> None:
    """影の答えがどんな形でも、送り手のタスクは止まらない（止まれば写しは待ち行列に残り続ける）。"""
    malformed = http(200, b'{"outputs":[{"name":["not","hashable"]},{"name":{"x":1}}]}')

    async def scenario() -> None:
        async with LoopbackShadow(answering(malformed)) as shadow:
            mirror = Mirror(state, senders=2, timeout=1.0)
            mirror.configure(MirrorConfig("127.0.0.1", shadow.port, 100))
            for _ in range(10):
                route(state, "/v2/models/iris_svc/infer").answer(V2_JSON, None, b"x")
            await until(lambda: sum(mirror.stats.answers.values()) == 10, what="ten answers")
            await until(lambda: mirror.stats.incomparable == 10, what="ten incomparable")
            assert all(not task.done() for task in mirror._tasks)
            mirror.close()

    run(scenario())


def test_turning_off_stops_the_senders_and_closes_their_connections(state: ServiceState) -> None:
    async def scenario() -> None:
        async with LoopbackShadow(never) as shadow:
            mirror = Mirror(state, senders=2, timeout=10.0)
            mirror.configure(MirrorConfig("127.0.0.1", shadow.port, 100))
            tasks = list(mirror._tasks)
            for _ in range(2):
                route(state, "/predict").answer(ROW, None, b"x")
            await until(lambda: len(shadow.requests) == 2, what="both copies sent")
            mirror.configure(None)
            await asyncio.sleep(0)
            await until(lambda: all(task.done() for task in tasks), what="the senders stop")
            await until(lambda: shadow.closed_by_client == 2, what="the connections close")
            assert mirror.stats.answers == {}

    run(scenario())


# --- 設定のファイルの読み直し -----------------------------------------------------------------------


def write(path: Path, text: str) -> None:
    """設定のファイルを置き換える（kubelet のシンボリックリンクの付け替えと同じく、途中の中身を見せない）。"""
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(text)
    temporary.replace(path)


def mirror_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "service.app.mirror" and r.levelno == logging.WARNING
    ]


def test_the_file_is_read_again_and_mirroring_follows_it(
    state: ServiceState, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "mirror.json"
    table = state.fast_routes
    originals = dict(table)

    def mirrored() -> bool:
        return table[PREDICT_ROUTE] is not originals[PREDICT_ROUTE]

    async def scenario() -> None:
        mirror = Mirror(state, senders=0)
        task = asyncio.get_running_loop().create_task(mirror.watch(path, interval=0.01))
        await asyncio.sleep(0.05)
        assert mirror.config is None  # ファイルが無い: 写さない
        assert not mirrored()
        write(path, '{"target": "127.0.0.1:9", "percent": 25}')
        await until(lambda: mirror.config == MirrorConfig("127.0.0.1", 9, 25.0), what="on")
        assert mirrored()
        assert mirror.stats.percent == 25.0
        write(path, "{}")
        await until(lambda: mirror.config is None, what="off")
        assert all(table[key] is originals[key] for key in originals)
        assert mirror.stats.percent == 0.0
        write(path, '{"target": "127.0.0.1:9", "percent": 25}')
        await until(mirrored, what="on again")
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="service.app.mirror"):
            write(path, '{"target": "shadow.svc:8000", "percent": 25}')
            await until(lambda: mirror.config is None, what="off after an invalid file")
            await asyncio.sleep(0.05)
        warnings = mirror_warnings(caplog)
        assert len(warnings) == 1  # 同じ中身なら 1 度だけ
        assert "ignoring the mirror configuration" in warnings[0]
        assert "not an IP address" in warnings[0]
        assert not mirrored()
        # 長すぎるポートの数字でも、読み直しは止まらない
        write(path, '{"target": "127.0.0.1:' + "9" * 5000 + '", "percent": 25}')
        await asyncio.sleep(0.05)
        assert not task.done()
        write(path, '{"target": "127.0.0.1:9", "percent": 75}')
        await until(lambda: mirror.stats.percent == 75.0, what="on after the long port")
        path.unlink()
        await until(lambda: mirror.config is None, what="off when the file is gone")
        write(path, '{"target": "127.0.0.1:9", "percent": 75}')
        await until(mirrored, what="on when the file is back")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # 止めれば表は元に戻り、割合は 0
        assert all(table[key] is originals[key] for key in originals)
        assert mirror.stats.percent == 0.0

    run(scenario())


def test_an_unreadable_file_is_warned_about_once_and_means_off(
    state: ServiceState, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "mirror.json"
    path.mkdir()  # 読めない（IsADirectoryError）

    async def scenario() -> None:
        mirror = Mirror(state, senders=0)
        with caplog.at_level(logging.WARNING, logger="service.app.mirror"):
            task = asyncio.get_running_loop().create_task(mirror.watch(path, interval=0.01))
            await asyncio.sleep(0.1)
        assert mirror.config is None
        warnings = mirror_warnings(caplog)
        assert len(warnings) == 1
        assert "cannot read the mirror configuration" in warnings[0]
        task.cancel()

    run(scenario())


# --- /metrics の mii_shadow_* ---------------------------------------------------------------------


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics と同じ本文（prometheus_client）を読み直した mii_shadow_* の値。"""
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        if family.name.startswith("mii_shadow_")
        for sample in family.samples
    }


SHADOW_FAMILIES = {
    ("mii_shadow_mirror_percent", "gauge"),
    ("mii_shadow_mirrored", "counter"),
    ("mii_shadow_dropped", "counter"),
    ("mii_shadow_compared", "counter"),
    ("mii_shadow_agreed", "counter"),
    ("mii_shadow_incomparable", "counter"),
    ("mii_shadow_rows", "counter"),
    ("mii_shadow_label_changes", "counter"),
    ("mii_shadow_max_output_difference", "gauge"),
    ("mii_shadow_answers", "counter"),
    ("mii_shadow_request_duration_seconds", "histogram"),
}


def test_the_shadow_families_are_exposed_with_zeros_when_nothing_was_mirrored() -> None:
    metrics = Metrics()
    text = generate_latest(metrics.registry).decode()
    families = {
        (f.name, f.type) for f in text_string_to_metric_families(text) if f.name.startswith("mii_shadow_")
    }
    assert families == SHADOW_FAMILIES
    values = samples(metrics)
    for name in (
        "mii_shadow_mirror_percent",
        "mii_shadow_mirrored_total",
        "mii_shadow_dropped_total",
        "mii_shadow_compared_total",
        "mii_shadow_agreed_total",
        "mii_shadow_incomparable_total",
        "mii_shadow_rows_total",
        "mii_shadow_label_changes_total",
        "mii_shadow_max_output_difference",
        "mii_shadow_request_duration_seconds_count",
        "mii_shadow_request_duration_seconds_sum",
    ):
        assert values[(name, ())] == 0.0, name
    assert not any(name == "mii_shadow_answers_total" for name, _ in values)


def test_the_shadow_numbers_are_exposed_as_counted() -> None:
    metrics = Metrics()
    shadow = metrics.shadow
    shadow.percent = 12.5
    shadow.mirrored, shadow.dropped, shadow.incomparable = 9, 4, 1
    shadow.compared(rows=1, label_changes=0, max_difference=0.0)
    shadow.compared(rows=3, label_changes=2, max_difference=0.25)
    shadow.compared(rows=2, label_changes=0, max_difference=None)  # ラベルだけの答え
    shadow.compared(rows=1, label_changes=0, max_difference=0.125)  # 最大は下がらない
    shadow.answered("200", 0.004)
    shadow.answered("200", 0.02)
    shadow.answered("timeout", 2.0)
    shadow.answered("unreachable", 0.0001)
    values = samples(metrics)
    assert values[("mii_shadow_mirror_percent", ())] == 12.5
    assert values[("mii_shadow_mirrored_total", ())] == 9
    assert values[("mii_shadow_dropped_total", ())] == 4
    assert values[("mii_shadow_incomparable_total", ())] == 1
    assert values[("mii_shadow_compared_total", ())] == 4
    assert values[("mii_shadow_agreed_total", ())] == 3
    assert values[("mii_shadow_rows_total", ())] == 7
    assert values[("mii_shadow_label_changes_total", ())] == 2
    assert values[("mii_shadow_max_output_difference", ())] == 0.25
    assert values[("mii_shadow_answers_total", (("status", "200"),))] == 2
    assert values[("mii_shadow_answers_total", (("status", "timeout"),))] == 1
    assert values[("mii_shadow_answers_total", (("status", "unreachable"),))] == 1
    assert values[("mii_shadow_request_duration_seconds_count", ())] == 4
    assert values[("mii_shadow_request_duration_seconds_sum", ())] == pytest.approx(2.0241)
    buckets = {
        dict(labels)["le"]: value
        for (name, labels), value in values.items()
        if name == "mii_shadow_request_duration_seconds_bucket"
    }
    assert buckets["0.0005"] == 1
    assert buckets["0.005"] == 2
    assert buckets["0.025"] == 3
    assert buckets["1.0"] == 3
    assert buckets["2.5"] == 4
    assert buckets["+Inf"] == 4
    # 影の答えの無限大の差もそのまま出る
    shadow.compared(rows=1, label_changes=0, max_difference=math.inf)
    assert samples(metrics)[("mii_shadow_max_output_difference", ())] == math.inf


def test_reset_zeroes_the_numbers_but_keeps_the_percent() -> None:
    shadow = ShadowStats()
    shadow.percent = 40.0
    shadow.mirrored, shadow.dropped = 3, 2
    shadow.compared(rows=2, label_changes=1, max_difference=0.5)
    shadow.answered("500", 0.1)
    shadow.reset()
    assert shadow.percent == 40.0
    assert (shadow.mirrored, shadow.dropped, shadow.compared_requests, shadow.agreed) == (0, 0, 0, 0)
    assert (shadow.rows, shadow.label_changes, shadow.max_difference, shadow.answers) == (0, 0, 0.0, {})
    assert shadow.latency.count == 0


def test_the_shadow_families_follow_the_other_service_metrics() -> None:
    """mii_shadow_* は既存のメトリクスの後ろに足される（既存の名前と順は変わらない）。"""
    text = generate_latest(Metrics().registry).decode()
    names = [f.name for f in text_string_to_metric_families(text)]
    assert names[:5] == [
        "mii_http_requests",
        "mii_http_request_duration_seconds",
        "mii_predictions",
        "mii_prediction_rows",
        "mii_request_body_timeouts",
    ]
    assert all(name.startswith("mii_shadow_") for name in names[5:])
