"""ロードバランシングの確認: Job のスクリプト、結果の読み方と合否、Job の実行と後片付け、待ち時間の上限。"""

from __future__ import annotations

import subprocess
import sys

import pytest

from mii_cli.errors import ClusterError
from mii_cli.kube import CHECK_LABEL_KEY, CHECK_LABEL_VALUE
from mii_cli.probe import in_cluster
from mii_cli.probe.in_cluster import LbCheckResult
from service.constants import SERVED_BY_HEADER
from tests.fakes.http import HttpStandIn
from tests.fakes.kube_api import FakeApiServer
from tests.fakes.kube_objects import IMAGE, NAMESPACE, job_finishes
from tests.support import load_job

JOB = f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{in_cluster.JOB_NAME}"
URL = "http://10.96.0.10:8000/predict/test"


def script(*args: str) -> LbCheckResult:
    """Job のスクリプトをこのマシンの Python で動かし、その出力を読む。"""
    output = subprocess.run(
        [sys.executable, "-c", in_cluster.SCRIPT, *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return in_cluster.parse_result(output)


def test_the_last_json_line_of_the_log_is_the_result() -> None:
    result = in_cluster.parse_result(
        'starting\n{"requests": 60, "errors": 0, "served_by": {"a": 31, "b": 29}}\n'
    )
    assert (result.requests, result.errors, result.served_by) == (60, 0, {"a": 31, "b": 29})


def test_two_pods_and_no_failure_pass() -> None:
    result = LbCheckResult(url=URL, requests=60, errors=0, served_by={"a": 31, "b": 29})
    assert result.passed
    assert result.detail == "60 in-cluster requests answered by 2 pods (a=31, b=29)"


def test_one_pod_is_not_load_balancing() -> None:
    result = LbCheckResult(url=URL, requests=60, errors=0, served_by={"a": 60})
    assert not result.passed
    assert result.detail == "60 in-cluster requests answered by 1 pods (a=60); need at least 2"


def test_failed_requests_fail_and_are_named() -> None:
    result = LbCheckResult(
        url=URL, requests=5, errors=2, first_errors=["URLError: refused"], served_by={"a": 2, "b": 1}
    )
    assert not result.passed
    assert "2 failed: URLError: refused" in result.detail


def test_a_log_without_a_result_is_one_error_with_the_log() -> None:
    with pytest.raises(ClusterError, match="printed no result") as error:
        in_cluster.parse_result("Traceback\n{not json\n")
    assert "Traceback" in (error.value.details or "")


def test_the_script_counts_the_pods_with_the_standard_library(pod_stand_in: HttpStandIn) -> None:
    result = script(f"{pod_stand_in.url}/predict/test", "3", SERVED_BY_HEADER)
    assert result.served_by == {"model-in-image-0": 3}


def test_the_job_passes_the_url_and_counts_to_the_script() -> None:
    job = in_cluster.check_job(IMAGE, "demo", URL, requests=3)
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["python", "-c", in_cluster.SCRIPT]
    assert command[3:] == [URL, "3", SERVED_BY_HEADER]
    assert job["metadata"]["namespace"] == "demo"
    # Service に選ばれないよう、アプリのラベルを付けない
    assert "app" not in job["spec"]["template"]["metadata"]["labels"]


def test_the_job_comes_from_its_template_with_a_restricted_pod() -> None:
    job = in_cluster.check_job(IMAGE, "demo", URL)
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["containers"][0]["image"] == IMAGE
    # ひな形そのものは書き換えない（呼ぶたびに同じ Job）
    assert in_cluster.check_job(IMAGE, "other", URL)["metadata"]["namespace"] == "other"
    assert job["metadata"]["namespace"] == "demo"


def test_a_load_job_runs_parallel_pods_that_post_a_body() -> None:
    body = '{"data": [[5.1, 3.5, 1.4, 0.2]]}'
    job = load_job(IMAGE, NAMESPACE, "http://10.96.0.10:8000/predict", seconds=30, parallelism=3, body=body)
    assert (job["spec"]["parallelism"], job["spec"]["completions"]) == (3, 3)
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[-1] == body
    assert command[3].endswith(":8000/predict")


def test_results_of_parallel_job_pods_are_added_up() -> None:
    merged = in_cluster.merge_results(
        [
            LbCheckResult(url="u", requests=10, errors=1, first_errors=["e1"], served_by={"a": 4, "b": 5}),
            LbCheckResult(url="u", requests=7, errors=0, served_by={"b": 7}),
        ]
    )
    assert merged == LbCheckResult(
        url="u", requests=17, errors=1, first_errors=["e1"], served_by={"a": 4, "b": 12}
    )


def test_the_check_runs_the_deployed_image_and_cleans_up(deployed_api: FakeApiServer) -> None:
    deployed_api.on_apply.append(
        job_finishes(deployed_api, '{"requests": 4, "errors": 0, "served_by": {"a": 2, "b": 2}}')
    )
    result = in_cluster.run_lb_check(deployed_api.client(), NAMESPACE, requests=4, sleep=lambda _: None)
    assert (result.passed, result.image) == (True, IMAGE)
    job = deployed_api.methods("PATCH", JOB)[0].body
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    assert len(deployed_api.methods("DELETE", JOB)) == 2  # 前回の残りと、終わった後
    assert JOB not in deployed_api.objects


@pytest.mark.parametrize("which", ["check", "load"])
def test_the_job_pods_are_let_through_by_the_checks_policy_only(
    deployed_api: FakeApiServer, which: str
) -> None:
    deployed_api.on_apply.append(
        job_finishes(deployed_api, '{"requests": 4, "errors": 0, "served_by": {"a": 2, "b": 2}}')
    )
    client = deployed_api.client()
    if which == "check":
        name = in_cluster.JOB_NAME
        in_cluster.run_lb_check(client, NAMESPACE, sleep=lambda _: None)
    else:
        job = load_job(IMAGE, NAMESPACE, URL, seconds=1)
        name = job["metadata"]["name"]
        in_cluster.run_job(client, job, sleep=lambda _: None)
    (sent,) = deployed_api.methods("PATCH", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{name}")
    labels = sent.body["spec"]["template"]["metadata"]["labels"]
    # デプロイした NetworkPolicy のうち、Job の Pod を選ぶのは確認用のものだけ
    policies = f"/apis/networking.k8s.io/v1/namespaces/{NAMESPACE}/networkpolicies/"
    selecting = sorted(
        obj["metadata"]["name"]
        for path, obj in deployed_api.objects.items()
        if path.startswith(policies) and obj["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    )
    assert selecting == ["model-in-image-checks"]
    assert labels[CHECK_LABEL_KEY] == CHECK_LABEL_VALUE
