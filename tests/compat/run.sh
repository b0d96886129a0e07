#!/usr/bin/env bash
# MSAL for Python against the simulator over TLS: makes a CA and a server certificate, starts the
# simulator with them, provisions a tenant/app/user through /_sim/, runs msal_flow.py.
# Needs: openssl, curl, python3 with `pip install msal requests`. Exits non-zero on failure.
#
# The simulator: $INBOXD_SIM_CMD if set (e.g. "target/debug/inboxd sim"); else `inboxd sim` from
# a fresh debug build, the same as `cargo run -- sim`.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
WORK="$(mktemp -d)"
SIM_PID=""
cleanup() {
  if [ -n "$SIM_PID" ]; then kill "$SIM_PID" 2>/dev/null || true; wait "$SIM_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# 1. CA and server certificate for 127.0.0.1.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=inboxd simulator test CA" \
  -keyout "$WORK/ca.key" -out "$WORK/ca.pem" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$WORK/server.key" -out "$WORK/server.csr" 2>/dev/null
cat > "$WORK/ext.cnf" <<CNF
subjectAltName=IP:127.0.0.1,DNS:localhost
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
CNF
openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
  -days 2 -extfile "$WORK/ext.cnf" -out "$WORK/server.pem" 2>/dev/null

# 2. Start the simulator and read its URL from the first stdout line.
if [ -n "${INBOXD_SIM_CMD:-}" ]; then
  read -r -a SIM_CMD <<<"$INBOXD_SIM_CMD"
else
  cargo build --quiet --bin inboxd
  SIM_CMD=(target/debug/inboxd sim)
fi
mkfifo "$WORK/out"
"${SIM_CMD[@]}" --listen 127.0.0.1:0 --tls-cert "$WORK/server.pem" --tls-key "$WORK/server.key" >"$WORK/out" &
SIM_PID=$!
exec 3<"$WORK/out"
if ! read -r -t 30 FIRST <&3; then
  echo "simulator did not print its URL within 30 s" >&2
  exit 1
fi
# Keep draining stdout so the simulator never blocks on a full pipe.
cat <&3 >/dev/null &
case "$FIRST" in
  "inboxd sim listening on "*) URL="${FIRST#inboxd sim listening on }" ;;
  *) echo "unexpected first line from the simulator: $FIRST" >&2; exit 1 ;;
esac
echo "simulator at $URL"
unset REQUESTS_CA_BUNDLE CURL_CA_BUNDLE

# 3. Provision through the control API.
jget() { python3 -c "import sys, json; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
CURL=(curl -sS --fail --cacert "$WORK/ca.pem" -H "Content-Type: application/json")
UPN="adele@contoso.example"
REDIRECT="http://localhost:8400/oauth/callback"
TENANT="$("${CURL[@]}" -X POST "$URL/_sim/tenants" -d '{"domains":["contoso.example"]}' | jget tenant_id)"
APP="$("${CURL[@]}" -X POST "$URL/_sim/apps" -d "{\"tenant_id\":\"$TENANT\",\"redirect_uris\":[\"http://localhost/oauth/callback\"]}")"
CLIENT_ID="$(echo "$APP" | jget client_id)"
SECRET="$(echo "$APP" | jget client_secret)"
"${CURL[@]}" -X POST "$URL/_sim/users" -d "{\"tenant_id\":\"$TENANT\",\"upn\":\"$UPN\"}" >/dev/null
"${CURL[@]}" -X POST "$URL/_sim/mailboxes/$UPN/messages" -d '{"count":3}' >/dev/null

# 4. MSAL.
python3 tests/compat/msal_flow.py --url "$URL" --tenant "$TENANT" --client-id "$CLIENT_ID" \
  --secret "$SECRET" --upn "$UPN" --redirect-uri "$REDIRECT" --ca "$WORK/ca.pem"
