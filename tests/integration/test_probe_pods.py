"""新しい Pod の確かめ（probe/pods.py）を、ループバックの本物の `mii serve`（同梱モデル）に対して。

Pod へのポートフォワードだけを差し替え（`forward`）、その先は本物のサーバー: スモークテストの
すべての確認、/metadata が名乗るモデルの sha256、/predict/test のサンプルの答え。
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from mii_cli.probe.pods import PodCheck, check_pods, check_service
from service.constants import DEFAULT_PORT
from tests.fakes.kube_objects import NAMESPACE, pod
from tests.support import MODEL, free_port


@dataclass(frozen=True)
class Served:
    """本物のサーバーと、それが配信するモデルの記録（イメージのラベルにあるはずの値）。"""

    url: str
    sha256: str
    answer: list[float]


@pytest.fixture(scope="module")
def served(live_server: str) -> Served:
    metadata = httpx.get(f"{live_server}/metadata", timeout=5).json()
    answer = httpx.get(f"{live_server}/predict/test", timeout=5).json()["prediction"]
    sha256 = metadata["model"]["sha256"]
    # サーバーの名乗る sha256 は同梱のモデルのファイルそのもの
    assert sha256 == hashlib.sha256(MODEL.read_bytes()).hexdigest()
    assert isinstance(answer, list)
    assert len(answer) == 3
    return Served(live_server, sha256, answer)


def off_by_a_hundredth(answer: list[float]) -> list[float]:
    return [answer[0] - 0.01, *answer[1:]]


# --- check_service -----------------------------------------------------------------------------


def test_the_right_model_and_sample_answer_pass(served: Served) -> None:
    ok, detail = check_service(served.url, model_sha256=served.sha256, sample_answer=served.answer)
    assert ok, detail
    assert " checks passed, model " in detail
    assert served.sha256[:12] in detail
    assert detail.endswith(", sample answer as built")


def test_another_model_sha256_fails_and_names_both(served: Served) -> None:
    other = hashlib.sha256(b"another model").hexdigest()
    ok, detail = check_service(served.url, model_sha256=other, sample_answer=served.answer)
    assert not ok
    assert detail == f"serves model {served.sha256[:12]}, but the image carries {other[:12]}"


def test_another_sample_answer_fails(served: Served) -> None:
    expected = off_by_a_hundredth(served.answer)
    ok, detail = check_service(served.url, model_sha256=served.sha256, sample_answer=expected)
    assert not ok
    assert detail == (
        f"answers the sample row with {served.answer}, but the image's model answers {expected}"
    )


def test_without_a_sample_answer_the_answer_is_not_compared(served: Served) -> None:
    ok, detail = check_service(served.url, model_sha256=served.sha256, sample_answer=None)
    assert ok, detail
    assert "checks passed" in detail
    assert "sample answer" not in detail


def test_without_a_model_sha256_the_model_is_not_compared(served: Served) -> None:
    ok, detail = check_service(served.url, model_sha256=None, sample_answer=served.answer)
    assert ok, detail
    assert detail.endswith(", sample answer as built")


def test_an_unreachable_server_fails_as_unreachable(served: Served) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    ok, detail = check_service(url, model_sha256=served.sha256, sample_answer=served.answer, timeout=2)
    assert not ok
    assert detail.startswith("unreachable: ")


# --- check_pods ----------------------------------------------------------------------------------


class Forwards:
    """ポートフォワードの代わり: Pod の名前 -> 本物のサーバーの URL。呼ばれた Pod を記録する。"""

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls
        self.calls: list[tuple[Any, str, str, int]] = []

    @contextmanager
    def __call__(self, client: Any, namespace: str, name: str, port: int) -> Iterator[Any]:
        self.calls.append((client, namespace, name, port))

        @dataclass
        class Forwarder:
            url: str

        yield Forwarder(self.urls[name])


# ポートフォワードに渡るだけの API クライアント（check_pods はそれ自身では使わない）
CLIENT: Any = object()


def test_ready_pods_are_checked_one_by_one_through_their_forward(served: Served) -> None:
    forward = Forwards({"model-in-image-new-b": served.url, "model-in-image-new-a": served.url})
    result = check_pods(
        CLIENT,
        NAMESPACE,
        [pod("model-in-image-new-b"), pod("model-in-image-new-a")],
        model_sha256=served.sha256,
        sample_answer=served.answer,
        forward=forward,
    )
    assert [check.pod for check in result.pods] == ["model-in-image-new-a", "model-in-image-new-b"]
    assert all(check.ok for check in result.pods), result.pods
    assert all(check.detail.endswith("sample answer as built") for check in result.pods)
    assert result.passed
    assert result.problem == ""
    assert forward.calls == [
        (CLIENT, NAMESPACE, "model-in-image-new-a", DEFAULT_PORT),
        (CLIENT, NAMESPACE, "model-in-image-new-b", DEFAULT_PORT),
    ]


def test_a_pod_that_is_not_ready_fails_and_the_others_are_still_checked(served: Served) -> None:
    forward = Forwards({"model-in-image-new-a": served.url})
    result = check_pods(
        CLIENT,
        NAMESPACE,
        [pod("model-in-image-new-a"), pod("model-in-image-new-b", ready=False)],
        model_sha256=served.sha256,
        sample_answer=served.answer,
        forward=forward,
    )
    assert result.pods[0].pod == "model-in-image-new-a"
    assert result.pods[0].ok, result.pods[0].detail
    assert result.pods[1] == PodCheck(pod="model-in-image-new-b", ok=False, detail="not ready")
    assert not result.passed
    assert result.problem == "pod model-in-image-new-b: not ready"
    assert [call[2] for call in forward.calls] == ["model-in-image-new-a"]


def test_a_pod_answering_otherwise_than_the_image_is_the_problem(served: Served) -> None:
    forward = Forwards({"model-in-image-new-a": served.url})
    expected = off_by_a_hundredth(served.answer)
    result = check_pods(
        CLIENT,
        NAMESPACE,
        [pod("model-in-image-new-a")],
        model_sha256=served.sha256,
        sample_answer=expected,
        forward=forward,
    )
    assert not result.passed
    assert result.problem.startswith("pod model-in-image-new-a: answers the sample row with ")
    assert str(expected) in result.problem


def test_a_pod_whose_forward_leads_nowhere_is_unreachable(served: Served) -> None:
    forward = Forwards({"model-in-image-new-a": f"http://127.0.0.1:{free_port()}"})
    result = check_pods(
        CLIENT,
        NAMESPACE,
        [pod("model-in-image-new-a")],
        model_sha256=served.sha256,
        sample_answer=served.answer,
        timeout=2,
        forward=forward,
    )
    assert not result.passed
    assert result.problem.startswith("pod model-in-image-new-a: unreachable: ")
