#!/usr/bin/env bash
# An Apache Kafka broker for Sluice's tests and for development, on loopback only: one node in
# KRaft mode (broker and controller in one process), from Kafka's Maven artifacts, on the JDK.
#
#   scripts/services/kafka.sh start    # fetch the jars if missing, format, start, wait until ready; idempotent
#   scripts/services/kafka.sh stop     # stop what `start` started
#   scripts/services/kafka.sh url      # print the bootstrap address
#
# Data lives in .sluice/services/kafka (ignored by git), or in $SLUICE_KAFKA_DIR for another broker
# beside it (the fault tests restart one of their own). Ports: $SLUICE_KAFKA_PORT (default 59092)
# for clients, $SLUICE_KAFKA_CONTROLLER_PORT (default the client port + 1) for the controller.
# The jars are the ones scripts/services/kafka/pom.xml names (Maven copies them into lib/).
# Tests read the address from $SLUICE_TEST_KAFKA_BOOTSTRAP (see `url`).
set -euo pipefail
cd "$(dirname "$0")/../.."

PORT="${SLUICE_KAFKA_PORT:-59092}"
CONTROLLER_PORT="${SLUICE_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
POM="$PWD/scripts/services/kafka/pom.xml"
LIB="$PWD/.sluice/services/kafka/lib"
ROOT="${SLUICE_KAFKA_DIR:-$PWD/.sluice/services/kafka}"
DATA="$ROOT/data"
LOG="$ROOT/server.log"
PIDFILE="$ROOT/kafka.pid"
START_TIMEOUT_S="${SLUICE_KAFKA_START_TIMEOUT:-90}"

url() {
  echo "127.0.0.1:$PORT"
}

pom_digest() {
  sha256sum "$POM" | cut -d' ' -f1
}

# The jars, once per version of the pom: `mvn dependency:copy-dependencies` resolves kafka_2.13
# with its runtime dependencies (Maven's local repository caches them across runs). Kafka 4 needs
# Java 17 or later.
install() {
  local digest
  digest="$(pom_digest)"
  if [ -f "$LIB/.pom-digest" ] && [ "$(cat "$LIB/.pom-digest")" = "$digest" ]; then return 0; fi
  if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
    echo "kafka.sh: installing a JDK and Maven from Debian's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    local sudo=()
    if [ "$(id -u)" != 0 ]; then sudo=(sudo); fi
    "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq openjdk-17-jre-headless maven >/dev/null
  fi
  echo "kafka.sh: fetching Kafka's jars with Maven" >&2
  if running_pid >/dev/null; then stop; fi
  # Another Kafka version may not read this one's log format: test data is not worth keeping.
  rm -rf "$LIB" "$DATA"
  mkdir -p "$LIB"
  if ! mvn -B -f "$POM" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$LIB" \
    >"$LIB/../mvn.log" 2>&1; then
    tail -n 40 "$LIB/../mvn.log" >&2
    echo "kafka.sh: Maven could not fetch Kafka's jars (log: $LIB/../mvn.log)" >&2
    exit 1
  fi
  echo "$digest" >"$LIB/.pom-digest"
}

java_cp() {
  java -Xmx512m -cp "$LIB/*" -Dlog4j2.configurationFile="$ROOT/log4j2.properties" "$@"
}

write_config() {
  mkdir -p "$ROOT"
  cat >"$ROOT/server.properties" <<EOF
# Written by scripts/services/kafka.sh: one node, broker and controller, loopback only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA
num.partitions=1
auto.create.topics.enable=true
# A single node: every internal topic has one replica, and groups start without waiting.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
  cat >"$ROOT/log4j2.properties" <<EOF
# Written by scripts/services/kafka.sh: everything to server.log, nothing to the console.
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $LOG
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka_request.name = kafka.request.logger
logger.kafka_request.level = WARN
logger.state_change.name = state.change.logger
logger.state_change.level = WARN
EOF
}

running_pid() {
  local pid
  [ -f "$PIDFILE" ] || return 1
  pid="$(cat "$PIDFILE")"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q 'kafka.Kafka' "/proc/$pid/cmdline" 2>/dev/null; then
    echo "$pid"
    return 0
  fi
  return 1
}

accepts_connections() {
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null
}

start() {
  install
  if running_pid >/dev/null; then
    echo "kafka.sh: already running on $(url)" >&2
    url
    return 0
  fi
  write_config
  if [ ! -f "$DATA/meta.properties" ]; then
    local cluster_id
    cluster_id="$(java_cp kafka.tools.StorageTool random-uuid)"
    java_cp kafka.tools.StorageTool format --cluster-id "$cluster_id" --config "$ROOT/server.properties" \
      --ignore-formatted >/dev/null
  fi
  : >"$LOG"
  # setsid: the broker outlives this shell and gets no signal meant for the caller's terminal.
  setsid java -Xms256m -Xmx512m -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$ROOT/log4j2.properties" -Dkafka.logs.dir="$ROOT" \
    -cp "$LIB/*" kafka.Kafka "$ROOT/server.properties" >"$ROOT/stdout.log" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  local pid=$! deadline=$((SECONDS + START_TIMEOUT_S))
  # Ready = the broker says it started and its client port takes connections.
  until grep -q 'Kafka Server started' "$LOG" 2>/dev/null && accepts_connections; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "kafka.sh: the broker exited while starting; the end of $LOG and $ROOT/stdout.log:" >&2
      tail -n 30 "$LOG" "$ROOT/stdout.log" >&2 || true
      rm -f "$PIDFILE"
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "kafka.sh: the broker did not start within ${START_TIMEOUT_S}s (log: $LOG)" >&2
      kill "$pid" 2>/dev/null || true
      exit 1
    fi
    sleep 0.2
  done
  echo "kafka.sh: started on $(url) (log: $LOG)" >&2
  url
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$PIDFILE"
    return 0
  fi
  kill "$pid"
  # A controlled shutdown takes a few seconds; past 30 the broker is killed outright.
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  rm -f "$PIDFILE"
  echo "kafka.sh: stopped" >&2
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
