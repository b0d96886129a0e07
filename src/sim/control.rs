//! The `/_sim/` control API (JSON): provision tenants, apps, users and mailboxes (one at a time or
//! in bulk with deterministic credentials), deliver mail, read a mailbox's state, inject faults,
//! revoke grants, move the simulator's clock, switch run-time settings, and read or reset counters.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use actix_web::web::{self, Data, Path, Payload, Query};
use actix_web::{HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::faults::FaultSpec;
use super::identity::random_token;
use super::mailgen::{self, GenOptions};
use super::state::{
    Address, App, Attachment, Meeting, Message, SimState, User, det_guid, message_id, new_guid,
    parse_message_id, split_scopes,
};
use super::util;

type St = Data<Arc<SimState>>;

/// Mounts the control routes (inside the `/_sim` scope).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/tenants", web::post().to(add_tenant))
        .route("/apps", web::post().to(add_app))
        .route("/apps/{client_id}", web::patch().to(update_app))
        .route("/users", web::post().to(add_user))
        .route("/users/{upn}/grants", web::post().to(grant))
        .route("/users/{upn}/revoke", web::post().to(revoke))
        .route("/tokens", web::post().to(mint_tokens))
        .route("/mailboxes", web::post().to(add_mailbox))
        .route("/mailboxes/{addr}", web::get().to(mailbox_state))
        .route("/mailboxes/{addr}/messages", web::post().to(deliver))
        .route(
            "/mailboxes/{addr}/messages/{id}",
            web::delete().to(delete_message),
        )
        .route(
            "/mailboxes/{addr}/messages/{id}",
            web::patch().to(update_message),
        )
        .route(
            "/mailboxes/{addr}/expire_delta",
            web::post().to(expire_delta),
        )
        .route("/bulk", web::post().to(bulk))
        .route("/faults", web::post().to(add_fault))
        .route("/faults", web::get().to(list_faults))
        .route("/faults", web::delete().to(clear_faults))
        .route("/faults/{id}", web::delete().to(clear_fault))
        .route("/counters", web::get().to(counters))
        .route("/counters", web::delete().to(reset_counters))
        .route("/clock", web::post().to(clock))
        .route("/settings", web::get().to(settings))
        .route("/settings", web::put().to(update_settings));
}

fn err(status: u16, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST),
    )
    .json(json!({"error": {"code": code, "message": message}}))
}

async fn parse<T: DeserializeOwned>(
    state: &SimState,
    req: &HttpRequest,
    payload: Payload,
) -> Result<T, HttpResponse> {
    let body = match util::read_body(req, payload, state.limits.control_max_body_bytes).await {
        Ok(b) => b,
        Err(e @ util::BodyError::TooLarge(_)) => {
            return Err(err(413, "RequestEntityTooLarge", &e.to_string()));
        }
        Err(e) => return Err(err(400, "BadRequest", &e.to_string())),
    };
    let raw: &[u8] = if body.is_empty() { b"{}" } else { &body };
    serde_json::from_slice(raw)
        .map_err(|e| err(400, "BadRequest", &format!("invalid JSON body: {e}")))
}

