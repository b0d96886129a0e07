//! The directory as the control API provisions it: tenants, app registrations, users with their
//! mailboxes and grants to others, revocation, refresh and access tokens minted without a browser,
//! and bulk provisioning with deterministic credentials.

use std::sync::Arc;

use actix_web::web::{Path, Payload};
use actix_web::{HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::{St, default_true, err, parse};
use crate::sim::identity::random_token;
use crate::sim::state::{App, SimState, User, det_guid, new_guid, split_scopes};

#[derive(Deserialize)]
struct TenantIn {
    #[serde(default)]
    tenant_id: Option<String>,
    #[serde(default)]
    domains: Vec<String>,
}

pub async fn add_tenant(state: St, req: HttpRequest, payload: Payload) -> HttpResponse {
    let t: TenantIn = body!(state, req, payload);
    let id = t.tenant_id.unwrap_or_else(new_guid).to_ascii_lowercase();
    if uuid::Uuid::parse_str(&id).is_err() {
        return err(400, "BadRequest", "tenant_id must be a GUID");
    }
    state.add_tenant(&id, &t.domains);
    HttpResponse::Created().json(json!({"tenant_id": id, "domains": t.domains}))
}

#[derive(Deserialize)]
struct AppIn {
    tenant_id: String,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    secret_expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    display_name: Option<String>,
}

pub async fn add_app(state: St, req: HttpRequest, payload: Payload) -> HttpResponse {
    let a: AppIn = body!(state, req, payload);
    let Some(tenant_id) = state.resolve_tenant(&a.tenant_id) else {
        return err(
            404,
            "NotFound",
            &format!(
                "tenant {} is not registered; POST /_sim/tenants first",
                a.tenant_id
            ),
        );
    };
    let client_id = a.client_id.unwrap_or_else(new_guid).to_ascii_lowercase();
    if uuid::Uuid::parse_str(&client_id).is_err() {
        return err(400, "BadRequest", "client_id must be a GUID");
    }
    let secret = a
        .client_secret
        .unwrap_or_else(|| format!("Sim8Q~{}", random_token(34)));
    state.apps.insert(
        client_id.clone(),
        App {
            client_id: client_id.clone(),
            tenant_id: tenant_id.clone(),
            display_name: Arc::from(a.display_name.unwrap_or_else(|| "inboxd".into())),
            secret: secret.clone(),
            secret_expires_at: a.secret_expires_at,
            redirect_uris: Arc::from(a.redirect_uris.clone()),
            more_secrets: Vec::new(),
            certificates: Vec::new(),
        },
    );
    HttpResponse::Created().json(json!({
        "client_id": client_id,
        "tenant_id": tenant_id,
        "client_secret": secret,
        "secret_expires_at": a.secret_expires_at,
        "redirect_uris": a.redirect_uris,
    }))
}

#[derive(Deserialize)]
struct AppPatch {
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default, with = "double_option")]
    secret_expires_at: Option<Option<DateTime<Utc>>>,
    #[serde(default)]
    redirect_uris: Option<Vec<String>>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Deserialize::deserialize(d).map(Some)
    }
}

pub async fn update_app(
    state: St,
    req: HttpRequest,
    id: Path<String>,
    payload: Payload,
) -> HttpResponse {
    let p: AppPatch = body!(state, req, payload);
    let Some(mut app) = state.apps.get_mut(&id.to_ascii_lowercase()) else {
        return err(404, "NotFound", &format!("app {id} is not registered"));
    };
    if let Some(s) = p.client_secret {
        app.secret = s;
    }
    if let Some(e) = p.secret_expires_at {
        app.secret_expires_at = e;
    }
    if let Some(r) = p.redirect_uris {
        app.redirect_uris = Arc::from(r);
    }
    HttpResponse::Ok().json(json!({
        "client_id": app.client_id,
        "tenant_id": app.tenant_id,
        "secret_expires_at": app.secret_expires_at,
        "redirect_uris": &*app.redirect_uris,
    }))
}

#[derive(Deserialize)]
struct CredentialIn {
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    secret_expires_at: Option<DateTime<Utc>>,
    /// The certificate's PEM (its public part; a private key beside it is ignored).
    #[serde(default)]
    certificate_pem: Option<String>,
}

