#!/usr/bin/env bash
# Fuzzes the control plane's v1 API from its own OpenAPI document with schemathesis: a real
# `sluice server` (embedded store, in a temp dir, on loopback) with its admin token, and a bounded
# number of generated requests per operation. Fails on any 5xx, on a status the document does not
# declare, and on a content type or body that does not match the document.
#   FUZZ_EXAMPLES  examples per operation and phase (default 25)   FUZZ_SEED  (default 1)
# schemathesis comes from PyPI into a venv cached at .sluice/tools/schemathesis (python3 -m venv).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
SCHEMATHESIS_VERSION=4.32.5
venv=$root/.sluice/tools/schemathesis
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

work=$(mktemp -d)
server_pid=
cleanup() {
  if [[ -n $server_pid ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# The server runs in the temp dir, so whatever a generated request makes it write stays there.
(cd "$work" && exec node "$root/bin/sluice.js" server --host 127.0.0.1 --port 0 --state-dir state \
  --log-level warn 2>server.log) &
server_pid=$!
for _ in $(seq 1 300); do
  grep -q 'admin token' "$work/server.log" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.1
done
url=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$work/server.log")
token=$(sed -n 's/.*admin token (shown once): \(.*\)$/\1/p' "$work/server.log")
[[ -n $url && -n $token ]] || { echo "fuzz-api: the server did not start:" >&2; cat "$work/server.log" >&2; exit 1; }

api() { # METHOD PATH [JSON BODY]: the response body; fails on an HTTP error
  curl -sf -X "$1" -H "Authorization: Bearer $token" ${3:+-H 'Content-Type: application/json' -d "$3"} "$url$2"
}
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
api GET /v1/openapi.json >"$work/openapi.json"

# Real things to aim at, so that the routes with an id reach their handlers instead of a 404: a
# pipeline, a finished job of it (with runs, logs and a summary), a schedule and a webhook.
spec='apiVersion: sluice/v1\nkind: Pipeline\nmetadata: { name: fuzzed }\nsource:\n  generate: { count: 20, fields: { id: seq } }\nsink:\n  file: { path: out/fuzzed/, format: jsonl }\n'
job=$(api POST /v1/jobs "{\"spec\": \"$spec\"}" | field "['job']['id']")
for _ in $(seq 1 600); do
  state=$(api GET "/v1/jobs/$job" | field "['job']['state']")
  [[ $state == succeeded || $state == failed || $state == cancelled ]] && break
  sleep 0.1
done
[[ $state == succeeded ]] || { echo "fuzz-api: the seed job is $state" >&2; cat "$work/server.log" >&2; exit 1; }
schedule=$(api POST /v1/schedules '{"pipeline": "fuzzed", "cron": "0 3 * * *"}' | field "['schedule']['id']")
webhook=$(api POST /v1/webhooks '{"url": "http://127.0.0.1:9/fuzz", "events": ["job.failed"]}' | field "['webhook']['id']")
cat >"$work/schemathesis.toml" <<TOML
[[operations]]
include-path-regex = "^/v1/jobs/"
parameters = { "path.id" = "$job" }
[[operations]]
include-path-regex = "^/v1/pipelines/[{]ref[}]"
parameters = { "path.ref" = "fuzzed", "path.version" = 1 }
[[operations]]
include-path-regex = "^/v1/schedules/"
parameters = { "path.id" = "$schedule" }
[[operations]]
include-path-regex = "^/v1/webhooks/"
parameters = { "path.id" = "$webhook" }
TOML
# DELETE /v1/tokens/{id} is left out: with ids from GET /v1/tokens and an admin token of its own
# making, the fuzzer revokes the token it runs with, and every later request is a 401
# (src/server/suite.ts tests that route). One worker: hypothesis's source parsing is not
# thread-safe on Python 3.11 ("AST constructor recursion depth mismatch").
status=0
# From the temp dir: schemathesis keeps a crash cache (.schemathesis/) in its working directory.
(cd "$work" && "$venv/bin/schemathesis" --config-file schemathesis.toml run openapi.json --url "$url" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,unsupported_method,allow_header_conformance \
  --phases examples,coverage,fuzzing \
  --exclude-path '/v1/tokens/{id}' \
  --max-examples "${FUZZ_EXAMPLES:-25}" --seed "${FUZZ_SEED:-1}" \
  --generation-with-security-parameters false --generation-database none --workers 1 --request-timeout 20 --no-color \
  --report junit --report-dir "$root/.sluice/fuzz-api") || status=$?
if [[ $status -ne 0 ]] && grep -q '"level":50' "$work/server.log"; then
  echo "fuzz-api: the server logged errors:" >&2
  grep '"level":50' "$work/server.log" | tail -20 >&2
fi
exit "$status"
