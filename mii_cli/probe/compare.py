"""2 つのモデルのサーバー（canary と安定版）を同じ行で比べ、判断の材料（verdict）を作る。

比べる行は、両方のモデルのサンプルの 1 行と、利用者のファイルの行（`--compare-rows`: CSV か、
1 行に 1 つの JSON の配列）。両方に Open Inference Protocol（V2）で同じ行を送り、出力ごとに
いちばん大きな差を、分類器ならラベルの変わった行の数を数える。入力（名前・型・形）とクラスが
同じかも並べる。合否は決めない: 昇格（`mii promote`）か取り消し（`mii rollback`）かは利用者が決める。
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from mii_cli.errors import ClusterError, ConfigError
from mii_cli.results import Result

# 1 回の推論で送る行の数（サーバーの MAX_BATCH_ROWS の既定より十分小さく）
CHUNK_ROWS = 200
CHANGED_ROWS_SHOWN = 10


@dataclass(frozen=True)
class OutputDifference(Result):
    """1 つの出力の、すべての行でのいちばん大きな差（比べられなければ None と理由）。"""

    output: str
    largest: float | None
    detail: str = ""


@dataclass(frozen=True)
class Verdict(Result):
    """canary と安定版の比較。"""

    rows: int
    label_changes: int | None
    # ラベルの変わった行（最初の CHANGED_ROWS_SHOWN 行まで）
    changed_rows: list[list[float]] = field(default_factory=list)
    differences: list[OutputDifference] = field(default_factory=list)
    same_inputs: bool = True
    same_classes: bool | None = None
    stable_model: str = ""
    canary_model: str = ""


def read_rows(path: Path) -> list[list[float]]:
    """比べる行のファイルを読む: CSV（1 行目が数でなければ見出し）か、1 行に 1 つの JSON の配列。"""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror or error}") from None
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1)]
    lines = [(number, line) for number, line in lines if line and not line.startswith("#")]
    if not lines:
        raise ConfigError(
            f"{path} has no rows", hint="one row per line: 5.1,3.5,1.4,0.2 or [5.1, 3.5, 1.4, 0.2]"
        )
    rows: list[list[float]] = []
    json_lines = lines[0][1].startswith("[")
    for index, (number, line) in enumerate(lines):
        if json_lines:
            try:
                values: Any = json.loads(line)
            except ValueError:
                raise ConfigError(f"{path}:{number}: not a JSON array of numbers") from None
        else:
            values = next(csv.reader([line]))
            try:
                values = [float(value) for value in values]
            except ValueError:
                if index == 0:
                    continue  # 見出しの行
                raise ConfigError(f"{path}:{number}: not a row of numbers: {line[:60]}") from None
        if not isinstance(values, list) or not values or not all(_number(v) for v in values):
            raise ConfigError(f"{path}:{number}: not a row of numbers")
        rows.append([float(v) for v in values])
    if not rows:
        raise ConfigError(f"{path} has no rows, only a header")
    return rows


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


class _Server:
    """比べる 1 つのサーバー（/metadata と V2 のモデルのメタデータを読んでおく）。"""

    def __init__(self, client: httpx.Client, what: str) -> None:
        self.client = client
        self.what = what
        self.metadata = self._get("/metadata")
        model = self.metadata.get("model") or {}
        self.name = str(model.get("name") or "")
        self.sha256 = str(model.get("sha256") or "")
        self.v2 = self._get(f"/v2/models/{self.name}")

    def _get(self, path: str) -> dict[str, Any]:
        try:
            response = self.client.get(path)
        except httpx.HTTPError as error:
            raise ClusterError(f"the {self.what} pod does not answer {path}: {error}") from None
        if response.status_code != 200:
            raise ClusterError(f"the {self.what} pod answered {path} with {response.status_code}")
        body: dict[str, Any] = response.json()
        return body

    @property
    def sample(self) -> list[float] | None:
        sample = self.metadata.get("data_sample")
        # /metadata の data_sample は 1 行の 2 次元の配列（[[5.1, 3.5, 1.4, 0.2]]）
        if isinstance(sample, list) and len(sample) == 1 and isinstance(sample[0], list):
            sample = sample[0]
        if not isinstance(sample, list) or not sample or not all(_number(v) for v in sample):
            return None
        return [float(v) for v in sample]

    def infer(self, rows: list[list[float]]) -> dict[str, list[Any]]:
        """行ごとの出力（出力の名前 -> 行ごとの値のリスト）。"""
        (spec,) = self.v2["inputs"]
        outputs: dict[str, list[Any]] = {}
        for start in range(0, len(rows), CHUNK_ROWS):
            chunk = rows[start : start + CHUNK_ROWS]
            request = {
                "inputs": [
                    {
                        "name": spec["name"],
                        "datatype": spec["datatype"],
                        "shape": [len(chunk), len(chunk[0])],
                        "data": chunk,
                    }
                ]
            }
            response = self.client.post(f"/v2/models/{self.name}/infer", json=request)
            if response.status_code != 200:
                detail = (
                    response.json().get("error")
                    if response.headers.get("content-type") == "application/json"
                    else ""
                )
                raise ClusterError(
                    f"the {self.what} model refused the rows ({response.status_code}): {detail}",
                    hint="check the rows file: each row needs the model's number of features",
                )
            for output in response.json()["outputs"]:
                width = math.prod(output["shape"][1:]) if len(output["shape"]) > 1 else 1
                data = output["data"]
                outputs.setdefault(output["name"], []).extend(
                    data[i : i + width] if width > 1 else data[i] for i in range(0, len(data), width)
                )
        return outputs

    def labels(self, rows: list[list[float]]) -> list[Any] | None:
        """行ごとのラベル（回帰器なら None）。"""
        if self.metadata.get("classes") is None:
            return None
        found: list[Any] = []
        for start in range(0, len(rows), CHUNK_ROWS):
            chunk = rows[start : start + CHUNK_ROWS]
            response = self.client.post("/predict/label", json={"data": chunk})
            if response.status_code != 200:
                raise ClusterError(
                    f"the {self.what} model refused the rows on /predict/label ({response.status_code})"
                )
            prediction = response.json()["prediction"]
            found.extend(prediction if len(chunk) > 1 else [prediction])
        return found


def _largest(stable: list[Any], canary: list[Any]) -> float | None:
    """行ごとの値（数か数のリスト）の、いちばん大きな差（形が違えば None）。"""
    largest = 0.0
    for a, b in zip(stable, canary, strict=True):
        left = a if isinstance(a, list) else [a]
        right = b if isinstance(b, list) else [b]
        if len(left) != len(right) or not all(_number(v) for v in (*left, *right)):
            return None
        largest = max([largest, *(abs(float(x) - float(y)) for x, y in zip(left, right, strict=True))])
    return largest


def compare(
    stable_url: str, canary_url: str, rows: list[list[float]] | None = None, *, timeout: float = 10.0
) -> Verdict:
    """安定版と canary に同じ行を送って比べる（行はサンプルの 1 行と `rows`）。"""
    with (
        httpx.Client(base_url=stable_url, timeout=timeout) as stable_client,
        httpx.Client(base_url=canary_url, timeout=timeout) as canary_client,
    ):
        stable, canary = _Server(stable_client, "stable"), _Server(canary_client, "canary")
        same_inputs = stable.v2["inputs"] == canary.v2["inputs"]
        classes = stable.metadata.get("classes"), canary.metadata.get("classes")
        same_classes = None if classes == (None, None) else classes[0] == classes[1]
        compared: list[list[float]] = []
        for row in (stable.sample, canary.sample, *(rows or [])):
            if row is not None and row not in compared:
                compared.append(row)
        verdict = Verdict(
            rows=len(compared),
            label_changes=None,
            same_inputs=same_inputs,
            same_classes=same_classes,
            stable_model=stable.sha256,
            canary_model=canary.sha256,
        )
        if not same_inputs:
            # 入力の違うモデルには同じ行を送れない: 比べられるのは入力とクラスだけ
            return verdict
        stable_out, canary_out = stable.infer(compared), canary.infer(compared)
        differences = []
        for name in sorted(set(stable_out) | set(canary_out)):
            if name not in stable_out or name not in canary_out:
                side = "canary" if name in canary_out else "stable"
                differences.append(
                    OutputDifference(output=name, largest=None, detail=f"only the {side} model has it")
                )
                continue
            largest = _largest(stable_out[name], canary_out[name])
            detail = "" if largest is not None else "not comparable (other shape or not numeric)"
            differences.append(OutputDifference(output=name, largest=largest, detail=detail))
        stable_labels, canary_labels = stable.labels(compared), canary.labels(compared)
        changes = None
        changed: list[list[float]] = []
        if stable_labels is not None and canary_labels is not None:
            pairs = zip(compared, stable_labels, canary_labels, strict=True)
            changed = [row for row, a, b in pairs if a != b]
            changes = len(changed)
        return Verdict(
            rows=len(compared),
            label_changes=changes,
            changed_rows=changed[:CHANGED_ROWS_SHOWN],
            differences=differences,
            same_inputs=same_inputs,
            same_classes=same_classes,
            stable_model=stable.sha256,
            canary_model=canary.sha256,
        )
