"""影（shadow）への写しを本物のサーバーで: 安定版（`mii serve`、MIRROR_CONFIG のファイルを読み直す）と影。

安定版は 1 つのプロセスのまま、設定のファイルを書き換えて写し先を切り替える（再起動しない）。影は:
- 同じモデルの `mii serve`（すべての写しが一致する）
- ラベルを入れ替えて学習したモデルの `mii serve`（ラベルが変わる）
- keep-alive の期限の短い `mii serve`（待ちの間に接続を閉じる）
- ループバックの小さな本物の HTTP サーバー（500 で答える・1 秒眠ってから答える）、聞くだけで答えない
  ソケット、閉じたポート
利用者への答えは、写していない同じモデルのサーバー（`live_server`）の答えとバイト単位で同じで、遅れない。
数字は安定版の `/metrics` の `mii_shadow_*` で確かめる。
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import LABELS, MODEL, ROOT, SERVICE_ENV, free_port

# 止まったテストは 1 件だけ失敗させる（サーバーの起動を含めても、どのテストも数秒）
pytestmark = pytest.mark.timeout(60)

SETOSA = [5.1, 3.5, 1.4, 0.2]
VERSICOLOR = [5.9, 3.0, 4.2, 1.5]
VIRGINICA = [6.7, 3.0, 5.2, 2.3]
MODEL_PATH = "/v2/models/iris_svc/infer"
VERSION_PATH = "/v2/models/iris_svc/versions/1/infer"


def v2_json(rows: list[list[float]], **extra: Any) -> bytes:
    tensor = {"name": "float_input", "shape": [len(rows), 4], "datatype": "FP32", "data": rows}
    return json.dumps({"inputs": [tensor], **extra}).encode()


def v2_binary(rows: list[list[float]]) -> tuple[bytes, dict[str, str]]:
    """バイナリのテンソルの V2 のリクエスト（写さない）。"""
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "float_input",
                    "shape": [len(rows), 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 16 * len(rows)},
                }
            ]
        }
    ).encode()
    body = header + np.asarray(rows, dtype=np.float32).tobytes()
    return body, {"Inference-Header-Content-Length": str(len(header))}


@dataclass(frozen=True)
class Call:
    """利用者のリクエスト 1 つと、写されるなら影の答えの行の数。"""

    path: str
    body: bytes
    rows: int | None  # None: 写さない
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)


def predict(*rows: list[float]) -> Call:
    return Call("/predict", json.dumps({"data": list(rows)}).encode(), len(rows))


def predict_label(*rows: list[float]) -> Call:
    return Call("/predict/label", json.dumps({"data": list(rows)}).encode(), len(rows))


def infer(path: str, *rows: list[float]) -> Call:
    return Call(path, v2_json(list(rows)), len(rows))


BINARY_BODY, BINARY_HEADERS = v2_binary([SETOSA, VIRGINICA])
# 写すもの（JSON で 200）と写さないもの（バイナリのテンソル・バイナリの答え・誤り）
MIXED = [
    predict(SETOSA),
    predict(VERSICOLOR),
    predict(VIRGINICA),
    predict(SETOSA, VERSICOLOR, VIRGINICA),
    predict(VIRGINICA, VIRGINICA, SETOSA),
    predict_label(SETOSA),
    predict_label(VIRGINICA),
    predict_label(SETOSA, VERSICOLOR, VIRGINICA, VERSICOLOR),
    infer(MODEL_PATH, SETOSA, VIRGINICA),
    infer(MODEL_PATH, VERSICOLOR, SETOSA),
    infer(VERSION_PATH, VIRGINICA),
    Call(MODEL_PATH, BINARY_BODY, None, tuple(BINARY_HEADERS.items())),
    Call(VERSION_PATH, BINARY_BODY, None, tuple(BINARY_HEADERS.items())),
    Call(MODEL_PATH, v2_json([SETOSA], parameters={"binary_data_output": True}), None),
    Call("/predict", b'{"data":[[1,2]]}', None),
    Call("/predict", b"{", None),
    Call("/predict/label", b'{"data":[]}', None),
]
THREE = [predict(SETOSA), predict_label(VIRGINICA), infer(MODEL_PATH, VERSICOLOR, SETOSA)]


# --- サーバーと設定のファイル ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Stable:
    """写す側のサーバー（1 つのプロセス）と、その設定のファイル・ログ。"""

    url: str
    config: Path
    log: Path
    process: subprocess.Popen[bytes]


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited early:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"the server did not become ready:\n{log.read_text()}")


@pytest.fixture(scope="module")
def stable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stable]:
    """MIRROR_CONFIG を持つ `mii serve`（POD_NAME は live_server と同じ: 答えのヘッダまで比べられる）。

    設定のファイルは最初は無い（写さない）。
    """
    folder = tmp_path_factory.mktemp("mirror")
    config, log = folder / "mirror.json", folder / "stable.log"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV}
    env.update(POD_NAME="live-server", MIRROR_CONFIG=str(config))
    command = [sys.executable, "-m", "mii_cli", "serve", "--port", str(port), "--log-level", "info"]
    with log.open("wb") as handle:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, log)
        yield Stable(url, config, log, process)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def same_model_shadow(start_live_server: Callable[..., str]) -> str:
    """同じモデルの影（写しだけを受ける）。"""
    return start_live_server(env={"POD_NAME": "shadow-same-model"})


@pytest.fixture(scope="module")
def relabelled_shadow(start_live_server: Callable[..., str], tmp_path_factory: pytest.TempPathFactory) -> str:
    """同梱モデルのクラスの番号を 1 つずらしたモデルの影（同じ入力・出力の名前と形、違うラベル）。

    SVMClassifier と ZipMap のクラスの並びを [1, 2, 0] にする: 元が 0 と答える行を 1 と答え、確率も
    そのクラスの番号に付く（確率の並びとラベルは食い違わない）。
    """
    import onnx
    from onnx import helper

    model = onnx.load(MODEL)
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.name in ("classlabels_ints", "classlabels_int64s"):
                assert list(attribute.ints) == [0, 1, 2]
                attribute.CopyFrom(helper.make_attribute(attribute.name, [1, 2, 0]))
    path = tmp_path_factory.mktemp("relabelled") / "iris_svc.onnx"
    onnx.save(model, path)
    url = start_live_server("--model", str(path), "--labels", str(LABELS))
    assert httpx.get(f"{url}/v2/models/iris_svc/versions/1").status_code == 200
    answer = httpx.post(f"{url}/predict/label", json={"data": [SETOSA, VERSICOLOR, VIRGINICA]}).json()
    assert answer == {"prediction": ["versicolor", "virginica", "setosa"]}
    return url


def write_config(path: Path, document: dict[str, Any] | str | None) -> None:
    """設定のファイルを置き換える（kubelet のシンボリックリンクの付け替えと同じく、途中の中身を見せない）。"""
    if document is None:
        path.unlink(missing_ok=True)
        return
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(document if isinstance(document, str) else json.dumps(document))
    temporary.replace(path)


# --- /metrics -----------------------------------------------------------------------------------


def read_metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@dataclass(frozen=True)
class ShadowNumbers:
    """安定版の `/metrics` の mii_shadow_*。"""

    percent: float
    mirrored: float
    dropped: float
    compared: float
    agreed: float
    incomparable: float
    rows: float
    label_changes: float
    max_difference: float
    answers: dict[str, float]
    round_trips: float

    @property
    def answered(self) -> float:
        return sum(self.answers.values())


def shadow_numbers(url: str) -> ShadowNumbers:
    values = read_metrics(url)

    def one(name: str) -> float:
        return values[(name, ())]

    return ShadowNumbers(
        percent=one("mii_shadow_mirror_percent"),
        mirrored=one("mii_shadow_mirrored_total"),
        dropped=one("mii_shadow_dropped_total"),
        compared=one("mii_shadow_compared_total"),
        agreed=one("mii_shadow_agreed_total"),
        incomparable=one("mii_shadow_incomparable_total"),
        rows=one("mii_shadow_rows_total"),
        label_changes=one("mii_shadow_label_changes_total"),
        max_difference=one("mii_shadow_max_output_difference"),
        answers={
            dict(labels)["status"]: value
            for (name, labels), value in values.items()
            if name == "mii_shadow_answers_total"
        },
        round_trips=one("mii_shadow_request_duration_seconds_count"),
    )


def posts(url: str, route: str) -> float:
    """サーバーが 200 で答えた POST の数（mii_http_requests_total）。"""
    key = ("mii_http_requests_total", (("method", "POST"), ("route", route), ("status", "200")))
    return read_metrics(url).get(key, 0.0)


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """条件が成り立つまで待ち、かかった秒数を返す（期限を過ぎれば失敗）。"""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            pytest.fail(f"not within {timeout}s: {what}")
        time.sleep(0.02)
    return time.monotonic() - start


def mirror_to(stable: Stable, target: str, percent: float = 100) -> None:
    """写し先と割合を書き、効くまで待つ（数字は 0 から）。

    写し先が変われば数字は 0 から数え直されるので、同じ割合で数字のある別の写し先からは書き換えるだけで、
    数字が 0 に戻ったことで効いたと分かる。ほかは一度切ってから入れる（入れ直しても 0 から）。
    """
    before = shadow_numbers(stable.url)
    try:
        previous = json.loads(stable.config.read_text()).get("target")
    except (OSError, ValueError):
        previous = None  # ファイルが無い・不正（写していない）
    document = {"target": target, "percent": percent}
    if before.percent == percent and before.round_trips > 0 and previous not in (None, target):
        write_config(stable.config, document)
        wait_until(lambda: shadow_numbers(stable.url).round_trips == 0, 5, f"mirroring to {target}")
    else:
        write_config(stable.config, {})
        wait_until(lambda: shadow_numbers(stable.url).percent == 0, 5, "mirroring off")
        write_config(stable.config, document)
        wait_until(
            lambda: shadow_numbers(stable.url).percent == percent, 5, f"mirroring {percent}% to {target}"
        )
    numbers = shadow_numbers(stable.url)
    assert (numbers.percent, numbers.mirrored, numbers.answers) == (percent, 0, {})


def target_of(url: str) -> str:
    return url.removeprefix("http://")


# --- 利用者への答え ---------------------------------------------------------------------------------


def without_date(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [(name, value) for name, value in response.headers.multi_items() if name != "date"]
    return response.status_code, headers, response.content


def send_all(stable: Stable, reference: str, calls: list[Call], *, limit: float = 0.5) -> None:
    """安定版と写していないサーバーに同じ ID で送り、答えがバイト単位で同じで、遅れないことを確かめる。"""
    with httpx.Client(timeout=10) as client:
        for number, call in enumerate(calls):
            headers = {**dict(call.headers), "x-request-id": f"mirror-test-{number}"}
            start = time.perf_counter()
            ours = client.post(stable.url + call.path, content=call.body, headers=headers)
            elapsed = time.perf_counter() - start
            theirs = client.post(reference + call.path, content=call.body, headers=headers)
            assert without_date(ours) == without_date(theirs), call
            if call.rows is not None:
                assert ours.status_code == 200, ours.text
            assert elapsed < limit, f"{call.path} took {elapsed:.3f}s"


def mirrored(calls: list[Call]) -> list[Call]:
    return [call for call in calls if call.rows is not None]


# --- テスト -------------------------------------------------------------------------------------


def test_a_missing_file_means_off(stable: Stable, live_server: str) -> None:
    write_config(stable.config, None)
    wait_until(lambda: shadow_numbers(stable.url).percent == 0, 5, "off without a file")
    before = shadow_numbers(stable.url)
    send_all(stable, live_server, THREE)
    time.sleep(0.2)
    after = shadow_numbers(stable.url)
    assert after == before
    assert after.percent == 0


def test_every_copy_to_a_shadow_of_the_same_model_agrees(
    stable: Stable, live_server: str, same_model_shadow: str
) -> None:
    mirror_to(stable, target_of(same_model_shadow))
    shadow_routes = {
        "/predict": "/predict",
        "/predict/label": "/predict/label",
        MODEL_PATH: "/v2/models/{name}/infer",
        VERSION_PATH: "/v2/models/{name}/versions/{version}/infer",
    }
    shadow_before = {path: posts(same_model_shadow, route) for path, route in shadow_routes.items()}
    send_all(stable, live_server, MIXED)
    copies = mirrored(MIXED)
    assert len(copies) == 11
    wait_until(lambda: shadow_numbers(stable.url).answered >= len(copies), 10, "the shadow's answers")
    time.sleep(0.1)  # 余計な写しが無いことを確かめるために少し待つ
    numbers = shadow_numbers(stable.url)
    assert numbers == ShadowNumbers(
        percent=100,
        mirrored=11,
        dropped=0,
        compared=11,
        agreed=11,
        incomparable=0,
        rows=sum(call.rows or 0 for call in copies),
        label_changes=0,
        max_difference=0.0,
        answers={"200": 11},
        round_trips=11,
    )
    assert numbers.rows == 20
    # 影が受けたのは写しだけ: ルートごとの数がそのとおり（バイナリのリクエスト・誤りは写していない）
    for path, route in shadow_routes.items():
        expected = sum(1 for call in copies if call.path == path)
        assert posts(same_model_shadow, route) - shadow_before[path] == expected, path
    # 影は自分では写さない
    assert shadow_numbers(same_model_shadow).mirrored == 0


def _rows_of(prediction: Any) -> list[Any]:
    return prediction if isinstance(prediction[0], list) else [prediction]


def expected_comparison(call: Call, ours: bytes, theirs: bytes) -> tuple[int, float | None]:
    """テストの側で数えた (ラベルの変わった行, 値の最大の差)。"""
    mine, other = json.loads(ours), json.loads(theirs)
    if call.path == "/predict":
        a, b = np.asarray(_rows_of(mine["prediction"])), np.asarray(_rows_of(other["prediction"]))
        return int((a.argmax(axis=1) != b.argmax(axis=1)).sum()), float(np.abs(a - b).max())
    if call.path == "/predict/label":
        a, b = np.atleast_1d(mine["prediction"]), np.atleast_1d(other["prediction"])
        return int((a != b).sum()), None
    outputs = {o["name"]: o for o in other["outputs"]}
    changes, largest = 0, None
    for output in mine["outputs"]:
        a = np.asarray(output["data"]).ravel()
        b = np.asarray(outputs[output["name"]]["data"]).ravel()
        if output["datatype"].startswith("FP"):
            found = float(np.abs(a - b).max())
            largest = found if largest is None else max(largest, found)
        else:
            changes += int((a != b).sum())
    return changes, largest


def test_a_shadow_model_with_other_labels_is_counted_as_label_changes(
    stable: Stable, live_server: str, relabelled_shadow: str
) -> None:
    mirror_to(stable, target_of(relabelled_shadow))
    send_all(stable, live_server, MIXED)
    copies = mirrored(MIXED)
    wait_until(lambda: shadow_numbers(stable.url).answered >= len(copies), 10, "the shadow's answers")
    numbers = shadow_numbers(stable.url)
    # 同じリクエストを両方に直接送り、テストの側で数える
    changes, agreed, largest = 0, 0, 0.0
    with httpx.Client(timeout=10) as client:
        for call in copies:
            headers = dict(call.headers)
            ours = client.post(live_server + call.path, content=call.body, headers=headers).content
            theirs = client.post(relabelled_shadow + call.path, content=call.body, headers=headers).content
            changed, difference = expected_comparison(call, ours, theirs)
            changes += changed
            agreed += changed == 0
            largest = max(largest, difference or 0.0)
    assert changes > 0
    assert numbers.answers == {"200": len(copies)}
    assert numbers.compared == len(copies)
    assert numbers.label_changes == changes
    assert numbers.agreed == agreed
    assert numbers.rows == 20
    assert numbers.incomparable == 0
    assert numbers.max_difference == largest
    assert largest > 0.5


# --- 誤る影 -------------------------------------------------------------------------------------


class _Answering(BaseHTTPRequestHandler):
    """本文を読み、（眠ってから）決まった答えを書く。"""

    server: LoopbackHttpServer

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.server.count()
        time.sleep(self.server.delay)
        self.send_response(self.server.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, *_: Any) -> None:
        pass


class _Answering10(_Answering):
    protocol_version = "HTTP/1.0"  # 答えるたびに閉じる（Connection: close とは書かない）


class _Answering11(_Answering):
    protocol_version = "HTTP/1.1"


class LoopbackHttpServer(ThreadingHTTPServer):
    """127.0.0.1 の本物の HTTP サーバー（標準ライブラリ、スレッド）。"""

    def __init__(self, status: int, body: bytes, *, delay: float = 0.0, http10: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), _Answering10 if http10 else _Answering11)
        self.status, self.body, self.delay = status, body, delay
        self.requests = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def count(self) -> None:
        with self._lock:
            self.requests += 1

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> LoopbackHttpServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """安定版が閉じた接続に書いた誤り（眠っている間に写しを切られた）は出さない。"""


def test_a_shadow_answering_500_is_counted_and_the_users_answers_do_not_change(
    stable: Stable, live_server: str
) -> None:
    with LoopbackHttpServer(500, b'{"detail":"boom"}') as shadow:
        mirror_to(stable, shadow.target)
        send_all(stable, live_server, THREE)
        wait_until(lambda: shadow_numbers(stable.url).answered >= 3, 10, "three answers")
        numbers = shadow_numbers(stable.url)
        assert numbers.answers == {"500": 3}
        assert (numbers.mirrored, numbers.compared, numbers.incomparable) == (3, 0, 0)
        assert shadow.requests == 3


def test_an_http_1_0_shadow_that_closes_after_every_answer_is_not_unreachable(
    stable: Stable, live_server: str
) -> None:
    with LoopbackHttpServer(500, b'{"detail":"boom"}', http10=True) as shadow:
        mirror_to(stable, shadow.target)
        send_all(stable, live_server, THREE * 4)
        wait_until(lambda: shadow_numbers(stable.url).answered >= 12, 10, "twelve answers")
        assert shadow_numbers(stable.url).answers == {"500": 12}


def test_a_closed_port_is_unreachable_and_the_users_answers_do_not_change(
    stable: Stable, live_server: str
) -> None:
    mirror_to(stable, f"127.0.0.1:{free_port()}")
    send_all(stable, live_server, THREE)
    wait_until(lambda: shadow_numbers(stable.url).answered >= 3, 10, "three answers")
    numbers = shadow_numbers(stable.url)
    assert numbers.answers == {"unreachable": 3}
    assert (numbers.mirrored, numbers.compared) == (3, 0)


def test_a_shadow_that_never_answers_times_out_and_the_users_answers_do_not_wait(
    stable: Stable, live_server: str
) -> None:
    from service import constants

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # 接続は受ける（カーネルが）が、何も読まず答えない
        mirror_to(stable, f"127.0.0.1:{silent.getsockname()[1]}")
        start = time.monotonic()
        send_all(stable, live_server, THREE)
        waited = wait_until(
            lambda: shadow_numbers(stable.url).answered >= 3,
            constants.MIRROR_TIMEOUT_SECONDS + 5,
            "three timeouts",
        )
        numbers = shadow_numbers(stable.url)
        assert numbers.answers == {"timeout": 3}
        assert numbers.compared == 0
        # 期限（MIRROR_TIMEOUT_SECONDS）より早くは諦めない
        assert time.monotonic() - start >= constants.MIRROR_TIMEOUT_SECONDS - 0.1
        assert waited > 0


def test_a_slow_shadow_does_not_delay_the_users_and_a_flood_of_copies_is_dropped(
    stable: Stable, live_server: str
) -> None:
    from service import constants

    expected = httpx.post(f"{live_server}/predict", json={"data": [SETOSA]}).content
    with LoopbackHttpServer(200, expected, delay=1.0) as shadow:
        mirror_to(stable, shadow.target)
        try:
            flood = 2 * constants.MIRROR_QUEUE_SIZE
            slowest = 0.0
            with httpx.Client(timeout=10) as client:
                for _ in range(flood):
                    start = time.perf_counter()
                    response = client.post(f"{stable.url}/predict", json={"data": [SETOSA]})
                    slowest = max(slowest, time.perf_counter() - start)
                    assert response.content == expected
            # 影は 1 つの写しに 1 秒かかるが、利用者の答えは待たない
            assert slowest < 0.5
            numbers = shadow_numbers(stable.url)
            assert numbers.mirrored + numbers.dropped == flood
            assert numbers.dropped > 0
            assert numbers.mirrored >= constants.MIRROR_QUEUE_SIZE
            # 送り手は少数で、それぞれ影の答えを待っている（待ち行列は送った数だけ残っている）
            assert numbers.answered <= constants.MIRROR_SENDERS * 4
            wait_until(lambda: shadow_numbers(stable.url).answered >= 1, 5, "a slow answer")
            assert shadow_numbers(stable.url).answers.keys() <= {"200"}
        finally:
            # 残った写しを捨てる（切れば待ち行列ごと捨てる）
            write_config(stable.config, {})
            wait_until(lambda: shadow_numbers(stable.url).percent == 0, 5, "off")


def test_an_invalid_file_logs_a_warning_and_means_off(
    stable: Stable, live_server: str, same_model_shadow: str
) -> None:
    mirror_to(stable, target_of(same_model_shadow))
    write_config(stable.config, {"target": "model-in-image-shadow:8000", "percent": 10})
    wait_until(lambda: shadow_numbers(stable.url).percent == 0, 5, "off after an invalid file")
    wait_until(
        lambda: "ignoring the mirror configuration" in stable.log.read_text(), 5, "the warning in the log"
    )
    line = next(
        line for line in stable.log.read_text().splitlines() if "ignoring the mirror configuration" in line
    )
    assert "WARNING" in line
    assert "is not an IP address and a port" in line
    before = shadow_numbers(stable.url)
    send_all(stable, live_server, THREE)
    time.sleep(0.2)
    assert shadow_numbers(stable.url) == before
    write_config(stable.config, "{not json")
    wait_until(lambda: "not JSON" in stable.log.read_text(), 5, "the second warning")
    assert shadow_numbers(stable.url).percent == 0


def test_rewriting_the_file_turns_mirroring_off_and_on_in_the_same_process(
    stable: Stable, live_server: str, same_model_shadow: str
) -> None:
    mirror_to(stable, target_of(same_model_shadow), percent=50)
    requests_before = posts(stable.url, "/predict")
    send_all(stable, live_server, [predict(SETOSA)] * 10)
    wait_until(lambda: shadow_numbers(stable.url).answered >= 5, 10, "five answers")
    time.sleep(0.1)
    assert (shadow_numbers(stable.url).mirrored, shadow_numbers(stable.url).answers) == (5, {"200": 5})
    # 切る: 2 秒以内に（1 秒ごとに読み直す）、再起動せずに
    write_config(stable.config, {})
    off = wait_until(lambda: shadow_numbers(stable.url).percent == 0, 5, "off")
    assert off < 2.0
    send_all(stable, live_server, [predict(SETOSA)] * 4)
    time.sleep(0.2)
    assert shadow_numbers(stable.url).mirrored == 5  # 切っている間は写さない（数字は残る）
    # 入れ直す
    write_config(stable.config, {"target": target_of(same_model_shadow), "percent": 100})
    on = wait_until(lambda: shadow_numbers(stable.url).percent == 100, 5, "on again")
    assert on < 2.0
    send_all(stable, live_server, [predict(VIRGINICA)] * 3)
    wait_until(lambda: shadow_numbers(stable.url).answered >= 3, 10, "three answers")
    numbers = shadow_numbers(stable.url)
    assert (numbers.mirrored, numbers.agreed, numbers.answers) == (3, 3, {"200": 3})
    # 同じプロセス: リクエストの数は 0 に戻っていない
    assert stable.process.poll() is None
    assert posts(stable.url, "/predict") == requests_before + 17


def test_a_connection_the_shadow_closed_while_idle_is_not_an_error(
    stable: Stable, live_server: str, start_live_server: Callable[..., str]
) -> None:
    # keep-alive の期限が短い影（見回りは HEAD_TIMEOUT_SECONDS の 1/4 ごと）
    shadow = start_live_server(
        env={
            "POD_NAME": "shadow-short-keep-alive",
            "KEEP_ALIVE_SECONDS": "0.1",
            "HEAD_TIMEOUT_SECONDS": "0.4",
        }
    )
    mirror_to(stable, target_of(shadow))
    send_all(stable, live_server, THREE)
    wait_until(lambda: shadow_numbers(stable.url).answered >= 3, 10, "three answers")
    time.sleep(0.6)  # 影が待ちの接続を閉じる
    send_all(stable, live_server, THREE)
    wait_until(lambda: shadow_numbers(stable.url).answered >= 6, 10, "six answers")
    numbers = shadow_numbers(stable.url)
    assert numbers.answers == {"200": 6}
    assert numbers.agreed == 6
