#!/usr/bin/env bash
# Starts PostgreSQL, NATS (with JetStream) and Redis on 127.0.0.1 if they are not already running, installing
# them from Debian's packages when they are missing. Idempotent.
set -euo pipefail

need_apt_update=1
apt_install() {
  if [ "$need_apt_update" = 1 ]; then apt-get update -qq; need_apt_update=0; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 5432; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "installing PostgreSQL"; apt_install postgresql
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n1)
  echo "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 50); do port_open 5432 && break; sleep 0.2; done
  port_open 5432 || { echo "PostgreSQL did not start" >&2; exit 1; }
  # Trust auth for local TCP connections of the postgres user (as the dev machines are set up).
  psql -h 127.0.0.1 -U postgres -c 'select 1' >/dev/null 2>&1 || {
    hba=$(ls /etc/postgresql/"$version"/main/pg_hba.conf)
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  }
fi

if ! port_open 4222; then
  command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || { echo "installing NATS"; apt_install nats-server; }
  bin=$(command -v nats-server || echo /usr/sbin/nats-server)
  mkdir -p /var/lib/nats-server
  echo "starting NATS with JetStream"
  start-stop-daemon --start --oknodo --background --exec "$bin" -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  for _ in $(seq 1 50); do port_open 4222 && break; sleep 0.2; done
  port_open 4222 || { echo "NATS did not start" >&2; exit 1; }
fi
if ! port_open 6379; then
  command -v redis-server >/dev/null 2>&1 || { echo "installing Redis"; apt_install redis-server; }
  mkdir -p /var/lib/redis /var/log/redis
  echo "starting Redis (answer cache; keeps nothing on disk)"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis \
    --logfile /var/log/redis/bonsai.log
  for _ in $(seq 1 50); do port_open 6379 && break; sleep 0.2; done
  port_open 6379 || { echo "Redis did not start" >&2; exit 1; }
fi
echo "PostgreSQL, NATS and Redis are up"
