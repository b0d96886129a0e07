//! Graph v1.0 mail for `/v1.0/users/{mailbox}/…` (and `/v1.0/me/…`): list messages with `$filter`,
//! `$orderby`, `$select`, `$top` and offset-based `@odata.nextLink` paging; the folder delta query;
//! get one message; `PATCH` `isRead`; attachments. Access-token checks, Outlook throttling per
//! (app, mailbox), injected faults, and Graph's error shape. `$batch` items run through [`dispatch`].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use actix_web::http::StatusCode;
use actix_web::web::{Data, Payload};
use actix_web::{HttpRequest, HttpResponse};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::counters::{EarlyRequest, Endpoint};
use super::faults::{FaultKind, Target};
use super::mailgen::preview;
use super::state::{
    MAIL_READ_SCOPES, Mailbox, Message, SimState, TokenError, message_id, new_guid,
    parse_message_id,
};
use super::throttle::{Throttle, Throttled};
use super::util;

/// Characters escaped in query values of generated links.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':');

/// Default page size of message lists.
const DEFAULT_TOP: usize = 10;
/// Largest `$top`.
const MAX_TOP: usize = 1000;

/// Properties of `microsoft.graph.message` that `$select` accepts.
const PROPERTIES: &[&str] = &[
    "id",
    "createdDateTime",
    "lastModifiedDateTime",
    "changeKey",
    "categories",
    "receivedDateTime",
    "sentDateTime",
    "hasAttachments",
    "internetMessageId",
    "subject",
    "bodyPreview",
    "importance",
    "parentFolderId",
    "conversationId",
    "conversationIndex",
    "isDeliveryReceiptRequested",
    "isReadReceiptRequested",
    "isRead",
    "isDraft",
    "webLink",
    "inferenceClassification",
    "body",
    "uniqueBody",
    "sender",
    "from",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "flag",
    "attachments",
    "meetingMessageType",
    "startDateTime",
    "endDateTime",
    "location",
    "type",
    "isOutOfDate",
    "isAllDay",
    "isDelegated",
];

/// One Graph request, from HTTP or from a `$batch` item.
pub struct GraphRequest<'a> {
    pub method: &'a str,
    /// Path after `/v1.0`, starting with `/`.
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a dyn Fn(&str) -> Option<String>,
    pub body: &'a [u8],
    pub origin: &'a str,
    pub in_batch: bool,
}

/// What to send back.
#[derive(Debug)]
pub enum Body {
    Json(Value),
    Reset,
    Malformed,
}

/// A Graph response before it is turned into HTTP (or into a `$batch` item).
#[derive(Debug)]
pub struct GraphResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

/// Request-scoped ids and dates for error bodies and headers.
pub struct Ctx {
    pub request_id: String,
    pub client_request_id: String,
    pub now: DateTime<Utc>,
}

impl Ctx {
    /// A new context; echoes the client's `client-request-id` when given.
    pub fn new(state: &SimState, headers: &dyn Fn(&str) -> Option<String>) -> Self {
        let request_id = new_guid();
        Self {
            client_request_id: headers("client-request-id").unwrap_or_else(|| request_id.clone()),
            request_id,
            now: state.now(),
        }
    }

    /// Graph's error response.
    pub fn error(&self, status: u16, code: &str, message: &str) -> GraphResponse {
        let body = json!({
            "error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": util::inner_error_date(self.now),
                    "request-id": self.request_id,
                    "client-request-id": self.client_request_id,
                }
            }
        });
        GraphResponse {
            status,
            headers: self.base_headers(),
            body: Body::Json(body),
        }
    }

    fn base_headers(&self) -> Vec<(String, String)> {
        vec![
            ("request-id".into(), self.request_id.clone()),
            ("client-request-id".into(), self.client_request_id.clone()),
            (
                "Content-Type".into(),
                "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8".into(),
            ),
        ]
    }

    fn ok(&self, body: Value, extra: Vec<(String, String)>) -> GraphResponse {
        let mut headers = self.base_headers();
        headers.push(("OData-Version".into(), "4.0".into()));
        headers.extend(extra);
        GraphResponse {
            status: 200,
            headers,
            body: Body::Json(body),
        }
    }

    fn throttled(&self, retry_after: Option<f64>, code: &str, message: &str) -> GraphResponse {
        let mut r = if code == "TooManyRequests" {
            let body = json!({
                "error": {
                    "code": "TooManyRequests",
                    "message": message,
                    "innerError": {
                        "code": "429",
                        "date": util::inner_error_date(self.now),
                        "message": "Please retry after",
                        "request-id": self.request_id,
                        "client-request-id": self.client_request_id,
                        "status": "429",
                    }
                }
            });
            GraphResponse {
                status: 429,
                headers: self.base_headers(),
                body: Body::Json(body),
            }
        } else {
            self.error(429, code, message)
        };
        if let Some(s) = retry_after {
            r.headers
                .push(("Retry-After".into(), util::retry_after_value(s)));
        }
        r
    }
}

/// The signed-in principal of a Graph request.
struct Principal {
    upn: String,
    client_id: String,
    tenant_id: String,
    scopes: Vec<String>,
}

/// Client preferences from `Prefer` headers.
#[derive(Default)]
struct Prefs {
    immutable: bool,
    text_body: Option<bool>,
    max_page: Option<usize>,
}

fn prefs(headers: &dyn Fn(&str) -> Option<String>) -> Prefs {
    let mut p = Prefs::default();
    if let Some(v) = headers("prefer") {
        for part in v.split(',') {
            let part = part.trim();
            let (k, val) = part.split_once('=').unwrap_or((part, ""));
            let val = val.trim().trim_matches('"');
            match k.trim().to_ascii_lowercase().as_str() {
                "idtype" if val.eq_ignore_ascii_case("ImmutableId") => p.immutable = true,
                "outlook.body-content-type" => p.text_body = Some(val.eq_ignore_ascii_case("text")),
                "odata.maxpagesize" => p.max_page = val.parse().ok(),
                _ => {}
            }
        }
    }
    p
}

