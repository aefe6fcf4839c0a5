#!/usr/bin/env bash
# Checks the operations layer (deploy/) against the real thing, so that a config that drifted from Bonsai fails
# here rather than in production:
#   1. promtool: the Prometheus config and rules are valid, and rules.test.yml (a case per alert) passes;
#      `docker compose config` accepts docker-compose.yml (no Docker daemon needed);
#   2. nginx -t on deploy/nginx/bonsai.conf (with a self-signed certificate made here);
#   3. live: two real `bonsai serve` nodes (one `--role api`, one `--role all`; one database, one NATS prefix,
#      one JWT secret, one shared data folder) behind a real Nginx running that config, and through Nginx over
#      TLS: sign in, a 50 MB upload, a training task's SSE progress feed and its WebSocket; then every metric
#      name that the alert rules and the Grafana dashboards use must appear in a running node's /metrics.
# Streamed answers are not checked: the platform does not stream answers yet.
# Installs promtool and nginx from Debian's packages when missing (no service is started). Needs PostgreSQL,
# NATS and Redis on 127.0.0.1 (scripts/ensure-services.sh) and builds target/debug/bonsai if it is missing.
# `--static` runs 1 and 2 only (no services, no build).
# Prints `ops check: PASS` or `ops check: FAIL (<why>)` last and exits non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

fail() {
  # What Nginx saw, for the diagnosis (the work folder is removed on exit).
  if [ -n "${WORK:-}" ] && [ -s "$WORK/logs/error.log" ]; then tail -n 5 "$WORK/logs/error.log" >&2; fi
  if [ -n "${WORK:-}" ] && [ -s "$WORK/logs/access.log" ]; then tail -n 8 "$WORK/logs/access.log" >&2; fi
  echo "ops check: FAIL ($*)" >&2
  exit 1
}
trap 'echo "ops check: FAIL (a command failed at line $LINENO)" >&2' ERR
step() { echo "== $*"; }

# --- tools -------------------------------------------------------------------------------------------------
missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v nginx >/dev/null || missing+=(nginx)
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || missing+=(docker-compose)
for tool in openssl curl jq python3 psql; do
  command -v "$tool" >/dev/null || case "$tool" in
    psql) missing+=(postgresql-client) ;;
    *) missing+=("$tool") ;;
  esac
done
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]}"
  # Installed for their commands only: a policy keeps the packages' services (Prometheus, Nginx) from starting.
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi

# --- 1. Prometheus -----------------------------------------------------------------------------------------
step "promtool: config, rules, rule tests"
promtool check config deploy/prometheus/prometheus.yml >/dev/null || fail "promtool check config"
promtool check rules deploy/prometheus/rules.yml >/dev/null || fail "promtool check rules"
(cd deploy/prometheus && promtool test rules rules.test.yml) || fail "promtool test rules"

step "docker compose config (both profiles)"
if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose); else COMPOSE=(docker-compose); fi
"${COMPOSE[@]}" -f docker-compose.yml config -q || fail "docker compose config"
"${COMPOSE[@]}" -f docker-compose.yml --profile logging config -q || fail "docker compose --profile logging config"

