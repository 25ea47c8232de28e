"""結果の表（CLI の層）: スモークテスト、負荷試験、`mii status`、`mii doctor`、Pod の表。"""

from __future__ import annotations

from dataclasses import replace

from rich.console import Console, RenderableType

from mii_cli.kube.pods import PodRow
from mii_cli.kube.revisions import Revision
from mii_cli.kube.status import ClusterStatus, DeploymentState, HpaState, NetworkPolicyState, ServiceState
from mii_cli.probe.load_test import Collector, LoadTestOptions, LoadTestResult, summarize
from mii_cli.probe.smoke_test import CheckResult, SmokeReport
from mii_cli.ui import tables
from mii_cli.workflows.doctor import DoctorCheck, DoctorReport
from mii_cli.workflows.release import History


def text(renderable: RenderableType, width: int = 160) -> str:
    """描いたものを文字列にする（行の折り返しをならす）。"""
    console = Console(width=width, record=True)
    console.print(renderable)
    return console.export_text()


def check(name: str, ok: bool, detail: str) -> CheckResult:
    return CheckResult(
        name=name, method="GET", path="/" + name, expected="x", ok=ok, detail=detail, elapsed_ms=1.234
    )


def test_the_smoke_table_has_a_row_per_check_and_a_verdict_per_row() -> None:
    report = SmokeReport("http://x", [check("a", True, "[0.97, 0.02]"), check("b", False, "bad")], ["pod-a"])
    shown = text(tables.smoke_table(report))
    assert "Smoke test of http://x: 1/2 passed" in " ".join(shown.split())
    assert "[0.97, 0.02]" in shown
    assert tuple(word for word in ("PASS", "FAIL") if word in shown) == ("PASS", "FAIL")
    assert "served by: pod-a" in shown
    assert "1.2" in shown


def _load_result(p99: float) -> LoadTestResult:
    collector = Collector()
    collector.times_ms = [1.0] * 2900 + [p99] * 100
    collector.served_by.update({"pod-a": 3000})
    options = LoadTestOptions(url="http://127.0.0.1:8000", duration_s=3.0, users=5)
    return summarize(options, collector, 3.0)


def test_the_load_test_table_shows_the_measures_against_the_targets() -> None:
    shown = text(tables.load_test_table(_load_result(p99=1.0)))
    assert "1,000.0" in shown
    assert "< 100 ms" in shown
    assert "pod-a (3,000)" in shown
    assert "FAIL" not in shown


def test_the_load_test_table_marks_a_missed_target() -> None:
    shown = text(tables.load_test_table(_load_result(p99=150.0)))
    (p99_row,) = [line for line in shown.splitlines() if "p99 ms" in line]
    assert "150.0" in p99_row
    assert "FAIL" in p99_row


def pods() -> list[PodRow]:
    return [
        PodRow(name="p-0", ready=True, state="Running", restarts=1, node="node-1", ip="10.0.0.1", age="2h"),
        PodRow(name="p-1", ready=False, state="ContainerCreating", restarts=0, node=None, ip=None, age="5s"),
    ]


POLICIES = [
    NetworkPolicyState(
        name="model-in-image", pod_selector="app=model-in-image", ingress="8000/TCP", egress="none"
    ),
    NetworkPolicyState(
        name="model-in-image-checks",
        pod_selector="app.kubernetes.io/component=check",
        ingress="none",
        egress="app=model-in-image:8000/TCP",
    ),
]


def status(hpa: HpaState | None, policies: list[NetworkPolicyState] = POLICIES) -> ClusterStatus:
    return ClusterStatus(
        namespace="model-in-image",
        deployment=DeploymentState(
            name="model-in-image", image="img:1", desired=2, ready=2, updated=2, available=2
        ),
        pods=pods(),
        service=ServiceState(
            name="model-in-image", type="ClusterIP", cluster_ip="10.96.0.10", ports=["8000/TCP"]
        ),
        hpa=hpa,
        network_policies=policies,
    )


