#!/usr/bin/env bash
# The OpenAI-compatible door driven by the official `openai` Python client (from PyPI, in a virtual
# environment under .local/): a real `bonsai serve` (the debug binary, a fresh database, its own NATS prefix)
# with a tiny model deployed, then scripts/openai/check.py. Exit status 0 when every check passes.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${BONSAI_BIN:-target/debug/bonsai}"
if [ ! -x "$bin" ]; then cargo build --features bonsai-ml/cuda --bin bonsai; fi
export LD_LIBRARY_PATH="$PWD/.local/cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
venv=.local/openai-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || { apt-get update && apt-get install -y --no-install-recommends python3-venv && python3 -m venv "$venv"; }
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check 'openai>=1.50,<3' 'httpx>=0.27'
id="$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
data="$(mktemp -d "${TMPDIR:-/tmp}/bonsai_openai_XXXX")"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
database="bonsai_openai_$id"
"$bin" model init-tiny "$data/models/demo-tiny" --corpus demo/faq.jsonl >/dev/null
cleanup() {
  [ -n "${server:-}" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  dropdb -h 127.0.0.1 -U postgres --if-exists --force "$database" >/dev/null 2>&1 || true
  rm -rf "$data"
}
trap cleanup EXIT
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$database" BONSAI_NATS_PREFIX="oai$id" BONSAI_DATA_DIR="$data" \
  BONSAI_ADMIN_PASSWORD="openai-admin-password" BONSAI_HTTP_ADDR="127.0.0.1:$port" \
  BONSAI_JWT_SECRET="openai-secret-$id-long-enough" BONSAI__RATE_LIMIT__REQUESTS_PER_SECOND=0 \
  BONSAI__RATE_LIMIT__QUESTIONS_PER_MINUTE=0 BONSAI__TRAINING_DEVICES=cpu BONSAI__ALERTS__CHECK_EVERY_SECS=0 \
  BONSAI_LOG_FORMAT=text "$bin" serve >"$data/server.log" 2>&1 &
server=$!
for _ in $(seq 1 120); do
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$data/server.log"; exit 1; }
  sleep 0.5
done
BONSAI_URL="http://127.0.0.1:$port" BONSAI_ADMIN_PASSWORD="openai-admin-password" \
  "$venv/bin/python" scripts/openai/check.py || { tail -50 "$data/server.log"; exit 1; }
