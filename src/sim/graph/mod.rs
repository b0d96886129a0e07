//! Graph v1.0 mail for `/v1.0/users/{mailbox}/…` (and `/v1.0/me/…`): the actix handler and
//! [`dispatch`], which takes every request (HTTP or `$batch` item) through access-token checks,
//! Outlook throttling per (app, mailbox) and injected faults to its handler.
//!
//! By concern: [`route`] (paths), [`folders`] (well-known names, folder ids), [`odata`] (query options, `Prefer`), [`render`] (message JSON),
//! [`messages`] (list, get, patch), [`delta`], [`attachments`], [`batch`] (`$batch`), and
//! [`response`] (request and response types, error shapes, fault responses).

mod attachments;
mod batch;
mod delta;
mod folders;
mod messages;
mod odata;
mod render;
mod response;
mod route;

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::web::{Data, Payload};
use actix_web::{HttpRequest, HttpResponse};

use self::odata::prefs;
use self::response::{Body, Ctx, GraphRequest, GraphResponse, fault_response};
use self::route::{Route, endpoint_of, route};
use crate::sim::counters::{EarlyRequest, Endpoint};
use crate::sim::faults::{FaultKind, Target};
use crate::sim::state::{GRAPH_AUDIENCE, MAIL_READ_SCOPES, SimState, TokenError};
use crate::sim::throttle::{Throttle, Throttled};
use crate::sim::util;

/// The signed-in principal of a Graph request.
struct Principal {
    upn: String,
    client_id: String,
    tenant_id: String,
    scopes: Vec<String>,
}

/// The actix handler for everything under `/v1.0/`.
pub async fn handle(
    state: Data<Arc<SimState>>,
    req: HttpRequest,
    payload: Payload,
) -> HttpResponse {
    let arrival = state.throttle.arrive();
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
    let ctx = Ctx::new(&state, &header_fn, req.query_string());
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
        let r = batch::handle(&state, &ctx, &header_fn, &body, &origin, arrival).await;
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
        arrival,
    };
    to_http(dispatch(&state, &ctx, &greq).await)
}

/// Turns a Graph response into HTTP.
pub fn to_http(r: GraphResponse) -> HttpResponse {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    // Every answer carries `request-id` and `client-request-id`, a broken one too.
    let ids = |mut resp: HttpResponse| {
        for (k, v) in &r.headers {
            if (k == "request-id" || k == "client-request-id")
                && let (Ok(name), Ok(value)) = (
                    actix_web::http::header::HeaderName::from_bytes(k.as_bytes()),
                    actix_web::http::header::HeaderValue::from_str(v),
                )
            {
                resp.headers_mut().insert(name, value);
            }
        }
        resp
    };
    match r.body {
        Body::Reset => ids(util::reset_response(status)),
        Body::Malformed => ids(util::malformed_response()),
        Body::Json(v) => {
            let mut b = HttpResponse::build(status);
            for (k, v) in &r.headers {
                b.insert_header((k.as_str(), v.as_str()));
            }
            b.body(v.to_string())
        }
    }
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
    if claims.audience() != GRAPH_AUDIENCE {
        // An Exchange Online (IMAP) token is not for Graph.
        return Err(invalid(
            "Access token validation failure. Invalid audience.",
        ));
    }
    Ok(Principal {
        upn: claims.upn,
        client_id: claims.cid,
        tenant_id: claims.tid,
        scopes: claims.scp.split_whitespace().map(str::to_owned).collect(),
    })
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
    if let Some(early_by_ms) = Throttle::early_by(&entry, req.arrival, now_ms) {
        state.counters.early(EarlyRequest {
            key: key.clone(),
            endpoint: endpoint.name(),
            at: util::graph_datetime(ctx.now),
            early_by_ms,
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
            state.throttle.set_retry_after(&entry, now_ms, ra);
            return ctx.throttled(
                Some(ra),
                "ApplicationThrottled",
                "Application is over its MailboxConcurrency limit.",
            );
        }
        Err(Throttled::Budget(ra)) => {
            state.throttle.set_retry_after(&entry, now_ms, ra);
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
        FaultKind::on_graph,
    );
    if verdict.latency_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(verdict.latency_ms)).await;
    }
    if let Some(fault) = &verdict.fault
        && let Some(r) = fault_response(ctx, fault, |secs| {
            state.throttle.set_retry_after(&entry, now_ms, secs)
        })
    {
        return r;
    }
    let p = prefs(req.headers);
    let q = util::form_pairs(req.query.as_bytes());
    // A folder segment (name or id) becomes the folder's key; an unknown folder is a 404.
    let resolve = |seg: Option<String>| match seg {
        None => Ok(None),
        Some(s) => folders::resolve(&mailbox, &s)
            .map(Some)
            .ok_or_else(|| folders::not_found(ctx)),
    };
    let route = match route {
        Route::List { folder } => match resolve(folder) {
            Ok(folder) => Route::List { folder },
            Err(r) => return r,
        },
        Route::Delta { folder } => match resolve(Some(folder)) {
            Ok(Some(folder)) => Route::Delta { folder },
            Ok(None) => return folders::not_found(ctx),
            Err(r) => return r,
        },
        Route::Message { folder, id } => match resolve(folder) {
            Ok(folder) => Route::Message { folder, id },
            Err(r) => return r,
        },
        other => other,
    };
    match route {
        Route::Folder { folder } => folders::get_folder(ctx, req.origin, &mailbox, &folder),
        Route::List { folder } => {
            messages::list(state, ctx, req, &mailbox, folder.as_deref(), &q, &p)
        }
        Route::Delta { folder } => delta::delta(state, ctx, req, &mailbox, &folder, &q, &p),
        Route::Message { folder, id } => {
            if req.method == "PATCH" {
                messages::patch(state, ctx, req, &mailbox, folder.as_deref(), &id, &p)
            } else {
                messages::get_message(state, ctx, req, &mailbox, folder.as_deref(), &id, &q, &p)
            }
        }
        Route::Attachments { id } => attachments::attachments(ctx, req, &mailbox, &id),
    }
}