impl Prefs {
    fn applied(&self, delta: bool) -> Vec<(String, String)> {
        let mut applied = Vec::new();
        if let Some(t) = self.text_body {
            applied.push(format!(
                "outlook.body-content-type=\"{}\"",
                if t { "text" } else { "html" }
            ));
        }
        if self.immutable {
            applied.push("IdType=\"ImmutableId\"".to_owned());
        }
        if delta && let Some(m) = self.max_page {
            applied.push(format!("odata.maxpagesize={m}"));
        }
        if applied.is_empty() {
            Vec::new()
        } else {
            vec![("Preference-Applied".into(), applied.join(", "))]
        }
    }
}

/// The actix handler for everything under `/v1.0/`.
pub async fn handle(
    state: Data<Arc<SimState>>,
    req: HttpRequest,
    payload: Payload,
) -> HttpResponse {
    let header_fn = |name: &str| -> Option<String> {
        let values: Vec<&str> = req
            .headers()
            .get_all(name)
            .filter_map(|v| v.to_str().ok())
            .collect();
        if values.is_empty() {
            None
        } else {
            Some(values.join(", "))
        }
    };
    let ctx = Ctx::new(&state, &header_fn);
    let body = match util::read_body(&req, payload, state.limits.max_body_bytes).await {
        Ok(b) => b,
        Err(util::BodyError::TooLarge(n)) => {
            return to_http(ctx.error(
                413,
                "RequestEntityTooLarge",
                &format!("The request body is larger than {n} bytes."),
            ));
        }
        Err(util::BodyError::Read(e)) => return to_http(ctx.error(400, "BadRequest", &e)),
    };
    let origin = util::origin(&req);
    let path = req.path().strip_prefix("/v1.0").unwrap_or("/");
    if path.eq_ignore_ascii_case("/$batch") {
        if req.method() != actix_web::http::Method::POST {
            return to_http(ctx.error(
                405,
                "BadRequest",
                "Specified HTTP method is not allowed for the request target.",
            ));
        }
        let r = super::batch::handle(&state, &ctx, &header_fn, &body, &origin).await;
        return to_http(r);
    }
    let greq = GraphRequest {
        method: req.method().as_str(),
        path,
        query: req.query_string(),
        headers: &header_fn,
        body: &body,
        origin: &origin,
        in_batch: false,
    };
    to_http(dispatch(&state, &ctx, &greq).await)
}

/// Turns a Graph response into HTTP.
pub fn to_http(r: GraphResponse) -> HttpResponse {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match r.body {
        Body::Reset => util::reset_response(status),
        Body::Malformed => util::malformed_response(),
        Body::Json(v) => {
            let mut b = HttpResponse::build(status);
            for (k, v) in &r.headers {
                b.insert_header((k.as_str(), v.as_str()));
            }
            b.body(v.to_string())
        }
    }
}

/// Parsed route of a Graph path.
enum Route {
    List { folder: Option<String> },
    Delta { folder: String },
    Message { folder: Option<String>, id: String },
    Attachments { id: String },
}

fn folder_segment(seg: &str) -> Option<String> {
    let lower = seg.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("mailfolders(") {
        let inner = seg.get(12..seg.len().saturating_sub(1))?;
        let _ = rest;
        return Some(inner.trim_matches('\'').to_ascii_lowercase());
    }
    None
}

/// Splits `/users/{m}/…` into (mailbox or None for `/me`, route).
fn route(path: &str) -> Option<(Option<String>, Route)> {
    let segs: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let (mailbox, rest): (Option<String>, &[String]) =
        match segs.first().map(|s| s.to_ascii_lowercase()).as_deref() {
            Some("me") => (None, segs.get(1..)?),
            Some("users") => (Some(segs.get(1)?.to_ascii_lowercase()), segs.get(2..)?),
            Some(s) if s.starts_with("users(") => {
                let inner = segs
                    .first()?
                    .get(6..segs.first()?.len().saturating_sub(1))?;
                (
                    Some(inner.trim_matches('\'').to_ascii_lowercase()),
                    segs.get(1..)?,
                )
            }
            _ => return None,
        };
    let lower: Vec<String> = rest.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    let r = match l.as_slice() {
        ["messages"] => Route::List { folder: None },
        ["messages", _] => Route::Message {
            folder: None,
            id: rest.get(1)?.clone(),
        },
        ["messages", _, "attachments"] => Route::Attachments {
            id: rest.get(1)?.clone(),
        },
        ["mailfolders", f, "messages"] => Route::List {
            folder: Some((*f).to_owned()),
        },
        ["mailfolders", f, "messages", "delta"] => Route::Delta {
            folder: (*f).to_owned(),
        },
        ["mailfolders", f, "messages", _] => Route::Message {
            folder: Some((*f).to_owned()),
            id: rest.get(3)?.clone(),
        },
        [f, "messages"] if folder_segment(f).is_some() => Route::List {
            folder: folder_segment(f),
        },
        [f, "messages", "delta"] if folder_segment(f).is_some() => Route::Delta {
            folder: folder_segment(f)?,
        },
        [f, "messages", _] if folder_segment(f).is_some() => Route::Message {
            folder: folder_segment(f),
            id: rest.get(2)?.clone(),
        },
        _ => return None,
    };
    Some((mailbox, r))
}

