#!/bin/bash
# Dataset validation throughput through the real path: `bonsai serve`, upload a generated 200 MB JSONL
# file, ask for validation, wait for the worker's answer. Prints upload time, the worker's validation
# time (from its `dataset validated` log line) and the server's peak RSS before and after.
# Needs PostgreSQL and NATS on their default ports, curl, jq and python3.
# Usage: scripts/bench-dataset-validation.sh [path/to/bonsai]   (default target/debug/bonsai)
#   BENCH_TOKENIZER=<model folder>: install that model as `bench` and validate with token counts by its tokenizer.
#   BENCH_MB=<size>: the generated file's size in MiB (default 200).
set -eu
BIN=${1:-target/debug/bonsai}
MB=${BENCH_MB:-200}
FILE=${BENCH_FILE:-/tmp/bonsai-bench-${MB}mb.jsonl}
if [ ! -f "$FILE" ]; then
  python3 - "$FILE" "$MB" <<'PY'
import random, sys
random.seed(1)
words = "the of and to in is was for on that with as by at from they be this which or an are had not but what all".split()
with open(sys.argv[1], "w") as f:
    size, i = 0, 0
    while size < int(sys.argv[2]) * 1024 * 1024:
        q = " ".join(random.choices(words, k=random.randint(8, 20)))
        a = " ".join(random.choices(words, k=random.randint(15, 40)))
        line = '{"question": "%d %s?", "answer": "%s."}\n' % (i, q, a)
        f.write(line); size += len(line); i += 1
PY
fi
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/bonsai_bench_data_$$ BONSAI_NATS_PREFIX=benchdata$$ \
  BONSAI_HTTP_ADDR=127.0.0.1:18080 BONSAI_JWT_SECRET=bench-secret-that-is-long-enough \
  BONSAI_ADMIN_PASSWORD=bench-password-1 BONSAI_DATA_DIR=/tmp/bonsai-bench-data-$$ \
  BONSAI__MAX_UPLOAD_BYTES=300000000 BONSAI_CONFIG=/nonexistent.toml
LOG=/tmp/bonsai-bench-serve-$$.log
QUERY=""
if [ -n "${BENCH_TOKENIZER:-}" ]; then
  mkdir -p "$BONSAI_DATA_DIR/models/bench"
  cp "$BENCH_TOKENIZER"/tokenizer*.json "$BENCH_TOKENIZER"/config.json "$BONSAI_DATA_DIR/models/bench/"
  QUERY="?tokenizer_model_id=bench"
fi
"$BIN" serve > "$LOG" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; rm -rf /tmp/bonsai-bench-data-$$' EXIT
for _ in $(seq 1 120); do curl -sf localhost:18080/healthz > /dev/null && break; sleep 1; done
sleep 2
T=$(curl -s localhost:18080/api/auth/login -H 'content-type: application/json' \
  -d '{"username":"admin","password":"bench-password-1"}' | jq -r .access_token)
echo "before upload: $(grep VmHWM /proc/$PID/status)"
START=$(date +%s.%N)
ID=$(curl -s localhost:18080/api/data/upload -H "authorization: Bearer $T" -F "file=@$FILE" | jq -r .id)
echo "upload of $(stat -c %s "$FILE") bytes: $(echo "$(date +%s.%N) - $START" | bc) s"
echo "after upload: $(grep VmHWM /proc/$PID/status)"
curl -s -X POST "localhost:18080/api/data/datasets/$ID/validate$QUERY" -H "authorization: Bearer $T" > /dev/null
for _ in $(seq 1 2400); do
  S=$(curl -s "localhost:18080/api/data/datasets/$ID" -H "authorization: Bearer $T" | jq -r .status)
  if [ "$S" = valid ] || [ "$S" = invalid ]; then break; fi
  sleep 0.5
done
echo "status: $S; after validation: $(grep VmHWM /proc/$PID/status)"
SECS=$(sed 's/\x1b\[[0-9;]*m//g' "$LOG" | grep -o 'dataset validated.*secs=[0-9.]*' | grep -o 'secs=[0-9.]*' | cut -d= -f2)
echo "worker validation: $SECS s = $(echo "scale=1; $(stat -c %s "$FILE") / 1048576 / $SECS" | bc) MiB/s"
if [ -n "$QUERY" ]; then
  curl -s "localhost:18080/api/data/datasets/$ID" -H "authorization: Bearer $T" | jq -c '.stats | {prompt_tokens, answer_tokens, tokenizer_model_id}'
fi
