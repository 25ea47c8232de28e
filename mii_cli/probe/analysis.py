"""canary の分析の判定: 1 つの区間の両方の側の数字を、利用者の閾値と比べる（合否を決める純粋な関数）。

見る順（超えたものはこの順に並び、最初のものが失敗の 1 行になる）:
- 答え: 入力（名前・型・形）が安定版と違えば不合格（利用者の要求はすべて断られる）。同じ行で比べた
  ラベルの変わった行が `max_label_changes` を超えれば不合格。
- エラー率: canary の 5xx の割合が `max_error_rate` を超えれば不合格（安定版の割合とは比べない: 安定版が
  壊れていても canary を通す理由にはならない）。4xx（入力を断った）の割合が安定版より `max_error_rate`
  を超えて多くても不合格（同じ要求を安定版は受け、canary は断っている）。
- 遅延: canary の p50・p99 が、安定版の同じ値の `max_latency_ratio` 倍を超えれば不合格。ヒストグラムの
  バケットの中は線形に補った値なので、`latency_floor_ms` 未満の差は数えない。p99 は両方の側に
  `P99_MIN_REQUESTS` 件以上あるときだけ比べる（それより少なければ、いちばん遅い 1 件とほぼ同じ）。
- 件数: どちらかの側の要求が `min_requests` に届かなければ、判定できない（不合格ではなく「足りない」）。
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from mii_cli.results import Result

if TYPE_CHECKING:  # 型だけ（CLI のオプションが閾値の既定を読むときに httpx・prometheus_client を読まない）
    from mii_cli.probe.traffic import Traffic


class Answers(Protocol):
    """答えの比べの結果（同じ行での比べ `Verdict`、または影への写しの `MirrorNumbers`）。"""

    @property
    def same_inputs(self) -> bool:
        """新しいモデルが安定版と同じ入力を受けるか。"""

    @property
    def rows(self) -> int:
        """比べた行の数。"""

    @property
    def label_changes(self) -> int | None:
        """ラベルの変わった行の数（比べられなければ None）。"""


# 5xx の割合の超えた閾値の説明（側ごと）。影の側の数には、答えの無かった写しも 5xx として入る
# （workflows/verdict.py の `with_unanswered`）
_FAILED = {
    "canary": "answered {rate:.2%} of its requests with 5xx",
    "shadow": "failed {rate:.2%} of the mirrored requests (5xx or no answer)",
}

# p99 を比べるのに要る、側ごとの要求の数
P99_MIN_REQUESTS = 100


@dataclass(frozen=True)
class Thresholds(Result):
    """分析の閾値（既定は、同じモデルを出し直したときに通り、明らかな悪化で止まる値）。"""

    max_error_rate: float = 0.01
    max_latency_ratio: float = 1.5
    max_label_changes: int = 0
    min_requests: int = 50
    latency_floor_ms: float = 1.0


@dataclass(frozen=True)
class Finding(Result):
    """閾値を超えたもの 1 つ: どの閾値か、測った値、限度、1 行の説明。"""

    threshold: str
    measured: float
    limit: float
    message: str


def _ratio_finding(
    name: str, canary: float | None, stable: float | None, t: Thresholds, side: str
) -> Finding | None:
    if canary is None or stable is None:
        return None
    limit = max(stable * t.max_latency_ratio, stable + t.latency_floor_ms)
    if canary <= limit:
        return None
    ratio = canary / stable if stable > 0 else float("inf")
    return Finding(
        "max-latency-ratio",
        round(ratio, 3),
        t.max_latency_ratio,
        f"the {side}'s {name} {canary:.2f} ms is {ratio:.2f}x the stable pods' {stable:.2f} ms "
        f"(limit {t.max_latency_ratio:g}x)",
    )


def judge(
    stable: Traffic,
    canary: Traffic,
    answers: Answers | None,
    thresholds: Thresholds,
    side: str = "canary",
) -> list[Finding]:
    """1 つの区間の判定: 超えた閾値の一覧（空なら合格）。件数が足りなければ ValueError。

    `side` は新しいモデルの側の呼び名（canary か shadow）で、説明の 1 行に入る。
    """
    if canary.requests < thresholds.min_requests or stable.requests < thresholds.min_requests:
        raise ValueError(
            f"too few requests to judge: stable {stable.requests}, {side} {canary.requests} "
            f"(at least {thresholds.min_requests} each)"
        )
    findings = _answer_findings(answers, thresholds, side)
    rate = canary.error_rate or 0.0
    if rate > thresholds.max_error_rate:
        findings.append(
            Finding(
                "max-error-rate",
                round(rate, 4),
                thresholds.max_error_rate,
                f"the {side} {_FAILED.get(side, _FAILED['canary']).format(rate=rate)} "
                f"(limit {thresholds.max_error_rate:.2%})",
            )
        )
    refused, refused_stable = canary.rejected_rate or 0.0, stable.rejected_rate or 0.0
    if refused - refused_stable > thresholds.max_error_rate:
        findings.append(
            Finding(
                "max-error-rate",
                round(refused - refused_stable, 4),
                thresholds.max_error_rate,
                f"the {side} refused {refused:.2%} of its requests with 4xx where the stable pods refused "
                f"{refused_stable:.2%} (limit {thresholds.max_error_rate:.2%} more)",
            )
        )
    latencies = [("p50", canary.p50_ms, stable.p50_ms)]
    if min(canary.requests, stable.requests) >= P99_MIN_REQUESTS:
        latencies.append(("p99", canary.p99_ms, stable.p99_ms))
    for name, c, s in latencies:
        finding = _ratio_finding(name, c, s, thresholds, side)
        if finding is not None:
            findings.append(finding)
    return findings


def _answer_findings(answers: Answers | None, thresholds: Thresholds, side: str) -> list[Finding]:
    """同じ行での答えの判定: 入力の違いと、ラベルの変わった行。"""
    if answers is None:
        return []
    if not answers.same_inputs:
        return [
            Finding(
                "max-label-changes",
                answers.rows,
                thresholds.max_label_changes,
                f"the {side}'s model takes different inputs from the stable model's: "
                "every request the stable pods answer would be refused",
            )
        ]
    changes = answers.label_changes
    if changes is None or changes <= thresholds.max_label_changes:
        return []
    return [
        Finding(
            "max-label-changes",
            changes,
            thresholds.max_label_changes,
            f"{changes} of {answers.rows} compared rows changed their label "
            f"(limit {thresholds.max_label_changes})",
        )
    ]


@dataclass(frozen=True)
class Judgement(Result):
    """閾値での判定: 使った閾値、超えたもの、判定できなかった理由（件数が足りない）と、合格か。"""

    thresholds: Thresholds
    findings: list[Finding] = field(default_factory=list)
    undecided: str | None = None

    computed = ("passed",)

    @property
    def passed(self) -> bool:
        """閾値をどれも超えず、判定できたか。"""
        return not self.findings and self.undecided is None


def judged(
    stable: Traffic,
    canary: Traffic,
    answers: Answers | None,
    thresholds: Thresholds,
    side: str = "canary",
) -> Judgement:
    """`judge` の結果を判定にする（件数が足りなければ、判定せずにその理由）。"""
    try:
        return Judgement(thresholds, judge(stable, canary, answers, thresholds, side))
    except ValueError as error:
        return Judgement(thresholds, undecided=str(error))
