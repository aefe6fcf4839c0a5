#!/usr/bin/env bash
# Starts a ClamAV daemon (clamd) on 127.0.0.1, installing it from Debian's packages when it is missing.
# Idempotent: a daemon already listening on the port is left as it is.
#
#   scripts/ensure-clamd.sh --test   the tests' scanner on port 3319 (BONSAI_TEST_CLAMD), which knows one
#                                    signature only: the EICAR test string (scripts/clamav/bonsai-test.ndb).
#                                    Nothing is downloaded.
#   scripts/ensure-clamd.sh          a real scanner on port 3310 with ClamAV's signatures from
#                                    /var/lib/clamav (fetched by `freshclam` where the internet is reachable);
#                                    without them it says so and exits 1.
# Either way clamd's StreamMaxLength is 128 MiB, above the platform's default upload limit (100 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-real}
if [ "$mode" = --test ]; then port=3319; name=test; else port=3310; name=real; fi
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if port_open "$port"; then exit 0; fi

# A real scanner is useless without ClamAV's signatures: without them, say how to get them and install nothing.
if [ "$name" = real ] && ! ls /var/lib/clamav/*.cvd /var/lib/clamav/*.cld >/dev/null 2>&1; then
  echo "no ClamAV signatures in /var/lib/clamav, so uploads are not scanned; to scan them (needs the internet):" >&2
  echo "  apt-get install clamav-daemon clamav-freshclam && freshclam   # then run this again" >&2
  exit 1
fi
if [ ! -x /usr/sbin/clamd ]; then
  echo "installing ClamAV (clamav-daemon)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clamav-daemon >/dev/null
fi

dir="$PWD/.local/clamav/$name"
mkdir -p "$dir"
if [ "$name" = test ]; then
  mkdir -p "$dir/db"
  cp scripts/clamav/bonsai-test.ndb "$dir/db/"
  db="$dir/db"
else
  db=/var/lib/clamav
  if ! ls "$db"/*.cvd "$db"/*.cld >/dev/null 2>&1; then
    echo "no ClamAV signature database in $db: run freshclam (needs the internet) to scan uploads" >&2
    exit 1
  fi
fi
cat >"$dir/clamd.conf" <<CONF
DatabaseDirectory $db
TCPSocket $port
TCPAddr 127.0.0.1
Foreground no
LogFile $dir/clamd.log
PidFile $dir/clamd.pid
StreamMaxLength 128M
MaxFileSize 128M
MaxScanSize 512M
CONF
echo "starting clamd ($name signatures) on 127.0.0.1:$port"
/usr/sbin/clamd -c "$dir/clamd.conf"
# clamd listens once its signatures are loaded (seconds for the test one, up to a minute for ClamAV's).
for _ in $(seq 1 600); do port_open "$port" && break; sleep 0.2; done
port_open "$port" || { echo "clamd did not start; see $dir/clamd.log" >&2; exit 1; }
