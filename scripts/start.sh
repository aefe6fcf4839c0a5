#!/usr/bin/env bash
# Starts the whole platform: PostgreSQL, NATS and Redis (installed and started if missing), the ONNX Runtime
# library, a release build, the demo data set, two base models (demo-tiny, a random model to try training on,
# and SmolLM2-135M-Instruct, a real one that answers questions), then `bonsai serve`; once it is ready,
# SmolLM2 is registered, deployed and made the default model (as the admin), so a first question gets a real
# answer. Running it again reuses all of it. Sign in as admin / $BONSAI_ADMIN_PASSWORD (default bonsai-admin).
# Ctrl-C stops it gracefully.
#
#   BONSAI_BIN=<path>   use this bonsai binary instead of building one (e.g. target/debug/bonsai)
#   BONSAI_SMOLLM2=0    do not install or deploy SmolLM2 (no download)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-services.sh
# Uploads are scanned for viruses where ClamAV's signatures are installed; otherwise not (and ClamAV is not
# installed: scripts/ensure-clamd.sh says how to get signatures).
if [ -z "${BONSAI__VIRUS_SCAN__CLAMD:-}" ]; then
  if scripts/ensure-clamd.sh; then
    export BONSAI__VIRUS_SCAN__CLAMD=tcp://127.0.0.1:3310
  else
    echo "warning: uploads are not scanned for viruses (see above)" >&2
  fi
fi
if [ -x scripts/install-onnxruntime.sh ]; then scripts/install-onnxruntime.sh; fi
if [ -n "${BONSAI_BIN:-}" ]; then
  bonsai=$BONSAI_BIN
else
  cargo build --release --bin bonsai
  bonsai=target/release/bonsai
fi
# The web console, served at / (BONSAI__CONSOLE_DIR, default web/dist): built with Node when it is there.
if ! command -v npm >/dev/null && command -v apt-get >/dev/null; then
  apt-get update && apt-get install -y --no-install-recommends nodejs npm || true
fi
if command -v npm >/dev/null; then
  (cd web && npm ci --no-audit --no-fund && npm run build)
else
  echo "warning: npm is missing (apt-get install nodejs npm): the console at / is not built" >&2
fi
export BONSAI_DATA_DIR="${BONSAI_DATA_DIR:-$PWD/data}"
export BONSAI_ADMIN_PASSWORD="${BONSAI_ADMIN_PASSWORD:-bonsai-admin}"
export BONSAI_JWT_SECRET="${BONSAI_JWT_SECRET:-$(mkdir -p "$BONSAI_DATA_DIR" && { cat "$BONSAI_DATA_DIR/.jwt-secret" 2>/dev/null || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' | tee "$BONSAI_DATA_DIR/.jwt-secret"; })}"
# Encryption at rest of personal data and questions/answers: keys made once per data folder (keep them: the
# data sealed with them cannot be read without them).
if [ -z "${BONSAI__ENCRYPTION__KEYS:-}" ]; then
  keys_file="$BONSAI_DATA_DIR/.encryption-keys"
  if [ ! -f "$keys_file" ]; then
    (umask 077; printf 'k1:%s\n%s\n' "$(head -c 32 /dev/urandom | base64)" "$(head -c 32 /dev/urandom | base64)" >"$keys_file")
  fi
  BONSAI__ENCRYPTION__KEYS="$(sed -n 1p "$keys_file")"
  BONSAI__ENCRYPTION__INDEX_KEY="$(sed -n 2p "$keys_file")"
  export BONSAI__ENCRYPTION__KEYS BONSAI__ENCRYPTION__INDEX_KEY
fi
models_dir="${BONSAI_MODELS_DIR:-$BONSAI_DATA_DIR/models}"
demo_model="$models_dir/demo-tiny"
if [ ! -f "$demo_model/config.json" ]; then
  echo "creating the demo model in $demo_model (random tiny Llama + tokenizer trained on demo/faq.jsonl)"
  "$bonsai" model init-tiny "$demo_model" --corpus demo/faq.jsonl \
    && echo '{"source": "bonsai model init-tiny --corpus demo/faq.jsonl"}' >"$demo_model/bonsai-source.json" \
    || echo "warning: could not create the demo model; the platform starts without it" >&2
fi
smollm2=smollm2-135m-instruct
if [ "${BONSAI_SMOLLM2:-1}" != 0 ]; then
  scripts/install-smollm2.sh "$bonsai" "$models_dir" \
    || { echo "warning: could not install SmolLM2; the platform starts without it" >&2; BONSAI_SMOLLM2=0; }
fi
echo "demo data: demo/faq.jsonl; base models in $models_dir"
exec scripts/serve.sh "$bonsai" "$@"
