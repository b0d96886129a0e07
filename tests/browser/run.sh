#!/usr/bin/env bash
# The status page's acceptance test in a real browser, and the "no secret anywhere" check.
#
# Builds inboxd (debug), starts `inboxd sim` and `inboxd serve` against it on a temporary store,
# provisions a tenant, an app and a mailbox in the simulator, then drives headless Chromium
# (status_page.mjs) through: log in, add a channel, authorize it through the simulator's sign-in,
# see it active, see an injected Conditional Access failure (AADSTS53003) as `blocked` with its
# remedy, clear it, "Update auth info", see it active again. Afterwards it fetches the status page,
# every API GET and /metrics, and greps them, the saved pages and the daemon's log for the client
# secret, the admin token and anything shaped like the simulator's tokens.
#
# Then a second scenario at scale (problems.mjs), against a simulator and a daemon of its own: 1,000
# channels added through the admin API and authorized through the simulator's sign-in (16 at a
# time), 80 of them broken 20 each by the simulator's faults in 4 tenants (Conditional Access
# AADSTS53003 and an expired secret AADSTS7000222 on the token endpoint, a revoked grant, Graph
# throttling with a one-hour Retry-After) and "Poll now"ed so the daemon classifies them itself.
# The status page's first screen must show, above the table, exactly those 4 groups ("Needs
# attention") with code, count 20 and a remedy; "Make sign-in links for all" on the
# needs_reauthorization group must give 20 links to /sign-in/, each a 303 to the simulator's
# sign-in; the owners sign in and the group is gone. It prints a one-line summary.
#
# Screenshots and pages land in target/browser/ (the second scenario's as problems-*). Exits
# non-zero on any failure.
# Needs: bash tests/browser/install.sh (chromium, node, playwright-core).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/tests/browser"
out="$root/target/browser"
mkdir -p "$out"
rm -f "$out"/*.png "$out"/*.html "$out"/*.log "$out"/*.txt "$out"/*.json

if [ -z "${INBOXD_BIN:-}" ]; then
  (cd "$root" && cargo build --quiet --bin inboxd)
  INBOXD_BIN="$root/target/debug/inboxd"
fi

work="$(mktemp -d)"
pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
  if [ "$status" != 0 ]; then
    echo "browser test FAILED (exit $status); see $out (serve.log, screenshots)" >&2
  fi
  exit "$status"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# start_sim LOG: a simulator logging to $out/LOG; sets $sim to its URL.
start_sim() {
  local log="$1" said
  said="$(mktemp "$work/sim.XXXX")"
  "$INBOXD_BIN" sim --listen 127.0.0.1:0 >"$said" 2>"$out/$log" &
  pids+=($!)
  sim=""
  for _ in $(seq 1 200); do
    sim="$(sed -n 's/^inboxd sim listening on //p' "$said" | head -n1 || true)"
    [ -n "$sim" ] && break
    sleep 0.05
  done
  [ -n "$sim" ] || { echo "the simulator did not start; see $out/$log" >&2; exit 1; }
}

# start_daemon STORE LOG: `inboxd serve` against $sim at $base (port $port), its store in
# $work/STORE, logging to $out/LOG.log. The poll interval is long on purpose: the tests' polls are
# the one after each authorization and "Poll now", so what the page shows does not depend on a
# background tick racing the clicks.
start_daemon() {
  local store="$1" log="$2"
  INBOXD_MASTER_KEY="$("$INBOXD_BIN" keygen)" \
  INBOXD_ADMIN_TOKEN="$admin_token" \
  INBOXD_SERVER__LISTEN="127.0.0.1:$port" \
  INBOXD_SERVER__PUBLIC_URL="$base" \
  INBOXD_CLOUD__LOGIN_URL="$sim" \
  INBOXD_CLOUD__GRAPH_URL="$sim" \
  INBOXD_STORE__PATH="$work/$store" \
  INBOXD_PROCESSOR__JSONL_PATH="$work/$store.jsonl" \
  INBOXD_POLLING__INTERVAL_SECS="${UI_TEST_INTERVAL_SECS:-600}" \
  INBOXD_POLLING__JITTER_SECS=0 \
    "$INBOXD_BIN" serve >"$out/$log.stdout.log" 2>"$out/$log.log" &
  pids+=($!)
  for _ in $(seq 1 400); do
    curl -fsS "$base/healthz" >/dev/null 2>&1 && break
    sleep 0.05
  done
  curl -fsS "$base/healthz" >/dev/null || { echo "inboxd serve did not start; see $out/$log.log" >&2; exit 1; }
}

admin_token="ui-test-admin-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"

# === scenario 1: one channel through its life (status_page.mjs) ================================
start_sim sim.log
port="$(free_port)"
base="http://127.0.0.1:$port"
client_secret="Sim8Q~ui-test-secret-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
tenant="6f1c2a3b-4d5e-4f60-8a71-92b3c4d5e6f7"
client_id="0a1b2c3d-4e5f-4061-8273-9485a6b7c8d9"
mailbox="support@contoso.example"

sim_post() {
  curl -fsS -X POST -H 'Content-Type: application/json' --data "$2" "$sim/_sim/$1" >/dev/null
}
sim_post tenants "{\"tenant_id\":\"$tenant\",\"domains\":[\"contoso.example\"]}"
sim_post apps "{\"tenant_id\":\"$tenant\",\"client_id\":\"$client_id\",\"client_secret\":\"$client_secret\",\"redirect_uris\":[\"$base/oauth/callback\"]}"
sim_post users "{\"tenant_id\":\"$tenant\",\"upn\":\"$mailbox\",\"display_name\":\"Support\"}"
sim_post "mailboxes/$mailbox/messages" '{"count":3}'

start_daemon store serve

# --- the browser -------------------------------------------------------------------------------
BASE="$base" SIM="$sim" ADMIN_TOKEN="$admin_token" TENANT="$tenant" CLIENT_ID="$client_id" \
CLIENT_SECRET="$client_secret" MAILBOX="$mailbox" OUT="$out" \
  node "$here/status_page.mjs"

# --- no secret anywhere ------------------------------------------------------------------------
jar="$work/cookies"
# A form POST passes only from the daemon's own origin, as a browser sends it.
curl -fsS -c "$jar" -o /dev/null -H "Origin: $base" --data-urlencode "token=$admin_token" "$base/login"
curl -fsS -b "$jar" "$base/" >"$out/page-index.html"
id="$(jq -r '.channels[0].id' < <(curl -fsS -H "Authorization: Bearer $admin_token" "$base/api/channels"))"
curl -fsS -b "$jar" "$base/?channel=$id" >"$out/page-detail.html"
curl -fsS -b "$jar" "$base/ui/channels/$id/quarantine" >"$out/page-quarantine.html"
for path in /api/channels "/api/channels/$id" "/api/channels/$id/quarantine" "/api/channels?status=active" "/api/channels?q=support"; do
  name="api$(echo "$path" | tr '/?=&' '____').json"
  curl -fsS -H "Authorization: Bearer $admin_token" "$base$path" >"$out/$name"
done
curl -fsS "$base/metrics" >"$out/metrics.txt"
curl -fsS "$base/healthz" >"$out/healthz.txt"
sleep 0.5 # let the daemon's log writer catch up before the log is read

leaks=0
check() { # check LABEL PATTERN(fixed|regex) FILES...
  local label="$1" kind="$2" pattern="$3"; shift 3
  local flag=-F
  [ "$kind" = regex ] && flag=-E
  local found
  found="$(grep -l $flag -e "$pattern" "$@" 2>/dev/null || true)"
  if [ -n "$found" ]; then
    echo "LEAK: $label found in: $found" >&2
    leaks=1
  fi
}
# The check itself must be able to fail: a planted copy of the secret is found.
echo "planted $client_secret" >"$work/canary.txt"
check "the planted canary" fixed "$client_secret" "$work/canary.txt"
[ "$leaks" = 1 ] || { echo "the leak check did not find a planted secret" >&2; exit 1; }
leaks=0
files=("$out"/*.html "$out"/*.json "$out"/metrics.txt "$out"/healthz.txt "$out"/serve.log "$out"/serve.stdout.log)
check "the client secret" fixed "$client_secret" "${files[@]}"
check "the admin token" fixed "$admin_token" "${files[@]}"
check "a simulator access token or code" fixed "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9." "${files[@]}"
check "a simulator refresh token" regex '1\.AeyJ' "${files[@]}"
# The pages must be non-trivial for the check to mean anything.
grep -q "$mailbox" "$out/page-index.html" || { echo "the status page does not list $mailbox" >&2; exit 1; }
grep -q "inboxd_channels" "$out/metrics.txt" || { echo "/metrics has no inboxd_channels" >&2; exit 1; }
[ -s "$out/serve.log" ] || { echo "the daemon wrote no log; the log check would mean nothing" >&2; exit 1; }
[ "$leaks" = 0 ] || exit 1
echo "no secret in $(ls "${files[@]}" | wc -l) pages, API answers, metrics and logs"

# === scenario 2: "Needs attention" with 1,000 channels (problems.mjs) =========================
# Its own simulator and daemon, so neither scenario sees the other's channels or faults.
start_sim problems-sim.log
port="$(free_port)"
base="http://127.0.0.1:$port"
start_daemon problems-store problems-serve
BASE="$base" SIM="$sim" ADMIN_TOKEN="$admin_token" OUT="$out" node "$here/problems.mjs"
sleep 0.5 # as above
leaks=0
check "the admin token" fixed "$admin_token" "$out"/problems-*.html "$out"/problems-serve*.log
[ "$leaks" = 0 ] || exit 1

echo "browser test passed; screenshots in $out"
