"""コマンドが共有するオプションの型（Annotated）と選択肢。

既定値は 1 か所で決める: Namespace は `mii_cli.kube.NAMESPACE`、MII_* の設定から埋める値は
`mii_cli.settings` の `fill` とその組み立て関数（ここでのオプションの既定値 None は「設定に任せる」）。
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from mii_cli.errors import ConfigError
from mii_cli.probe.analysis import Thresholds


class LogLevel(str, Enum):
    """ログレベルの選択肢。"""

    critical = "CRITICAL"
    error = "ERROR"
    warning = "WARNING"
    info = "INFO"
    debug = "DEBUG"


class LogFormat(str, Enum):
    """ログ形式の選択肢。"""

    text = "TEXT"
    json = "JSON"


class LoadEndpoint(str, Enum):
    """負荷をかけるエンドポイントの選択肢。"""

    predict = "predict"
    predict_label = "predict-label"
    mixed = "mixed"


JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
SampleOption = Annotated[
    str | None,
    typer.Option(
        help="Sample row for /predict/test and /metadata as JSON, e.g. '[5.1, 3.5, 1.4, 0.2]' "
        "(default: the model's training.json, else zeros)."
    ),
]


def namespace_name(value: str) -> str:
    """--namespace の値を、API サーバーと同じ規則（DNS-1123 のラベル）で確かめる。不正なら ConfigError。"""
    from mii_cli.kube.quantity import label_problem

    problem = label_problem(value)
    if problem is not None:
        raise ConfigError(
            f"--namespace {value!r} is not a Kubernetes namespace name: {problem}",
            hint="e.g. model-in-image or team-a (lower case letters, digits and '-', at most 63 characters)",
        )
    return value


NamespaceOption = Annotated[
    str, typer.Option("--namespace", "-n", help="Kubernetes namespace to use.", callback=namespace_name)
]
ContextOption = Annotated[
    str | None, typer.Option("--context", help="kube context to use (default: the current context).")
]
RegistryOption = Annotated[
    str | None,
    typer.Option(
        help="Push the image to this registry (e.g. 127.0.0.1:5000) and deploy that reference (MII_REGISTRY)."
    ),
]
ReplicasOption = Annotated[
    int | None,
    typer.Option(help="Pods to create (default 4, MII_REPLICAS); the HPA's minimum becomes min(3, N)."),
]
CpuOption = Annotated[
    str | None,
    typer.Option(help="CPU per pod, requests = limits (default 500m, MII_POD_CPU), e.g. 250m."),
]
MemoryOption = Annotated[
    str | None,
    typer.Option(help="Memory per pod, requests = limits (default 300Mi, MII_POD_MEMORY), e.g. 256Mi."),
]
RolloutTimeoutOption = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for the rollout.", min=1)
]
NamespaceTimeoutOption = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for the namespace to go.", min=1)
]


def sample_row(text: str | None) -> list[float] | None:
    """--sample の JSON を数のリストにする（不正なら ConfigError。検査はサービスの SAMPLE_ROW と同じ）。"""
    from service.ml.sample import parse_sample

    if text is None:
        return None
    try:
        return parse_sample(text)
    except ValueError:
        raise ConfigError(
            f"--sample must be a JSON list of finite numbers, got {text!r}",
            hint="for example --sample '[5.1, 3.5, 1.4, 0.2]' (one value per feature of the model)",
        ) from None


CanaryOption = Annotated[
    bool,
    typer.Option(
        "--canary",
        help="Run the new image as a small second Deployment beside the stable one and compare them "
        "(then mii promote or mii rollback).",
    ),
]
CanaryReplicasOption = Annotated[
    int, typer.Option("--canary-replicas", help="Pods of the canary Deployment.", min=1, max=10)
]
CompareRowsOption = Annotated[
    Path | None,
    typer.Option(
        "--compare-rows",
        help="Rows to compare the canary with the stable model on: CSV, or one JSON array per line.",
        exists=True,
        dir_okay=False,
        readable=True,
    ),
]
ShadowOption = Annotated[
    bool,
    typer.Option(
        "--shadow",
        help="Run the new image as a shadow: a Deployment no Service sends users to, to which the stable "
        "pods copy a share of their predict requests and compare the answers (see mii verdict; "
        "mii rollback removes it).",
    ),
]
MirrorPercentOption = Annotated[
    float,
    typer.Option(
        "--mirror-percent",
        min=0.1,
        max=100.0,
        help="Share of the stable pods' predict requests copied to the shadow, in percent.",
    ),
]
NoRollbackOption = Annotated[
    bool,
    typer.Option(
        "--no-rollback",
        help="When the rollout or the check of the new pods fails, leave the failed state for inspection.",
    ),
]


# --- canary の判定の閾値（既定は probe/analysis.py の Thresholds だけが決める） ------------------------

_THRESHOLDS = Thresholds()
JudgeOption = Annotated[
    bool,
    typer.Option(
        "--judge",
        help="Judge the numbers against the thresholds (the --max-* options imply it): exit 6 when one is "
        "breached, 1 when a side has too few requests to judge.",
    ),
]
AnalysisOption = Annotated[
    bool,
    typer.Option(
        "--analysis",
        help="Decide by itself (implies --canary): grow the canary one pod at a time up to the stable pods' "
        "count, judge each step's live traffic against the thresholds for --interval seconds, roll back "
        "at the first breach, promote when every step passes.",
    ),
]
IntervalOption = Annotated[
    float,
    typer.Option(
        "--interval",
        min=1.0,
        max=3600.0,
        help="Seconds of live traffic each analysis step reads.",
    ),
]
MaxErrorRateOption = Annotated[
    float | None,
    typer.Option(
        "--max-error-rate",
        min=0.0,
        max=1.0,
        help=f"Largest share of the canary's requests answered 5xx (default {_THRESHOLDS.max_error_rate:g}).",
    ),
]
MaxLatencyRatioOption = Annotated[
    float | None,
    typer.Option(
        "--max-latency-ratio",
        min=1.0,
        help=f"Largest canary p50 and p99 as a multiple of the stable pods' (default "
        f"{_THRESHOLDS.max_latency_ratio:g}; differences under {_THRESHOLDS.latency_floor_ms:g} ms "
        "are not counted).",
    ),
]
MaxLabelChangesOption = Annotated[
    int | None,
    typer.Option(
        "--max-label-changes",
        min=0,
        help=f"Most compared rows whose label may change (default {_THRESHOLDS.max_label_changes}).",
    ),
]
MinRequestsOption = Annotated[
    int | None,
    typer.Option(
        "--min-requests",
        min=1,
        help=f"Inference requests each side needs before it is judged (default {_THRESHOLDS.min_requests}).",
    ),
]


def thresholds_from(
    judge: bool,
    max_error_rate: float | None,
    max_latency_ratio: float | None,
    max_label_changes: int | None,
    min_requests: int | None,
) -> Thresholds | None:
    """判定の閾値（`--judge` も閾値も無ければ None: 判定しない）。指定の無い閾値は既定のまま。"""
    if not judge and (max_error_rate, max_latency_ratio, max_label_changes, min_requests) == (None,) * 4:
        return None
    chosen = _THRESHOLDS
    if max_error_rate is not None:
        chosen = dataclasses.replace(chosen, max_error_rate=max_error_rate)
    if max_latency_ratio is not None:
        chosen = dataclasses.replace(chosen, max_latency_ratio=max_latency_ratio)
    if max_label_changes is not None:
        chosen = dataclasses.replace(chosen, max_label_changes=max_label_changes)
    if min_requests is not None:
        chosen = dataclasses.replace(chosen, min_requests=min_requests)
    return chosen
