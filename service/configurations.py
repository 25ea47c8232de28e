"""推論サービスの設定。

環境変数から読み込む唯一の設定オブジェクト。不正な値は起動時に 1 行のエラーで止める。
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service import constants

# サンプルの行の形式はモデルの側（service.ml.sample）が決める。mii の --sample もここから読むので名前を出す
from service.ml.sample import parse_sample


class ConfigurationError(Exception):
    """設定値が不正なときの例外（メッセージは 1 行で、どの変数が何故だめかを示す）。"""


class Settings(BaseSettings):
    """推論サービスの設定（環境変数名はフィールド名の大文字）。"""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    model_filepath: Path = Field(default=Path(constants.DEFAULT_MODEL_FILEPATH))
    """ONNX モデルファイルのパス（MODEL_FILEPATH）。"""

    label_filepath: str | None = None
    """クラスインデックスとラベル名の対応を持つ JSON のパス（LABEL_FILEPATH）。

    空文字はラベルファイル無し。指定が無ければ、既定のモデルには既定のラベル、別のモデルにはラベル
    ファイル無し（同梱の label.json は同梱のモデルのもの）。ラベルファイルの無い分類器はモデル自身の
    クラスラベルを使う。実際に使うパスは `labels_path`。
    """

    model_name: str = ""
    """Open Inference Protocol（V2）でのモデル名（MODEL_NAME）。空ならモデルファイルの名前（拡張子なし）。"""

    sample_row: str = ""
    """/predict/test・/metadata のサンプル 1 行（SAMPLE_ROW、JSON の数のリスト。例 `[5.1, 3.5, 1.4, 0.2]`）。

    空ならモデルの横の training.json の `sample`、それも無ければゼロの 1 行。実際の値は `sample`。
    """

    log_level: Literal["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"] = "DEBUG"
    """ログレベル（LOG_LEVEL）。仕様書の既定値は DEBUG。"""

    log_format: Literal["TEXT", "JSON"] = "TEXT"
    """ログの形式（LOG_FORMAT）。TEXT は人向け、JSON は 1 行 1 レコード。"""

    access_log: bool = False
    """リクエストごとのアクセスログを出すか（ACCESS_LOG）。既定は性能のため無効。"""

    host: str = constants.DEFAULT_HOST
    """待ち受けるアドレス（HOST）。"""

    port: int = Field(default=constants.DEFAULT_PORT, ge=1, le=65535)
    """待ち受けるポート（PORT）。"""

    max_batch_rows: int = Field(default=constants.DEFAULT_MAX_BATCH_ROWS, ge=1, le=100_000)
    """1 リクエストで受け付ける最大行数（MAX_BATCH_ROWS）。超えると 400。"""

    max_body_bytes: int = Field(default=constants.DEFAULT_MAX_BODY_BYTES, ge=64)
    """受け付けるリクエストボディの最大バイト数（MAX_BODY_BYTES）。超えると 413。"""

    body_timeout_seconds: float = Field(default=constants.DEFAULT_BODY_TIMEOUT_SECONDS, gt=0, le=3600)
    """本文が届き終わるまでの期限（BODY_TIMEOUT_SECONDS）。止まったクライアントには 408 を返して閉じる。"""

    max_request_line_bytes: int = Field(
        default=constants.DEFAULT_MAX_REQUEST_LINE_BYTES, ge=256, le=1024 * 1024
    )
    """リクエスト行（メソッド・パス・クエリ・版）の最大バイト数（MAX_REQUEST_LINE_BYTES）。超えると 414。"""

    max_header_field_bytes: int = Field(
        default=constants.DEFAULT_MAX_HEADER_FIELD_BYTES, ge=256, le=1024 * 1024
    )
    """ヘッダ 1 つ（名前と値）の最大バイト数（MAX_HEADER_FIELD_BYTES）。超えると 431 で閉じる。"""

    max_header_count: int = Field(default=constants.DEFAULT_MAX_HEADER_COUNT, ge=8, le=10_000)
    """ヘッダの最大の数（MAX_HEADER_COUNT）。超えると 431 で閉じる。"""

    max_head_bytes: int = Field(default=constants.DEFAULT_MAX_HEAD_BYTES, ge=1024, le=16 * 1024 * 1024)
    """リクエストの頭（リクエスト行とヘッダ）全体の最大バイト数（MAX_HEAD_BYTES）。超えると 431 で閉じる。"""

    head_timeout_seconds: float = Field(default=constants.DEFAULT_HEAD_TIMEOUT_SECONDS, gt=0, le=3600)
    """接続から（または次のリクエストの最初のバイトから）頭を読み終えるまでの期限（HEAD_TIMEOUT_SECONDS）。

    過ぎれば、途中まで届いていれば 408、何も届いていなければ黙って閉じる。
    """

    keep_alive_seconds: float = Field(default=constants.DEFAULT_KEEP_ALIVE_SECONDS, gt=0, le=3600)
    """応答の後、次のリクエストを待って接続を開けておく秒数（KEEP_ALIVE_SECONDS）。過ぎれば黙って閉じる。

    前にロードバランサーがあるなら、その idle timeout より長くする（短いと、ロードバランサーが使おうとした
    接続をこちらが閉じる競り合いになる）。
    """

    ort_intra_op_threads: int = Field(default=1, ge=1, le=64)
    """ONNX Runtime の演算内スレッド数（ORT_INTRA_OP_THREADS）。500m の Pod では 1 が最速。"""

    ort_inter_op_threads: int = Field(default=1, ge=1, le=64)
    """ONNX Runtime の演算間スレッド数（ORT_INTER_OP_THREADS）。"""

    graceful_shutdown_seconds: float = Field(default=20.0, ge=0, le=600)
    """SIGTERM 後に処理中のリクエストを待つ最大秒数（GRACEFUL_SHUTDOWN_SECONDS）。"""

    fast_path: bool = True
    """推論・ヘルス系のエンドポイントを FastAPI のリクエスト処理を通さずに返すか（FAST_PATH）。

    応答は同じで 2 倍以上速い。問題の切り分けのために false にできる。
    """

    mirror_config: str = ""
    """影（shadow）への写しの設定のファイル（MIRROR_CONFIG）。空なら写さない（読み直しもしない）。

    中身は `{"target": "IP:PORT", "percent": 10}`。1 秒ごとに読み直すので、Pod を起き直さずに写しを
    入り切りできる（Kubernetes では `mii deploy --shadow` が ConfigMap model-in-image-mirror に書く）。
    ファイルが無い・空なら写さない。
    """

    pod_name: str = ""
    """応答した Pod の名前（POD_NAME）。空ならホスト名を使う。"""

    @property
    def labels_path(self) -> Path | None:
        """実際に読むラベルファイル（無ければ None）。"""
        if self.label_filepath is None:
            if self.model_filepath == Path(constants.DEFAULT_MODEL_FILEPATH):
                return Path(constants.DEFAULT_LABEL_FILEPATH)
            return None
        return Path(self.label_filepath) if self.label_filepath else None

    @property
    def sample(self) -> list[float] | None:
        """SAMPLE_ROW の行（指定が無ければ None）。"""
        return parse_sample(self.sample_row) if self.sample_row else None

    @field_validator("sample_row", mode="before")
    @classmethod
    def _sample_text(cls, value: object) -> object:
        """リストで渡されたサンプルも JSON の文字列として受け取る。"""
        return json.dumps(value) if isinstance(value, list | tuple) else value

    @field_validator("sample_row")
    @classmethod
    def _sample_is_a_row(cls, value: str) -> str:
        """SAMPLE_ROW は有限の数の JSON リスト。"""
        if value:
            parse_sample(value)
        return value

    @field_validator("label_filepath", mode="before")
    @classmethod
    def _path_text(cls, value: object) -> object:
        """Path で渡されたラベルのパスも文字列として受け取る。"""
        return str(value) if isinstance(value, Path) else value

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        """info や json のような小文字も受け付ける。"""
        return value.upper() if isinstance(value, str) else value


def describe_validation_error(error: ValidationError) -> str:
    """pydantic の検証エラーを「変数名: 理由」の 1 行にまとめる。"""
    parts = []
    for item in error.errors():
        name = ".".join(str(p) for p in item["loc"]).upper() or "settings"
        parts.append(f"{name}={item.get('input')!r}: {item['msg']}")
    return "invalid configuration: " + "; ".join(parts)


def load_settings(**overrides: object) -> Settings:
    """環境変数（と明示の上書き）から設定を読み込む。不正なら ConfigurationError。"""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise ConfigurationError(describe_validation_error(error)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """プロセス全体で共有する設定を返す。"""
    return load_settings()
