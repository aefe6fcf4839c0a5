#!/usr/bin/env bash
# Runs `bonsai serve` and, once it is ready, registers, deploys and makes SmolLM2-135M-Instruct the default
# model (as the admin) if it is installed and no version of it is deployed yet; prints the address it serves
# on. Used by scripts/start.sh and the Docker image. Signals reach the server, which stops gracefully.
#
#   scripts/serve.sh <bonsai binary> [bonsai serve flags]   (BONSAI_SMOLLM2=0: deploy nothing)
set -euo pipefail
bonsai=${1:?usage: serve.sh <bonsai binary> [serve flags]}
shift
smollm2=smollm2-135m-instruct
models_dir="${BONSAI_MODELS_DIR:-${BONSAI_DATA_DIR:-data}/models}"
[ -f "$models_dir/$smollm2/config.json" ] || BONSAI_SMOLLM2=0
[ -n "${BONSAI_ADMIN_PASSWORD:-}" ] || BONSAI_SMOLLM2=0   # no admin to deploy it as

# The address the server will listen on, as `bonsai serve` decides it: --addr, BONSAI_HTTP_ADDR,
# BONSAI__HTTP_ADDR, the config file, the default.
addr=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --addr) addr="${args[i + 1]:-}" ;;
    --addr=*) addr="${args[i]#--addr=}" ;;
  esac
done
config="${BONSAI_CONFIG:-bonsai.toml}"
[ -n "$addr" ] || addr="${BONSAI_HTTP_ADDR:-${BONSAI__HTTP_ADDR:-}}"
[ -n "$addr" ] || { [ -f "$config" ] && addr="$(sed -n 's/^[[:space:]]*http_addr[[:space:]]*=[[:space:]]*"\(.*\)".*/\1/p' "$config" | head -n1)"; } || true
[ -n "$addr" ] || addr=127.0.0.1:8080
port="${addr##*:}"
host="${addr%:*}"
case "$host" in 0.0.0.0 | "[::]" | "") host=127.0.0.1 ;; esac
scheme=http
[ -z "${BONSAI__TLS_CERT:-}" ] || scheme=https
url="$scheme://$host:$port"
export BONSAI_URL="$url"

"$bonsai" serve "$@" &
server=$!
trap 'kill -TERM "$server" 2>/dev/null || true' INT TERM
curl_() { curl -sk --max-time 30 "$@"; }

# Registers, exports, deploys SmolLM2 and makes it the default model unless a version of it is deployed.
deploy_smollm2() {
  local login token models id status
  login="$(curl_ "$url/api/auth/login" -H 'content-type: application/json' \
    -d "{\"username\":\"${BONSAI_ADMIN_USERNAME:-admin}\",\"password\":\"$BONSAI_ADMIN_PASSWORD\"}")"
  token="$(jq -r '.access_token // empty' <<<"$login")"
  [ -n "$token" ] || { echo "warning: cannot sign in as the admin to deploy SmolLM2: $login" >&2; return 1; }
  local auth=(-H "authorization: Bearer $token")
  models="$(curl_ "$url/api/models?name=$smollm2&page_size=100" "${auth[@]}")"
  if [ "$(jq '[.items[] | select(.deployed)] | length' <<<"$models")" != 0 ]; then
    echo "$smollm2 is deployed"
  else
    id="$(jq -r '[.items[] | select(.status != "failed")][0].id // empty' <<<"$models")"
    if [ -z "$id" ]; then
      id="$(curl_ "$url/api/models" "${auth[@]}" -H 'content-type: application/json' \
        -d "{\"name\":\"$smollm2\",\"base_model_id\":\"$smollm2\"}" | jq -r '.id // empty')"
      [ -n "$id" ] || { echo "warning: could not register $smollm2" >&2; return 1; }
    fi
    echo "exporting $smollm2 to ONNX (model $id; a minute or two)"
    for _ in $(seq 1 600); do
      status="$(curl_ "$url/api/models/$id" "${auth[@]}" | jq -r '.status // empty')"
      [ "$status" = exporting ] || break
      sleep 1
    done
    [ "$status" = ready ] || { echo "warning: $smollm2 is $status, not deployed" >&2; return 1; }
    curl_ -X POST "$url/api/models/$id/deploy" "${auth[@]}" >/dev/null
    echo "$smollm2 is deployed (model $id)"
  fi
  # The default model answers questions that name none; SmolLM2 is it unless another one was made default.
  if [ "$(curl_ "$url/api/models/aliases" "${auth[@]}" | jq -r '.default_model_id // empty')" = "" ]; then
    id="$(curl_ "$url/api/models?name=$smollm2&deployed=true&page_size=1" "${auth[@]}" | jq -r '.items[0].id // empty')"
    [ -z "$id" ] || { curl_ -X POST "$url/api/models/$id/default" "${auth[@]}" >/dev/null && echo "$smollm2 is the default model"; }
  fi
  curl_ "$url/api/auth/logout" -H 'content-type: application/json' \
    -d "{\"refresh_token\":\"$(jq -r .refresh_token <<<"$login")\"}" >/dev/null || true
}

ready=""
for _ in $(seq 1 300); do
  kill -0 "$server" 2>/dev/null || break
  if curl_ -f "$url/readyz" >/dev/null 2>&1; then ready=1; break; fi
  sleep 1
done
if [ -n "$ready" ]; then
  if [ "${BONSAI_SMOLLM2:-1}" != 0 ]; then
    if command -v jq >/dev/null; then
      deploy_smollm2 || true
    else
      echo "warning: jq is missing: SmolLM2 is installed but not deployed (see the README)" >&2
    fi
  fi
  echo "Bonsai is serving on $url (the console: $url/)"
  echo "sign in: curl -s $url/api/auth/login -H 'content-type: application/json' -d '{\"username\":\"${BONSAI_ADMIN_USERNAME:-admin}\",\"password\":\"${BONSAI_ADMIN_PASSWORD:-<password>}\"}'"
fi
set +e
wait "$server"
status=$?
# A signal stopped the wait, not the server: wait for its graceful end.
while kill -0 "$server" 2>/dev/null; do wait "$server"; status=$?; done
exit "$status"