fn authenticate(
    state: &SimState,
    ctx: &Ctx,
    headers: &dyn Fn(&str) -> Option<String>,
) -> Result<Principal, GraphResponse> {
    let invalid = |m: &str| {
        let mut r = ctx.error(401, "InvalidAuthenticationToken", m);
        r.headers.push((
            "WWW-Authenticate".into(),
            "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"".into(),
        ));
        r
    };
    let Some(auth) = headers("authorization") else {
        return Err(invalid("Access token is empty."));
    };
    let token = match auth.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
        _ => return Err(invalid("Access token is empty.")),
    };
    if token.is_empty() {
        return Err(invalid("Access token is empty."));
    }
    let claims = match state.verify("at", token) {
        Ok(c) => c,
        Err(TokenError::Malformed) | Err(TokenError::WrongKind) => {
            return Err(invalid(
                "CompactToken parsing failed with error code: 80049217",
            ));
        }
        Err(TokenError::BadSignature) => {
            return Err(invalid(
                "Access token validation failure. Invalid audience.",
            ));
        }
    };
    if claims.exp <= state.now_ms() {
        return Err(invalid("Lifetime validation failed, the token is expired."));
    }
    Ok(Principal {
        upn: claims.upn,
        client_id: claims.cid,
        tenant_id: claims.tid,
        scopes: claims.scp.split_whitespace().map(str::to_owned).collect(),
    })
}

fn endpoint_of(r: &Route, method: &str) -> Endpoint {
    match (r, method) {
        (Route::List { .. }, _) => Endpoint::ListMessages,
        (Route::Delta { .. }, _) => Endpoint::Delta,
        (Route::Message { .. }, "PATCH") => Endpoint::PatchMessage,
        (Route::Message { .. }, _) => Endpoint::GetMessage,
        (Route::Attachments { .. }, _) => Endpoint::ListAttachments,
    }
}

/// Runs one Graph request (HTTP or `$batch` item) through auth, throttling, faults and the handler.
pub async fn dispatch(state: &SimState, ctx: &Ctx, req: &GraphRequest<'_>) -> GraphResponse {
    let Some((mbx, route)) = route(req.path) else {
        state.counters.hit(Endpoint::Other, None);
        return ctx.error(
            400,
            "BadRequest",
            &format!(
                "Resource not found for the segment '{}'.",
                req.path
                    .trim_matches('/')
                    .split('/')
                    .next_back()
                    .unwrap_or("")
            ),
        );
    };
    let endpoint = endpoint_of(&route, req.method);
    let principal = match authenticate(state, ctx, req.headers) {
        Ok(p) => p,
        Err(r) => {
            state.counters.hit(endpoint, None);
            return r;
        }
    };
    let mailbox_addr = mbx.unwrap_or_else(|| principal.upn.clone());
    state.counters.hit(endpoint, Some(&mailbox_addr));
    if req.in_batch {
        state.counters.hit(Endpoint::BatchItem, Some(&mailbox_addr));
    }
    let allowed_methods: &[&str] = match route {
        Route::Message { .. } => &["GET", "PATCH"],
        _ => &["GET"],
    };
    if !allowed_methods.contains(&req.method) {
        return ctx.error(
            405,
            "BadRequest",
            "Specified HTTP method is not allowed for the request target.",
        );
    }
    let Some(mailbox) = state.mailbox(&mailbox_addr) else {
        return ctx.error(
            404,
            "ErrorInvalidUser",
            &format!("The requested user '{mailbox_addr}' is invalid."),
        );
    };
    let own = principal.upn == mailbox.address;
    let can_read = principal
        .scopes
        .iter()
        .any(|s| MAIL_READ_SCOPES.contains(&s.as_str()) && (own || s.ends_with(".Shared")));
    let can_write = principal
        .scopes
        .iter()
        .any(|s| (s == "Mail.ReadWrite.Shared") || (own && s == "Mail.ReadWrite"));
    if !state.may_access(&principal.upn, &mailbox.address)
        || !can_read
        || (req.method == "PATCH" && !can_write)
    {
        return ctx.error(
            403,
            "ErrorAccessDenied",
            "Access is denied. Check credentials and try again.",
        );
    }

    // Throttling per (app, mailbox).
    let key = format!("{}|{}", principal.client_id, mailbox.address);
    let entry = state.throttle.entry(&key);
    let now_ms = state.now_ms();
    let nb = entry.not_before_ms.load(Ordering::Acquire);
    if nb > now_ms {
        state.counters.early(EarlyRequest {
            key: key.clone(),
            endpoint: endpoint.name(),
            at: util::graph_datetime(ctx.now),
            early_by_ms: nb - now_ms,
        });
    }
    let limits = &state.limits;
    let _slot = match state.throttle.acquire(
        &entry,
        now_ms,
        limits.mailbox_concurrency,
        limits.mailbox_requests_per_10_min,
    ) {
        Ok(s) => s,
        Err(Throttled::Concurrency) => {
            let ra = limits.concurrency_retry_after_secs;
            Throttle::set_retry_after(&entry, now_ms, ra);
            return ctx.throttled(
                Some(ra),
                "ApplicationThrottled",
                "Application is over its MailboxConcurrency limit.",
            );
        }
        Err(Throttled::Budget(ra)) => {
            Throttle::set_retry_after(&entry, now_ms, ra);
            return ctx.throttled(
                Some(ra),
                "ApplicationThrottled",
                "Application is over its MailboxRequests limit.",
            );
        }
    };
    let verdict = state.faults.check(
        &Target {
            endpoint,
            tenant: Some(&principal.tenant_id),
            client_id: Some(&principal.client_id),
            mailbox: Some(&mailbox.address),
            user: Some(&principal.upn),
            in_batch: req.in_batch,
        },
        now_ms,
        |_| true,
    );
    if verdict.latency_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(verdict.latency_ms)).await;
    }
    match verdict.fault {
        None | Some(FaultKind::Latency { .. }) => {}
        Some(FaultKind::Throttle { retry_after }) => {
            if let Some(r) = retry_after {
                Throttle::set_retry_after(&entry, now_ms, r);
            }
            return ctx.throttled(retry_after, "TooManyRequests", "Please retry again later.");
        }
        Some(FaultKind::Status {
            status,
            retry_after,
            code,
        }) => {
            let (default_code, msg) = match status {
                503 => (
                    "serviceNotAvailable",
                    "The service is temporarily unavailable. Please retry later.",
                ),
                504 => ("UnknownError", "The gateway timed out."),
                429 => ("TooManyRequests", "Please retry again later."),
                _ => (
                    "generalException",
                    "An internal server error occurred. The operation failed.",
                ),
            };
            let mut r = ctx.error(status, code.as_deref().unwrap_or(default_code), msg);
            if let Some(s) = retry_after {
                Throttle::set_retry_after(&entry, now_ms, s);
                r.headers
                    .push(("Retry-After".into(), util::retry_after_value(s)));
            }
            return r;
        }
        Some(FaultKind::Reset) => {
            return GraphResponse {
                status: 200,
                headers: Vec::new(),
                body: Body::Reset,
            };
        }
        Some(FaultKind::Malformed) => {
            return GraphResponse {
                status: 200,
                headers: Vec::new(),
                body: Body::Malformed,
            };
        }
        Some(FaultKind::Aadsts { .. }) | Some(FaultKind::ExpiredSecret) | Some(FaultKind::Down) => {
        }
    }
    let p = prefs(req.headers);
    let q = util::form_pairs(req.query.as_bytes());
    match route {
        Route::List { folder } => list(state, ctx, req, &mailbox, folder.as_deref(), &q, &p),
        Route::Delta { folder } => delta(state, ctx, req, &mailbox, &folder, &q, &p),
        Route::Message { folder, id } => {
            if req.method == "PATCH" {
                patch(state, ctx, req, &mailbox, folder.as_deref(), &id, &p)
            } else {
                get_message(state, ctx, req, &mailbox, folder.as_deref(), &id, &q, &p)
            }
        }
        Route::Attachments { id } => attachments(ctx, req, &mailbox, &id),
    }
}

