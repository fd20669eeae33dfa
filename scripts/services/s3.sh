#!/usr/bin/env bash
# An S3-compatible server for Sluice's tests and for development, on loopback only: s3rver (a
# devDependency, run on the project's Node), storing buckets as plain files.
#
#   scripts/services/s3.sh start    # start and wait until it answers; idempotent
#   scripts/services/s3.sh stop     # stop what `start` started
#   scripts/services/s3.sh url      # print the endpoint URL
#
# Data lives in .sluice/services/s3 (ignored by git). Port: $SLUICE_S3_PORT, default 59000.
# Credentials: s3rver's fixed pair, access key S3RVER and secret S3RVER (export them as
# AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to point Sluice at it; the tests set them).
# Tests read the endpoint from $SLUICE_TEST_S3_ENDPOINT (see `url`) and make their own buckets.
set -euo pipefail
cd "$(dirname "$0")/../.."

PORT="${SLUICE_S3_PORT:-59000}"
ROOT="$PWD/.sluice/services/s3"
DATA="$ROOT/data"
LOG="$ROOT/server.log"
PIDFILE="$ROOT/s3rver.pid"
BIN="$PWD/node_modules/s3rver/bin/s3rver.js"
START_TIMEOUT_S="${SLUICE_S3_START_TIMEOUT:-30}"

url() {
  echo "http://127.0.0.1:$PORT"
}

# The project's Node (node_modules/.bin has Node 24); the system one may be older.
node_bin() {
  if [ -x "$PWD/node_modules/.bin/node" ]; then echo "$PWD/node_modules/.bin/node"; else command -v node; fi
}

running_pid() {
  local pid
  [ -f "$PIDFILE" ] || return 1
  pid="$(cat "$PIDFILE")"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q 's3rver' "/proc/$pid/cmdline" 2>/dev/null; then
    echo "$pid"
    return 0
  fi
  return 1
}

# Ready = a request to the port gets an HTTP answer (bash's /dev/tcp: no curl needed).
answers() {
  (
    exec 3<>"/dev/tcp/127.0.0.1/$PORT" || exit 1
    printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
    timeout 2 head -c 5 <&3 | grep -q '^HTTP/'
  ) 2>/dev/null
}

start() {
  if [ ! -f "$BIN" ]; then
    echo "s3.sh: s3rver is not installed: run npm install first" >&2
    exit 1
  fi
  if running_pid >/dev/null; then
    echo "s3.sh: already running on $(url)" >&2
    url
    return 0
  fi
  mkdir -p "$DATA"
  : >"$LOG"
  # setsid: the server outlives this shell and gets no signal meant for the caller's terminal.
  # --no-vhost-buckets: only path-style URLs, which is what Sluice uses with an endpoint.
  # --openssl-legacy-provider: s3rver makes ListObjectsV2 continuation tokens with DES, which
  # OpenSSL 3 (Node 17 and later) offers only in its legacy provider; without it, listing more
  # than one page fails with InternalError.
  setsid "$(node_bin)" --openssl-legacy-provider "$BIN" --directory "$DATA" --address 127.0.0.1 --port "$PORT" --silent \
    --no-vhost-buckets >"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  local pid=$! deadline=$((SECONDS + START_TIMEOUT_S))
  until answers; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "s3.sh: s3rver exited while starting; the end of $LOG:" >&2
      tail -n 30 "$LOG" >&2 || true
      rm -f "$PIDFILE"
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "s3.sh: s3rver did not answer within ${START_TIMEOUT_S}s (log: $LOG)" >&2
      kill "$pid" 2>/dev/null || true
      rm -f "$PIDFILE"
      exit 1
    fi
    sleep 0.1
  done
  echo "s3.sh: started on $(url) (log: $LOG)" >&2
  url
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$PIDFILE"
    return 0
  fi
  kill "$pid"
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  rm -f "$PIDFILE"
  echo "s3.sh: stopped" >&2
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