def test_the_status_view_shows_the_deployment_pods_service_and_hpa() -> None:
    hpa = HpaState(
        name="model-in-image",
        min=2,
        max=10,
        current_replicas=2,
        desired_replicas=3,
        cpu_current=63,
        cpu_target=50,
    )
    shown = text(tables.status_view(status(hpa)))
    assert "ready 2/2" in shown
    assert "p-1" in shown
    assert "ContainerCreating" in shown
    assert "ClusterIP 10.96.0.10 8000/TCP" in shown
    assert "replicas 2 → 3 (min 2, max 10), cpu 63% / 50%" in shown


def test_a_new_hpa_without_metrics_does_not_read_as_scaling_to_zero() -> None:
    # 本物の HPA は最初の計測まで desiredReplicas が 0、currentMetrics が無い
    hpa = HpaState(
        name="model-in-image",
        min=2,
        max=10,
        current_replicas=2,
        desired_replicas=0,
        cpu_current=None,
        cpu_target=50,
    )
    shown = text(tables.status_view(status(hpa)))
    assert "replicas 2 (min 2, max 10)" in shown
    assert "→ 0" not in shown
    assert "<unknown> (no metrics yet)" in shown


def test_a_hpa_the_controller_has_not_written_yet_shows_dashes_not_none() -> None:
    # 作られた直後の本物の HPA には status.currentReplicas が無い
    hpa = HpaState(
        name="model-in-image",
        min=None,
        max=10,
        current_replicas=None,
        desired_replicas=None,
        cpu_current=None,
        cpu_target=None,
    )
    shown = text(tables.status_view(status(hpa)))
    assert "replicas - (min -, max 10), cpu <unknown> (no metrics yet) / -" in shown
    assert "None" not in shown


def test_the_status_view_shows_the_tag_and_the_digest_of_the_image() -> None:
    digest = "sha256:" + "c" * 64
    pinned = f"127.0.0.1:5000/model-in-image:0.1.0-abc-def@{digest}"
    state = DeploymentState(name="model-in-image", image=pinned, desired=2, ready=2, updated=2, available=2)
    shown = text(tables.status_view(replace(status(None), deployment=state))).splitlines()
    assert "Deployment model-in-image: ready 2/2, updated 2, image 127.0.0.1:5000/model-in-image" in shown
    assert shown[2:4] == ["  tag 0.1.0-abc-def", f"  digest {digest}"]
    by_tag = text(tables.status_view(status(None))).splitlines()
    assert by_tag[1:4] == [
        "Deployment model-in-image: ready 2/2, updated 2, image img",
        "  tag 1",
        "  digest none (by tag)",
    ]


def test_missing_objects_are_marked_missing() -> None:
    empty = ClusterStatus(
        namespace="model-in-image", deployment=None, pods=[], service=None, hpa=None, network_policies=[]
    )
    shown = text(tables.status_view(empty))
    assert shown.count("missing") == 4
    assert "NetworkPolicy missing" in shown
    assert "network plugin" not in shown


def test_the_status_view_shows_each_network_policy_and_that_enforcement_needs_the_plugin() -> None:
    lines = text(tables.status_view(status(None))).splitlines()
    assert "NetworkPolicy model-in-image: pods app=model-in-image, ingress 8000/TCP, egress none" in lines
    assert (
        "NetworkPolicy model-in-image-checks: pods app.kubernetes.io/component=check, ingress none, "
        "egress app=model-in-image:8000/TCP" in lines
    )
    note = (
        "  enforced only if the cluster's network plugin supports NetworkPolicy "
        "(e.g. minikube start --cni=calico)"
    )
    # ポリシーの行の後に 1 度だけ
    assert [line for line in lines if line][-1] == note
    assert lines.count(note) == 1


def test_a_policy_for_all_pods_with_brackets_is_drawn_as_text() -> None:
    policy = NetworkPolicyState(name="p", pod_selector="", ingress="[x]", egress="unrestricted")
    shown = text(tables.status_view(status(None, [policy])))
    assert "NetworkPolicy p: pods all pods, ingress [x], egress unrestricted" in shown


def test_the_rollout_pod_table_leaves_out_the_age() -> None:
    shown = text(tables.pod_table(pods(), name_header="pod", age=False))
    assert shown.split()[:5] == ["pod", "ready", "state", "restarts", "node"]
    assert "2h" not in shown