/// Well-known folder names; messages may also be delivered to any other folder name.
const WELL_KNOWN: &[&str] = &[
    "inbox",
    "drafts",
    "sentitems",
    "deleteditems",
    "junkemail",
    "archive",
    "outbox",
    "msgfolderroot",
];

fn folder_known(mailbox: &Mailbox, folder: &str) -> bool {
    WELL_KNOWN.contains(&folder)
        || mailbox
            .data
            .lock()
            .messages
            .iter()
            .any(|m| m.folder == folder)
}

fn folder_id(mailbox: &Mailbox, folder: &str) -> String {
    let raw = format!("{}:{folder}", mailbox.tag);
    format!("AAMkAGI2AAEu{}AAA=", URL_SAFE_NO_PAD.encode(raw))
}

/// Options controlling how messages are serialised.
struct View<'a> {
    select: Option<Vec<String>>,
    immutable: bool,
    text_body: bool,
    expand_attachments: bool,
    always_type: bool,
    mailbox: &'a Mailbox,
}

fn recipients(list: &[super::state::Address]) -> Value {
    Value::Array(
        list.iter()
            .map(|a| json!({"emailAddress": {"name": a.name, "address": a.address}}))
            .collect(),
    )
}

fn etag_inner(m: &Message) -> String {
    let mut raw = Vec::with_capacity(24);
    raw.extend_from_slice(b"\x09\x00\x00\x00\x16\x00\x00\x00");
    raw.extend_from_slice(&m.seq.to_be_bytes());
    raw.extend_from_slice(&m.changed_version.to_be_bytes());
    STANDARD.encode(raw)
}

fn attachment_json(m: &Message, i: usize, a: &super::state::Attachment, v: &View<'_>) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.fileAttachment",
        "@odata.mediaContentType": a.content_type,
        "id": format!("{}AAABEgAQ{}", message_id(v.mailbox.tag, m.seq, v.immutable), i),
        "lastModifiedDateTime": util::graph_datetime(m.received),
        "name": a.name,
        "contentType": a.content_type,
        "size": a.size,
        "isInline": a.is_inline,
        "contentId": Value::Null,
        "contentLocation": Value::Null,
        "contentBytes": a.content_bytes,
    })
}

