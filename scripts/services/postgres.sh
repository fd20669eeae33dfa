#!/usr/bin/env bash
# A PostgreSQL server for Sluice's tests and for development, on loopback only.
#
#   scripts/services/postgres.sh start    # install (Debian packages) if missing, init, start; idempotent
#   scripts/services/postgres.sh stop     # stop what `start` started
#   scripts/services/postgres.sh url      # print the connection URL
#
# Data lives in .sluice/services/postgres (ignored by git). Port: $SLUICE_PG_PORT, default 54329.
# Tests read the URL from $SLUICE_TEST_POSTGRES_URL (see `url`).
set -euo pipefail
cd "$(dirname "$0")/../.."

PORT="${SLUICE_PG_PORT:-54329}"
ROOT="$PWD/.sluice/services/postgres"
DATA="$ROOT/data"
LOG="$ROOT/server.log"
DB=sluice_test

pg_bin() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    if [ -x "$dir/initdb" ]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

install() {
  if pg_bin >/dev/null; then return 0; fi
  echo "postgres.sh: installing PostgreSQL from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
  else
    sudo apt-get update -qq && sudo apt-get install -y -qq postgresql >/dev/null
  fi
}

# PostgreSQL refuses to run as root: run it as the `postgres` user when we are root.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

url() {
  echo "postgres://sluice@127.0.0.1:$PORT/$DB"
}

start() {
  install
  local bin
  bin="$(pg_bin)"
  mkdir -p "$ROOT"
  if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$ROOT"; fi
  if [ ! -f "$DATA/PG_VERSION" ]; then
    as_owner "$bin/initdb" -D "$DATA" -U sluice --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  if as_owner "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    echo "postgres.sh: already running on 127.0.0.1:$PORT" >&2
  else
    as_owner "$bin/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $PORT -k $ROOT -c fsync=off -c max_connections=200" start >/dev/null
    echo "postgres.sh: started on 127.0.0.1:$PORT (log: $LOG)" >&2
  fi
  if ! as_owner "$bin/psql" -h 127.0.0.1 -p "$PORT" -U sluice -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
    as_owner "$bin/createdb" -h 127.0.0.1 -p "$PORT" -U sluice "$DB"
  fi
  url
}

stop() {
  local bin
  if ! bin="$(pg_bin)"; then return 0; fi
  if [ -f "$DATA/PG_VERSION" ] && as_owner "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    as_owner "$bin/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
    echo "postgres.sh: stopped" >&2
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) url ;;
  *)
    echo "usage: $0 start|stop|url" >&2
    exit 64
    ;;
esac
