# lastmile: the ensemble inference server as a container image.
#
#   docker build -t lastmile .
#   docker run --rm -p 8000:8000 -p 8001:8001 -v "$PWD/models/my-ensemble:/models:ro" lastmile
#   docker run --rm -p 8080:8080 -v "$PWD/models/my-ensemble:/opt/ml/model:ro" lastmile serve
#
# The bases are build arguments: the public ones by default; scripts/container/local-bases makes
# local stand-ins where no image registry can be reached (README, "Container").
ARG BUILDER=rust:1-bookworm
ARG BASE=debian:bookworm-slim

FROM ${BUILDER} AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# python3 and pip fetch the ONNX Runtime wheel (scripts/setup.sh); gcc links.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev python3 python3-pip \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY scripts/setup.sh scripts/setup.sh
RUN scripts/setup.sh --onnxruntime-only \
    && mkdir -p /out/onnxruntime \
    && cp -L .runtime/onnxruntime/libonnxruntime.so /out/onnxruntime/libonnxruntime.so
COPY . .
# The registry and the target directory are caches: a rebuild compiles only lastmile itself.
# Cargo tells what changed by modification times, which a copied tree does not keep in order
# with a cached build (a proto edited before the cache was last filled looked fresh, and the
# image got a stale build), so the project's own sources are touched: they always recompile.
# The image's binary keeps its symbols (backtraces), not the release profile's debug info.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    find build.rs proto src -type f -exec touch {} + \
    && cargo build --release --locked --bin lastmile \
    && cp target/release/lastmile /out/lastmile \
    && strip --strip-debug /out/lastmile

FROM ${BASE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# en_US.UTF-8: scikit-learn text models exported to ONNX expect it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates locales \
    && sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' /etc/locale.gen \
    && locale-gen \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 lastmile \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent lastmile \
    && mkdir -p /models /opt/ml/model
ENV LANG=en_US.UTF-8 \
    LC_ALL=en_US.UTF-8 \
    ORT_DYLIB_PATH=/usr/local/lib/onnxruntime/libonnxruntime.so \
    LASTMILE_HTTP_ADDR=0.0.0.0:8000 \
    LASTMILE_GRPC_ADDR=0.0.0.0:8001
COPY --from=builder /out/onnxruntime/libonnxruntime.so /usr/local/lib/onnxruntime/libonnxruntime.so
COPY --from=builder /out/lastmile /usr/local/bin/lastmile
LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true \
      org.opencontainers.image.title="lastmile" \
      org.opencontainers.image.description="Ensemble inference server for fastText and ONNX models"
USER 10001:10001
WORKDIR /models
# REST (own API, Open Inference Protocol, /metrics), gRPC, SageMaker. The admin API stays on the
# container's loopback unless --admin-addr and --admin-token say otherwise.
EXPOSE 8000 8001 8080
# Ready, not just alive: 503 while loading or draining. Bash's /dev/tcp, so no curl in the image.
# It asks the REST port (LASTMILE_HEALTH_PORT, 8000 by default), then the SageMaker one.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["bash", "-c", "for p in ${LASTMILE_HEALTH_PORT:-8000} ${SAGEMAKER_BIND_TO_PORT:-8080}; do (exec 3<>/dev/tcp/127.0.0.1/$p && printf 'GET /v2/health/ready HTTP/1.0\\r\\n\\r\\n' >&3 && read -r _ code _ <&3 && [ \"$code\" = 200 ]) 2>/dev/null && exit 0; done; exit 1"]
# Exec form: lastmile is PID 1 and gets SIGTERM itself, drains, exits 0.
ENTRYPOINT ["/usr/local/bin/lastmile"]
# `serve` alone (no --manifest) is SageMaker's way to start a container: /opt/ml/model, port
# SAGEMAKER_BIND_TO_PORT (8080).
CMD ["serve", "--manifest", "/models/manifest.toml"]
