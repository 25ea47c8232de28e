"""新しいモデルを本物のクラスタへ安全に出す: canary と比較、昇格、取り消し、失敗の自動の戻し、履歴。

どの手順もクラスタ内の Job から Service へ負荷を流しながら行い、失敗したリクエストが 0 件であることを
確かめる。新しいモデルは同じデータを別の設定（乱数の種・検証の割合）で学習し直したもの: 同じ入力と
クラスで、確率が違い、境目の近くではラベルも変わる。戻されるべきモデルは 2 つ: 起動できない
（モデルのファイルが無い）イメージと、Ready になるがサンプルの答えがイメージの記録と違うイメージ。

負荷の Job は CPU を 50m に絞る: 2 コアのノードで、安定版 2 Pod・canary 1 Pod・ローリングアップデートの
追加の 1 Pod が同時に入り、HPA が負荷で Pod を増やさない大きさ。
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from mii_cli.errors import CheckFailed
from tests.support import MODELS, BackgroundLoad, E2eSettings, Mii, served_models, wait_for_running_job

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

# 手順は 30 秒ほどで終わる（CI で測った最長 28 秒）: その 1.5 倍を負荷が覆う
LOAD_SECONDS = 45
# versicolor と virginica の境目の近くの格子: 学習し直したモデルとはいくつかの行でラベルが変わる
BOUNDARY = [
    [sepal_length, sepal_width, round(4.5 + 0.1 * i, 1), round(1.4 + 0.1 * j, 1)]
    for sepal_length in (5.5, 6.0, 6.5)
    for sepal_width in (2.5, 2.8, 3.1)
    for i in range(8)
    for j in range(6)
]


@pytest.fixture(scope="module")
def new_model(
    tmp_path_factory: pytest.TempPathFactory, docker_client: Any, made_images: list[str]
) -> dict[str, str]:
    """別の設定で学習し直したモデルを焼き込んだイメージ（タグとモデルの sha256）。"""
    from mii_cli.commands.requests import build_request
    from mii_cli.image.build import build_image
    from mii_cli.model.train import train

    trained = train(tmp_path_factory.mktemp("retrained"), seed=7, test_size=0.3)
    built = build_image(
        build_request(model=Path(trained.model_path), labels=Path(trained.label_path)), client=docker_client
    )
    made_images.append(built.unique_tag)
    return {"image": built.unique_tag, "sha256": trained.model_sha256}


def derived_image(docker_client: Any, base: str, lines: str, made_images: list[str], tag: str) -> str:
    """`FROM base` に行を足したイメージ（戻されるべきモデルを作る）。"""
    dockerfile = f"FROM {base}\n{lines}\n".encode()
    built, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile), rm=True, pull=False)
    repository = base.rpartition(":")[0]
    reference = f"{repository}:{base.rpartition(':')[2].split('-')[0]}-{tag}-{built.id[7:19]}"
    built.tag(*reference.rsplit(":", 1))
    made_images.append(reference)
    return reference


@pytest.fixture(scope="module")
def rows_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rows") / "boundary.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sepal_length", "sepal_width", "petal_length", "petal_width"])
        writer.writerows(BOUNDARY)
    return path


@pytest.fixture(scope="module")
def stable_sha(deployed: dict[str, Any]) -> str:
    sha = (deployed.get("model") or {}).get("model_sha256")
    assert sha, deployed.get("model")
    return str(sha)


@contextmanager
def checked_load(
    e2e: E2eSettings, cluster: tuple[Any, Any], seconds: float, **options: Any
) -> Iterator[BackgroundLoad]:
    """`seconds` 秒 Service へ流す負荷（50m の Job）。終わりに失敗が 0 件であることを確かめる。"""
    running = BackgroundLoad(cluster[0], e2e.namespace, seconds=seconds, cpu_limit="50m", **options)
    with running:
        wait_for_running_job(cluster[0], e2e.namespace, running.name)
        yield running
    result = running.result()
    assert result.errors == 0, result.first_errors
    assert result.requests > 50


@pytest.fixture
def load(e2e: E2eSettings, cluster: tuple[Any, Any], deployed: dict[str, Any]) -> Iterator[BackgroundLoad]:
    """この手順のあいだ Service へ流す負荷（`/predict/test`）。"""
    with checked_load(e2e, cluster, LOAD_SECONDS) as running:
        yield running


def test_a_new_model_goes_out_as_a_canary_with_a_verdict(
    e2e: E2eSettings,
    mii: Mii,
    cluster: tuple[Any, Any],
    new_model: dict[str, str],
    stable_sha: str,
    rows_file: Path,
    load: BackgroundLoad,
) -> None:
    result = mii.json(
        "deploy", "-n", e2e.namespace, "--image", new_model["image"], "--canary",
        "--compare-rows", str(rows_file), "--timeout", "300", *e2e.sizing_args,
    )  # fmt: skip
    verdict = result["verdict"]
    assert (verdict["stable_model"], verdict["canary_model"]) == (stable_sha, new_model["sha256"])
    assert verdict["rows"] == len(BOUNDARY) + 1
    assert verdict["label_changes"] > 0
    assert verdict["same_inputs"] is True
    assert verdict["same_classes"] is True
    largest = {d["output"]: d["largest"] for d in verdict["differences"]}
    assert largest["output_probability"] > 0
    assert result["pods_check"]["passed"] is True
    status = mii.json("status", "-n", e2e.namespace)
    assert status["canary"]["model_sha256"] == new_model["sha256"]
    assert status["deployment"]["model_sha256"] == stable_sha
    assert served_models(cluster[0], e2e.namespace) == {stable_sha, new_model["sha256"]}
    # mii verdict: 両方の側の Pod の /metrics を API サーバーの Pod のプロキシ越しに読み、同じ行で比べ直す
    numbers = mii.json("verdict", "-n", e2e.namespace, "--compare-rows", str(rows_file))
    assert numbers["stable"]["unread"] == numbers["canary"]["unread"] == []
    assert numbers["stable"]["traffic"]["requests"] > 0
    assert numbers["canary"]["traffic"]["requests"] > 0
    assert numbers["canary"]["traffic"]["errors"] == 0
    assert numbers["stable"]["traffic"]["p99_ms"] is not None
    assert numbers["answers"]["label_changes"] == verdict["label_changes"]
    assert numbers["largest_difference"] == pytest.approx(max(v for v in largest.values() if v is not None))
    # 閾値で判定: この canary は境界の行でラベルを変えるので、ラベルの変化 0 を超え、終了コード 6
    judged = mii(
        "verdict", "-n", e2e.namespace, "--compare-rows", str(rows_file), "--min-requests", "1", "--json"
    )
    assert judged.exit_code == CheckFailed.exit_code, judged.output
    judgement = json.loads(judged.stdout)["judgement"]
    assert "max-label-changes" in [finding["threshold"] for finding in judgement["findings"]]
    assert judgement["passed"] is False


def test_promote_rolls_every_pod_to_the_new_model(
    e2e: E2eSettings, mii: Mii, cluster: tuple[Any, Any], new_model: dict[str, str], load: BackgroundLoad
) -> None:
    result = mii.json("promote", "-n", e2e.namespace, "--timeout", "300")
    assert result["canary_removed"] is True
    assert result["model_sha256"] == new_model["sha256"]
    assert served_models(cluster[0], e2e.namespace) == {new_model["sha256"]}
    assert mii.json("status", "-n", e2e.namespace)["canary"] is None


def test_rollback_takes_it_back_to_the_previous_model(
    e2e: E2eSettings, mii: Mii, cluster: tuple[Any, Any], stable_sha: str, load: BackgroundLoad
) -> None:
    result = mii.json("rollback", "-n", e2e.namespace, "--timeout", "300")
    assert result["canary_removed"] is False
    assert result["revision"]["model_sha256"] == stable_sha
    assert served_models(cluster[0], e2e.namespace) == {stable_sha}


@pytest.mark.parametrize(
    ("lines", "tag", "failure"),
    [
        # モデルのファイルが無い: サーバーは起動に失敗し、Pod は Ready にならない
        ("ENV MODEL_FILEPATH=/model_in_image_pattern/models/absent.onnx", "unready", "keeps crashing"),
        # Ready になるが、イメージの記録（サンプルの答え）と違う答えを返す
        ('LABEL io.mii.model.sample-answer="[0.5, 0.25, 0.25]"', "wronganswer", "failed the check"),
    ],
    ids=["never-ready", "fails-the-check"],
)
def test_a_bad_model_is_rolled_back_and_the_old_one_keeps_serving(
    e2e: E2eSettings,
    mii: Mii,
    cluster: tuple[Any, Any],
    docker_client: Any,
    image: str,
    made_images: list[str],
    stable_sha: str,
    lines: str,
    tag: str,
    failure: str,
    load: BackgroundLoad,
) -> None:
    bad = derived_image(docker_client, image, lines, made_images, tag)
    before = mii.json("status", "-n", e2e.namespace)["deployment"]["revision"]
    result = mii("deploy", "-n", e2e.namespace, "--image", bad, "--timeout", "240", *e2e.sizing_args)
    assert result.exit_code != 0, result.output
    (error,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert failure in error
    assert "; rolled back to revision " in error
    assert served_models(cluster[0], e2e.namespace) == {stable_sha}
    status = mii.json("status", "-n", e2e.namespace)
    assert status["deployment"]["model_sha256"] == stable_sha
    assert status["deployment"]["revision"] > before  # 戻した版は次の番号をもらう


def test_history_lists_the_revisions_with_their_model_sha256(
    e2e: E2eSettings, mii: Mii, new_model: dict[str, str], stable_sha: str
) -> None:
    history = mii.json("history", "-n", e2e.namespace)
    shas = [revision["model_sha256"] for revision in history["stable"]]
    assert {stable_sha, new_model["sha256"]} <= set(shas)
    (current,) = [revision for revision in history["stable"] if revision["current"]]
    assert current["model_sha256"] == stable_sha
    assert history["canary"] == []


# --- 自動: mii deploy --analysis ----------------------------------------------------------------------
# 安定版 2 Pod の横で canary は 1・2 Pod の 2 段。区間は 20 秒、負荷は推論（POST /predict）を Service へ。
# 負荷の Job は 50m でも 1 区間に canary へ数十件は届く: 判定に要る数をそれより小さく。負荷の長さは、
# 取り消し（canary を出して比べ、1 区間、消す: 約 1 分）と昇格（2 区間と昇格: 約 2 分半）を覆う

ANALYSIS = ("--analysis", "--interval", "20", "--min-requests", "15", "--timeout", "240")
ROW = json.dumps({"data": [[6.1, 2.8, 4.7, 1.2]]})


def analysis_of(result: Any) -> dict[str, Any]:
    """`mii deploy --analysis --json` の出力の分析の記録（成功でも失敗でも `analysis` の下）。"""
    return dict(json.loads(result.stdout)["analysis"])


def test_the_analysis_promotes_a_rebuilt_image_of_the_same_model(
    e2e: E2eSettings,
    mii: Mii,
    cluster: tuple[Any, Any],
    docker_client: Any,
    image: str,
    made_images: list[str],
    rows_file: Path,
    stable_sha: str,
) -> None:
    rebuilt = derived_image(
        docker_client, image, 'LABEL io.mii.e2e.rebuilt="same model"', made_images, "same"
    )
    with checked_load(e2e, cluster, 180, path="/predict", body=ROW):
        result = mii(
            "deploy", "-n", e2e.namespace, "--image", rebuilt, "--compare-rows", str(rows_file),
            *ANALYSIS, *e2e.sizing_args, "--json",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    analysis = analysis_of(result)
    assert analysis["outcome"] == "promoted", analysis
    assert [(step["canary_pods"], step["passed"]) for step in analysis["steps"]] == [(1, True), (2, True)]
    assert analysis["promotion"]["canary_removed"] is True
    assert served_models(cluster[0], e2e.namespace) == {stable_sha}
    status = mii.json("status", "-n", e2e.namespace)
    assert status["canary"] is None
    assert status["deployment"]["tag"] == rebuilt.rsplit(":", 1)[1]
    assert mii.json("history", "-n", e2e.namespace)["analyses"][0]["outcome"] == "promoted"


def zoo_image(
    tmp_path_factory: pytest.TempPathFactory,
    docker_client: Any,
    made_images: list[str],
    make: Callable[[Path, Path], Path],
    name: str,
) -> dict[str, str]:
    """同梱のモデルを tests/zoo.py の関数で書き換えたモデルのイメージ（ラベルは同梱のもの）。"""
    from mii_cli.commands.requests import build_request
    from mii_cli.image.build import build_image

    path = make(MODELS / "iris_svc.onnx", tmp_path_factory.mktemp(name) / f"iris_svc_{name}.onnx")
    built = build_image(build_request(model=path, labels=MODELS / "label.json"), client=docker_client)
    made_images.append(built.unique_tag)
    return {"image": built.unique_tag}


@pytest.fixture(scope="module")
def slow_model(
    tmp_path_factory: pytest.TempPathFactory, docker_client: Any, made_images: list[str]
) -> dict[str, str]:
    """同じ答えで 1 行あたり数 ms 重いモデル（本物の ONNX の計算、tests/zoo.py）のイメージ。"""
    from tests.zoo import slowed_model

    return zoo_image(tmp_path_factory, docker_client, made_images, slowed_model, "slow")


@pytest.mark.parametrize("which", ["slow", "changes-labels"])
def test_the_analysis_removes_a_worse_canary_and_users_see_no_failure(
    e2e: E2eSettings,
    mii: Mii,
    cluster: tuple[Any, Any],
    slow_model: dict[str, str],
    new_model: dict[str, str],
    rows_file: Path,
    stable_sha: str,
    which: str,
) -> None:
    # 遅いモデルは同じ答え（比べる行でラベルが変わらない）、学習し直したモデルは境目の行でラベルが変わる
    candidate, threshold = (
        (slow_model["image"], "max-latency-ratio")
        if which == "slow"
        else (new_model["image"], "max-label-changes")
    )
    before = mii.json("status", "-n", e2e.namespace)["deployment"]["revision"]
    with checked_load(e2e, cluster, 100, path="/predict", body=ROW):
        result = mii(
            "deploy", "-n", e2e.namespace, "--image", candidate, "--compare-rows", str(rows_file),
            *ANALYSIS, *e2e.sizing_args, "--json",
        )  # fmt: skip
        assert result.exit_code == CheckFailed.exit_code, result.output
    (error,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert f"breaches --{threshold}" in error
    assert error.endswith("; removed the canary")
    analysis = analysis_of(result)
    assert analysis["outcome"] == "rolled back"
    (step,) = analysis["steps"]
    assert step["findings"][0]["threshold"] == threshold
    if which == "slow":
        assert step["canary"]["p50_ms"] > 1.5 * step["stable"]["p50_ms"]
    assert served_models(cluster[0], e2e.namespace) == {stable_sha}
    status = mii.json("status", "-n", e2e.namespace)
    assert status["canary"] is None
    assert status["deployment"]["revision"] == before  # 安定版には触れない


# --- 影（shadow）: 利用者に答えず、安定版の Pod が写した生のリクエストで試す --------------------------

# 失敗するモデル（tests/zoo.failing_model）は、どれかの値が 7.0 を超える行で実行時の誤りになる
FAILING_ROW = json.dumps({"data": [[7.7, 3.0, 6.1, 2.3]]})
# 写しが数えられるまで負荷を流す秒数（写しの入りを待つ間も含めて負荷が覆う）
SHADOW_LOAD_SECONDS = 120


@pytest.fixture(scope="module")
def failing_model(
    tmp_path_factory: pytest.TempPathFactory, docker_client: Any, made_images: list[str]
) -> dict[str, str]:
    """大きな値の行で ONNX Runtime の実行が失敗し、ほかの行では同じ答えのモデルのイメージ。"""
    from tests.zoo import failing_model as fails_on_large_values

    return zoo_image(tmp_path_factory, docker_client, made_images, fails_on_large_values, "fails")


def stable_pods(mii: Mii, namespace: str) -> dict[str, int]:
    """安定版の Pod の名前と再起動の回数（canary・影の Pod は除く）。"""
    status = mii.json("status", "-n", namespace)
    return {
        pod["name"]: pod["restarts"]
        for pod in status["pods"]
        if not pod.get("canary") and not pod["name"].startswith("model-in-image-shadow")
    }


def test_a_failing_shadow_has_its_errors_counted_and_users_see_none(
    e2e: E2eSettings,
    mii: Mii,
    cluster: tuple[Any, Any],
    failing_model: dict[str, str],
    stable_sha: str,
) -> None:
    before = stable_pods(mii, e2e.namespace)
    with (
        checked_load(e2e, cluster, SHADOW_LOAD_SECONDS, path="/predict", body=ROW, name="mii-load-ok"),
        checked_load(
            e2e, cluster, SHADOW_LOAD_SECONDS, path="/predict", body=FAILING_ROW, name="mii-load-big"
        ),
    ):
        result = mii(
            "deploy", "-n", e2e.namespace, "--image", failing_model["image"], "--shadow",
            "--mirror-percent", "20", "--timeout", "240", *e2e.sizing_args, "--json",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        mirroring = json.loads(result.stdout)["mirroring"]
        assert mirroring["percent"] == 20
        assert set(mirroring["pods"]) == set(before)
        # 写しが数えられるのを待つ（両方の負荷から、写した分だけ）
        deadline = time.monotonic() + 60
        while True:
            verdict = mii.json("verdict", "-n", e2e.namespace)
            mirror = verdict["mirror"]
            if mirror["compared"] >= 10 and mirror["errors_by_status"].get("500", 0) >= 10:
                break
            assert time.monotonic() < deadline, mirror
            time.sleep(3)
        judged = mii("verdict", "-n", e2e.namespace, "--judge", "--min-requests", "5", "--json")
    # 影の誤り（大きな値の行の 500）は数えられ、ほかの写しは同じ答え（ラベルも値も）
    assert mirror["percent"] == 20
    assert mirror["mirrored"] >= mirror["compared"] + mirror["errors"]
    assert mirror["label_changes"] == 0
    assert mirror["largest_difference"] == 0.0
    assert mirror["agreed"] == mirror["compared"]
    assert verdict["shadow"]["traffic"]["errors"] > 0
    assert verdict["stable"]["traffic"]["errors"] == 0
    assert judged.exit_code == CheckFailed.exit_code, judged.output
    (error,) = [line for line in judged.output.splitlines() if line.startswith("Error:")]
    assert "the shadow breaches --max-error-rate" in error
    # 利用者には誤りが無く（checked_load が確かめた）、安定版の Pod は起き直さず、答えるのは安定版のモデルだけ
    assert stable_pods(mii, e2e.namespace) == before
    assert served_models(cluster[0], e2e.namespace) == {stable_sha}
    removed = mii("rollback", "-n", e2e.namespace)
    assert removed.exit_code == 0, removed.output
    assert "removed the shadow" in removed.output
    assert mii.json("status", "-n", e2e.namespace)["canary"] is None
    assert stable_pods(mii, e2e.namespace) == before
    gone = mii("verdict", "-n", e2e.namespace)
    assert gone.exit_code != 0
    assert "no canary or shadow" in gone.output
