//! Identity platform v2.0: /authorize, /token, openid-configuration.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use inboxd::sim::SimOptions;
use inboxd::sim::client::AppRegistration;
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn openid_configuration_points_at_the_simulator() {
    let e = env().await;
    let r = e
        .http
        .get(format!(
            "{}/{}/v2.0/.well-known/openid-configuration",
            e.url, e.tenant
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["issuer"], format!("{}/{}/v2.0", e.url, e.tenant));
    assert_eq!(
        v["authorization_endpoint"],
        format!("{}/{}/oauth2/v2.0/authorize", e.url, e.tenant)
    );
    assert_eq!(
        v["token_endpoint"],
        format!("{}/{}/oauth2/v2.0/token", e.url, e.tenant)
    );
    assert!(v["jwks_uri"].as_str().unwrap().starts_with(&e.url));
    // A verified domain resolves to the same tenant.
    let r = e
        .http
        .get(format!(
            "{}/contoso.example/v2.0/.well-known/openid-configuration",
            e.url
        ))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["token_endpoint"],
        format!("{}/{}/oauth2/v2.0/token", e.url, e.tenant)
    );
    // Unknown tenant.
    let r = e
        .http
        .get(format!(
            "{}/nope.example/v2.0/.well-known/openid-configuration",
            e.url
        ))
        .send()
        .await
        .unwrap();
    sts_error(r, 400, "invalid_tenant", 90002).await;
}

#[tokio::test]
async fn authorize_redirects_with_code_state_and_session_state() {
    let e = env().await;
    let r = e.authorize(&[]).await;
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(loc.starts_with(REDIRECT), "{loc}");
    let p = query_of(&loc);
    assert!(!q(&p, "code").unwrap().is_empty());
    assert_eq!(q(&p, "state"), Some("st4te"));
    assert!(uuid::Uuid::parse_str(q(&p, "session_state").unwrap()).is_ok());
    assert!(q(&p, "error").is_none());
}

#[tokio::test]
async fn authorize_form_post_and_pathless_redirect_get_trailing_slash() {
    let e = env().await;
    e.ctl
        .update_app(
            &e.app.client_id,
            &json!({"redirect_uris": ["http://localhost:7071", REGISTERED_REDIRECT]}),
        )
        .await
        .unwrap();
    let r = e
        .authorize(&[("redirect_uri", "http://localhost:7071")])
        .await;
    assert_eq!(r.status(), 302);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("http://localhost:7071/?code=")
    );
    let r = e.authorize(&[("response_mode", "form_post")]).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("name=\"code\"") && html.contains("name=\"state\" value=\"st4te\""));
}

#[tokio::test]
async fn authorize_rejects_unregistered_redirect_unknown_tenant_and_app_on_an_error_page() {
    let e = env().await;
    for (extra, code) in [
        (
            vec![("redirect_uri", "https://evil.example/cb")],
            "AADSTS50011",
        ),
        (
            vec![("redirect_uri", "http://127.0.0.1:5555/other")],
            "AADSTS50011",
        ),
        (
            vec![("client_id", "11111111-2222-3333-4444-555555555555")],
            "AADSTS700016",
        ),
    ] {
        let r = e.authorize(&extra).await;
        assert_eq!(r.status(), 400);
        assert!(r.headers().get("location").is_none());
        assert!(r.text().await.unwrap().contains(code));
    }
    let url = e
        .authorize_url(&[])
        .replace(&e.tenant, "00000000-0000-0000-0000-000000000001");
    let r = e.http.get(url).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("AADSTS90002"));
}

#[tokio::test]
async fn authorize_failures_set_on_the_tenant_redirect_with_error_and_state() {
    let e = env().await;
    for (code, error) in [
        (53003, "access_denied"),
        (50076, "interaction_required"),
        (65001, "consent_required"),
    ] {
        e.ctl
            .add_fault_json(&json!({"kind": "aadsts", "code": code, "tenant": e.tenant, "endpoints": ["authorize"], "count": 1}))
            .await
            .unwrap();
        let r = e.authorize(&[]).await;
        assert_eq!(r.status(), 302);
        let p = query_of(r.headers()["location"].to_str().unwrap());
        assert_eq!(q(&p, "error"), Some(error));
        let desc = q(&p, "error_description").unwrap();
        assert!(
            desc.starts_with(&format!("AADSTS{code}: ")) && desc.contains("\r\nTrace ID: "),
            "{desc}"
        );
        assert_eq!(q(&p, "state"), Some("st4te"));
        assert!(q(&p, "code").is_none());
    }
    // The fault was used up: the next sign-in succeeds.
    assert!(!e.code(&[]).await.is_empty());
}