# --- 2. Nginx ----------------------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bonsai-ops.XXXXXX")
chmod 755 "$WORK" # Nginx's workers (another user) read the console's stand-in page from it
PIDS=()
DB="bonsai_ops_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
PG="${BONSAI_PG_URL:-postgres://postgres@127.0.0.1:5432}"
cleanup() {
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
  done
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P1=$(free_port); P2=$(free_port); HTTP_PORT=$(free_port); TLS_PORT=$(free_port)
while [ "$P2" = "$P1" ]; do P2=$(free_port); done

step "nginx -t (self-signed certificate, nodes on :$P1 and :$P2, TLS on :$TLS_PORT)"
mkdir -p "$WORK/tls" "$WORK/www" "$WORK/logs"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=localhost" \
  -keyout "$WORK/tls/bonsai.key" -out "$WORK/tls/bonsai.crt" >/dev/null 2>&1 || fail "openssl"
# The console: the built one when there is one, else a stand-in page.
if [ -f web/dist/index.html ]; then WWW="$ROOT/web/dist"; else echo '<!doctype html><title>Bonsai</title>' >"$WORK/www/index.html"; WWW="$WORK/www"; fi
chmod -R a+rX "$WORK/www"
sed -e "s#server api-1:8080#server 127.0.0.1:$P1#" -e "s#server api-2:8080#server 127.0.0.1:$P2#" \
  -e "s#listen 80;#listen 127.0.0.1:$HTTP_PORT;#" -e "s#listen 443 ssl#listen 127.0.0.1:$TLS_PORT ssl#" \
  -e '/listen \[::\]/d' -e "s#/etc/nginx/tls/#$WORK/tls/#" -e "s#root /usr/share/nginx/bonsai;#root $WWW;#" \
  deploy/nginx/bonsai.conf >"$WORK/bonsai.conf"
grep -q "127.0.0.1:$P1" "$WORK/bonsai.conf" && grep -q "127.0.0.1:$TLS_PORT ssl" "$WORK/bonsai.conf" \
  || fail "deploy/nginx/bonsai.conf no longer has the upstreams and listen lines this check substitutes"
MIME=/etc/nginx/mime.types
cat >"$WORK/nginx.conf" <<EOF
pid $WORK/nginx.pid;
error_log $WORK/logs/error.log;
events { worker_connections 256; }
http {
    include $MIME;
    log_format upstreams '\$request \$status upstream=\$upstream_addr \$upstream_status';
    access_log $WORK/logs/access.log upstreams;
    client_body_temp_path $WORK/body;
    proxy_temp_path $WORK/proxy;
    fastcgi_temp_path $WORK/fastcgi;
    uwsgi_temp_path $WORK/uwsgi;
    scgi_temp_path $WORK/scgi;
    include $WORK/bonsai.conf;
}
EOF
nginx -p "$WORK" -c "$WORK/nginx.conf" -t 2>"$WORK/nginx-t.log" || { cat "$WORK/nginx-t.log" >&2; fail "nginx -t"; }

if [ "${1:-}" = --static ]; then echo "ops check: PASS (static checks only)"; exit 0; fi

# --- 3. live -----------------------------------------------------------------------------------------------
export LD_LIBRARY_PATH="$ROOT/.local/cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
BIN="$ROOT/target/debug/bonsai"
if [ ! -x "$BIN" ]; then
  step "building target/debug/bonsai"
  cargo build -q -p bonsai-server --features bonsai-ml/cuda --bin bonsai || fail "cargo build"
fi
DATA="$WORK/data"
export DATABASE_URL="$PG/$DB" BONSAI_DATA_DIR="$DATA" BONSAI_NATS_PREFIX="testops${DB#bonsai_ops_}"
export BONSAI_JWT_SECRET="ops-check-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export BONSAI_ADMIN_PASSWORD="ops-check-admin" BONSAI_LOG_FORMAT=json
export BONSAI__ALERTS__CHECK_EVERY_SECS=0 BONSAI__FILE_GC_INTERVAL_SECS=0 BONSAI__TRAINING_THREADS=1
"$BIN" migrate >"$WORK/logs/migrate.log" 2>&1 || { tail -5 "$WORK/logs/migrate.log" >&2; fail "bonsai migrate"; }
step "a tiny base model for the training task"
"$BIN" model init-tiny "$DATA/models/tiny" --corpus demo/faq.jsonl >"$WORK/logs/tiny.log" 2>&1 \
  || { tail -5 "$WORK/logs/tiny.log" >&2; fail "bonsai model init-tiny"; }

step "two nodes (api on :$P1, all on :$P2) and Nginx"
"$BIN" serve --addr "127.0.0.1:$P1" --role api >"$WORK/logs/node1.log" 2>&1 & PIDS+=($!)
"$BIN" serve --addr "127.0.0.1:$P2" --role all >"$WORK/logs/node2.log" 2>&1 & PIDS+=($!)
nginx -p "$WORK" -c "$WORK/nginx.conf" -g 'daemon off;' >"$WORK/logs/nginx.out" 2>&1 & PIDS+=($!)
for port in "$P1" "$P2"; do
  for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.2; done
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || { tail -20 "$WORK"/logs/node*.log >&2; fail "node :$port not ready"; }
done

URL="https://127.0.0.1:$TLS_PORT"
C=(curl -sk --max-time 60)
[ "$("${C[@]}" -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/api/models")" = 301 ] || fail "plain HTTP is not redirected to HTTPS"
[ "$("${C[@]}" -o "$WORK/console.html" -w '%{http_code}' "$URL/training/some-page")" = 200 ] \
  && cmp -s "$WORK/console.html" "$WWW/index.html" || fail "the console's page is not served (for its own routes too)"
[ "$("${C[@]}" -o /dev/null -w '%{http_code}' "$URL/metrics")" = 404 ] || fail "Nginx shows the nodes' /metrics to the public"

step "sign in through Nginx"
TOKEN=$("${C[@]}" "$URL/api/auth/login" -H 'content-type: application/json' \
  -d "{\"username\":\"admin\",\"password\":\"$BONSAI_ADMIN_PASSWORD\"}" | jq -r .access_token)
[ -n "$TOKEN" ] && [ "$TOKEN" != null ] || fail "sign-in through Nginx"
AUTH=(-H "authorization: Bearer $TOKEN")
# Both nodes answer through Nginx: a few requests, then each node's own count of them.
for _ in 1 2 3 4 5 6; do "${C[@]}" -o /dev/null "${AUTH[@]}" "$URL/api/users/profile"; done
for port in "$P1" "$P2"; do
  curl -s "http://127.0.0.1:$port/metrics" >"$WORK/balanced.txt"
  grep -q 'route="/api/users/profile",status="200"' "$WORK/balanced.txt" \
    || fail "node :$port got none of the requests Nginx balanced"
done

step "a 50 MB upload through Nginx"
python3 - "$WORK/big.jsonl" <<'EOF'
import sys
line = '{"question": "What is item %08d of the big upload?", "answer": "It is a line of filler text to make the file fifty megabytes."}\n'
with open(sys.argv[1], "w") as f:
    i = 0
    while f.tell() < 50 * 1000 * 1000:
        f.write(line % i); i += 1
EOF
status=$("${C[@]}" --max-time 120 -o "$WORK/upload.json" -w '%{http_code}' "${AUTH[@]}" "$URL/api/data/upload" \
  -F "file=@$WORK/big.jsonl" -F name=big)
[ "$status" = 201 ] || { cat "$WORK/upload.json" >&2; fail "50 MB upload answered $status"; }
# Stored whole: the node's size and digest are the file's.
[ "$(jq -r .file_size "$WORK/upload.json")" = "$(stat -c %s "$WORK/big.jsonl")" ] \
  && [ "$(jq -r .sha256 "$WORK/upload.json")" = "$(sha256sum "$WORK/big.jsonl" | cut -d' ' -f1)" ] \
  || fail "the upload was not stored whole: $(head -c 300 "$WORK/upload.json")"

step "a training task's progress feed (SSE) and WebSocket through Nginx"
DATASET=$("${C[@]}" "${AUTH[@]}" "$URL/api/data/upload" -F "file=@demo/faq.jsonl" -F name=faq | jq -r .id)
"${C[@]}" -o /dev/null -X POST "${AUTH[@]}" "$URL/api/data/datasets/$DATASET/validate"
for _ in $(seq 1 300); do
  st=$("${C[@]}" "${AUTH[@]}" "$URL/api/data/datasets/$DATASET" | jq -r '.status')
  [ "$st" = valid ] && break; [ "$st" = invalid ] && fail "the FAQ dataset is invalid"; sleep 0.2
done
[ "$st" = valid ] || fail "the FAQ dataset was not validated (status $st)"
TASK=$("${C[@]}" "${AUTH[@]}" "$URL/api/training/tasks" -H 'content-type: application/json' -d "{\"name\":\"ops check\",
  \"base_model_id\":\"tiny\",\"dataset_id\":\"$DATASET\",\"start\":false,\"config\":{\"epochs\":2,\"batch_size\":20,\"max_seq_len\":48}}" | jq -r .id)
[ -n "$TASK" ] && [ "$TASK" != null ] || fail "creating a training task"
# The views follow the events within moments: wait until the task is visible (on any node) before its feeds.
for _ in $(seq 1 100); do
  [ "$("${C[@]}" -o /dev/null -w '%{http_code}' "${AUTH[@]}" "$URL/api/training/tasks/$TASK")" = 200 ] && break; sleep 0.1
done
# The feed opened before the run starts: its snapshot, then the run's events as they happen (unbuffered).
curl -skN --max-time 90 "$URL/api/training/tasks/$TASK/events?access_token=$TOKEN" >"$WORK/sse.txt" 2>/dev/null & SSE=$!
PIDS+=("$SSE")
for _ in $(seq 1 50); do grep -q '^event: snapshot' "$WORK/sse.txt" 2>/dev/null && break; sleep 0.1; done
grep -q '^event: snapshot' "$WORK/sse.txt" || fail "no SSE snapshot through Nginx within 5 s"
python3 - "127.0.0.1" "$TLS_PORT" "/api/training/tasks/$TASK/ws?access_token=$TOKEN" >"$WORK/ws.txt" <<'EOF' || fail "WebSocket through Nginx: $(cat "$WORK/ws.txt")"
# A minimal WebSocket client (RFC 6455: handshake, one unmasked text frame from the server), to need nothing.
import base64, os, socket, ssl, sys
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection((host, port), timeout=15), server_hostname="localhost")
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
buf = b""
while b"\r\n\r\n" not in buf:
    chunk = s.recv(4096)
    if not chunk: sys.exit(print("closed during the handshake"))
    buf += chunk