def test_the_doctor_table_gives_a_hint_only_for_failed_checks() -> None:
    report = DoctorReport(
        checks=[
            DoctorCheck(name="docker", ok=True, detail="Docker engine 28", hint="never shown", required=True),
            DoctorCheck(
                name="base-image", ok=False, detail="missing", hint="use --base-image", required=True
            ),
            DoctorCheck(name="wrk", ok=False, detail="not on PATH", hint="apt-get install wrk"),
        ]
    )
    rows = [line for line in text(tables.doctor_table(report)).splitlines() if "│" in line]
    shown = "\n".join(rows)
    assert "never shown" not in shown
    assert "Hint: use --base-image" in shown
    assert [row.split("│")[2].strip() for row in rows if row.split("│")[1].strip()] == ["ok", "FAIL", "warn"]


def revision(deployment: str, number: int, image: str, *, current: bool) -> Revision:
    return Revision(
        deployment=deployment,
        number=number,
        image=image,
        model_file="iris_svc.onnx",
        model_sha256=f"{number}" * 64,
        image_tag=None,
        image_digest=None,
        created="2026-12-05T11:50:03Z",
        replicas=2 if current else 0,
        ready=2 if current else 0,
        current=current,
    )


def test_the_history_reads_in_an_80_column_terminal() -> None:
    long_image = "127.0.0.1:5000/model-in-image:0.1.0-33715c8bad0a-4817bc07bfbb@sha256:" + "d" * 64
    history = History(
        namespace="model-in-image",
        stable=[
            revision("model-in-image", 1, "model-in-image:0.1.0-0f0af8a3bdef-860c7ac62aad", current=False),
            revision("model-in-image", 2, long_image, current=True),
        ],
        canary=[revision("model-in-image-canary", 1, long_image, current=True)],
    )
    shown = text(tables.history_table(history), width=80)
    lines = shown.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert [line.strip() for line in lines if line.startswith("model-in-image")] == [
        "model-in-image",
        "model-in-image-canary",
    ]
    # 短い列は切れず、長い参照は折り返す（ダイジェストは先頭 12 桁）
    assert "2026-12-05 11:50" in shown
    assert "222222222222" in shown
    assert "iris_svc.onnx" in shown
    assert "…" not in shown
    assert "".join(shown.split()).count("@sha256:" + "d" * 12 + "iris") == 0  # 折り返しは image の列の中
    assert "d" * 13 not in "".join(shown.split())


def test_the_mirror_table_shows_dashes_for_what_is_not_known_yet() -> None:
    from mii_cli.probe.mirror import MirrorReading, mirror_numbers

    shown = " ".join(text(tables.mirror_table(mirror_numbers(MirrorReading(percents=[10.0, 0.0])))).split())
    assert "mirroring -" in shown  # Pod が食い違う（切り替えの途中）
    assert "shadow errors 0 (-): none" in shown
    assert "shadow round trip p50 / p99 - / - ms" in shown


def test_the_shadow_verdict_view_shows_both_sides_the_mirror_and_the_judgement() -> None:
    from mii_cli.probe.analysis import Judgement, Thresholds
    from mii_cli.probe.mirror import MirrorReading, mirror_numbers
    from mii_cli.probe.traffic import Traffic
    from mii_cli.workflows.verdict import ShadowVerdict, Side

    verdict = ShadowVerdict(
        namespace="n",
        stable=Side("model-in-image", ["a"], Traffic(200, 0, 0.0, 0.8, 1.0), unread=["b: timed out"]),
        shadow=Side("model-in-image-shadow", ["s"], Traffic(20, 1, 0.05, 0.9, 1.2)),
        mirror=mirror_numbers(MirrorReading(percents=[10.0], answers={"200": 19.0, "[500]": 1.0})),
        judgement=Judgement(Thresholds(), undecided="too few requests to judge: stable 200, shadow 20"),
    )
    shown = " ".join(text(tables.verdict_view(verdict)).split())
    assert "model-in-image-shadow 1 20 5.00%" in shown
    assert "mirroring 10%" in shown
    assert "[500]: 1" in shown  # 角括弧は rich の書式にならない
    assert "not read: b: timed out" in shown
    assert "Judged against" in shown
    assert "not judged" in shown
