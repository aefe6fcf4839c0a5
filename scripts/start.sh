#!/usr/bin/env bash
# Starts the whole platform on http://127.0.0.1:8080: PostgreSQL, NATS and Redis (installed and started if
# missing), the ONNX Runtime library, a release build, a demo model and data set, then `bonsai serve`.
# Sign in as admin / $BONSAI_ADMIN_PASSWORD (default bonsai-admin). Ctrl-C stops it gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-services.sh
# Uploads are scanned for viruses where ClamAV's signatures are installed (`freshclam`); otherwise not.
if [ -z "${BONSAI__VIRUS_SCAN__CLAMD:-}" ]; then
  if scripts/ensure-clamd.sh; then
    export BONSAI__VIRUS_SCAN__CLAMD=tcp://127.0.0.1:3310
  else
    echo "warning: uploads are not scanned for viruses (no ClamAV signatures; see above)" >&2
  fi
fi
if [ -x scripts/install-onnxruntime.sh ]; then scripts/install-onnxruntime.sh; fi
cargo build --release --bin bonsai
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
demo_model="$BONSAI_DATA_DIR/models/demo-tiny"
if [ ! -f "$demo_model/config.json" ]; then
  echo "creating the demo model in $demo_model (random tiny Llama + tokenizer trained on demo/faq.jsonl)"
  target/release/bonsai model init-tiny "$demo_model" --corpus demo/faq.jsonl \
    || echo "warning: could not create the demo model; the platform starts without it" >&2
fi
echo "demo data: demo/faq.jsonl; demo model: $demo_model"
echo "console: http://${BONSAI_HTTP_ADDR:-127.0.0.1:8080}/ (admin / $BONSAI_ADMIN_PASSWORD)"
echo "sign in: curl -s localhost:8080/api/auth/login -H 'content-type: application/json' -d '{\"username\":\"admin\",\"password\":\"$BONSAI_ADMIN_PASSWORD\"}'"
exec target/release/bonsai serve "$@"
