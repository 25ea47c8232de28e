"""FastAPI アプリケーションのファクトリ。

`create_app()` がアプリを組み立て、lifespan でモデルを読み込んで試し推論を行い、
成功したら readiness を 200 にする。
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from service import constants
from service.app.metrics import Metrics
from service.app.middleware import ServiceMiddleware
from service.app.routers.routers import HANDLERS, JSONBytes, router
from service.app.state import ServiceState
from service.configurations import Settings, get_settings
from service.ml.prediction import Classifier, InvalidInputError

logger = logging.getLogger(__name__)


def load_classifier(settings: Settings) -> Classifier:
    """設定どおりにモデルとラベルを読み込む（失敗時は ModelLoadError）。"""
    return Classifier(
        settings.model_filepath,
        settings.label_filepath,
        intra_op_threads=settings.ort_intra_op_threads,
        inter_op_threads=settings.ort_inter_op_threads,
        max_batch_rows=settings.max_batch_rows,
    )


def build_metadata(classifier: Classifier, sample_prediction: list[float]) -> dict[str, Any]:
    """/metadata の内容を作る（元実装の項目 + モデルの情報）。"""
    return {
        "data_type": constants.DATA_TYPE,
        "data_structure": f"(1,{classifier.num_features or len(constants.SAMPLE_DATA[0])})",
        "data_sample": constants.SAMPLE_DATA,
        "prediction_type": constants.PREDICTION_TYPE,
        "prediction_structure": f"(1,{classifier.num_classes})",
        "prediction_sample": sample_prediction,
        "model": classifier.info.as_dict(),
        "service_version": constants.SERVICE_VERSION,
    }


def create_app(settings: Settings | None = None, classifier: Classifier | None = None) -> FastAPI:
    """アプリを作る。classifier を渡せば読み込み済みのものを使う（起動前検証の二重読み込みを避ける）。"""
    settings = settings or get_settings()
    state = ServiceState(
        metrics=Metrics(),
        served_by=settings.pod_name or socket.gethostname(),
        classifier_=classifier,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        """起動時にモデルを読み込み、試し推論が成功したら ready にする。"""
        if state.classifier_ is None:
            state.classifier_ = load_classifier(settings)
        sample = state.classifier_.warm_up()
        state.metadata = build_metadata(state.classifier_, sample)
        state.ready = True
        info = state.classifier_.info
        logger.info(
            "model ready: %s (sha256 %s, %d classes, output %s)",
            info.file_name,
            info.sha256[:12],
            info.num_classes,
            info.output_format,
        )
        try:
            yield
        finally:
            state.ready = False
            logger.info("shutting down")

    app = FastAPI(
        title="model-in-image",
        version=constants.SERVICE_VERSION,
        description="Iris classifier (ONNX Runtime) baked into the image together with its server.",
        lifespan=lifespan,
        default_response_class=JSONBytes,
        # include_router は入れ子のルータになり照合が 2 段になるため、ルートを直接渡して平らにする
        routes=list(router.routes),
        # メトリクスは Prometheus で自前に取る。OpenTelemetry の判定を毎リクエスト走らせない
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.service = state
    app.state.settings = settings

    @app.exception_handler(InvalidInputError)
    async def invalid_input(_request: Request, error: InvalidInputError) -> JSONResponse:
        """モデルが受け付けない入力は 400 で理由を返す。"""
        return JSONBytes({"detail": str(error)}, status_code=400)  # type: ignore[return-value]

    app.add_middleware(
        ServiceMiddleware,
        state=state,
        max_body_bytes=settings.max_body_bytes,
        body_timeout_seconds=settings.body_timeout_seconds,
        access_log=settings.access_log,
        handlers=HANDLERS if settings.fast_path else None,
    )
    return app