fn app_credentials_json(state: &SimState, app: &App) -> serde_json::Value {
    use crate::sim::identity::assertion::secret_label;
    let uses = |label: &str| {
        state
            .credential_uses
            .get(&format!("{}|{label}", app.client_id))
            .map(|n| *n)
            .unwrap_or(0)
    };
    let mut secrets = vec![json!({
        "label": secret_label(&app.secret),
        "expires_at": app.secret_expires_at,
        "uses": uses(&secret_label(&app.secret)),
    })];
    for s in &app.more_secrets {
        let label = secret_label(&s.value);
        secrets.push(json!({"label": label, "expires_at": s.expires_at, "uses": uses(&label)}));
    }
    let certificates: Vec<serde_json::Value> = app
        .certificates
        .iter()
        .map(|c| {
            let label = format!("cert:{}", c.thumbprint);
            json!({"label": label, "thumbprint": c.thumbprint, "not_after": c.not_after, "uses": uses(&label)})
        })
        .collect();
    json!({
        "client_id": app.client_id,
        "tenant_id": app.tenant_id,
        "secrets": secrets,
        "certificates": certificates,
    })
}

/// `GET /_sim/apps/{client_id}`: the app's credentials (labels, expiry) and how often each
/// authenticated a token request.
pub async fn get_app(state: St, id: Path<String>) -> HttpResponse {
    let Some(app) = state.apps.get(&id.to_ascii_lowercase()).map(|a| a.clone()) else {
        return err(404, "NotFound", &format!("app {id} is not registered"));
    };
    HttpResponse::Ok().json(app_credentials_json(&state, &app))
}

/// `POST /_sim/apps/{client_id}/credentials`: adds a client secret (`client_secret`, optional
/// `secret_expires_at`) or a certificate (`certificate_pem`) beside the app's others.
pub async fn add_credential(
    state: St,
    req: HttpRequest,
    id: Path<String>,
    payload: Payload,
) -> HttpResponse {
    let c: CredentialIn = body!(state, req, payload);
    let Some(mut app) = state.apps.get_mut(&id.to_ascii_lowercase()) else {
        return err(404, "NotFound", &format!("app {id} is not registered"));
    };
    let label = match (c.client_secret, c.certificate_pem) {
        (Some(value), None) => {
            let label = crate::sim::identity::assertion::secret_label(&value);
            app.more_secrets
                .push(crate::sim::identity::assertion::SimSecret {
                    value,
                    expires_at: c.secret_expires_at,
                });
            label
        }
        (None, Some(pem)) => {
            match crate::sim::identity::assertion::SimCertificate::from_pem(&pem) {
                Ok(cert) => {
                    let label = format!("cert:{}", cert.thumbprint);
                    app.certificates.push(cert);
                    label
                }
                Err(e) => return err(400, "BadRequest", &format!("certificate_pem: {e}")),
            }
        }
        _ => {
            return err(
                400,
                "BadRequest",
                "give exactly one of client_secret and certificate_pem",
            );
        }
    };
    HttpResponse::Created().json(json!({"label": label}))
}

/// `DELETE /_sim/apps/{client_id}/credentials/{label}`: removes a credential (the first secret
/// cannot be removed: replace it with `PATCH`).
pub async fn remove_credential(state: St, path: Path<(String, String)>) -> HttpResponse {
    use crate::sim::identity::assertion::secret_label;
    let (id, label) = path.into_inner();
    let Some(mut app) = state.apps.get_mut(&id.to_ascii_lowercase()) else {
        return err(404, "NotFound", &format!("app {id} is not registered"));
    };
    let before = app.more_secrets.len() + app.certificates.len();
    app.more_secrets.retain(|s| secret_label(&s.value) != label);
    app.certificates
        .retain(|c| format!("cert:{}", c.thumbprint) != label);
    if app.more_secrets.len() + app.certificates.len() == before {
        return err(
            404,
            "NotFound",
            &format!("app {id} has no removable credential {label}"),
        );
    }
    HttpResponse::NoContent().finish()
}

#[derive(Deserialize)]
struct UserIn {
    tenant_id: String,
    upn: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    grants: Vec<String>,
}

