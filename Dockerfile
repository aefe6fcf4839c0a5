FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin bonsai

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/bonsai /usr/local/bin/bonsai
COPY scripts /opt/bonsai/scripts
COPY demo /opt/bonsai/demo
WORKDIR /opt/bonsai
RUN if [ -x scripts/install-onnxruntime.sh ]; then scripts/install-onnxruntime.sh; fi
ENTRYPOINT ["bonsai"]
CMD ["serve"]