#[tokio::test]
async fn authorize_rejects_unknown_scope_and_response_type() {
    let e = env().await;
    let r = e
        .authorize(&[("scope", "https://graph.microsoft.com/Mail.Teleport")])
        .await;
    let p = query_of(r.headers()["location"].to_str().unwrap());
    assert_eq!(q(&p, "error"), Some("invalid_scope"));
    assert!(
        q(&p, "error_description")
            .unwrap()
            .starts_with("AADSTS70011:")
    );
    let r = e.authorize(&[("response_type", "token")]).await;
    let p = query_of(r.headers()["location"].to_str().unwrap());
    assert_eq!(q(&p, "error"), Some("unsupported_response_type"));
}

#[tokio::test]
async fn token_success_has_microsofts_fields_and_headers() {
    let e = env().await;
    let code = e.code(&[]).await;
    let r = e.redeem(&code, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store, no-cache");
    assert_eq!(r.headers()["pragma"], "no-cache");
    assert!(r.headers().contains_key("x-ms-request-id"));
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let v: Value = r.json().await.unwrap();
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "access_token",
            "expires_in",
            "ext_expires_in",
            "refresh_token",
            "scope",
            "token_type"
        ]
    );
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], json!(3599));
    assert!(v["ext_expires_in"].is_u64());
    assert_eq!(v["scope"], GRAPH_SCOPE);
    assert!(v.get("id_token").is_none(), "no id_token without openid");
}

#[tokio::test]
async fn id_token_only_with_openid_and_refresh_token_only_with_offline_access() {
    let e = env().await;
    let code = e
        .code(&[
            (
                "scope",
                "openid profile offline_access Mail.ReadWrite.Shared",
            ),
            ("nonce", "n0nce"),
        ])
        .await;
    let v: Value = e.redeem(&code, &[]).await.json().await.unwrap();
    let id = v["id_token"].as_str().unwrap();
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(id.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], e.app.client_id);
    assert_eq!(claims["nonce"], "n0nce");
    assert_eq!(claims["preferred_username"], UPN);
    assert_eq!(claims["iss"], format!("{}/{}/v2.0", e.url, e.tenant));
    assert!(
        v["scope"]
            .as_str()
            .unwrap()
            .split(' ')
            .any(|s| s == GRAPH_SCOPE)
    );

    let code = e.code(&[("scope", "Mail.ReadWrite.Shared")]).await;
    let v: Value = e.redeem(&code, &[]).await.json().await.unwrap();
    assert!(v.get("refresh_token").is_none());
    assert!(v.get("id_token").is_none());
    assert_eq!(v["scope"], GRAPH_SCOPE, "bare scope means Graph");
}

#[tokio::test]
async fn expires_in_is_configurable() {
    let e = env_with(SimOptions {
        access_token_lifetime_secs: 1234,
        ..SimOptions::default()
    })
    .await;
    let code = e.code(&[]).await;
    let v: Value = e.redeem(&code, &[]).await.json().await.unwrap();
    assert_eq!(v["expires_in"], json!(1234));
}

#[tokio::test]
async fn http_basic_client_auth_form_encodes_before_base64() {
    let e = env().await;
    let secret = "a+b/c=d:e~f g";
    e.ctl
        .update_app(&e.app.client_id, &json!({"client_secret": secret}))
        .await
        .unwrap();
    let code = e.code(&[]).await;
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let basic = STANDARD.encode(format!("{}:{}", enc(&e.app.client_id), enc(secret)));
    let r = e
        .http
        .post(e.token_url())
        .header("Authorization", format!("Basic {basic}"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
}

#[tokio::test]
async fn both_or_neither_client_credentials_is_an_error() {
    let e = env().await;
    let (_, rt) = e.tokens().await;
    let basic = STANDARD.encode(format!("{}:{}", e.app.client_id, e.app.client_secret));
    let r = e
        .http
        .post(e.token_url())
        .header("Authorization", format!("Basic {basic}"))
        .form(&[
            ("client_id", e.app.client_id.as_str()),
            ("client_secret", e.app.client_secret.as_str()),
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
        ])
        .send()
        .await
        .unwrap();
    sts_error(r, 400, "invalid_grant", 9002313).await;
    let r = e
        .token(&[
            ("client_id", e.app.client_id.as_str()),
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
        ])
        .await;
    sts_error(r, 401, "invalid_client", 7000218).await;
}

#[tokio::test]
async fn wrong_secret_is_401_invalid_client_7000215() {
    let e = env().await;
    let (_, rt) = e.tokens().await;
    let r = e
        .token(&[
            ("client_id", e.app.client_id.as_str()),
            ("client_secret", "wrong"),
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
        ])
        .await;
    let v = sts_error(r, 401, "invalid_client", 7000215).await;
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "correlation_id",
            "error",
            "error_codes",
            "error_description",
            "error_uri",
            "timestamp",
            "trace_id"
        ]
    );
}