fn create_user(
    state: &SimState,
    tenant_id: &str,
    upn: &str,
    display_name: Option<String>,
    grants: Vec<String>,
) -> String {
    let upn = upn.to_ascii_lowercase();
    let object_id = det_guid(&format!("user:{upn}"));
    state.ensure_mailbox(&upn);
    for g in &grants {
        state.ensure_mailbox(g);
    }
    state.users.insert(
        upn.clone(),
        User {
            upn: upn.clone(),
            tenant_id: tenant_id.to_owned(),
            object_id: object_id.clone(),
            display_name: display_name
                .unwrap_or_else(|| upn.split('@').next().unwrap_or(&upn).to_owned()),
            granted: grants.iter().map(|g| g.to_ascii_lowercase()).collect(),
            tokens_valid_from_ms: 0,
        },
    );
    if let Some(mut t) = state.tenants.get_mut(tenant_id)
        && !t.users.contains(&upn)
    {
        t.users.push(upn);
    }
    object_id
}

pub async fn add_user(state: St, req: HttpRequest, payload: Payload) -> HttpResponse {
    let u: UserIn = body!(state, req, payload);
    let Some(tenant_id) = state.resolve_tenant(&u.tenant_id) else {
        return err(
            404,
            "NotFound",
            &format!(
                "tenant {} is not registered; POST /_sim/tenants first",
                u.tenant_id
            ),
        );
    };
    if !u.upn.contains('@') {
        return err(
            400,
            "BadRequest",
            "upn must be an address like user@contoso.com",
        );
    }
    let oid = create_user(&state, &tenant_id, &u.upn, u.display_name, u.grants.clone());
    HttpResponse::Created().json(json!({"upn": u.upn.to_ascii_lowercase(), "tenant_id": tenant_id, "object_id": oid, "mailbox": u.upn.to_ascii_lowercase(), "grants": u.grants}))
}

#[derive(Deserialize)]
struct GrantIn {
    mailbox: String,
}

pub async fn grant(
    state: St,
    req: HttpRequest,
    upn: Path<String>,
    payload: Payload,
) -> HttpResponse {
    let g: GrantIn = body!(state, req, payload);
    let mbx = g.mailbox.to_ascii_lowercase();
    state.ensure_mailbox(&mbx);
    let Some(mut user) = state.users.get_mut(&upn.to_ascii_lowercase()) else {
        return err(404, "NotFound", &format!("user {upn} is not registered"));
    };
    if !user.granted.contains(&mbx) {
        user.granted.push(mbx.clone());
    }
    HttpResponse::Ok().json(json!({"upn": user.upn, "grants": user.granted}))
}

pub fn revoke_user(state: &SimState, upn: &str) -> bool {
    match state.users.get_mut(&upn.to_ascii_lowercase()) {
        Some(mut u) => {
            // Strictly later than any earlier revocation: a sign-in in the same millisecond as the
            // previous revocation got exactly that time, and must not outlive this one.
            u.tokens_valid_from_ms = (state.now_ms() + 1).max(u.tokens_valid_from_ms + 1);
            true
        }
        None => false,
    }
}

pub async fn revoke(state: St, upn: Path<String>) -> HttpResponse {
    if revoke_user(&state, &upn) {
        HttpResponse::Ok().json(json!({"revoked": upn.to_ascii_lowercase()}))
    } else {
        err(404, "NotFound", &format!("user {upn} is not registered"))
    }
}

#[derive(Deserialize)]
struct TokensIn {
    upn: String,
    client_id: String,
    #[serde(default)]
    scope: Option<String>,
}

fn mint_pair(
    state: &SimState,
    upn: &str,
    client_id: &str,
    tenant_id: &str,
    scope: &str,
) -> (String, String) {
    let (graph, oidc, _) = split_scopes(scope);
    state.consent(upn, client_id, &graph);
    let mut all = graph.clone();
    all.extend(oidc);
    if !all.iter().any(|s| s == "offline_access") {
        all.push("offline_access".into());
    }
    let now = state.now_ms();
    let grant = state.grants.open();
    let rt = state.mint_refresh(upn, client_id, tenant_id, &all.join(" "), now, grant);
    let at = state.mint(
        "at",
        upn,
        client_id,
        tenant_id,
        &graph.join(" "),
        now,
        now + state.limits.access_token_lifetime_secs as i64 * 1000,
    );
    (rt, at)
}