fn message_json(m: &Message, v: &View<'_>) -> Value {
    let id = message_id(v.mailbox.tag, m.seq, v.immutable);
    let received = util::graph_datetime(m.received);
    let body = if v.text_body {
        json!({"contentType": "text", "content": m.body_text})
    } else {
        json!({"contentType": "html", "content": m.body_html})
    };
    let from = json!({"emailAddress": {"name": m.from.name, "address": m.from.address}});
    let mut all = Map::new();
    let mut put = |k: &str, val: Value| {
        all.insert(k.to_owned(), val);
    };
    put("id", Value::String(id.clone()));
    put("createdDateTime", received.clone().into());
    put("lastModifiedDateTime", received.clone().into());
    put("changeKey", etag_inner(m).into());
    put("categories", json!([]));
    put("receivedDateTime", received.clone().into());
    put("sentDateTime", received.clone().into());
    put("hasAttachments", (!m.attachments.is_empty()).into());
    put("internetMessageId", m.internet_message_id.clone().into());
    put("subject", m.subject.clone().into());
    put("bodyPreview", preview(&m.body_text).into());
    put("importance", m.importance.clone().into());
    put("parentFolderId", folder_id(v.mailbox, &m.folder).into());
    put("conversationId", m.conversation_id.clone().into());
    put(
        "conversationIndex",
        STANDARD.encode(m.seq.to_be_bytes()).into(),
    );
    put("isDeliveryReceiptRequested", false.into());
    put("isReadReceiptRequested", false.into());
    put("isRead", m.is_read.into());
    put("isDraft", false.into());
    put(
        "webLink",
        format!(
            "https://outlook.office365.com/owa/?ItemID={}&exvsurl=1&viewmodel=ReadMessageItem",
            utf8_percent_encode(&id, QUERY_VALUE)
        )
        .into(),
    );
    put("inferenceClassification", "focused".into());
    put("body", body.clone());
    put("uniqueBody", body);
    put("sender", from.clone());
    put("from", from);
    put("toRecipients", recipients(&m.to));
    put("ccRecipients", recipients(&m.cc));
    put("bccRecipients", json!([]));
    put("replyTo", json!([]));
    put("flag", json!({"flagStatus": "notFlagged"}));
    if let Some(mt) = &m.meeting {
        put("meetingMessageType", "meetingRequest".into());
        put(
            "startDateTime",
            json!({"dateTime": util::ticks_datetime(mt.start), "timeZone": "UTC"}),
        );
        put(
            "endDateTime",
            json!({"dateTime": util::ticks_datetime(mt.end), "timeZone": "UTC"}),
        );
        put(
            "location",
            json!({"displayName": mt.location, "locationType": "default", "uniqueIdType": "unknown"}),
        );
        put("type", "singleInstance".into());
        put("isOutOfDate", false.into());
        put("isAllDay", false.into());
        put("isDelegated", false.into());
    }
    if v.expand_attachments {
        put(
            "attachments",
            Value::Array(
                m.attachments
                    .iter()
                    .enumerate()
                    .map(|(i, a)| attachment_json(m, i, a, v))
                    .collect(),
            ),
        );
    }
    let mut out = Map::new();
    if m.meeting.is_some() {
        out.insert("@odata.type".into(), "#microsoft.graph.eventMessage".into());
    } else if v.always_type {
        out.insert("@odata.type".into(), "#microsoft.graph.message".into());
    }
    out.insert(
        "@odata.etag".into(),
        format!("W/\"{}\"", etag_inner(m)).into(),
    );
    match &v.select {
        None => out.extend(all),
        Some(sel) => {
            out.insert("id".into(), id.into());
            for s in sel {
                if let Some(val) = all.get(s) {
                    out.insert(s.clone(), val.clone());
                }
            }
            if v.expand_attachments
                && let Some(a) = all.get("attachments")
            {
                out.insert("attachments".into(), a.clone());
            }
        }
    }
    Value::Object(out)
}

fn parse_select(ctx: &Ctx, q: &[(String, String)]) -> Result<Option<Vec<String>>, GraphResponse> {
    let Some(sel) = util::get(q, "$select") else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for s in sel.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match PROPERTIES.iter().find(|p| p.eq_ignore_ascii_case(s)) {
            Some(p) => out.push((*p).to_owned()),
            None => {
                return Err(ctx.error(
                    400,
                    "RequestBroker--ParseUri",
                    &format!(
                        "Could not find a property named '{s}' on type 'microsoft.graph.message'."
                    ),
                ));
            }
        }
    }
    Ok(Some(out))
}

fn parse_expand(ctx: &Ctx, q: &[(String, String)]) -> Result<bool, GraphResponse> {
    match util::get(q, "$expand") {
        None => Ok(false),
        Some(e) if e.trim().eq_ignore_ascii_case("attachments") => Ok(true),
        Some(e) => Err(ctx.error(
            400,
            "RequestBroker--ParseUri",
            &format!("Could not find a property named '{e}' on type 'microsoft.graph.message'."),
        )),
    }
}

/// One `$filter` clause.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Clause {
    prop: String,
    op: String,
    value: String,
}

fn parse_filter(ctx: &Ctx, f: &str) -> Result<Vec<Clause>, GraphResponse> {
    let bad = |m: &str| ctx.error(400, "BadRequest", &format!("Invalid filter clause: {m}"));
    let mut out = Vec::new();
    for part in split_and(f) {
        let toks: Vec<&str> = part.split_whitespace().collect();
        let [prop, op, value] = toks.as_slice() else {
            return Err(bad(&format!("'{part}' is not a supported comparison.")));
        };
        let prop = match ["isRead", "receivedDateTime", "hasAttachments", "importance"]
            .iter()
            .find(|p| p.eq_ignore_ascii_case(prop))
        {
            Some(p) => (*p).to_owned(),
            None => {
                return Err(ctx.error(
                    400,
                    "RequestBroker--ParseUri",
                    &format!("Could not find a property named '{prop}' on type 'microsoft.graph.message'."),
                ));
            }
        };
        let op = op.to_ascii_lowercase();
        if !["eq", "ne", "ge", "gt", "le", "lt"].contains(&op.as_str()) {
            return Err(bad(&format!("operator '{op}' is not supported.")));
        }
        let value = value.trim_matches('\'').to_owned();
        match prop.as_str() {
            "isRead" | "hasAttachments" => {
                if value != "true" && value != "false" {
                    return Err(bad(&format!("'{value}' is not a boolean.")));
                }
                if op != "eq" && op != "ne" {
                    return Err(bad(&format!("operator '{op}' is not valid for a boolean.")));
                }
            }
            "receivedDateTime" if DateTime::parse_from_rfc3339(&value).is_err() => {
                return Err(bad(&format!("'{value}' is not a valid DateTimeOffset.")));
            }
            _ => {}
        }
        out.push(Clause { prop, op, value });
    }
    if out.is_empty() {
        return Err(bad("the filter is empty."));
    }
    Ok(out)
}

