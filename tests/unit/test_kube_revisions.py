"""Deployment の版: ReplicaSet から読む履歴、前の版への戻し（`kubectl rollout undo` と同じ JSON Patch）。

API サーバーの代役の Deployment コントローラ（tests/fakes/kube_objects.become_ready）は、本物と同じく
テンプレートが変わらなければ版を増やさず、前の版のテンプレートに戻ればその ReplicaSet に次の番号を付ける
（e2e の test_fake_api_matches_the_real_one が本物と突き合わせる）。
"""

from __future__ import annotations

import pytest

from mii_cli.errors import ConfigError
from mii_cli.kube import APP_NAME, MODEL_SHA256_ANNOTATION
from mii_cli.kube import revisions as rev
from mii_cli.kube.apply import apply_all
from mii_cli.kube.render import model_annotations, render
from tests.fakes.kube_api import FakeApiServer
from tests.fakes.kube_objects import NAMESPACE, become_ready

DEPLOYMENT = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{APP_NAME}"


@pytest.fixture
def cluster(fake_api: FakeApiServer) -> FakeApiServer:
    fake_api.on_apply.append(become_ready(fake_api))
    return fake_api


def deploy(fake: FakeApiServer, image: str, sha: str | None = None) -> None:
    notes = model_annotations(model_file="m.onnx", model_sha256=sha, image_tag=image, image_digest=None)
    apply_all(fake.client(), render(image, NAMESPACE, annotations=notes))


def test_each_new_template_is_a_new_revision_and_the_same_one_is_not(cluster: FakeApiServer) -> None:
    deploy(cluster, "m:1", "a" * 64)
    deploy(cluster, "m:1", "a" * 64)
    deploy(cluster, "m:2", "b" * 64)
    found = rev.revisions(cluster.client(), NAMESPACE, APP_NAME)
    assert [(r.number, r.image, r.model_sha256, r.current) for r in found] == [
        (1, "m:1", "a" * 64, False),
        (2, "m:2", "b" * 64, True),
    ]
    assert found[1].replicas == 4
    assert found[0].replicas == 0
    assert found[1].model_file == "m.onnx"


def test_rollback_goes_to_the_previous_revision_which_gets_the_next_number(cluster: FakeApiServer) -> None:
    deploy(cluster, "m:1", "a" * 64)
    deploy(cluster, "m:2", "b" * 64)
    target = rev.rollback(cluster.client(), NAMESPACE, APP_NAME)
    assert (target.number, target.image) == (1, "m:1")
    (patch,) = cluster.methods("PATCH", DEPLOYMENT)[-1:]
    assert patch.headers["Content-Type"] == rev.JSON_PATCH
    template = patch.body[0]["value"]
    assert rev.TEMPLATE_HASH_LABEL not in template["metadata"]["labels"]
    assert template["metadata"]["annotations"][MODEL_SHA256_ANNOTATION] == "a" * 64
    after = rev.revisions(cluster.client(), NAMESPACE, APP_NAME)
    # 本物と同じく: 戻した版の ReplicaSet が 3 番になり、2 番は残る
    assert [(r.number, r.image, r.current) for r in after] == [(2, "m:2", False), (3, "m:1", True)]


def test_rollback_to_an_older_revision(cluster: FakeApiServer) -> None:
    for image in ("m:1", "m:2", "m:3"):
        deploy(cluster, image)
    assert rev.rollback(cluster.client(), NAMESPACE, APP_NAME, to_revision=1).image == "m:1"
    assert rev.revision_of(rev.read_deployment(cluster.client(), NAMESPACE, APP_NAME)) == 4


def test_nothing_to_roll_back_to_on_a_first_deploy(cluster: FakeApiServer) -> None:
    deploy(cluster, "m:1")
    with pytest.raises(ConfigError, match="no earlier revision"):
        rev.rollback(cluster.client(), NAMESPACE, APP_NAME)


def test_rolling_back_to_the_current_or_a_missing_revision_is_refused(cluster: FakeApiServer) -> None:
    deploy(cluster, "m:1")
    deploy(cluster, "m:2")
    with pytest.raises(ConfigError, match="already runs revision 2"):
        rev.rollback(cluster.client(), NAMESPACE, APP_NAME, to_revision=2)
    with pytest.raises(ConfigError, match="no revision 9") as error:
        rev.rollback(cluster.client(), NAMESPACE, APP_NAME, to_revision=9)
    assert "1, 2" in (error.value.hint or "")


def test_no_deployment_has_no_revisions_and_cannot_roll_back(fake_api: FakeApiServer) -> None:
    assert rev.revisions(fake_api.client(), NAMESPACE, APP_NAME) == []
    with pytest.raises(ConfigError, match="no deployment"):
        rev.rollback(fake_api.client(), NAMESPACE, APP_NAME)


def test_the_template_hash_names_the_current_revision(cluster: FakeApiServer) -> None:
    deploy(cluster, "m:1")
    first = rev.template_hash(cluster.client(), NAMESPACE, APP_NAME)
    deploy(cluster, "m:2")
    second = rev.template_hash(cluster.client(), NAMESPACE, APP_NAME)
    assert first
    assert second
    assert first != second
    pods = [o for p, o in cluster.objects.items() if "/pods/" in p]
    assert {o["metadata"]["labels"]["pod-template-hash"] for o in pods} == {second}


def test_delete_deployment_says_whether_there_was_one(cluster: FakeApiServer) -> None:
    deploy(cluster, "m:1")
    assert rev.delete_deployment(cluster.client(), NAMESPACE, APP_NAME) is True
    assert rev.delete_deployment(cluster.client(), NAMESPACE, APP_NAME) is False