macro_rules! body {
    ($state:expr, $req:expr, $payload:expr) => {
        match parse(&$state, &$req, $payload).await {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
}

#[derive(Deserialize)]
struct TenantIn {
    #[serde(default)]
    tenant_id: Option<String>,
    #[serde(default)]
    domains: Vec<String>,
}

async fn add_tenant(state: St, req: HttpRequest, payload: Payload) -> HttpResponse {
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

async fn add_app(state: St, req: HttpRequest, payload: Payload) -> HttpResponse {
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

async fn update_app(
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

async fn add_user(state: St, req: HttpRequest, payload: Payload) -> HttpResponse {
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

async fn grant(state: St, req: HttpRequest, upn: Path<String>, payload: Payload) -> HttpResponse {
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

fn revoke_user(state: &SimState, upn: &str) -> bool {
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

async fn revoke(state: St, upn: Path<String>) -> HttpResponse {
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

async fn mint_tokens(state: St, req: HttpRequest, payload: Payload) -> HttpResponse {
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
struct MailboxIn {
    address: String,
}

async fn add_mailbox(state: St, req: HttpRequest, payload: Payload) -> HttpResponse {
    let m: MailboxIn = body!(state, req, payload);
    if !m.address.contains('@') {
        return err(400, "BadRequest", "address must be a mail address");
    }
    let mbx = state.ensure_mailbox(&m.address);
    HttpResponse::Created().json(json!({"address": mbx.address}))
}

async fn mailbox_state(state: St, addr: Path<String>) -> HttpResponse {
    let Some(mbx) = state.mailbox(&addr) else {
        return err(404, "NotFound", &format!("mailbox {addr} does not exist"));
    };
    let data = mbx.data.lock();
    let live: Vec<&Message> = data.messages.iter().filter(|m| !m.deleted).collect();
    let unread = live.iter().filter(|m| !m.is_read).count();
    let messages: Vec<Value> = live
        .iter()
        .map(|m| {
            json!({
                "id": message_id(mbx.tag, m.seq, false),
                "immutable_id": message_id(mbx.tag, m.seq, true),
                "is_read": m.is_read,
                "folder": m.folder,
                "subject": m.subject,
                "internet_message_id": m.internet_message_id,
                "received_date_time": util::graph_datetime(m.received),
            })
        })
        .collect();
    HttpResponse::Ok().json(json!({
        "address": mbx.address,
        "total": live.len(),
        "unread": unread,
        "read": live.len() - unread,
        "messages": messages,
    }))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum AddrIn {
    Plain(String),
    Full(Address),
}

impl AddrIn {
    fn into_address(self) -> Address {
        match self {
            AddrIn::Plain(s) => Address {
                name: s.split('@').next().unwrap_or(&s).to_owned(),
                address: s,
            },
            AddrIn::Full(a) => a,
        }
    }
}

#[derive(Deserialize)]
struct MessageIn {
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    from: Option<AddrIn>,
    #[serde(default)]
    to: Vec<AddrIn>,
    #[serde(default)]
    cc: Vec<AddrIn>,
    #[serde(default)]
    body_html: Option<String>,
    #[serde(default)]
    body_text: Option<String>,
    #[serde(default)]
    attachments: Vec<Attachment>,
    #[serde(default)]
    internet_message_id: Option<String>,
    #[serde(default)]
    conversation_id: Option<String>,
    #[serde(default)]
    received_date_time: Option<DateTime<Utc>>,
    #[serde(default)]
    is_read: bool,
    #[serde(default)]
    folder: Option<String>,
    #[serde(default)]
    meeting: Option<Meeting>,
    #[serde(default)]
    importance: Option<String>,
}

fn default_true() -> bool {
    true
}

#[derive(Deserialize)]
struct DeliverIn {
    #[serde(default)]
    messages: Vec<MessageIn>,
    #[serde(default)]
    count: usize,
    #[serde(default)]
    meeting_requests: bool,
    #[serde(default = "default_true")]
    attachments: bool,
    #[serde(default = "default_true")]
    unread: bool,
    #[serde(default)]
    folder: Option<String>,
}

fn explicit(m: MessageIn, mailbox: &str, now: DateTime<Utc>) -> Message {
    let mut base = mailgen::generate(
        mailbox,
        1,
        now,
        "inbox",
        GenOptions {
            meeting_requests: false,
            attachments: false,
            unread: true,
        },
    );
    if let Some(s) = m.subject {
        base.subject = s;
    }
    if let Some(f) = m.from {
        base.from = f.into_address();
    }
    if !m.to.is_empty() {
        base.to = m.to.into_iter().map(AddrIn::into_address).collect();
    }
    base.cc = m.cc.into_iter().map(AddrIn::into_address).collect();
    match (m.body_html, m.body_text) {
        (Some(h), Some(t)) => {
            base.body_html = h;
            base.body_text = t;
        }
        (Some(h), None) => {
            base.body_text = h.clone();
            base.body_html = h;
        }
        (None, Some(t)) => {
            base.body_html = format!(
                "<html><body><p>{}</p></body></html>",
                t.replace('<', "&lt;")
            );
            base.body_text = t;
        }
        (None, None) => {}
    }
    base.attachments = m
        .attachments
        .into_iter()
        .map(|mut a| {
            if a.size == 0 {
                a.size = (a.content_bytes.len() as u64 * 3) / 4;
            }
            a
        })
        .collect();
    if let Some(i) = m.internet_message_id {
        base.internet_message_id = i;
    }
    if let Some(c) = m.conversation_id {
        base.conversation_id = c;
    }
    // A message delivered now was received now unless the caller says otherwise: the generator's
    // few seconds of jitter would put it before a channel authorized a moment earlier.
    base.received = m.received_date_time.unwrap_or(now);
    base.is_read = m.is_read;
    if let Some(f) = m.folder {
        base.folder = f.to_ascii_lowercase();
    }
    base.meeting = m.meeting;
    if let Some(i) = m.importance {
        base.importance = i;
    }
    base
}

async fn deliver(
    state: St,
    req: HttpRequest,
    addr: Path<String>,
    payload: Payload,
) -> HttpResponse {
    let d: DeliverIn = body!(state, req, payload);
    let Some(mbx) = state.mailbox(&addr) else {
        return err(
            404,
            "NotFound",
            &format!("mailbox {addr} does not exist; register its user or POST /_sim/mailboxes"),
        );
    };
    let now = state.now();
    let folder = d
        .folder
        .clone()
        .unwrap_or_else(|| "inbox".into())
        .to_ascii_lowercase();
    let mut new: Vec<Message> = d
        .messages
        .into_iter()
        .map(|m| explicit(m, &mbx.address, now))
        .collect();
    let opts = GenOptions {
        meeting_requests: d.meeting_requests,
        attachments: d.attachments,
        unread: d.unread,
    };
    for i in 0..d.count {
        new.push(mailgen::generate(
            &mbx.address,
            i as u64,
            now,
            &folder,
            opts,
        ));
    }
    let mut ids = Vec::with_capacity(new.len());
    let mut immutable = Vec::with_capacity(new.len());
    {
        let mut data = mbx.data.lock();
        data.messages.reserve(new.len());
        for mut m in new {
            data.version += 1;
            m.seq = state.next_seq();
            m.changed_version = data.version;
            m.created_version = data.version;
            ids.push(message_id(mbx.tag, m.seq, false));
            immutable.push(message_id(mbx.tag, m.seq, true));
            data.messages.push(m);
        }
    }
    HttpResponse::Created()
        .json(json!({"count": ids.len(), "ids": ids, "immutable_ids": immutable}))
}

fn with_message(
    state: &SimState,
    addr: &str,
    id: &str,
    f: impl FnOnce(&mut Message, u64),
) -> HttpResponse {
    let Some(mbx) = state.mailbox(addr) else {
        return err(404, "NotFound", &format!("mailbox {addr} does not exist"));
    };
    let Some((tag, seq)) = parse_message_id(id).filter(|(t, _)| *t == mbx.tag) else {
        return err(
            404,
            "NotFound",
            &format!("message {id} is not in mailbox {addr}"),
        );
    };
    let _ = tag;
    let mut data = mbx.data.lock();
    let version = data.version + 1;
    match data.find_mut(seq) {
        Some(m) => {
            f(m, version);
            data.version = version;
            HttpResponse::Ok().json(json!({"id": id, "version": version}))
        }
        None => err(
            404,
            "NotFound",
            &format!("message {id} is not in mailbox {addr}"),
        ),
    }
}

async fn delete_message(state: St, path: Path<(String, String)>) -> HttpResponse {
    let (addr, id) = path.into_inner();
    with_message(&state, &addr, &id, |m, v| {
        m.deleted = true;
        m.changed_version = v;
        m.body_html = String::new();
        m.body_text = String::new();
        m.attachments = Vec::new();
    })
}

#[derive(Deserialize)]
struct MessagePatch {
    #[serde(default)]
    is_read: Option<bool>,
    #[serde(default)]
    folder: Option<String>,
}

async fn update_message(
    state: St,
    req: HttpRequest,
    path: Path<(String, String)>,
    payload: Payload,
) -> HttpResponse {
    let p: MessagePatch = body!(state, req, payload);
    let (addr, id) = path.into_inner();
    with_message(&state, &addr, &id, |m, v| {
        if let Some(r) = p.is_read {
            m.is_read = r;
        }
        if let Some(f) = p.folder {
            m.folder = f.to_ascii_lowercase();
        }
        m.changed_version = v;
    })
}

async fn expire_delta(state: St, addr: Path<String>) -> HttpResponse {
    let Some(mbx) = state.mailbox(&addr) else {
        return err(404, "NotFound", &format!("mailbox {addr} does not exist"));
    };
    let mut data = mbx.data.lock();
    data.version += 1;
    data.delta_floor = data.version;
    HttpResponse::Ok().json(json!({"address": mbx.address, "delta_floor": data.delta_floor}))
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

async fn bulk(state: St, req: HttpRequest, payload: Payload) -> HttpResponse {
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

async fn add_fault(state: St, req: HttpRequest, payload: Payload) -> HttpResponse {
    let v: Value = body!(state, req, payload);
    if v.get("kind").and_then(Value::as_str) == Some("revoked_grant") {
        // Revokes at once: every refresh token of the user(s) fails with 50173 afterwards.
        let user = v
            .get("user")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase);
        let tenant = v
            .get("tenant")
            .and_then(Value::as_str)
            .and_then(|t| state.resolve_tenant(t));
        let targets: Vec<String> = match (user, tenant) {
            (Some(u), _) => vec![u],
            (None, Some(t)) => state
                .tenants
                .get(&t)
                .map(|t| t.users.clone())
                .unwrap_or_default(),
            (None, None) => {
                return err(
                    400,
                    "BadRequest",
                    "revoked_grant needs a 'user' or a 'tenant'",
                );
            }
        };
        let revoked: Vec<&String> = targets.iter().filter(|u| revoke_user(&state, u)).collect();
        return HttpResponse::Created().json(json!({"revoked": revoked}));
    }
    let spec: FaultSpec = match serde_json::from_value(v) {
        Ok(s) => s,
        Err(e) => return err(400, "BadRequest", &format!("invalid fault: {e}")),
    };
    let id = state.faults.add(spec, state.now_ms());
    HttpResponse::Created().json(json!({"id": id}))
}

async fn list_faults(state: St) -> HttpResponse {
    HttpResponse::Ok().json(json!({"faults": state.faults.list(state.now_ms())}))
}

async fn clear_faults(state: St) -> HttpResponse {
    HttpResponse::Ok().json(json!({"removed": state.faults.clear(None)}))
}

async fn clear_fault(state: St, id: Path<u64>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"removed": state.faults.clear(Some(*id))}))
}

#[derive(Deserialize)]
struct CountersQuery {
    #[serde(default)]
    mailbox: Option<String>,
}

async fn counters(state: St, q: Query<CountersQuery>) -> HttpResponse {
    let mailbox = q.mailbox.as_ref().map(|m| m.to_ascii_lowercase());
    let mut peaks = serde_json::Map::new();
    let mut by_mailbox = serde_json::Map::new();
    for e in state.throttle.entries.iter() {
        let key = e.key();
        if key.starts_with("token|") {
            continue;
        }
        let mbx = key.split_once('|').map(|(_, m)| m).unwrap_or(key);
        if mailbox.as_deref().is_some_and(|m| m != mbx) {
            continue;
        }
        let peak = e.peak.load(Ordering::Relaxed);
        peaks.insert(key.clone(), peak.into());
        let cur = by_mailbox.get(mbx).and_then(Value::as_u64).unwrap_or(0);
        by_mailbox.insert(mbx.to_owned(), (cur.max(peak as u64)).into());
    }
    let early: Vec<Value> = state
        .counters
        .early
        .lock()
        .iter()
        .filter(|e| {
            mailbox
                .as_deref()
                .is_none_or(|m| e.key.ends_with(&format!("|{m}")))
        })
        .filter_map(|e| serde_json::to_value(e).ok())
        .collect();
    HttpResponse::Ok().json(json!({
        "mailbox": mailbox,
        "requests": state.counters.snapshot(mailbox.as_deref()),
        "peak_concurrency": peaks,
        "peak_concurrency_by_mailbox": by_mailbox,
        "early_count": early.len(),
        "early_requests": early,
        "refresh_token_reuse": state.counters.refresh_token_reuse(mailbox.as_deref()),
    }))
}

async fn reset_counters(state: St) -> HttpResponse {
    state.counters.reset();
    state.throttle.reset();
    HttpResponse::Ok().json(json!({"reset": true}))
}

#[derive(Deserialize)]
struct ClockIn {
    advance_secs: f64,
}

async fn clock(state: St, req: HttpRequest, payload: Payload) -> HttpResponse {
    let c: ClockIn = body!(state, req, payload);
    let offset = state.advance_clock((c.advance_secs * 1000.0) as i64);
    HttpResponse::Ok().json(json!({"offset_ms": offset, "now": util::graph_datetime(state.now())}))
}

/// `PUT /_sim/settings`: the settings to change; absent ones keep their value, unknown ones are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsIn {
    #[serde(default)]
    revoke_on_refresh_token_reuse: Option<bool>,
}

fn settings_json(state: &SimState) -> Value {
    json!({
        "revoke_on_refresh_token_reuse": state.settings.revoke_on_refresh_token_reuse(),
    })
}

async fn settings(state: St) -> HttpResponse {
    HttpResponse::Ok().json(settings_json(&state))
}

async fn update_settings(state: St, req: HttpRequest, payload: Payload) -> HttpResponse {
    let s: SettingsIn = body!(state, req, payload);
    if let Some(on) = s.revoke_on_refresh_token_reuse {
        state.settings.set_revoke_on_refresh_token_reuse(on);
    }
    HttpResponse::Ok().json(settings_json(&state))
}
