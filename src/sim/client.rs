//! A typed reqwest client of the simulator's `/_sim/` control API, for tests, benches and
//! `inboxd demo`: register tenants, apps, users and mailboxes, provision in bulk, deliver mail, read a
//! mailbox's state, inject faults, revoke grants, move the clock, switch run-time settings, read and
//! reset counters; the IMAP server's addresses, IMAP tokens, IMAP per mailbox and UIDVALIDITY.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::faults::FaultSpec;

/// Errors of the control client.
/// The scope to ask the identity platform for an IMAP access token (an Exchange Online token; one
/// resource per token, so it cannot be combined with Graph's scopes).
pub const IMAP_TOKEN_SCOPE: &str =
    "https://outlook.office.com/IMAP.AccessAsUser.All offline_access";

/// The SASL XOAUTH2 initial response for `mailbox` and `access_token`, base64-encoded as
/// `AUTHENTICATE XOAUTH2` takes it.
pub fn xoauth2(mailbox: &str, access_token: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!(
        "user={mailbox}\x01auth=Bearer {access_token}\x01\x01"
    ))
}

#[derive(Debug, thiserror::Error)]
pub enum SimClientError {
    #[error("simulator request failed: {0}; is the simulator running at the given URL?")]
    Http(#[from] reqwest::Error),
    #[error("simulator answered {status}: {body}")]
    Status { status: u16, body: String },
}

/// The simulator's control client.
#[derive(Clone)]
pub struct SimClient {
    base: String,
    http: reqwest::Client,
}

impl fmt::Debug for SimClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimClient")
            .field("base", &self.base)
            .finish()
    }
}

/// An app registration to create.
#[derive(Clone, Default, Serialize)]
pub struct AppRegistration {
    pub tenant_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_expires_at: Option<DateTime<Utc>>,
    pub redirect_uris: Vec<String>,
}

impl fmt::Debug for AppRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppRegistration")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("redirect_uris", &self.redirect_uris)
            .finish()
    }
}

/// A registered app.
#[derive(Clone, Deserialize)]
pub struct RegisteredApp {
    pub client_id: String,
    pub tenant_id: String,
    pub client_secret: String,
}

impl fmt::Debug for RegisteredApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisteredApp")
            .field("client_id", &self.client_id)
            .field("tenant_id", &self.tenant_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

/// A tenant, app and user provisioned together by [`SimClient::provision`].
#[derive(Clone, Debug)]
pub struct Provisioned {
    pub tenant_id: String,
    pub app: RegisteredApp,
    pub upn: String,
}

/// Tokens minted directly (no browser flow).
#[derive(Clone, Deserialize)]
pub struct MintedTokens {
    pub refresh_token: String,
    pub access_token: String,
    pub expires_in: u64,
}

impl fmt::Debug for MintedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MintedTokens { <redacted> }")
    }
}

/// `POST /_sim/bulk`.
#[derive(Clone, Debug, Serialize)]
pub struct BulkRequest {
    pub count: usize,
    pub prefix: String,
    pub start: usize,
    pub issue_refresh_tokens: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_uris: Option<Vec<String>>,
    pub return_entries: bool,
}

impl BulkRequest {
    /// `count` entries named after `prefix`, with entries returned and no refresh tokens.
    pub fn new(count: usize, prefix: impl Into<String>) -> Self {
        Self {
            count,
            prefix: prefix.into(),
            start: 0,
            issue_refresh_tokens: false,
            redirect_uris: None,
            return_entries: true,
        }
    }
}

/// One provisioned bulk entry: tenant, app and mailbox user.
#[derive(Clone, Deserialize)]
pub struct BulkEntry {
    pub index: usize,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub mailbox: String,
    pub refresh_token: Option<String>,
}

impl fmt::Debug for BulkEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkEntry")
            .field("index", &self.index)
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("mailbox", &self.mailbox)
            .finish_non_exhaustive()
    }
}

/// `POST /_sim/bulk` answer.
#[derive(Clone, Debug, Deserialize)]
pub struct BulkResponse {
    pub count: usize,
    pub entries: Vec<BulkEntry>,
}

/// The deterministic credentials bulk entry `i` gets: (tenant id, client id, secret, mailbox).
pub fn bulk_credentials(prefix: &str, i: usize) -> (String, String, String, String) {
    super::control::bulk_entry(prefix, i)
}

