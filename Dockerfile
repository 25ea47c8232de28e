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
# 推論時に使わないものは消す: 各パッケージのテスト、ONNX Runtime のオフライン変換・量子化・ツール、
# numpy の使わないサブパッケージ（random・fft・ma・polynomial・f2py・testing・typing）と C のヘッダ、
# ONNX Runtime がモデルの変換にだけ使う protobuf・flatbuffers、型スタブ（.pyi）と Cython・C のソース、
# C API の共有ライブラリ libonnxruntime.so（35 MB。Python の拡張モジュールは自分の中に ONNX Runtime を
# 持ち、これを読み込まない）、numpy の SIMD のテスト用モジュール _simd
RUN uv sync --frozen --no-dev --no-install-project --python "$(command -v python3)" \
    && site="$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && find "$site" -type d -name tests -prune -exec rm -rf {} + \
    && rm -rf "$site/onnxruntime/transformers" "$site/onnxruntime/quantization" "$site/onnxruntime/datasets" \
              "$site/onnxruntime/tools" "$site/onnxruntime/ThirdPartyNotices.txt" \
              "$site/numpy/random" "$site/numpy/fft" "$site/numpy/ma" "$site/numpy/polynomial" \
              "$site/numpy/f2py" "$site/numpy/testing" "$site/numpy/typing" "$site/numpy/_pyinstaller" \
              "$site/numpy/_core/include" "$site/numpy/_core/lib" "$site"/numpy/_core/_simd.* \
              "$site"/onnxruntime/capi/libonnxruntime.so.* \
              "$site/google" "$site"/protobuf-* "$site/flatbuffers" "$site"/flatbuffers-* \
    && find "$site" \( -name "*.pyi" -o -name "*.pyx" -o -name "*.pxd" -o -name "*.pxi" -o -name "*.c" \
              -o -name "*.h" -o -name "*.cpp" \) -delete \
    && /opt/venv/bin/python -c "import numpy, onnxruntime, fastapi, uvicorn, uvloop, httptools, orjson, prometheus_client, pydantic_settings" \
    && rm -rf /root/.cache

# --- runtime -----------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
# ORT_DISABLE_TELEMETRY=1: ONNX Runtime のテレメトリを止める（Pod は外へ何も送らない。ビルド時も同じ）
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ORT_DISABLE_TELEMETRY=1 \
    HOST=0.0.0.0 \
    PORT=8000
COPY --from=builder /opt/venv /opt/venv
WORKDIR /model_in_image_pattern
COPY service/ ./service/
RUN cp service/run.sh ./run.sh && chmod 0755 ./run.sh \
    && python -m compileall -q service
# モデルの場所（mii build がモデルのファイル名から決める。LABEL_FILEPATH・SAMPLE_ROW が空なら無し）
ARG MODEL_FILEPATH=/model_in_image_pattern/models/iris_svc.onnx
ARG LABEL_FILEPATH=/model_in_image_pattern/models/label.json
ARG SAMPLE_ROW=
ENV MODEL_FILEPATH=${MODEL_FILEPATH} \
    LABEL_FILEPATH=${LABEL_FILEPATH} \
    SAMPLE_ROW=${SAMPLE_ROW}
# モデルは最後に置く: モデルだけの変更は小さな層 1 つの作り直しで済む（コンテキストの models/ には
# mii build が選んだモデル・ラベル・そのモデルの training.json だけがある）
COPY models/ ./models/
# サービス自身のローダでモデルとラベルを読み、試し推論する。壊れた・食い違うモデルはここでビルド失敗
RUN python -m service.check

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=unknown
ARG MODEL_FILE=iris_svc.onnx
ARG MODEL_SHA256=unknown
ARG LABEL_SHA256=unknown
ARG MODEL_INPUT=unknown
# サンプルの 1 行へのモデルの答え（JSON。mii deploy が新しい Pod の /predict/test と比べる）
ARG MODEL_SAMPLE_ANSWER=
ARG TRAINING=unknown
# ベースイメージ: 指定の参照（FROM と同じ値）、レジストリのダイジェスト（無ければ空）、ローカルのイメージ ID
ARG BASE_IMAGE
ARG BASE_DIGEST=
ARG BASE_IMAGE_ID=unknown
LABEL org.opencontainers.image.title="model-in-image" \
      org.opencontainers.image.description="An ONNX model baked into a FastAPI + ONNX Runtime server (simple API and Open Inference Protocol V2)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}" \
      org.opencontainers.image.base.digest="${BASE_DIGEST}" \
      io.mii.base-image.id="${BASE_IMAGE_ID}" \
      io.mii.model.file="${MODEL_FILE}" \
      io.mii.model.sha256="${MODEL_SHA256}" \
      io.mii.labels.sha256="${LABEL_SHA256}" \
      io.mii.model.input="${MODEL_INPUT}" \
      io.mii.model.sample-answer="${MODEL_SAMPLE_ANSWER}" \
      io.mii.model.training="${TRAINING}"

USER 10001:0
EXPOSE 8000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-m", "service.healthcheck"]
ENTRYPOINT ["/model_in_image_pattern/run.sh"]