const DEFAULT_SCOPE: &str = "offline_access https://graph.microsoft.com/Mail.ReadWrite.Shared";

pub async fn mint_tokens(state: St, req: HttpRequest, payload: Payload) -> HttpResponse {
    let t: TokensIn = body!(state, req, payload);
    let upn = t.upn.to_ascii_lowercase();
    let Some(user) = state.users.get(&upn).map(|u| u.clone()) else {
        return err(404, "NotFound", &format!("user {upn} is not registered"));
    };
    let client_id = t.client_id.to_ascii_lowercase();
    if !state.apps.contains_key(&client_id) {
        return err(
            404,
            "NotFound",
            &format!("app {client_id} is not registered"),
        );
    }
    let (rt, at) = mint_pair(
        &state,
        &upn,
        &client_id,
        &user.tenant_id,
        t.scope.as_deref().unwrap_or(DEFAULT_SCOPE),
    );
    HttpResponse::Ok().json(json!({"refresh_token": rt, "access_token": at, "expires_in": state.limits.access_token_lifetime_secs}))
}

#[derive(Deserialize)]
struct BulkIn {
    count: usize,
    #[serde(default = "default_prefix")]
    prefix: String,
    #[serde(default)]
    start: usize,
    #[serde(default)]
    issue_refresh_tokens: bool,
    #[serde(default)]
    redirect_uris: Option<Vec<String>>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default = "default_true")]
    return_entries: bool,
}

fn default_prefix() -> String {
    "load".into()
}

/// The deterministic credentials of bulk entry `i` with `prefix`.
pub fn bulk_entry(prefix: &str, i: usize) -> (String, String, String, String) {
    (
        det_guid(&format!("{prefix}:tenant:{i}")),
        det_guid(&format!("{prefix}:client:{i}")),
        format!("{prefix}-secret-{i}"),
        format!("user{i}@{prefix}{i}.example"),
    )
}

pub async fn bulk(state: St, req: HttpRequest, payload: Payload) -> HttpResponse {
    let b: BulkIn = body!(state, req, payload);
    if b.count > 1_000_000 || b.start > 1_000_000_000 {
        return err(
            400,
            "BadRequest",
            "count must be at most 1,000,000 and start at most 1,000,000,000",
        );
    }
    let display_name: Arc<str> = Arc::from(format!("{} app", b.prefix));
    let redirect_uris: Arc<[String]> = Arc::from(b.redirect_uris.clone().unwrap_or_else(|| {
        vec![
            "http://127.0.0.1/oauth/callback".into(),
            "http://localhost/oauth/callback".into(),
        ]
    }));
    let scope = b.scope.clone().unwrap_or_else(|| DEFAULT_SCOPE.into());
    let mut entries = Vec::with_capacity(if b.return_entries { b.count } else { 0 });
    for i in b.start..b.start + b.count {
        if i % 1024 == 1023 {
            // Keep the worker responsive to other connections during a long provisioning run.
            tokio::task::yield_now().await;
        }
        let (tenant_id, client_id, secret, mailbox) = bulk_entry(&b.prefix, i);
        state.add_tenant(&tenant_id, &[format!("{}{i}.example", b.prefix)]);
        state.apps.insert(
            client_id.clone(),
            App {
                client_id: client_id.clone(),
                tenant_id: tenant_id.clone(),
                display_name: display_name.clone(),
                secret: secret.clone(),
                secret_expires_at: None,
                redirect_uris: redirect_uris.clone(),
                more_secrets: Vec::new(),
                certificates: Vec::new(),
            },
        );
        create_user(&state, &tenant_id, &mailbox, None, Vec::new());
        let rt = b
            .issue_refresh_tokens
            .then(|| mint_pair(&state, &mailbox, &client_id, &tenant_id, &scope).0);
        if b.return_entries {
            entries.push(json!({
                "index": i,
                "tenant_id": tenant_id,
                "client_id": client_id,
                "client_secret": secret,
                "mailbox": mailbox,
                "refresh_token": rt,
            }));
        }
    }
    HttpResponse::Created().json(json!({"count": b.count, "prefix": b.prefix, "entries": entries}))
}
