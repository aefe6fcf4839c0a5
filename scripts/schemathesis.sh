#!/usr/bin/env bash
# Schemathesis over the OpenAPI document (issue 16): a real `bonsai serve` (debug build) on a fresh database,
# NATS prefix, data folder and free port, signed in as its admin; every operation is fuzzed from its schema
# for a bounded number of examples, except those that end the test's own session (logout, session and
# password changes, user deactivation). Passes only with 0 server errors and 0 schema violations.
#   scripts/schemathesis.sh [MAX_EXAMPLES]   (default 25; BONSAI_ST_SECONDS bounds the whole run, default 300)
set -euo pipefail
cd "$(dirname "$0")/.."
max_examples="${1:-25}"
venv=.local/schemathesis-venv
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis>=4,<5"
fi
export LD_LIBRARY_PATH="$PWD/.local/cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
[ -x target/debug/bonsai ] || cargo build --features bonsai-ml/cuda --bin bonsai
id="$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
work="$(mktemp -d "${TMPDIR:-/tmp}/bonsai_st_XXXXXX")"
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/bonsai_st_$id"
export BONSAI_NATS_PREFIX="st$id"
export BONSAI_DATA_DIR="$work/data"
export BONSAI_HTTP_ADDR="127.0.0.1:$port"
export BONSAI_ADMIN_PASSWORD="st-admin-password-1"
export BONSAI_JWT_SECRET="schemathesis-secret-long-enough"
export BONSAI__RATE_LIMIT__REQUESTS_PER_SECOND=0 BONSAI__RATE_LIMIT__QUESTIONS_PER_MINUTE=0
export BONSAI__TRAINING_DEVICES="" BONSAI__ALERTS__CHECK_EVERY_SECS=0
export BONSAI__VIRUS_SCAN__CLAMD=""
target/debug/bonsai serve >"$work/serve.log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS \"bonsai_st_$id\"" >/dev/null 2>&1 || true
  if [ "${BONSAI_ST_KEEP:-}" = "" ]; then rm -rf "$work"; else echo "kept $work"; fi
}
trap cleanup EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 1 120); do
  curl -fs "$base/readyz" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$work/serve.log"; echo "bonsai serve stopped" >&2; exit 1; }
  sleep 1
done
token=""
for _ in $(seq 1 30); do
  token="$(curl -fs "$base/api/auth/login" -H 'content-type: application/json' \
    -d "{\"username\":\"admin\",\"password\":\"$BONSAI_ADMIN_PASSWORD\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])' 2>/dev/null || true)"
  [ -n "$token" ] && curl -fs -o /dev/null "$base/api/users/profile" -H "authorization: Bearer $token" && break
  sleep 1
done
[ -n "$token" ] || { echo "could not sign in" >&2; exit 1; }
set +e
timeout "${BONSAI_ST_SECONDS:-300}" "$venv/bin/schemathesis" run "$base/api/openapi.json" \
  --url "$base" \
  -H "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
  --max-examples "$max_examples" \
  --workers 2 \
  --phases examples,coverage,fuzzing \
  --exclude-operation-id logout --exclude-operation-id end_session --exclude-operation-id end_other_sessions \
  --exclude-operation-id end_user_sessions --exclude-operation-id change_password --exclude-operation-id patch_user \
  --suppress-health-check all \
  --report junit --report-dir "$work/report" \
  2>&1 | tee "$work/schemathesis.log"
status=${PIPESTATUS[0]}
set -e
if grep -q " ERROR \| panicked" "$work/serve.log"; then
  echo "--- server errors in the log:"; grep " ERROR \| panicked" "$work/serve.log" | head -20
fi
exit "$status"
