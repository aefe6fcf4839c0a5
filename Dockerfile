# The web console (web/): built by Vite into static files that `bonsai serve` serves at /.
FROM node:20-bookworm-slim AS console
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# FEATURES=cuda builds `bonsai train --device cuda` in (the CUDA libraries are loaded at run time: run the image
# with the NVIDIA container runtime and the CUDA 13 cuBLAS/NVRTC libraries on LD_LIBRARY_PATH).
ARG FEATURES=""
RUN cargo build --release --bin bonsai ${FEATURES:+--features "$FEATURES"}

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip ca-certificates curl jq \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/bonsai /usr/local/bin/bonsai
COPY scripts /opt/bonsai/scripts
COPY demo /opt/bonsai/demo
COPY --from=console /web/dist /opt/bonsai/web/dist
WORKDIR /opt/bonsai
RUN if [ -x scripts/install-onnxruntime.sh ]; then scripts/install-onnxruntime.sh; fi
# The base models are part of the image: demo-tiny (random, to try training on) and SmolLM2-135M-Instruct (real
# answers), which scripts/serve.sh deploys as the default model at the first start (ARG SMOLLM2=0 leaves it out).
ENV BONSAI_MODELS_DIR=/opt/bonsai/models
ARG SMOLLM2=1
RUN bonsai model init-tiny "$BONSAI_MODELS_DIR/demo-tiny" --corpus demo/faq.jsonl \
    && echo '{"source": "bonsai model init-tiny --corpus demo/faq.jsonl"}' >"$BONSAI_MODELS_DIR/demo-tiny/bonsai-source.json" \
    && if [ "$SMOLLM2" != 0 ]; then scripts/install-smollm2.sh bonsai "$BONSAI_MODELS_DIR"; fi
ENTRYPOINT ["scripts/serve.sh", "bonsai"]
