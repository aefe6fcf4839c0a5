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
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/bonsai /usr/local/bin/bonsai
COPY scripts /opt/bonsai/scripts
COPY demo /opt/bonsai/demo
COPY --from=console /web/dist /opt/bonsai/web/dist
WORKDIR /opt/bonsai
RUN if [ -x scripts/install-onnxruntime.sh ]; then scripts/install-onnxruntime.sh; fi
ENTRYPOINT ["bonsai"]
CMD ["serve"]