fn split_and(f: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = Vec::new();
    for tok in f.split_whitespace() {
        if tok.eq_ignore_ascii_case("and") {
            parts.push(cur.join(" "));
            cur.clear();
        } else {
            cur.push(tok);
        }
    }
    parts.push(cur.join(" "));
    parts
}

fn clause_matches(c: &Clause, m: &Message) -> bool {
    use std::cmp::Ordering as O;
    let ord = match c.prop.as_str() {
        "isRead" => m.is_read.cmp(&(c.value == "true")),
        "hasAttachments" => (!m.attachments.is_empty()).cmp(&(c.value == "true")),
        "importance" => m.importance.as_str().cmp(c.value.as_str()),
        "receivedDateTime" => match DateTime::parse_from_rfc3339(&c.value) {
            Ok(t) => m
                .received
                .timestamp()
                .cmp(&t.with_timezone(&Utc).timestamp()),
            Err(_) => return false,
        },
        _ => return false,
    };
    match c.op.as_str() {
        "eq" => ord == O::Equal,
        "ne" => ord != O::Equal,
        "ge" => ord != O::Less,
        "gt" => ord == O::Greater,
        "le" => ord != O::Greater,
        "lt" => ord == O::Less,
        _ => false,
    }
}

fn link(origin: &str, path: &str, pairs: &[(String, String)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, QUERY_VALUE)))
        .collect();
    format!("{origin}/v1.0{path}?{}", q.join("&"))
}

fn context_url(
    origin: &str,
    mailbox: &str,
    folder: Option<&str>,
    select: &Option<Vec<String>>,
) -> String {
    let sel = select
        .as_ref()
        .map(|s| format!("({})", s.join(",")))
        .unwrap_or_default();
    match folder {
        Some(f) => {
            format!("{origin}/v1.0/$metadata#users('{mailbox}')/mailFolders('{f}')/messages{sel}")
        }
        None => format!("{origin}/v1.0/$metadata#users('{mailbox}')/messages{sel}"),
    }
}

fn list(
    state: &SimState,
    ctx: &Ctx,
    req: &GraphRequest<'_>,
    mailbox: &Mailbox,
    folder: Option<&str>,
    q: &[(String, String)],
    p: &Prefs,
) -> GraphResponse {
    let _ = state;
    if let Some(f) = folder
        && !folder_known(mailbox, f)
    {
        return ctx.error(
            404,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        );
    }
    let select = match parse_select(ctx, q) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let expand = match parse_expand(ctx, q) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let top = match util::get(q, "$top") {
        None => DEFAULT_TOP,
        Some(t) => match t.parse::<usize>() {
            Ok(n) if (1..=MAX_TOP).contains(&n) => n,
            _ => {
                return ctx.error(
                    400,
                    "ErrorInvalidArgument",
                    &format!("The value '{t}' of the parameter '$top' is invalid: it must be an integer between 1 and {MAX_TOP}."),
                );
            }
        },
    };
    let skip = match util::get(q, "$skip").map(str::parse::<usize>) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return ctx.error(
                400,
                "BadRequest",
                "The value of the parameter '$skip' is invalid.",
            );
        }
    };
    let filter = match util::get(q, "$filter") {
        None => Vec::new(),
        Some(f) => match parse_filter(ctx, f) {
            Ok(c) => c,
            Err(r) => return r,
        },
    };
    let order = match util::get(q, "$orderby") {
        None => None,
        Some(o) => {
            let mut it = o.split_whitespace();
            let prop = it.next().unwrap_or("");
            let dir = it.next().unwrap_or("asc").to_ascii_lowercase();
            if !prop.eq_ignore_ascii_case("receivedDateTime") || (dir != "asc" && dir != "desc") {
                return ctx.error(
                    400,
                    "BadRequest",
                    &format!("The $orderby expression '{o}' is not supported."),
                );
            }
            if !filter.is_empty() && filter.first().is_none_or(|c| c.prop != "receivedDateTime") {
                return ctx.error(
                    400,
                    "InefficientFilter",
                    "The restriction or sort order is too complex for this operation.",
                );
            }
            Some(dir == "desc")
        }
    };
    let count = util::get(q, "$count").is_some_and(|c| c.eq_ignore_ascii_case("true"));
    let view = View {
        select: select.clone(),
        immutable: p.immutable,
        text_body: p.text_body.unwrap_or(false),
        expand_attachments: expand,
        always_type: false,
        mailbox,
    };
    let (page, total) = {
        let data = mailbox.data.lock();
        let mut hits: Vec<&Message> = data
            .messages
            .iter()
            .filter(|m| !m.deleted && folder.is_none_or(|f| m.folder == f))
            .filter(|m| filter.iter().all(|c| clause_matches(c, m)))
            .collect();
        let desc = order.unwrap_or(true);
        hits.sort_by(|a, b| {
            let o = a.received.cmp(&b.received).then(a.seq.cmp(&b.seq));
            if desc { o.reverse() } else { o }
        });
        let total = hits.len();
        let page: Vec<Value> = hits
            .iter()
            .skip(skip)
            .take(top)
            .map(|m| message_json(m, &view))
            .collect();
        (page, total)
    };
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        context_url(req.origin, &mailbox.address, folder, &select).into(),
    );
    if count {
        body.insert("@odata.count".into(), total.into());
    }
    body.insert("value".into(), Value::Array(page));
    if skip + top < total {
        let mut pairs: Vec<(String, String)> =
            q.iter().filter(|(k, _)| k != "$skip").cloned().collect();
        pairs.push(("$skip".into(), (skip + top).to_string()));
        body.insert(
            "@odata.nextLink".into(),
            link(req.origin, req.path, &pairs).into(),
        );
    }
    ctx.ok(Value::Object(body), p.applied(false))
}