#[tokio::test]
async fn expired_secret_is_7000222() {
    let e = env().await;
    let (_, rt) = e.tokens().await;
    e.ctl
        .update_app(
            &e.app.client_id,
            &json!({"secret_expires_at": "2020-01-01T00:00:00Z"}),
        )
        .await
        .unwrap();
    sts_error(e.refresh(&rt).await, 401, "invalid_client", 7000222).await;
    e.ctl
        .update_app(&e.app.client_id, &json!({"secret_expires_at": null}))
        .await
        .unwrap();
    assert_eq!(e.refresh(&rt).await.status(), 200);
    e.ctl
        .add_fault_json(
            &json!({"kind": "expired_secret", "client_id": e.app.client_id, "count": 1}),
        )
        .await
        .unwrap();
    sts_error(e.refresh(&rt).await, 401, "invalid_client", 7000222).await;
    assert_eq!(e.refresh(&rt).await.status(), 200);
}

#[tokio::test]
async fn unknown_client_and_tenant() {
    let e = env().await;
    let r = e
        .token(&[
            ("client_id", "11111111-2222-3333-4444-555555555555"),
            ("client_secret", "x"),
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
        ])
        .await;
    sts_error(r, 400, "unauthorized_client", 700016).await;
    let r = e
        .http
        .post(format!("{}/nope.example/oauth2/v2.0/token", e.url))
        .form(&[("client_id", e.app.client_id.as_str())])
        .send()
        .await
        .unwrap();
    sts_error(r, 400, "invalid_request", 90002).await;
}

