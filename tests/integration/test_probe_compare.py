"""canary と安定版の比較（probe/compare.py）を、ループバックの 2 つの本物の `mii serve` に対して。

安定版は同梱の Iris モデル、canary は別のシードと分け方で学び直した Iris モデル（同じ入力・同じクラス、
少し違う答え）。比べる行はクラスの境目の近くの格子: 両方のサーバーに先に尋ね、ラベルの変わる行を
数えておき、比較の数と合わせる。回帰器（tests/zoo.py）はラベルもクラスも無い比較、入力の幅の違う
モデルは推論をしない比較に使う。
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mii_cli.errors import ClusterError
from mii_cli.model.train import SAMPLE_ROW, train
from mii_cli.probe.compare import CHANGED_ROWS_SHOWN, CHUNK_ROWS, compare
from tests.support import MODEL, free_port

# versicolor と virginica の境目の近くの格子（3 x 3 x 8 x 6 = 432 行。CHUNK_ROWS より多い）
BOUNDARY = [
    [sepal_length, sepal_width, round(4.5 + 0.1 * i, 1), round(1.4 + 0.1 * j, 1)]
    for sepal_length in (5.5, 6.0, 6.5)
    for sepal_width in (2.5, 2.8, 3.1)
    for i in range(8)
    for j in range(6)
]


@dataclass(frozen=True)
class Server:
    """本物のサーバーと、それが配信するモデルの sha256。"""

    url: str
    sha256: str


@pytest.fixture(scope="module")
def stable(live_server: str) -> Server:
    return Server(live_server, hashlib.sha256(MODEL.read_bytes()).hexdigest())


@pytest.fixture(scope="module")
def canary(start_live_server: Callable[..., str], tmp_path_factory: pytest.TempPathFactory) -> Server:
    """別のシード（7）と検証の割合（0.3）で学び直した Iris モデルのサーバー。"""
    trained = train(tmp_path_factory.mktemp("retrained"), seed=7, test_size=0.3)
    url = start_live_server("--model", trained.model_path, "--labels", trained.label_path)
    return Server(url, trained.model_sha256)


@pytest.fixture(scope="module")
def regressor(start_live_server: Callable[..., str], zoo: dict[str, Any]) -> Server:
    """回帰器（幅 3、ラベル無し）のサーバー。"""
    path: Path = zoo["regressor"].path
    return Server(start_live_server("--model", str(path)), hashlib.sha256(path.read_bytes()).hexdigest())


def labels(url: str, rows: list[list[float]]) -> list[str]:
    response = httpx.post(f"{url}/predict/label", json={"data": rows}, timeout=10)
    assert response.status_code == 200, response.text
    found = response.json()["prediction"]
    return found if len(rows) > 1 else [found]


def probabilities(url: str, rows: list[list[float]]) -> list[list[float]]:
    response = httpx.post(f"{url}/predict", json={"data": rows}, timeout=10)
    assert response.status_code == 200, response.text
    found = response.json()["prediction"]
    return found if len(rows) > 1 else [found]


def output_names(url: str) -> list[str]:
    name = httpx.get(f"{url}/metadata", timeout=5).json()["model"]["name"]
    return sorted(
        output["name"] for output in httpx.get(f"{url}/v2/models/{name}", timeout=5).json()["outputs"]
    )


def posts(url: str) -> float:
    """サーバーが受けた POST（推論）の数（/metrics の mii_http_requests_total から）。"""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('mii_http_requests_total{method="POST"')
    )


# --- 同じモデル同士 --------------------------------------------------------------------------------


def test_a_server_against_itself_has_no_differences(stable: Server) -> None:
    rows = [[6.0, 2.8, 4.8, 1.6], [6.0, 2.8, 4.8, 1.6], SAMPLE_ROW, [6.7, 3.0, 5.2, 2.3]]
    verdict = compare(stable.url, stable.url, rows)
    # サンプルの 1 行（両方の同じ行）と、重ならない 2 行
    assert verdict.rows == 3
    assert verdict.label_changes == 0
    assert verdict.changed_rows == []
    assert [d.output for d in verdict.differences] == output_names(stable.url)
    assert [d.output for d in verdict.differences] == ["output_label", "output_probability"]
    assert all(d.largest == 0.0 and d.detail == "" for d in verdict.differences)
    assert verdict.same_inputs is True
    assert verdict.same_classes is True
    assert verdict.stable_model == verdict.canary_model == stable.sha256


def test_a_regressor_against_itself_has_no_labels_and_no_classes(
    regressor: Server, zoo: dict[str, Any]
) -> None:
    given = zoo["regressor"].rows
    verdict = compare(regressor.url, regressor.url, given)
    assert verdict.rows == 1 + len(given)  # サンプル（ゼロの行）と与えた 5 行
    assert verdict.label_changes is None
    assert verdict.changed_rows == []
    assert verdict.same_classes is None
    assert verdict.same_inputs is True
    assert [d.output for d in verdict.differences] == output_names(regressor.url)
    assert verdict.differences
    assert all(d.largest == 0.0 for d in verdict.differences)
    assert verdict.stable_model == verdict.canary_model == regressor.sha256


# --- 学び直したモデル ------------------------------------------------------------------------------


def test_a_retrained_model_is_compared_row_by_row(stable: Server, canary: Server) -> None:
    assert stable.sha256 != canary.sha256
    compared = [SAMPLE_ROW, *BOUNDARY]
    before, after = labels(stable.url, compared), labels(canary.url, compared)
    changed = [row for row, a, b in zip(compared, before, after, strict=True) if a != b]
    assert changed, "the boundary rows should include rows the retrained model labels otherwise"
    assert len(changed) < len(compared), "and rows both models label alike"
    # 与えた行の重なり（同じ行の 2 度目、サンプルの行）は 1 度だけ比べる
    verdict = compare(stable.url, canary.url, [*BOUNDARY, BOUNDARY[0], SAMPLE_ROW])
    assert verdict.rows == len(compared) > CHUNK_ROWS
    assert verdict.label_changes == len(changed)
    assert verdict.changed_rows == changed[:CHANGED_ROWS_SHOWN]
    assert verdict.same_inputs is True
    assert verdict.same_classes is True
    assert (verdict.stable_model, verdict.canary_model) == (stable.sha256, canary.sha256)

    differences = {d.output: d for d in verdict.differences}
    assert sorted(differences) == output_names(stable.url) == output_names(canary.url)
    # 確率の差は /predict の答えから求めたものと同じ
    stable_p, canary_p = probabilities(stable.url, compared), probabilities(canary.url, compared)
    largest = max(
        abs(a - b) for x, y in zip(stable_p, canary_p, strict=True) for a, b in zip(x, y, strict=True)
    )
    assert largest > 0
    assert differences["output_probability"].largest == pytest.approx(largest, abs=1e-6)
    # ラベルの出力（クラスの番号）の差は、変わったラベルの番号の差
    classes = httpx.get(f"{stable.url}/metadata", timeout=5).json()["classes"]
    steps = max(abs(classes.index(a) - classes.index(b)) for a, b in zip(before, after, strict=True))
    assert differences["output_label"].largest == steps >= 1


def test_a_last_chunk_of_one_row_is_counted(stable: Server, canary: Server) -> None:
    """サンプルの行と格子の 200 行: 2 つ目の塊は 1 行（/predict/label はそのラベルだけを返す）。"""
    compared = [SAMPLE_ROW, *BOUNDARY[:CHUNK_ROWS]]
    before, after = labels(stable.url, compared), labels(canary.url, compared)
    changed = [row for row, a, b in zip(compared, before, after, strict=True) if a != b]
    verdict = compare(stable.url, canary.url, BOUNDARY[:CHUNK_ROWS])
    assert verdict.rows == CHUNK_ROWS + 1
    assert verdict.label_changes == len(changed) > 0
    assert verdict.changed_rows == changed[:CHANGED_ROWS_SHOWN]


def test_the_sample_rows_alone_are_compared_without_rows_of_the_user(stable: Server, canary: Server) -> None:
    verdict = compare(stable.url, canary.url)
    assert verdict.rows == 1  # 両方のサンプルは同じ Iris の 1 行目
    assert verdict.label_changes == 0  # その行は両方とも setosa
    probability = next(d for d in verdict.differences if d.output == "output_probability")
    assert probability.largest is not None
    assert probability.largest > 0


# --- 比べられないもの -------------------------------------------------------------------------------


def test_a_canary_of_another_input_width_is_not_sent_rows(stable: Server, regressor: Server) -> None:
    sent = posts(stable.url), posts(regressor.url)
    verdict = compare(stable.url, regressor.url, [[6.0, 2.8, 4.8, 1.6]])
    assert verdict.same_inputs is False
    assert verdict.differences == []
    assert verdict.label_changes is None
    assert verdict.changed_rows == []
    assert verdict.same_classes is False  # 分類器と回帰器
    assert verdict.rows == 3  # 2 つのサンプル（幅 4 と幅 3）と与えた 1 行
    assert (verdict.stable_model, verdict.canary_model) == (stable.sha256, regressor.sha256)
    assert (posts(stable.url), posts(regressor.url)) == sent  # 推論は 1 度も頼んでいない


def test_rows_of_the_wrong_width_are_refused_by_the_model(stable: Server, canary: Server) -> None:
    with pytest.raises(ClusterError, match=r"the stable model refused the rows \(400\)") as error:
        compare(stable.url, canary.url, [[1.0, 2.0, 3.0]])
    assert "number of features" in (error.value.hint or "")


def test_an_unreachable_canary_is_a_cluster_error(stable: Server) -> None:
    with pytest.raises(ClusterError, match=r"the canary pod does not answer /metadata"):
        compare(stable.url, f"http://127.0.0.1:{free_port()}", timeout=2)