/// The state a delta link carries.
#[derive(Debug, Serialize, Deserialize)]
struct DeltaToken {
    /// Mailbox tag.
    t: u32,
    /// Folder.
    f: String,
    /// Changes after this version are in the round.
    s: u64,
    /// Round upper bound (skip tokens only).
    #[serde(default)]
    v: u64,
    /// Offset in the round (skip tokens only).
    #[serde(default)]
    o: usize,
    #[serde(default)]
    sel: Option<Vec<String>>,
    #[serde(default)]
    flt: Vec<Clause>,
    #[serde(default)]
    ct: Option<String>,
    #[serde(default)]
    desc: bool,
}

fn encode_token(t: &DeltaToken) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(t).unwrap_or_default())
}

fn decode_token(s: &str) -> Option<DeltaToken> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).ok()?).ok()
}

fn delta(
    state: &SimState,
    ctx: &Ctx,
    req: &GraphRequest<'_>,
    mailbox: &Mailbox,
    folder: &str,
    q: &[(String, String)],
    p: &Prefs,
) -> GraphResponse {
    let _ = state;
    if !folder_known(mailbox, folder) {
        return ctx.error(
            404,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        );
    }
    let gone = || {
        let mut r = ctx.error(410, "syncStateNotFound", "The sync state generation is no longer valid or was not found. Restart the synchronization without a delta token.");
        r.headers.push((
            "Location".into(),
            format!("{}/v1.0{}", req.origin, req.path),
        ));
        r
    };
    let skip = util::get(q, "$skiptoken");
    let dtok = util::get(q, "$deltatoken");
    let page_size = p
        .max_page
        .or_else(|| util::get(q, "$top").and_then(|t| t.parse().ok()))
        .unwrap_or(DEFAULT_TOP)
        .clamp(1, MAX_TOP);
    let token = match (skip, dtok) {
        (Some(t), _) | (None, Some(t)) => match decode_token(t) {
            Some(tok) if tok.t == mailbox.tag && tok.f == folder => {
                if tok.s < mailbox.data.lock().delta_floor {
                    return gone();
                }
                tok
            }
            _ => return gone(),
        },
        (None, None) => {
            let sel = match parse_select(ctx, q) {
                Ok(s) => s,
                Err(r) => return r,
            };
            let flt = match util::get(q, "$filter") {
                None => Vec::new(),
                Some(f) => match parse_filter(ctx, f) {
                    Ok(c)
                        if c.iter().all(|c| {
                            c.prop == "receivedDateTime" && (c.op == "ge" || c.op == "gt")
                        }) =>
                    {
                        c
                    }
                    Ok(_) => {
                        return ctx.error(400, "BadRequest", "Delta queries on messages support only $filter=receivedDateTime ge|gt {value}.");
                    }
                    Err(r) => return r,
                },
            };
            let desc = match util::get(q, "$orderby") {
                None => false,
                Some(o)
                    if o.split_whitespace().collect::<Vec<_>>() == ["receivedDateTime", "desc"] =>
                {
                    true
                }
                Some(_) => {
                    return ctx.error(
                        400,
                        "BadRequest",
                        "Delta queries on messages support only $orderby=receivedDateTime desc.",
                    );
                }
            };
            let ct = util::get(q, "changeType").map(str::to_ascii_lowercase);
            if ct
                .as_deref()
                .is_some_and(|c| !["created", "updated", "deleted"].contains(&c))
            {
                return ctx.error(
                    400,
                    "BadRequest",
                    "changeType must be created, updated or deleted.",
                );
            }
            DeltaToken {
                t: mailbox.tag,
                f: folder.to_owned(),
                s: 0,
                v: 0,
                o: 0,
                sel,
                flt,
                ct,
                desc,
            }
        }
    };
    let view = View {
        select: token.sel.clone(),
        immutable: p.immutable,
        text_body: p.text_body.unwrap_or(false),
        expand_attachments: false,
        always_type: true,
        mailbox,
    };
    let data = mailbox.data.lock();
    let round_v = if skip.is_some() {
        token.v
    } else {
        data.version
    };
    let since = token.s;
    let mut items: Vec<&Message> = data
        .messages
        .iter()
        .filter(|m| m.folder == folder && m.changed_version > since && m.changed_version <= round_v)
        .filter(|m| {
            if m.deleted {
                since > 0 && m.created_version <= since
            } else {
                token.flt.iter().all(|c| clause_matches(c, m))
            }
        })
        .filter(|m| match token.ct.as_deref() {
            Some("created") => !m.deleted && m.created_version > since,
            Some("updated") => !m.deleted && m.created_version <= since,
            Some("deleted") => m.deleted,
            _ => true,
        })
        .collect();
    if token.desc {
        items.sort_by(|a, b| b.received.cmp(&a.received).then(b.seq.cmp(&a.seq)));
    }
    let total = items.len();
    let page: Vec<Value> = items
        .iter()
        .skip(token.o)
        .take(page_size)
        .map(|m| {
            if m.deleted {
                json!({
                    "@odata.type": "#microsoft.graph.message",
                    "id": message_id(mailbox.tag, m.seq, p.immutable),
                    "@removed": {"reason": "deleted"},
                })
            } else {
                message_json(m, &view)
            }
        })
        .collect();
    drop(data);
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        format!("{}/v1.0/$metadata#Collection(message)", req.origin).into(),
    );
    body.insert("value".into(), Value::Array(page));
    let next_offset = token.o + page_size;
    if next_offset < total {
        let next = DeltaToken {
            s: since,
            v: round_v,
            o: next_offset,
            ..token
        };
        let l = link(
            req.origin,
            req.path,
            &[("$skiptoken".into(), encode_token(&next))],
        );
        body.insert("@odata.nextLink".into(), l.into());
    } else {
        let next = DeltaToken {
            s: round_v,
            v: 0,
            o: 0,
            ..token
        };
        let l = link(
            req.origin,
            req.path,
            &[("$deltatoken".into(), encode_token(&next))],
        );
        body.insert("@odata.deltaLink".into(), l.into());
    }
    ctx.ok(Value::Object(body), p.applied(true))
}