/// Mail to deliver: generated (`count`) and/or explicit messages (JSON objects with `subject`,
/// `from`, `to`, `cc`, `body_html`, `body_text`, `attachments`, `internet_message_id`,
/// `conversation_id`, `received_date_time`, `is_read`, `folder`, `meeting`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Delivery {
    pub count: usize,
    pub meeting_requests: bool,
    pub attachments: bool,
    pub unread: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
    pub messages: Vec<Value>,
}

impl Delivery {
    /// `count` generated unread messages with some attachments.
    pub fn generated(count: usize) -> Self {
        Self {
            count,
            attachments: true,
            unread: true,
            ..Self::default()
        }
    }
}

/// Ids of delivered messages (default and immutable forms).
#[derive(Clone, Debug, Deserialize)]
pub struct Delivered {
    pub count: usize,
    pub ids: Vec<String>,
    pub immutable_ids: Vec<String>,
}

/// One message in [`MailboxState`].
#[derive(Clone, Debug, Deserialize)]
pub struct MessageState {
    pub id: String,
    pub immutable_id: String,
    pub is_read: bool,
    pub folder: String,
    pub subject: String,
    pub internet_message_id: String,
    pub received_date_time: String,
}

/// `GET /_sim/mailboxes/{addr}`.
#[derive(Clone, Debug, Deserialize)]
pub struct MailboxState {
    pub address: String,
    pub total: usize,
    pub unread: usize,
    pub read: usize,
    pub messages: Vec<MessageState>,
}

/// A request that arrived before its `Retry-After` had passed.
#[derive(Clone, Debug, Deserialize)]
pub struct EarlyRequest {
    pub key: String,
    pub endpoint: String,
    pub at: String,
    pub early_by_ms: i64,
}

/// `GET /_sim/counters`.
#[derive(Clone, Debug, Deserialize)]
pub struct Counters {
    pub mailbox: Option<String>,
    /// Endpoint name → requests.
    pub requests: std::collections::BTreeMap<String, u64>,
    /// `"{client_id}|{mailbox}"` → peak concurrent requests (including throttled arrivals).
    pub peak_concurrency: std::collections::BTreeMap<String, u64>,
    /// Mailbox → peak concurrent requests of any one app.
    pub peak_concurrency_by_mailbox: std::collections::BTreeMap<String, u64>,
    pub early_count: usize,
    pub early_requests: Vec<EarlyRequest>,
    /// Refreshes that presented a refresh token already rotated out by an earlier successful refresh
    /// (for one mailbox: by the user whose mailbox it is). Microsoft accepts them; a client that
    /// makes them would lose its grant at a stricter provider.
    #[serde(default)]
    pub refresh_token_reuse: u64,
    /// The IMAP server's counters (globally or for the mailbox).
    #[serde(default)]
    pub imap: ImapCounters,
}

/// The IMAP server's counters in `GET /_sim/counters`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ImapCounters {
    /// Connections accepted (global only; before any authentication).
    #[serde(default)]
    pub accepted: u64,
    /// Connections authenticated to the mailbox.
    #[serde(default)]
    pub connections: u64,
    /// Authenticated connections open now.
    #[serde(default)]
    pub open: u64,
    #[serde(default)]
    pub authenticate_ok: u64,
    #[serde(default)]
    pub authenticate_failed: u64,
    /// Authentications refused by the per-mailbox connection cap.
    #[serde(default)]
    pub refused: u64,
    /// FETCH and UID FETCH commands.
    #[serde(default)]
    pub fetch: u64,
    /// STORE and UID STORE commands.
    #[serde(default)]
    pub store: u64,
    #[serde(default)]
    pub max_connections_per_mailbox: u64,
}

/// `GET`/`PUT /_sim/settings`: behaviour switchable while the simulator runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimSettings {
    /// A refresh with a rotated-out refresh token revokes its grant (AADSTS50173), as stricter
    /// identity providers do; false is Microsoft's behaviour (the reuse is only counted).
    pub revoke_on_refresh_token_reuse: bool,
}

impl SimClient {
    /// A client of the simulator at `base_url` (its origin, as [`super::SimHandle::url`] gives).
    pub fn new(base_url: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self::with_http(base_url, http)
    }

    /// A client using the given reqwest client (e.g. one that trusts the simulator's TLS CA).
    pub fn with_http(base_url: impl Into<String>, http: reqwest::Client) -> Self {
        Self {
            base: base_url.into().trim_end_matches('/').to_owned(),
            http,
        }
    }

