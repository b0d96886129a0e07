"""Microsoft's MSAL for Python against the inboxd simulator over TLS.

Completes an authorization-code flow (following the /authorize redirect with requests, as a browser
would), redeems it with acquire_token_by_auth_code_flow, refreshes with acquire_token_by_refresh_token,
calls Graph with the new access token, and checks that MSAL reads the simulator's AADSTS error body.
Exits non-zero on any failure. Run through tests/compat/run.sh.
"""

import argparse
import sys
from urllib.parse import parse_qsl, urlparse

import msal
import requests

SCOPE = "https://graph.microsoft.com/Mail.ReadWrite.Shared"


def fail(msg, detail=None):
    print(f"FAIL: {msg}", file=sys.stderr)
    if detail is not None:
        print(f"  detail: {detail!r}", file=sys.stderr)
    sys.exit(1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--tenant", required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--upn", required=True)
    p.add_argument("--redirect-uri", required=True)
    p.add_argument("--ca", required=True)
    a = p.parse_args()

    session = requests.Session()
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override session.verify; ignore the environment.
    session.trust_env = False
    session.verify = a.ca
    authority = f"{a.url}/{a.tenant}"
    app = msal.ConfidentialClientApplication(
        a.client_id,
        client_credential=a.secret,
        authority=authority,
        instance_discovery=False,
        http_client=session,
    )

    # 1. Authorization-code flow with PKCE (MSAL adds S256 and a nonce).
    flow = app.initiate_auth_code_flow([SCOPE], redirect_uri=a.redirect_uri, login_hint=a.upn)
    if "auth_uri" not in flow:
        fail("initiate_auth_code_flow gave no auth_uri", flow)
    r = session.get(flow["auth_uri"], allow_redirects=False)
    if r.status_code != 302:
        fail(f"/authorize answered {r.status_code}, expected 302", r.text[:500])
    location = r.headers["Location"]
    if not location.startswith(a.redirect_uri):
        fail("redirect does not go to the redirect URI", location)
    auth_response = dict(parse_qsl(urlparse(location).query))
    for key in ("code", "state", "session_state"):
        if key not in auth_response:
            fail(f"redirect lacks {key}", location)
    result = app.acquire_token_by_auth_code_flow(flow, auth_response)
    if "access_token" not in result:
        fail("code redemption failed", result)
    if result.get("token_type") != "Bearer":
        fail("token_type is not Bearer", result.get("token_type"))
    if "refresh_token" not in result:
        fail("no refresh_token although offline_access was requested", list(result))
    claims = result.get("id_token_claims") or {}
    if claims.get("preferred_username") != a.upn:
        fail("id_token preferred_username is not the signed-in user", claims)
    if not isinstance(result.get("expires_in"), int):
        fail("expires_in is not a number", result.get("expires_in"))
    print(f"auth code flow: ok (expires_in={result['expires_in']}, scope={result.get('scope')!r})")

    # 2. Refresh: a new refresh token every time.
    refreshed = app.acquire_token_by_refresh_token(result["refresh_token"], scopes=[SCOPE])
    if "access_token" not in refreshed:
        fail("refresh failed", refreshed)
    if refreshed.get("refresh_token") in (None, result["refresh_token"]):
        fail("refresh token did not rotate", list(refreshed))
    print("refresh: ok (refresh token rotated)")

    # 3. The new access token works on Graph.
    g = session.get(
        f"{a.url}/v1.0/users/{a.upn}/mailFolders/inbox/messages",
        headers={"Authorization": "Bearer " + refreshed["access_token"]},
    )
    if g.status_code != 200 or "value" not in g.json():
        fail(f"Graph list answered {g.status_code}", g.text[:500])
    print(f"graph list: ok ({len(g.json()['value'])} messages)")

    # 4. MSAL reads the simulator's error body: a wrong secret is invalid_client / 7000215.
    bad = msal.ConfidentialClientApplication(
        a.client_id,
        client_credential="not-the-secret",
        authority=authority,
        instance_discovery=False,
        http_client=session,
    )
    err = bad.acquire_token_by_refresh_token(refreshed["refresh_token"], scopes=[SCOPE])
    if err.get("error") != "invalid_client" or 7000215 not in err.get("error_codes", []):
        fail("wrong secret did not give invalid_client/7000215", err)
    if not err.get("error_description", "").startswith("AADSTS7000215:"):
        fail("error_description does not start with AADSTS7000215:", err.get("error_description"))
    print("wrong secret: ok (invalid_client, AADSTS7000215)")
    print("MSAL compat: OK")


if __name__ == "__main__":
    main()