fn locate(ctx: &Ctx, mailbox: &Mailbox, id: &str) -> Result<u64, GraphResponse> {
    match parse_message_id(id) {
        None => Err(ctx.error(400, "ErrorInvalidIdMalformed", "Id is malformed.")),
        Some((tag, seq)) if tag == mailbox.tag => Ok(seq),
        Some(_) => Err(ctx.error(
            404,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        )),
    }
}

#[allow(clippy::too_many_arguments)]
fn get_message(
    state: &SimState,
    ctx: &Ctx,
    req: &GraphRequest<'_>,
    mailbox: &Mailbox,
    folder: Option<&str>,
    id: &str,
    q: &[(String, String)],
    p: &Prefs,
) -> GraphResponse {
    let _ = state;
    let seq = match locate(ctx, mailbox, id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let select = match parse_select(ctx, q) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let expand = match parse_expand(ctx, q) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let view = View {
        select: select.clone(),
        immutable: p.immutable,
        text_body: p.text_body.unwrap_or(false),
        expand_attachments: expand,
        always_type: false,
        mailbox,
    };
    let mut data = mailbox.data.lock();
    let Some(m) = data
        .find_mut(seq)
        .filter(|m| folder.is_none_or(|f| m.folder == f))
    else {
        return ctx.error(
            404,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        );
    };
    let mut v = message_json(m, &view);
    drop(data);
    if let Some(o) = v.as_object_mut() {
        let sel = select
            .as_ref()
            .map(|s| format!("({})", s.join(",")))
            .unwrap_or_default();
        o.insert(
            "@odata.context".into(),
            format!(
                "{}/v1.0/$metadata#users('{}')/messages{sel}/$entity",
                req.origin, mailbox.address
            )
            .into(),
        );
    }
    ctx.ok(v, p.applied(false))
}

fn patch(
    state: &SimState,
    ctx: &Ctx,
    req: &GraphRequest<'_>,
    mailbox: &Mailbox,
    folder: Option<&str>,
    id: &str,
    p: &Prefs,
) -> GraphResponse {
    let _ = state;
    let seq = match locate(ctx, mailbox, id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(Value::Object(changes)) = serde_json::from_slice::<Value>(req.body) else {
        return ctx.error(
            400,
            "BadRequest",
            "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
        );
    };
    let mut is_read = None;
    let mut importance = None;
    for (k, v) in &changes {
        match (k.as_str(), v) {
            ("isRead", Value::Bool(b)) => is_read = Some(*b),
            ("importance", Value::String(s))
                if ["low", "normal", "high"].contains(&s.to_ascii_lowercase().as_str()) =>
            {
                importance = Some(s.to_ascii_lowercase());
            }
            ("isRead", _) | ("importance", _) => {
                return ctx.error(
                    400,
                    "ErrorInvalidProperty",
                    &format!("The value of property '{k}' is invalid."),
                );
            }
            ("categories", _) | ("flag", _) | ("inferenceClassification", _) => {}
            _ => {
                return ctx.error(
                    400,
                    "ErrorInvalidPropertyUpdateSentMessage",
                    &format!("Update operation is invalid for property '{k}' of this message."),
                );
            }
        }
    }
    let view = View {
        select: None,
        immutable: p.immutable,
        text_body: p.text_body.unwrap_or(false),
        expand_attachments: false,
        always_type: false,
        mailbox,
    };
    let mut data = mailbox.data.lock();
    data.version += 1;
    let version = data.version;
    let Some(m) = data
        .find_mut(seq)
        .filter(|m| folder.is_none_or(|f| m.folder == f))
    else {
        return ctx.error(
            404,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        );
    };
    if let Some(r) = is_read {
        m.is_read = r;
    }
    if let Some(i) = importance {
        m.importance = i;
    }
    m.changed_version = version;
    let mut v = message_json(m, &view);
    drop(data);
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "@odata.context".into(),
            format!(
                "{}/v1.0/$metadata#users('{}')/messages/$entity",
                req.origin, mailbox.address
            )
            .into(),
        );
    }
    ctx.ok(v, p.applied(false))
}

fn attachments(ctx: &Ctx, req: &GraphRequest<'_>, mailbox: &Mailbox, id: &str) -> GraphResponse {
    let seq = match locate(ctx, mailbox, id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let view = View {
        select: None,
        immutable: parse_message_id(id).is_some() && id.starts_with("AAkAL"),
        text_body: false,
        expand_attachments: true,
        always_type: false,
        mailbox,
    };
    let mut data = mailbox.data.lock();
    let Some(m) = data.find_mut(seq) else {
        return ctx.error(
            404,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        );
    };
    let list: Vec<Value> = m
        .attachments
        .iter()
        .enumerate()
        .map(|(i, a)| attachment_json(m, i, a, &view))
        .collect();
    drop(data);
    ctx.ok(
        json!({
            "@odata.context": format!("{}/v1.0/$metadata#users('{}')/messages('{id}')/attachments", req.origin, mailbox.address),
            "value": list,
        }),
        Vec::new(),
    )
}
