#!/usr/bin/env bash
# The admin API against its own OpenAPI document, with a schema-driven fuzzer (schemathesis).
#
# Starts `inboxd sim` and `inboxd serve` against it on a temporary store (as tests/browser/run.sh
# does: free port, fresh master key and admin token), seeds three channels (one active with mail
# ingested, one awaiting its authorization, one backing off with a last error from Graph), then
# runs schemathesis on `GET /api/openapi.json` with the bearer token: every operation, positive
# and negative inputs, the seeded channel ids mixed into the generated ones. It fails on any
# finding of the checks:
#   not_a_server_error           no 5xx, whatever is sent;
#   status_code_conformance      every status is one the document lists for the operation;
#   response_schema_conformance  every body matches the document's schema for that status;
#   content_type_conformance     every body has the content type the document says.
# Bounded: a few examples per operation and a time budget per pass (schemathesis fuzzes until the
# budget is spent: 30 s, then 10 s for removal; under a minute in all).
#
# Reports (JUnit, and the daemon's log) land in target/openapi/. Exits non-zero on any failure.
# Needs: python3 with `pip install -r tests/openapi/requirements.txt`, curl, jq.
# The daemon: $INBOXD_BIN if set; else the release build (`cargo build --release`), as CI ships it.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$root/target/openapi"
mkdir -p "$out"
rm -rf "${out:?}"/*

if [ -z "${INBOXD_BIN:-}" ]; then
  (cd "$root" && cargo build --release --quiet --bin inboxd)
  INBOXD_BIN="$root/target/release/inboxd"
fi
# Bounds of the fuzzing: examples per operation and seconds per pass.
max_examples="${OPENAPI_FUZZ_MAX_EXAMPLES:-25}"
max_time="${OPENAPI_FUZZ_MAX_TIME:-30}"
delete_max_time="${OPENAPI_FUZZ_DELETE_MAX_TIME:-10}"
seed="${OPENAPI_FUZZ_SEED:-16}"

work="$(mktemp -d)"
pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
  if [ "$status" != 0 ]; then
    echo "OpenAPI fuzz test FAILED (exit $status); see $out (serve.log, junit.xml)" >&2
  fi
  exit "$status"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# --- the simulator -----------------------------------------------------------------------------
touch "$work/sim.out"
"$INBOXD_BIN" sim --listen 127.0.0.1:0 >"$work/sim.out" 2>"$out/sim.log" &
pids+=($!)
sim=""
for _ in $(seq 1 200); do
  sim="$(sed -n 's/^inboxd sim listening on //p' "$work/sim.out" | head -n1 || true)"
  [ -n "$sim" ] && break
  sleep 0.05
done
[ -n "$sim" ] || { echo "the simulator did not start; see $out/sim.log" >&2; exit 1; }

# --- the daemon --------------------------------------------------------------------------------
# A long poll interval: the seeded channels poll after their authorization and on "poll now" only.
# The fuzzer sends wrong and missing tokens on purpose (each must be a 401): a failure budget it
# cannot spend keeps the address from being blocked, so the other answers get tested, not 429s.
port="$(free_port)"
base="http://127.0.0.1:$port"
admin_token="openapi-test-admin-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
client_secret="Sim8Q~openapi-test-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
tenant="6f1c2a3b-4d5e-4f60-8a71-92b3c4d5e6f7"
client_id="0a1b2c3d-4e5f-4061-8273-9485a6b7c8d9"

sim_post() {
  curl -fsS -X POST -H 'Content-Type: application/json' --data "$2" "$sim/_sim/$1" >/dev/null
}
sim_post tenants "{\"tenant_id\":\"$tenant\",\"domains\":[\"contoso.example\"]}"
sim_post apps "{\"tenant_id\":\"$tenant\",\"client_id\":\"$client_id\",\"client_secret\":\"$client_secret\",\"redirect_uris\":[\"$base/oauth/callback\"]}"
for user in support sales billing; do
  sim_post users "{\"tenant_id\":\"$tenant\",\"upn\":\"$user@contoso.example\"}"
  sim_post "mailboxes/$user@contoso.example/messages" '{"count":3}'
done

INBOXD_MASTER_KEY="$("$INBOXD_BIN" keygen)" \
INBOXD_ADMIN_TOKEN="$admin_token" \
INBOXD_SERVER__LISTEN="127.0.0.1:$port" \
INBOXD_SERVER__PUBLIC_URL="$base" \
INBOXD_CLOUD__LOGIN_URL="$sim" \
INBOXD_CLOUD__GRAPH_URL="$sim" \
INBOXD_STORE__PATH="$work/store" \
INBOXD_PROCESSOR__JSONL_PATH="$work/mail.jsonl" \
INBOXD_POLLING__INTERVAL_SECS=600 \
INBOXD_POLLING__JITTER_SECS=0 \
INBOXD_SERVER__ADMIN_LOGIN_FAILURES_PER_MIN=100000 \
  "$INBOXD_BIN" serve >"$out/serve.stdout.log" 2>"$out/serve.log" &
pids+=($!)
for _ in $(seq 1 400); do
  curl -fsS "$base/healthz" >/dev/null 2>&1 && break
  sleep 0.05
done
curl -fsS "$base/healthz" >/dev/null || { echo "inboxd serve did not start; see $out/serve.log" >&2; exit 1; }

# --- seed channels -----------------------------------------------------------------------------
api() { # api METHOD PATH [BODY]
  curl -fsS -X "$1" -H "Authorization: Bearer $admin_token" -H 'Content-Type: application/json' \
    ${3:+--data "$3"} "$base/api$2"
}
add_channel() { # add_channel USER -> id
  api POST /channels "{\"tenant_id\":\"$tenant\",\"client_id\":\"$client_id\",\"client_secret\":\"$client_secret\",\"mailbox\":\"$1@contoso.example\",\"first_import\":\"all\",\"client_secret_expires_at\":\"2099-12-31\"}" | jq -er .id
}
authorize() { # authorize ID: the simulator signs the mailbox's user in and redirects to the callback
  local url location
  url="$(api POST "/channels/$1/authorize" | jq -er .authorization_url)"
  location="$(curl -sS -o /dev/null -w '%{redirect_url}' "$url")"
  [ -n "$location" ] || { echo "the simulator's sign-in did not redirect for channel $1" >&2; exit 1; }
  curl -fsS -o /dev/null "$location"
}
wait_status() { # wait_status ID STATUS
  local now=""
  for _ in $(seq 1 200); do
    now="$(api GET "/channels/$1" | jq -r .status)"
    [ "$now" = "$2" ] && return 0
    sleep 0.05
  done
  echo "channel $1 is $now, not $2, after 10 s; see $out/serve.log" >&2
  exit 1
}
active="$(add_channel support)"
authorize "$active"
wait_status "$active" active
awaiting="$(add_channel sales)"
failing="$(add_channel billing)"
authorize "$failing"
wait_status "$failing" active
# Graph answers 503 for this mailbox: the next poll backs off with a last error.
sim_post faults '{"kind":"status","status":503,"mailbox":"billing@contoso.example","endpoints":["graph"],"count":1000}'
api POST "/channels/$failing/poll" >/dev/null
wait_status "$failing" backing_off
echo "seeded channels: $active (active), $awaiting (awaiting_authorization), $failing (backing_off)"

# --- fuzz --------------------------------------------------------------------------------------
# From the temporary directory: schemathesis keeps a cache (.schemathesis/) in the current one.
cd "$work"
# The seeded ids are mixed into the generated path ids, so the operations reach real channels.
cat >"$work/schemathesis.toml" <<TOML
[dictionaries.channels]
values = ["$active", "$awaiting", "$failing"]

[parameters]
"path.id" = { dictionary = "channels", probability = 0.5 }
TOML
checks=not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance
fuzz() { # fuzz NAME ARGS...: one pass, its JUnit report named after it
  local name="$1"; shift
  echo "--- schemathesis: $name"
  schemathesis --config-file "$work/schemathesis.toml" run "$base/api/openapi.json" \
    --url "$base" \
    --header "Authorization: Bearer $admin_token" \
    --checks "$checks" \
    --max-examples "$max_examples" \
    --seed "$seed" \
    --workers 1 \
    --report junit --report-junit-path "$out/junit-$name.xml" \
    --output-sanitize true \
    "$@"
}
# The checks must be able to fail: against a planted copy of the document that says a channel's
# `messages_today` is a string, showing a seeded channel is a finding.
curl -fsS "$base/api/openapi.json" \
  | jq '.components.schemas.ChannelOut.properties.messages_today = {"type": "string"}' >"$work/planted.json"
if schemathesis --config-file "$work/schemathesis.toml" run "$work/planted.json" --url "$base" \
  --header "Authorization: Bearer $admin_token" --checks response_schema_conformance \
  --include-operation-id show_channel --phases examples,fuzzing --max-examples 10 --seed "$seed" \
  --workers 1 >"$out/planted.log" 2>&1; then
  echo "schemathesis passed a document planted with a wrong schema: the checks would find nothing; see $out/planted.log" >&2
  exit 1
fi
grep -q "messages_today\|Response violates schema" "$out/planted.log" || {
  echo "schemathesis failed on the planted document, but not for the planted schema; see $out/planted.log" >&2
  exit 1
}
echo "the planted schema mismatch was found (the checks can fail)"

# Everything but removal first, so the seeded channels are there for every other operation; then
# removal (of the seeded channels too).
fuzz all-but-delete --exclude-method DELETE --max-time "$max_time"
fuzz delete --include-method DELETE --max-time "$delete_max_time"

# The daemon is still up and answers after the fuzzing.
curl -fsS "$base/healthz" >/dev/null || { echo "inboxd serve died during the fuzzing; see $out/serve.log" >&2; exit 1; }
echo "OpenAPI fuzz test passed: no server error, every answer as the document says"
