//! Shared fixtures: a simulator with one tenant, app and user; helpers for the OAuth flow and Graph.
#![allow(dead_code)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use inboxd::sim::client::{AppRegistration, Delivery, RegisteredApp, SimClient};
use inboxd::sim::{SimHandle, SimOptions, spawn};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/Mail.ReadWrite.Shared";
pub const REGISTERED_REDIRECT: &str = "http://127.0.0.1/oauth/callback";
/// Loopback: the port is ignored when matching the registered URI.
pub const REDIRECT: &str = "http://127.0.0.1:5555/oauth/callback";
pub const UPN: &str = "adele@contoso.example";

pub struct Env {
    pub sim: SimHandle,
    pub url: String,
    pub http: reqwest::Client,
    pub ctl: SimClient,
    pub tenant: String,
    pub app: RegisteredApp,
    pub upn: String,
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub async fn env() -> Env {
    env_with(SimOptions::default()).await
}

pub async fn env_with(opts: SimOptions) -> Env {
    let sim = spawn(opts).unwrap();
    let url = sim.url();
    let ctl = SimClient::new(url.clone());
    let tenant = ctl
        .register_tenant(None, &["contoso.example"])
        .await
        .unwrap();
    let app = ctl
        .register_app(&AppRegistration {
            tenant_id: tenant.clone(),
            redirect_uris: vec![REGISTERED_REDIRECT.into()],
            ..AppRegistration::default()
        })
        .await
        .unwrap();
    ctl.register_user(&tenant, UPN, &[]).await.unwrap();
    Env {
        sim,
        url,
        http: http(),
        ctl,
        tenant,
        app,
        upn: UPN.into(),
    }
}

pub fn pkce_pair() -> (String, String) {
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-sim-verifier".to_owned();
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

pub fn query_of(location: &str) -> Vec<(String, String)> {
    let u = url::Url::parse(location).unwrap();
    u.query_pairs().into_owned().collect()
}

pub fn q<'a>(pairs: &'a [(String, String)], k: &str) -> Option<&'a str> {
    pairs.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
}

impl Env {
    pub fn authorize_url(&self, extra: &[(&str, &str)]) -> String {
        let mut u = url::Url::parse(&format!(
            "{}/{}/oauth2/v2.0/authorize",
            self.url, self.tenant
        ))
        .unwrap();
        {
            let mut qp = u.query_pairs_mut();
            let defaults = [
                ("client_id", self.app.client_id.as_str()),
                ("response_type", "code"),
                ("redirect_uri", REDIRECT),
                (
                    "scope",
                    "offline_access https://graph.microsoft.com/Mail.ReadWrite.Shared",
                ),
                ("state", "st4te"),
            ];
            for (k, v) in defaults {
                if !extra.iter().any(|(ek, _)| *ek == k) {
                    qp.append_pair(k, v);
                }
            }
            for (k, v) in extra {
                if !v.is_empty() {
                    qp.append_pair(k, v);
                }
            }
        }
        u.to_string()
    }

    pub async fn authorize(&self, extra: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .get(self.authorize_url(extra))
            .send()
            .await
            .unwrap()
    }

    /// Runs /authorize and returns the code.
    pub async fn code(&self, extra: &[(&str, &str)]) -> String {
        let r = self.authorize(extra).await;
        assert_eq!(r.status(), 302, "authorize: {:?}", r.text().await);
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        q(&query_of(&loc), "code").unwrap().to_owned()
    }

    pub fn token_url(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.url, self.tenant)
    }

    pub async fn token(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(self.token_url())
            .form(form)
            .send()
            .await
            .unwrap()
    }

    pub async fn redeem(&self, code: &str, extra: &[(&str, &str)]) -> reqwest::Response {
        let mut form = vec![
            ("client_id", self.app.client_id.as_str()),
            ("client_secret", self.app.client_secret.as_str()),
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
        ];
        form.extend_from_slice(extra);
        self.token(&form).await
    }

    pub async fn refresh(&self, rt: &str) -> reqwest::Response {
        self.token(&[
            ("client_id", self.app.client_id.as_str()),
            ("client_secret", self.app.client_secret.as_str()),
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
        ])
        .await
    }

    /// The full flow: (access token, refresh token).
    pub async fn tokens(&self) -> (String, String) {
        let code = self.code(&[]).await;
        let r = self.redeem(&code, &[]).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        (
            v["access_token"].as_str().unwrap().into(),
            v["refresh_token"].as_str().unwrap().into(),
        )
    }

    pub fn graph(&self, path: &str) -> String {
        format!("{}/v1.0{path}", self.url)
    }

    pub async fn get(&self, at: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.graph(path))
            .bearer_auth(at)
            .send()
            .await
            .unwrap()
    }

    pub async fn deliver(&self, n: usize) -> Vec<String> {
        self.ctl
            .deliver(&self.upn, &Delivery::generated(n))
            .await
            .unwrap()
            .ids
    }

    pub async fn inbox_path(&self) -> String {
        format!("/users/{}/mailFolders/inbox/messages", self.upn)
    }
}

/// Asserts Microsoft's STS error body shape and returns it.
pub async fn sts_error(r: reqwest::Response, status: u16, error: &str, code: u32) -> Value {
    assert_eq!(r.status().as_u16(), status, "status");
    let h = r.headers().clone();
    assert_eq!(h["cache-control"], "no-store, no-cache");
    assert_eq!(h["pragma"], "no-cache");
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let request_id = h["x-ms-request-id"].to_str().unwrap().to_owned();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], error, "error value in {v}");
    assert_eq!(
        v["error_codes"],
        serde_json::json!([code]),
        "error_codes in {v}"
    );
    let desc = v["error_description"].as_str().unwrap();
    assert!(desc.starts_with(&format!("AADSTS{code}: ")), "{desc}");
    let ts = v["timestamp"].as_str().unwrap();
    assert!(is_sts_timestamp(ts), "timestamp {ts}");
    assert!(
        desc.contains(&format!(
            "\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {ts}",
            v["trace_id"].as_str().unwrap(),
            v["correlation_id"].as_str().unwrap()
        )),
        "{desc}"
    );
    assert_eq!(v["trace_id"].as_str().unwrap(), request_id);
    assert!(
        v["error_uri"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/error?code={code}"))
    );
    v
}

/// `YYYY-MM-DD HH:MM:SSZ`.
pub fn is_sts_timestamp(ts: &str) -> bool {
    chrono::NaiveDateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%SZ").is_ok() && ts.len() == 20
}

/// Asserts Graph's error shape and returns the body.
pub async fn graph_error(r: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status().as_u16(), status, "status");
    let rid = r.headers()["request-id"].to_str().unwrap().to_owned();
    assert!(r.headers().contains_key("client-request-id"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], code, "code in {v}");
    assert!(v["error"]["message"].is_string());
    let inner = &v["error"]["innerError"];
    assert_eq!(inner["request-id"].as_str().unwrap(), rid);
    assert!(inner["client-request-id"].is_string());
    let date = inner["date"].as_str().unwrap();
    assert!(
        chrono::NaiveDateTime::parse_from_str(date, "%Y-%m-%dT%H:%M:%S").is_ok()
            && date.len() == 19,
        "{date}"
    );
    v
}

/// Waits (up to 10 s) until `check` holds.
pub async fn eventually_true<F, Fut>(check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "the condition did not hold within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