head, buf = buf.split(b"\r\n\r\n", 1)
if not head.startswith(b"HTTP/1.1 101"): sys.exit(print(head.decode(errors="replace").splitlines()[0]))
def read(n):
    global buf
    while len(buf) < n:
        chunk = s.recv(65536)
        if not chunk: sys.exit(print("closed mid-frame"))
        buf += chunk
    out, buf = buf[:n], buf[n:]
    return out
b0, b1 = read(2)
n = b1 & 0x7F
if n == 126: n = int.from_bytes(read(2), "big")
elif n == 127: n = int.from_bytes(read(8), "big")
print(read(n).decode())
EOF
jq -e '.type == "snapshot"' "$WORK/ws.txt" >/dev/null || fail "the WebSocket's first message is not a snapshot: $(head -c 200 "$WORK/ws.txt")"
"${C[@]}" -o /dev/null -X POST "${AUTH[@]}" "$URL/api/training/tasks/$TASK/start"
beyond_snapshot() { [ "$(grep -c '^event: ' "$WORK/sse.txt")" -gt "$(grep -c '^event: snapshot' "$WORK/sse.txt")" ]; }
for _ in $(seq 1 600); do beyond_snapshot && break; sleep 0.1; done
beyond_snapshot || fail "no training event came through the SSE feed within 60 s: $(head -c 300 "$WORK/sse.txt")"
echo "   SSE events seen: $(grep '^event: ' "$WORK/sse.txt" | cut -d' ' -f2 | sort | uniq -c | tr -s ' \n' ' ')"

step "every metric in the rules and dashboards is on a node's /metrics"
curl -sf "http://127.0.0.1:$P1/metrics" >"$WORK/metrics1.txt" || fail "node :$P1 /metrics"
curl -sf "http://127.0.0.1:$P2/metrics" >"$WORK/metrics2.txt" || fail "node :$P2 /metrics"
names=$(grep -ohE '\bbonsai_[a-z0-9_]+' deploy/prometheus/rules.yml deploy/grafana/dashboards/*.json | sort -u)
[ -n "$names" ] || fail "no metric names found in the rules and dashboards"
absent=()
for name in $names; do
  grep -qE "(^| )$name([{ ]|$)" "$WORK/metrics1.txt" || absent+=("$name")
done
[ ${#absent[@]} -eq 0 ] || fail "not on /metrics: ${absent[*]}"
echo "   $(echo "$names" | wc -w) metric names checked"
grep -q '^bonsai_dependency_up{dependency="nats"} 1' "$WORK/metrics2.txt" || fail "the worker node does not report NATS up"

echo "ops check: PASS"