#[tokio::test]
async fn pkce_s256_and_plain_are_checked() {
    let e = env().await;
    let (verifier, challenge) = pkce_pair();
    let s256 = [
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let code = e.code(&s256).await;
    assert_eq!(
        e.redeem(&code, &[("code_verifier", verifier.as_str())])
            .await
            .status(),
        200
    );
    let code = e.code(&s256).await;
    sts_error(
        e.redeem(
            &code,
            &[(
                "code_verifier",
                "not-the-verifier-at-all-0123456789-abcdefghijk",
            )],
        )
        .await,
        400,
        "invalid_grant",
        501481,
    )
    .await;
    let code = e.code(&s256).await;
    sts_error(e.redeem(&code, &[]).await, 400, "invalid_grant", 501481).await;
    let code = e
        .code(&[
            ("code_challenge", verifier.as_str()),
            ("code_challenge_method", "plain"),
        ])
        .await;
    assert_eq!(
        e.redeem(&code, &[("code_verifier", verifier.as_str())])
            .await
            .status(),
        200
    );
    // No method means plain.
    let code = e.code(&[("code_challenge", verifier.as_str())]).await;
    assert_eq!(
        e.redeem(&code, &[("code_verifier", verifier.as_str())])
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn redirect_uri_must_match_the_authorize_request() {
    let e = env().await;
    let code = e.code(&[]).await;
    let r = e
        .token(&[
            ("client_id", e.app.client_id.as_str()),
            ("client_secret", e.app.client_secret.as_str()),
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "http://127.0.0.1:5555/other"),
        ])
        .await;
    sts_error(r, 400, "invalid_grant", 500112).await;
}

#[tokio::test]
async fn codes_are_single_use_and_expire_after_ten_minutes() {
    let e = env().await;
    let code = e.code(&[]).await;
    assert_eq!(e.redeem(&code, &[]).await.status(), 200);
    sts_error(e.redeem(&code, &[]).await, 400, "invalid_grant", 54005).await;
    let code = e.code(&[]).await;
    e.ctl.advance_clock(601.0).await.unwrap();
    sts_error(e.redeem(&code, &[]).await, 400, "invalid_grant", 70008).await;
    sts_error(
        e.redeem("garbage-code", &[]).await,
        400,
        "invalid_grant",
        9002313,
    )
    .await;
}

#[tokio::test]
async fn refresh_tokens_rotate_and_the_old_one_stays_valid() {
    let e = env().await;
    let (_, rt1) = e.tokens().await;
    let v: Value = e.refresh(&rt1).await.json().await.unwrap();
    let rt2 = v["refresh_token"].as_str().unwrap();
    assert_ne!(rt1, rt2);
    assert_eq!(v["scope"], GRAPH_SCOPE);
    assert_eq!(
        e.refresh(&rt1).await.status(),
        200,
        "old RT stays valid as in Entra"
    );
    assert_eq!(e.refresh(rt2).await.status(), 200);
    sts_error(
        e.refresh("not-a-refresh-token").await,
        400,
        "invalid_grant",
        9002313,
    )
    .await;
    // Asking for a scope never consented.
    let r = e
        .token(&[
            ("client_id", e.app.client_id.as_str()),
            ("client_secret", e.app.client_secret.as_str()),
            ("grant_type", "refresh_token"),
            ("refresh_token", rt1.as_str()),
            ("scope", "Mail.Read User.Read"),
        ])
        .await;
    sts_error(r, 400, "invalid_grant", 65001).await;
}

#[tokio::test]
async fn revoked_grants_give_50173_and_inactivity_700082() {
    let e = env().await;
    let (_, rt) = e.tokens().await;
    e.ctl.revoke_grants(UPN).await.unwrap();
    sts_error(e.refresh(&rt).await, 400, "invalid_grant", 50173).await;
    // A fresh authorization works again.
    let (_, rt) = e.tokens().await;
    assert_eq!(e.refresh(&rt).await.status(), 200);
    e.ctl
        .add_fault_json(&json!({"kind": "revoked_grant", "user": UPN}))
        .await
        .unwrap();
    sts_error(e.refresh(&rt).await, 400, "invalid_grant", 50173).await;
    let (_, rt) = e.tokens().await;
    e.ctl.advance_clock(91.0 * 86400.0).await.unwrap();
    let v = sts_error(e.refresh(&rt).await, 400, "invalid_grant", 700082).await;
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("inactive for 90.00:00:00")
    );
}

#[tokio::test]
async fn injected_aadsts_errors_use_the_right_error_and_status() {
    let e = env().await;
    let (_, rt) = e.tokens().await;
    let cases: &[(u32, &str, u16)] = &[
        (53003, "invalid_grant", 400),
        (50076, "invalid_grant", 400),
        (65001, "invalid_grant", 400),
        (70008, "invalid_grant", 400),
        (700082, "invalid_grant", 400),
        (50173, "invalid_grant", 400),
        (7000215, "invalid_client", 401),
        (7000222, "invalid_client", 401),
        (700016, "unauthorized_client", 400),
        (90002, "invalid_request", 400),
        (54005, "invalid_grant", 400),
        (501481, "invalid_grant", 400),
        (50011, "invalid_request", 400),
        (9002313, "invalid_grant", 400),
    ];
    for (code, error, status) in cases {
        e.ctl.add_fault_json(&json!({"kind": "aadsts", "code": code, "client_id": e.app.client_id, "endpoints": ["token"], "count": 1})).await.unwrap();
        sts_error(e.refresh(&rt).await, *status, error, *code).await;
    }
    e.ctl.add_fault_json(&json!({"kind": "aadsts", "code": 50076, "tenant": e.tenant, "endpoints": ["token"], "count": 1})).await.unwrap();
    let v = sts_error(e.refresh(&rt).await, 400, "invalid_grant", 50076).await;
    assert_eq!(v["suberror"], "basic_action");
    assert_eq!(e.refresh(&rt).await.status(), 200);
}

#[tokio::test]
async fn malformed_token_requests_get_microsofts_errors() {
    let e = env().await;
    let cid = e.app.client_id.as_str();
    let sec = e.app.client_secret.as_str();
    sts_error(
        e.token(&[("client_id", cid), ("client_secret", sec)]).await,
        400,
        "invalid_request",
        900144,
    )
    .await;
    let v = sts_error(
        e.token(&[
            ("client_id", cid),
            ("client_secret", sec),
            ("grant_type", "password"),
        ])
        .await,
        400,
        "unsupported_grant_type",
        70003,
    )
    .await;
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("'password'")
    );
    let v = sts_error(
        e.token(&[
            ("client_id", cid),
            ("client_secret", sec),
            ("grant_type", "authorization_code"),
            ("redirect_uri", REDIRECT),
        ])
        .await,
        400,
        "invalid_request",
        900144,
    )
    .await;
    assert!(v["error_description"].as_str().unwrap().contains("'code'"));
    sts_error(
        e.token(&[("client_secret", sec), ("grant_type", "refresh_token")])
            .await,
        400,
        "invalid_request",
        900144,
    )
    .await;
    // Duplicate parameters.
    let r = e
        .http
        .post(e.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "client_id={cid}&client_id={cid}&grant_type=refresh_token"
        ))
        .send()
        .await
        .unwrap();
    sts_error(r, 400, "invalid_grant", 9002313).await;
    // JSON instead of a form: no grant_type found.
    let r = e
        .http
        .post(e.token_url())
        .json(&json!({"grant_type": "refresh_token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Wrong method.
    let r = e.http.get(e.token_url()).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS900561")
    );
    let r = e.http.post(e.authorize_url(&[])).send().await.unwrap();
    assert_eq!(r.status(), 405);
    // Huge body.
    let r = e
        .http
        .post(e.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![b'a'; 5 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}

#[tokio::test]
async fn common_and_organizations_aliases_are_accepted() {
    let e = env().await;
    for alias in ["common", "organizations"] {
        let url = e
            .authorize_url(&[])
            .replace(&format!("/{}/", e.tenant), &format!("/{alias}/"));
        let r = e.http.get(url).send().await.unwrap();
        assert_eq!(r.status(), 302);
        let p = query_of(r.headers()["location"].to_str().unwrap());
        let code = q(&p, "code").unwrap();
        let r = e
            .http
            .post(format!("{}/{alias}/oauth2/v2.0/token", e.url))
            .form(&[
                ("client_id", e.app.client_id.as_str()),
                ("client_secret", e.app.client_secret.as_str()),
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

#[tokio::test]
async fn token_endpoint_down_throttled_and_garbled() {
    let e = env().await;
    let (_, rt) = e.tokens().await;
    e.ctl
        .add_fault_json(&json!({"kind": "down", "endpoints": ["token"], "count": 1}))
        .await
        .unwrap();
    let r = e.refresh(&rt).await;
    assert_eq!(r.status(), 503);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    e.ctl
        .add_fault_json(
            &json!({"kind": "throttle", "retry_after": 30, "endpoints": ["token"], "count": 1}),
        )
        .await
        .unwrap();
    let r = e.refresh(&rt).await;
    assert_eq!(r.headers()["retry-after"], "30");
    sts_error(r, 429, "temporarily_unavailable", 90055).await;
    // Retrying at once is an early request.
    assert_eq!(e.refresh(&rt).await.status(), 200);
    let c = e.ctl.counters(None).await.unwrap();
    assert_eq!(c.early_count, 1);
    assert!(c.early_requests[0].key.starts_with("token|"));
    e.ctl
        .add_fault_json(&json!({"kind": "malformed", "endpoints": ["token"], "count": 1}))
        .await
        .unwrap();
    let r = e.refresh(&rt).await;
    assert_eq!(r.status(), 200);
    assert!(r.json::<Value>().await.is_err());
    e.ctl
        .add_fault_json(&json!({"kind": "reset", "endpoints": ["token"], "count": 1}))
        .await
        .unwrap();
    let r = e.refresh(&rt).await;
    assert!(r.bytes().await.is_err(), "connection reset mid-body");
    e.ctl
        .add_fault_json(
            &json!({"kind": "status", "status": 500, "endpoints": ["token"], "count": 1}),
        )
        .await
        .unwrap();
    sts_error(e.refresh(&rt).await, 500, "server_error", 90033).await;
    assert_eq!(e.refresh(&rt).await.status(), 200);
}

#[tokio::test]
async fn a_second_app_in_another_tenant_is_isolated() {
    let e = env().await;
    let other = e
        .ctl
        .register_tenant(None, &["fabrikam.example"])
        .await
        .unwrap();
    let app2 = e
        .ctl
        .register_app(&AppRegistration {
            tenant_id: other.clone(),
            redirect_uris: vec![REGISTERED_REDIRECT.into()],
            ..AppRegistration::default()
        })
        .await
        .unwrap();
    // app2 is not registered in e.tenant.
    let r = e.authorize(&[("client_id", app2.client_id.as_str())]).await;
    assert_eq!(r.status(), 400);
    // A refresh token of app 1 redeemed by app 2 is rejected.
    let (_, rt) = e.tokens().await;
    let r = e
        .http
        .post(format!("{}/{other}/oauth2/v2.0/token", e.url))
        .form(&[
            ("client_id", app2.client_id.as_str()),
            ("client_secret", app2.client_secret.as_str()),
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
        ])
        .send()
        .await
        .unwrap();
    sts_error(r, 400, "invalid_grant", 70000).await;
}
