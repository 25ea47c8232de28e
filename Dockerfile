# model-in-image: ONNX モデルと推論サーバーを 1 つのイメージに焼き込む。
# クラシックビルダー（Docker SDK for Python）で動くように RUN --mount・COPY --link・heredoc は使わない。
ARG BASE_IMAGE=python:3.13-slim

# --- builder: ロックからサービスの実行時依存だけを入れた仮想環境を作る ---------------------
FROM ${BASE_IMAGE} AS builder
ARG UV_VERSION=0.13.9
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    ORT_DISABLE_TELEMETRY=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv
RUN python -m pip install "uv==${UV_VERSION}"
WORKDIR /build
COPY pyproject.toml uv.lock ./
# プロジェクトの依存（= サービスの実行時依存）のみ。CLI・学習・開発ツールは入れない
# 推論時に使わないもの（各パッケージのテスト、ONNX Runtime のオフライン変換・量子化ツール）は消す
RUN uv sync --frozen --no-dev --no-install-project --python "$(command -v python3)" \
    && site="$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && find "$site" -type d -name tests -prune -exec rm -rf {} + \
    && rm -rf "$site/onnxruntime/transformers" "$site/onnxruntime/quantization" "$site/onnxruntime/datasets" \
    && /opt/venv/bin/python -c "import numpy, onnxruntime, fastapi, uvicorn, uvloop, httptools" \
    && rm -rf /root/.cache

# --- runtime -----------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
# ORT_DISABLE_TELEMETRY=1: ONNX Runtime のテレメトリを止める（Pod は外へ何も送らない。ビルド時も同じ）
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ORT_DISABLE_TELEMETRY=1 \
    MODEL_FILEPATH=/model_in_image_pattern/models/iris_svc.onnx \
    LABEL_FILEPATH=/model_in_image_pattern/models/label.json \
    HOST=0.0.0.0 \
    PORT=8000
COPY --from=builder /opt/venv /opt/venv
WORKDIR /model_in_image_pattern
COPY service/ ./service/
RUN cp service/run.sh ./run.sh && chmod 0755 ./run.sh \
    && python -m compileall -q service
# モデルは最後に置く: モデルだけの変更は小さな層 1 つの作り直しで済む
COPY models/iris_svc.onnx models/label.json models/training.json* ./models/
# サービス自身のローダでモデルとラベルを読み、試し推論する。壊れた・食い違うモデルはここでビルド失敗
RUN python -m service.check

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=unknown
ARG MODEL_SHA256=unknown
ARG LABEL_SHA256=unknown
ARG MODEL_INPUT=unknown
ARG TRAINING=unknown
LABEL org.opencontainers.image.title="model-in-image" \
      org.opencontainers.image.description="Iris SVC (ONNX) baked into a FastAPI + ONNX Runtime server" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      io.mii.model.file="iris_svc.onnx" \
      io.mii.model.sha256="${MODEL_SHA256}" \
      io.mii.labels.sha256="${LABEL_SHA256}" \
      io.mii.model.input="${MODEL_INPUT}" \
      io.mii.model.training="${TRAINING}"

USER 10001:0
EXPOSE 8000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-m", "service.healthcheck"]
ENTRYPOINT ["/model_in_image_pattern/run.sh"]
