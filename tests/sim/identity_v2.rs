//! Identity-platform behaviour the delta-sync daemon meets: consent held per (user, app) across
//! grants, claims challenges from the token endpoint and from Graph, and id_tokens signed with a key
//! of the served JWKS.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier;
use rsa::{BigUint, RsaPublicKey};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::*;

async fn refresh_with_scope(e: &Env, rt: &str, scope: &str) -> reqwest::Response {
    e.token(&[
        ("client_id", e.app.client_id.as_str()),
        ("client_secret", e.app.client_secret.as_str()),
        ("grant_type", "refresh_token"),
        ("refresh_token", rt),
        ("scope", scope),
    ])
    .await
}

/// "Microsoft identity platform and OAuth 2.0 authorization code flow", refresh section: the refresh
/// token is valid for every permission the client already has consent for, not tied to the scopes
/// of its own authorization. "Error codes" (`reference-error-codes`): AADSTS65001
/// DelegationDoesNotExist, the user has not consented to the app for what it asks.
#[tokio::test]
async fn a_refresh_may_ask_for_any_scope_the_user_consented_to_for_the_app() {
    let e = env().await;
    // A first authorization consents to Mail.Read; a second, later one asks only for
    // Mail.ReadWrite.Shared, and its refresh token can still get Mail.Read.
    let code = e.code(&[("scope", "offline_access Mail.Read")]).await;
    assert_eq!(e.redeem(&code, &[]).await.status(), 200);
    let (_, rt) = e.tokens().await;
    let r = refresh_with_scope(&e, &rt, "https://graph.microsoft.com/Mail.Read").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["scope"], "https://graph.microsoft.com/Mail.Read");
    // `.default`: every consented Graph scope.
    let v: Value = refresh_with_scope(
        &e,
        &rt,
        "https://graph.microsoft.com/.default offline_access",
    )
    .await
    .json()
    .await
    .unwrap();
    let scope = v["scope"].as_str().unwrap();
    assert!(
        scope.contains("Mail.Read") && scope.contains("Mail.ReadWrite.Shared"),
        "{scope}"
    );
    assert!(!scope.contains("User.Read"), "{scope}");
    // Never consented: 65001, with MSAL's consent_required suberror.
    let r = refresh_with_scope(&e, &rt, "User.Read").await;
    let v = sts_error(r, 400, "invalid_grant", 65001).await;
    assert_eq!(v["suberror"], "consent_required");
    // Consent is per app: another app of the tenant has none of it.
    let other = e
        .ctl
        .register_app(&inboxd::sim::client::AppRegistration {
            tenant_id: e.tenant.clone(),
            redirect_uris: vec![REGISTERED_REDIRECT.into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let minted = e
        .ctl
        .mint_tokens(
            UPN,
            &other.client_id,
            Some("offline_access Mail.ReadWrite.Shared"),
        )
        .await
        .unwrap();
    let r = e
        .token(&[
            ("client_id", other.client_id.as_str()),
            ("client_secret", other.client_secret.as_str()),
            ("grant_type", "refresh_token"),
            ("refresh_token", minted.refresh_token.as_str()),
            ("scope", "Mail.Read"),
        ])
        .await;
    sts_error(r, 400, "invalid_grant", 65001).await;
}

/// "Microsoft identity platform and OAuth 2.0 On-Behalf-Of flow", error example: MFA demanded by
/// Conditional Access comes back as `"error": "interaction_required"`, AADSTS50079 (50076 when the
/// user has MFA and must use it), with a `claims` member holding the claims request as a JSON string.
#[tokio::test]
async fn an_interaction_required_fault_answers_the_token_endpoint_with_a_claims_request() {
    let e = env().await;
    let (_, rt) = e.tokens().await;
    e.ctl
        .add_fault_json(&json!({"kind": "interaction_required", "tenant": e.tenant, "count": 1}))
        .await
        .unwrap();
    let v = sts_error(e.refresh(&rt).await, 400, "interaction_required", 50076).await;
    assert_eq!(v["suberror"], "basic_action");
    let claims: Value = serde_json::from_str(v["claims"].as_str().unwrap()).unwrap();
    assert!(claims["access_token"].is_object(), "{claims}");
    // 50079 and a claims request of the caller's choosing.
    let wanted = r#"{"access_token":{"polids":{"essential":true,"values":["9ab03e19"]}}}"#;
    e.ctl
        .add_fault_json(&json!({"kind": "interaction_required", "code": 50079, "claims": wanted, "tenant": e.tenant, "count": 1}))
        .await
        .unwrap();
    let v = sts_error(e.refresh(&rt).await, 400, "interaction_required", 50079).await;
    assert_eq!(v["claims"], wanted);
    // The fault used up, the refresh succeeds; Graph never consumed it.
    assert_eq!(e.refresh(&rt).await.status(), 200);
}

/// "Claims challenges, claims requests, and client capabilities": a resource that wants more claims
/// answers `401` with `WWW-Authenticate: Bearer realm="", authorization_uri="…/authorize",
/// error="insufficient_claims", claims="<base64 of the claims request>"`.
#[tokio::test]
async fn an_insufficient_claims_fault_answers_graph_with_a_claims_challenge() {
    let e = env().await;
    e.deliver(1).await;
    let (at, rt) = e.tokens().await;
    e.ctl
        .add_fault_json(&json!({"kind": "insufficient_claims", "mailbox": UPN, "count": 2}))
        .await
        .unwrap();
    // The token endpoint does not take a Graph challenge.
    assert_eq!(e.refresh(&rt).await.status(), 200);
    let r = e.get(&at, &e.inbox_path().await).await;
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    graph_error(r, 401, "InvalidAuthenticationToken").await;
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(
        challenge.contains("error=\"insufficient_claims\""),
        "{challenge}"
    );
    assert!(challenge.contains("authorization_uri=\""), "{challenge}");
    let b64 = challenge
        .split("claims=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap();
    let claims: Value = serde_json::from_slice(&STANDARD.decode(b64).unwrap()).unwrap();
    assert!(claims["access_token"].is_object(), "{claims}");
    // Inside a batch the item carries it.
    let r = e
        .http
        .post(e.graph("/$batch"))
        .bearer_auth(&at)
        .json(&json!({"requests": [{"id": "1", "method": "GET", "url": format!("/users/{UPN}/messages")}]}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["responses"][0]["status"], 401);
    assert!(
        v["responses"][0]["headers"]["WWW-Authenticate"]
            .as_str()
            .unwrap()
            .contains("insufficient_claims")
    );
    assert_eq!(e.get(&at, &e.inbox_path().await).await.status(), 200);
}

/// "OpenID Connect on the Microsoft identity platform": the OpenID configuration names `jwks_uri`,
/// whose document is `{"keys": [{"kty": "RSA", "use": "sig", "kid", "n", "e", …}]}`; the id_token
/// is a JWT signed RS256 with the key whose `kid` its header names.
#[tokio::test]
async fn an_id_token_verifies_against_the_served_jwks() {
    let e = env().await;
    let config: Value = e
        .http
        .get(format!(
            "{}/{}/v2.0/.well-known/openid-configuration",
            e.url, e.tenant
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwks_uri = config["jwks_uri"].as_str().unwrap();
    let r = e.http.get(jwks_uri).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let jwks: Value = r.json().await.unwrap();
    let code = e
        .code(&[
            ("scope", "openid offline_access Mail.ReadWrite.Shared"),
            ("nonce", "n"),
        ])
        .await;
    let v: Value = e.redeem(&code, &[]).await.json().await.unwrap();
    let id_token = v["id_token"].as_str().unwrap();
    let parts: Vec<&str> = id_token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("the header's kid is in the JWKS");
    assert_eq!(jwk["kty"], "RSA");
    assert_eq!(jwk["use"], "sig");
    let num = |f: &str| {
        BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode(jwk[f].as_str().unwrap()).unwrap())
    };
    let public = RsaPublicKey::new(num("n"), num("e")).unwrap();
    let verifier = VerifyingKey::<Sha256>::new(public);
    let sig = Signature::try_from(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().as_slice()).unwrap();
    let input = format!("{}.{}", parts[0], parts[1]);
    verifier
        .verify(input.as_bytes(), &sig)
        .expect("signature verifies");
    // A tampered payload does not.
    let tampered = format!("{}.{}x", parts[0], parts[1]);
    assert!(verifier.verify(tampered.as_bytes(), &sig).is_err());
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["iss"], config["issuer"]);
    assert_eq!(claims["nonce"], "n");
}