    /// The simulator's origin.
    pub fn url(&self) -> &str {
        &self.base
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, SimClientError> {
        let mut req = self
            .http
            .request(method, format!("{}/_sim{path}", self.base));
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            return Err(SimClientError::Status {
                status: status.as_u16(),
                body: text,
            });
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn post<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<T, SimClientError> {
        let v = self.send(reqwest::Method::POST, path, Some(body)).await?;
        serde_json::from_value(v).map_err(|e| SimClientError::Status {
            status: 200,
            body: format!("unexpected answer: {e}"),
        })
    }

    fn enc(s: &str) -> String {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    }

    /// Registers a tenant (a random GUID when `tenant_id` is None); returns its id.
    pub async fn register_tenant(
        &self,
        tenant_id: Option<&str>,
        domains: &[&str],
    ) -> Result<String, SimClientError> {
        let v = self
            .send(
                reqwest::Method::POST,
                "/tenants",
                Some(&json!({"tenant_id": tenant_id, "domains": domains})),
            )
            .await?;
        Ok(v.get("tenant_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned())
    }

    /// Registers an app.
    pub async fn register_app(
        &self,
        app: &AppRegistration,
    ) -> Result<RegisteredApp, SimClientError> {
        let body = serde_json::to_value(app).unwrap_or_default();
        self.post("/apps", &body).await
    }

    /// Changes an app: `{"client_secret"?, "secret_expires_at"?, "redirect_uris"?}`.
    pub async fn update_app(
        &self,
        client_id: &str,
        patch: &Value,
    ) -> Result<Value, SimClientError> {
        self.send(
            reqwest::Method::PATCH,
            &format!("/apps/{}", Self::enc(client_id)),
            Some(patch),
        )
        .await
    }

    /// An app's credentials with how often each authenticated a token request:
    /// `{"secrets": [{label, expires_at, uses}], "certificates": [{label, thumbprint, not_after, uses}]}`.
    pub async fn app_credentials(&self, client_id: &str) -> Result<Value, SimClientError> {
        self.send(
            reqwest::Method::GET,
            &format!("/apps/{}", Self::enc(client_id)),
            None,
        )
        .await
    }

    /// Adds a credential to an app: `{"client_secret", "secret_expires_at"?}` or
    /// `{"certificate_pem"}`; answers its label.
    pub async fn add_app_credential(
        &self,
        client_id: &str,
        credential: &Value,
    ) -> Result<String, SimClientError> {
        let answer: Value = self
            .send(
                reqwest::Method::POST,
                &format!("/apps/{}/credentials", Self::enc(client_id)),
                Some(credential),
            )
            .await?;
        Ok(answer["label"].as_str().unwrap_or_default().to_owned())
    }

    /// Removes a credential added with [`add_app_credential`](Self::add_app_credential).
    pub async fn remove_app_credential(
        &self,
        client_id: &str,
        label: &str,
    ) -> Result<(), SimClientError> {
        self.send(
            reqwest::Method::DELETE,
            &format!(
                "/apps/{}/credentials/{}",
                Self::enc(client_id),
                Self::enc(label)
            ),
            None,
        )
        .await
        .map(|_| ())
    }

    /// Registers a user (and its mailbox), granted access to `grants` mailboxes.
    pub async fn register_user(
        &self,
        tenant_id: &str,
        upn: &str,
        grants: &[&str],
    ) -> Result<(), SimClientError> {
        self.send(
            reqwest::Method::POST,
            "/users",
            Some(&json!({"tenant_id": tenant_id, "upn": upn, "grants": grants})),
        )
        .await
        .map(|_| ())
    }

    /// Grants `upn` access to `mailbox`.
    pub async fn grant_mailbox(&self, upn: &str, mailbox: &str) -> Result<(), SimClientError> {
        self.send(
            reqwest::Method::POST,
            &format!("/users/{}/grants", Self::enc(upn)),
            Some(&json!({"mailbox": mailbox})),
        )
        .await
        .map(|_| ())
    }

    /// Creates a (shared) mailbox no user owns.
    pub async fn register_mailbox(&self, address: &str) -> Result<(), SimClientError> {
        self.send(
            reqwest::Method::POST,
            "/mailboxes",
            Some(&json!({"address": address})),
        )
        .await
        .map(|_| ())
    }

    /// Revokes every refresh token of `upn` (AADSTS50173 afterwards).
    pub async fn revoke_grants(&self, upn: &str) -> Result<(), SimClientError> {
        self.send(
            reqwest::Method::POST,
            &format!("/users/{}/revoke", Self::enc(upn)),
            None,
        )
        .await
        .map(|_| ())
    }

    /// Mints a refresh and an access token for `upn` and `client_id` without a browser flow.
    pub async fn mint_tokens(
        &self,
        upn: &str,
        client_id: &str,
        scope: Option<&str>,
    ) -> Result<MintedTokens, SimClientError> {
        self.post(
            "/tokens",
            &json!({"upn": upn, "client_id": client_id, "scope": scope}),
        )
        .await
    }

    /// Registers a tenant, an app with `redirect_uris` and one user `upn`.
    pub async fn provision(
        &self,
        upn: &str,
        redirect_uris: &[&str],
    ) -> Result<Provisioned, SimClientError> {
        let domain = upn.split('@').nth(1).unwrap_or("contoso.example");
        let tenant_id = self.register_tenant(None, &[domain]).await?;
        let app = self
            .register_app(&AppRegistration {
                tenant_id: tenant_id.clone(),
                redirect_uris: redirect_uris.iter().map(|s| (*s).to_owned()).collect(),
                ..AppRegistration::default()
            })
            .await?;
        self.register_user(&tenant_id, upn, &[]).await?;
        Ok(Provisioned {
            tenant_id,
            app,
            upn: upn.to_ascii_lowercase(),
        })
    }

    /// Provisions many tenants/apps/mailboxes with deterministic credentials.
    pub async fn bulk(&self, req: &BulkRequest) -> Result<BulkResponse, SimClientError> {
        self.post("/bulk", &serde_json::to_value(req).unwrap_or_default())
            .await
    }

    /// Delivers mail to `mailbox`.
    pub async fn deliver(
        &self,
        mailbox: &str,
        delivery: &Delivery,
    ) -> Result<Delivered, SimClientError> {
        self.post(
            &format!("/mailboxes/{}/messages", Self::enc(mailbox)),
            &serde_json::to_value(delivery).unwrap_or_default(),
        )
        .await
    }

    /// Reads a mailbox's state.
    pub async fn mailbox_state(&self, mailbox: &str) -> Result<MailboxState, SimClientError> {
        let v = self
            .send(
                reqwest::Method::GET,
                &format!("/mailboxes/{}", Self::enc(mailbox)),
                None,
            )
            .await?;
        serde_json::from_value(v).map_err(|e| SimClientError::Status {
            status: 200,
            body: format!("unexpected answer: {e}"),
        })
    }

    /// Deletes a message (delta shows it as `@removed`).
    pub async fn delete_message(&self, mailbox: &str, id: &str) -> Result<(), SimClientError> {
        self.send(
            reqwest::Method::DELETE,
            &format!(
                "/mailboxes/{}/messages/{}",
                Self::enc(mailbox),
                Self::enc(id)
            ),
            None,
        )
        .await
        .map(|_| ())
    }

    /// Changes a message as the mailbox's user would (`is_read`, `folder`).
    pub async fn update_message(
        &self,
        mailbox: &str,
        id: &str,
        patch: &Value,
    ) -> Result<(), SimClientError> {
        self.send(
            reqwest::Method::PATCH,
            &format!(
                "/mailboxes/{}/messages/{}",
                Self::enc(mailbox),
                Self::enc(id)
            ),
            Some(patch),
        )
        .await
        .map(|_| ())
    }

    /// Makes every delta token of `mailbox` expire (410 `syncStateNotFound` on next use).
    pub async fn expire_delta(&self, mailbox: &str) -> Result<(), SimClientError> {
        self.send(
            reqwest::Method::POST,
            &format!("/mailboxes/{}/expire_delta", Self::enc(mailbox)),
            None,
        )
        .await
        .map(|_| ())
    }

    /// Injects a fault; returns its id.
    pub async fn add_fault(&self, spec: &FaultSpec) -> Result<u64, SimClientError> {
        let v = self
            .add_fault_json(&serde_json::to_value(spec).unwrap_or_default())
            .await?;
        Ok(v.get("id").and_then(Value::as_u64).unwrap_or_default())
    }

    /// Injects a fault given as JSON (also `{"kind":"revoked_grant","user":…}`).
    pub async fn add_fault_json(&self, spec: &Value) -> Result<Value, SimClientError> {
        self.send(reqwest::Method::POST, "/faults", Some(spec))
            .await
    }

    /// Removes every fault.
    pub async fn clear_faults(&self) -> Result<(), SimClientError> {
        self.send(reqwest::Method::DELETE, "/faults", None)
            .await
            .map(|_| ())
    }

    /// Removes one fault.
    pub async fn remove_fault(&self, id: u64) -> Result<(), SimClientError> {
        self.send(reqwest::Method::DELETE, &format!("/faults/{id}"), None)
            .await
            .map(|_| ())
    }

    /// Reads counters, for one mailbox or all.
    pub async fn counters(&self, mailbox: Option<&str>) -> Result<Counters, SimClientError> {
        let path = match mailbox {
            Some(m) => format!("/counters?mailbox={}", Self::enc(m)),
            None => "/counters".to_owned(),
        };
        let v = self.send(reqwest::Method::GET, &path, None).await?;
        serde_json::from_value(v).map_err(|e| SimClientError::Status {
            status: 200,
            body: format!("unexpected answer: {e}"),
        })
    }

    /// Zeroes counters, peaks and early-request records.
    pub async fn reset_counters(&self) -> Result<(), SimClientError> {
        self.send(reqwest::Method::DELETE, "/counters", None)
            .await
            .map(|_| ())
    }

    /// Reads the run-time settings.
    pub async fn settings(&self) -> Result<SimSettings, SimClientError> {
        let v = self.send(reqwest::Method::GET, "/settings", None).await?;
        Self::settings_of(v)
    }

    /// Replaces the run-time settings; answers them as they now are.
    pub async fn put_settings(
        &self,
        settings: &SimSettings,
    ) -> Result<SimSettings, SimClientError> {
        let body = serde_json::to_value(settings).unwrap_or_default();
        let v = self
            .send(reqwest::Method::PUT, "/settings", Some(&body))
            .await?;
        Self::settings_of(v)
    }

    /// Switches revoke-on-reuse: with it on, a refresh with a rotated-out refresh token revokes the
    /// grant (AADSTS50173 for that refresh and every later one of the grant).
    pub async fn set_revoke_on_refresh_token_reuse(
        &self,
        on: bool,
    ) -> Result<SimSettings, SimClientError> {
        let v = self
            .send(
                reqwest::Method::PUT,
                "/settings",
                Some(&json!({"revoke_on_refresh_token_reuse": on})),
            )
            .await?;
        Self::settings_of(v)
    }

    fn settings_of(v: Value) -> Result<SimSettings, SimClientError> {
        serde_json::from_value(v).map_err(|e| SimClientError::Status {
            status: 200,
            body: format!("unexpected answer: {e}"),
        })
    }

    /// Moves the simulator's clock forward by `secs` (codes, tokens and refresh-token inactivity age).
    pub async fn advance_clock(&self, secs: f64) -> Result<(), SimClientError> {
        self.send(
            reqwest::Method::POST,
            "/clock",
            Some(&json!({"advance_secs": secs})),
        )
        .await
        .map(|_| ())
    }

    /// Where the simulator's IMAP server listens (`GET /_sim/imap`).
    pub async fn imap_addrs(&self) -> Result<super::ImapAddrs, SimClientError> {
        let v = self.send(reqwest::Method::GET, "/imap", None).await?;
        let addr = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .and_then(|a| a.parse().ok())
        };
        Ok(super::ImapAddrs {
            plain: addr("plain"),
            tls: addr("tls"),
        })
    }

    /// Mints an IMAP (Exchange Online) access token and its refresh token for `upn` and
    /// `client_id`, as a sign-in asking for [`IMAP_TOKEN_SCOPE`] would.
    pub async fn mint_imap_tokens(
        &self,
        upn: &str,
        client_id: &str,
    ) -> Result<MintedTokens, SimClientError> {
        self.mint_tokens(upn, client_id, Some(IMAP_TOKEN_SCOPE))
            .await
    }

    /// Switches IMAP for `mailbox` (`Set-CASMailbox -ImapEnabled`).
    pub async fn set_imap_enabled(
        &self,
        mailbox: &str,
        enabled: bool,
    ) -> Result<(), SimClientError> {
        self.send(
            reqwest::Method::PUT,
            &format!("/mailboxes/{}/imap", Self::enc(mailbox)),
            Some(&json!({"enabled": enabled})),
        )
        .await
        .map(|_| ())
    }

    /// Gives `folder` (`inbox`, `sentitems`, … or a custom folder's name) of `mailbox` a new
    /// UIDVALIDITY and its messages new UIDs; answers (UIDVALIDITY, UIDNEXT).
    pub async fn bump_uid_validity(
        &self,
        mailbox: &str,
        folder: &str,
    ) -> Result<(u32, u32), SimClientError> {
        let v = self
            .send(
                reqwest::Method::POST,
                &format!(
                    "/mailboxes/{}/folders/{}/uidvalidity",
                    Self::enc(mailbox),
                    Self::enc(folder)
                ),
                None,
            )
            .await?;
        let num = |k: &str| {
            v.get(k)
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or_default()
        };
        Ok((num("uid_validity"), num("uid_next")))
    }
}
