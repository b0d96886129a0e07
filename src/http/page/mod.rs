//! The status page: `/` (channels with filter, search and paging, one channel's details and
//! actions), `/login` and `/logout`, the action forms under `/ui/…`, and the page's own script and
//! style sheet. Server-rendered HTML (maud, which escapes every value) plus a little plain
//! JavaScript, no build step.
//!
//! Access: the admin token, typed once into the login form, starts a server-side session (see
//! [`crate::http::session`]). Every POST passes, in this order, before anything happens: the
//! same-origin check (its `Origin`, or `Referer`, is the public URL's origin; else 403), the
//! session (else 401 and the login form), the session's CSRF token (else 403). No secret is ever
//! rendered (the secret fields of the forms are always empty). Actions call the same operations
//! as the admin API ([`crate::control`]).

mod cells;
mod channel;
mod channels;
mod frame;
mod guard;
mod login;
mod problems;

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError as _, web};
use serde::Deserialize;

use crate::control::{ChannelPatch, NewChannel};
use crate::domain::ChannelId;
use crate::http::AppState;
use crate::http::auth::peer;
use crate::http::error::{ApiError, retry_after_secs};
use guard::{guard_post, login_page, path_id, refuse_foreign, session};

pub use channels::PAGE_SIZE;
pub use frame::{CSP, Notice};

/// Registers the status page's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/login", web::get().to(login_form))
        .route("/login", web::post().to(login))
        .route("/logout", web::post().to(logout))
        .route("/ui/app.js", web::get().to(script))
        .route("/ui/app.css", web::get().to(style))
        .route("/favicon.ico", web::get().to(HttpResponse::NoContent))
        .route("/ui/channels", web::post().to(add))
        .route("/ui/bulk", web::post().to(problems::bulk))
        .route("/ui/channels/{id}/authorize", web::post().to(authorize))
        .route("/ui/channels/{id}/secret", web::post().to(update_secret))
        .route("/ui/channels/{id}/enable", web::post().to(enable))
        .route("/ui/channels/{id}/disable", web::post().to(disable))
        .route("/ui/channels/{id}/poll", web::post().to(poll))
        .route("/ui/channels/{id}/backfill", web::post().to(backfill))
        .route("/ui/channels/{id}/remove", web::post().to(remove))
        .route("/ui/channels/{id}/quarantine", web::get().to(quarantine))
        .route(
            "/ui/channels/{id}/quarantine/replay",
            web::post().to(replay),
        );
}

// ---------------------------------------------------------------------------------------------
// Failures

/// Turns a failed operation into a page.
fn action_failed(err: impl Into<ApiError>, channel: Option<ChannelId>) -> HttpResponse {
    let err = err.into();
    let status = err.status_code();
    let (title, remedy) = match &err {
        ApiError::BadRequest { .. } => (
            "The form has a mistake",
            "Correct the field named above and submit again.",
        ),
        ApiError::NotFound(_) => (
            "No such channel",
            "It may have been removed; reload the status page.",
        ),
        ApiError::Conflict(_) => (
            "That conflicts with the channel's state",
            "Reload the status page and try again.",
        ),
        ApiError::Unauthorized | ApiError::TooManyAttempts { .. } => (
            "Not allowed",
            "Log in again; after too many failed attempts wait a minute.",
        ),
        ApiError::Unavailable(_) => (
            "inboxd could not do it right now",
            "Nothing changed. Try again in a minute; if it persists, see docs/operations.md.",
        ),
        ApiError::Internal(cause) => {
            tracing::error!(cause = %cause, "Status page action failed.");
            (
                "Something went wrong inside inboxd",
                "Look at inboxd's log for the cause.",
            )
        }
    };
    Notice::failure(title, &err.to_string(), remedy, channel).render(status)
}

/// Runs an action on the channel of the path; a success redirects to `done(id, answer)`.
async fn act<T, F, Fut>(
    state: &AppState,
    req: &HttpRequest,
    raw_id: &str,
    csrf: &str,
    op: F,
    done: impl FnOnce(ChannelId, T) -> String,
) -> HttpResponse
where
    F: FnOnce(ChannelId) -> Fut,
    Fut: Future<Output = Result<T, crate::control::Error>>,
{
    let id = match guard_post(state, req, csrf).and_then(|_| path_id(raw_id)) {
        Ok(id) => id,
        Err(refused) => return refused.page(state),
    };
    match op(id).await {
        Ok(answer) => frame::see_other(&done(id, answer)),
        Err(err) => action_failed(err, Some(id)),
    }
}

// ---------------------------------------------------------------------------------------------
// Views

async fn index(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let Some(session) = session(&state, &req) else {
        return login_page(&state, StatusCode::OK, None);
    };
    channels::index(
        &state,
        &channels::IndexQuery::from_map(&query),
        &session.csrf,
    )
}

async fn quarantine(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let Some(session) = session(&state, &req) else {
        return login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            Some("Log in to see this page."),
        );
    };
    let id = match path_id(&id) {
        Ok(id) => id,
        Err(refused) => return refused.page(&state),
    };
    let view = match state.control.get(id) {
        Ok(view) => view,
        Err(err) => return action_failed(err, None),
    };
    match state
        .control
        .quarantine(id, channel::QUARANTINE_LIST_MAX)
        .await
    {
        Ok(entries) => channel::quarantine(&view, &entries, &session.csrf),
        Err(err) => action_failed(err, Some(id)),
    }
}

async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(frame::SCRIPT)
}

async fn style() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(frame::STYLE)
}

// ---------------------------------------------------------------------------------------------
// Login and logout

async fn login_form(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if session(&state, &req).is_some() {
        return frame::see_other("/");
    }
    login_page(&state, StatusCode::OK, None)
}

/// The login form.
#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
}

async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<LoginForm>,
) -> HttpResponse {
    if let Err(refused) = refuse_foreign(&state, &req) {
        return refused.page(&state);
    }
    match state.auth.verify(peer(&req), &form.token) {
        Ok(token) => {
            tracing::info!(peer = %peer(&req), "Status page login.");
            let cookie = state.sessions.start(token);
            let mut response = frame::see_other("/");
            if let Err(err) = response.add_cookie(&cookie) {
                return action_failed(ApiError::Internal(err.to_string()), None);
            }
            response
        }
        Err(ApiError::TooManyAttempts { retry_after }) => {
            let mut response = login_page(
                &state,
                StatusCode::TOO_MANY_REQUESTS,
                Some("Too many failed attempts from this address: wait a minute, then try again."),
            );
            if let Ok(value) = retry_after_secs(retry_after).to_string().parse() {
                response
                    .headers_mut()
                    .insert(actix_web::http::header::RETRY_AFTER, value);
            }
            response
        }
        Err(_) => {
            tracing::warn!(peer = %peer(&req), "Status page login with a wrong token.");
            login_page(
                &state,
                StatusCode::UNAUTHORIZED,
                Some("That is not the admin token."),
            )
        }
    }
}

/// A form that carries only the CSRF token (and, for remove, the confirmation).
#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: Option<String>,
}

async fn logout(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    let session = match guard_post(&state, &req, &form.csrf) {
        Ok(session) => session,
        Err(refused) => return refused.page(&state),
    };
    let removal = state.sessions.end(&session);
    let mut response = frame::see_other("/login");
    if let Err(err) = response.add_cookie(&removal) {
        return action_failed(ApiError::Internal(err.to_string()), None);
    }
    response
}

// ---------------------------------------------------------------------------------------------
// Actions

fn some(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// The add form.
#[derive(Deserialize)]
struct AddForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    tenant_id: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    mailbox: String,
    #[serde(default)]
    folder: String,
    #[serde(default)]
    client_secret_expires_at: String,
    #[serde(default)]
    first_import: String,
    #[serde(default)]
    transport: String,
}

async fn add(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<AddForm>,
) -> HttpResponse {
    let form = form.into_inner();
    if let Err(refused) = guard_post(&state, &req, &form.csrf) {
        return refused.page(&state);
    }
    let input = NewChannel {
        tenant_id: form.tenant_id.trim().to_owned(),
        client_id: form.client_id.trim().to_owned(),
        client_secret: form.client_secret,
        client_certificate: None,
        mailbox: form.mailbox.trim().to_owned(),
        folder: some(&form.folder),
        name: some(&form.name),
        enabled: Some(true),
        client_secret_expires_at: some(&form.client_secret_expires_at),
        first_import: some(&form.first_import),
        poll_mode: None,
        transport: some(&form.transport),
    };
    match state.control.add(input).await {
        Ok(view) => frame::see_other(&format!("/?channel={}&done=added", view.id)),
        Err(err) => action_failed(err, None),
    }
}

async fn authorize(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    let state = &state;
    act(
        state,
        &req,
        &id,
        &form.csrf,
        |id| state.control.authorize(id),
        |_, link| link.url,
    )
    .await
}

/// The "Update secret" form.
#[derive(Deserialize)]
struct SecretForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    client_secret_expires_at: String,
    #[serde(default)]
    client_certificate: String,
}

async fn update_secret(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    form: web::Form<SecretForm>,
) -> HttpResponse {
    let form = form.into_inner();
    let patch = ChannelPatch {
        client_secret: some(&form.client_secret),
        client_certificate: some(&form.client_certificate),
        client_secret_expires_at: some(&form.client_secret_expires_at).map(Some),
        ..ChannelPatch::default()
    };
    let state = &state;
    act(
        state,
        &req,
        &id,
        &form.csrf,
        |id| state.control.update(id, patch),
        |id, _| format!("/?channel={id}&done=secret"),
    )
    .await
}

async fn set_enabled(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: &str,
    csrf: &str,
    enabled: bool,
) -> HttpResponse {
    let state = &state;
    act(
        state,
        &req,
        id,
        csrf,
        |id| state.control.set_enabled(id, enabled),
        |id, _| {
            let done = if enabled { "enabled" } else { "disabled" };
            format!("/?channel={id}&done={done}")
        },
    )
    .await
}

async fn enable(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    set_enabled(req, state, &id, &form.csrf, true).await
}

async fn disable(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    set_enabled(req, state, &id, &form.csrf, false).await
}

async fn poll(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    let state = &state;
    act(
        state,
        &req,
        &id,
        &form.csrf,
        |id| state.control.poll_now(id),
        |id, _| format!("/?channel={id}&done=polling"),
    )
    .await
}

/// The backfill form: the CSRF token and the date the outage began.
#[derive(Debug, serde::Deserialize)]
struct BackfillForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    since: String,
}

async fn backfill(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    form: web::Form<BackfillForm>,
) -> HttpResponse {
    let state = &state;
    let since = form.since.clone();
    act(
        state,
        &req,
        &id,
        &form.csrf,
        |id| async move {
            let since = crate::control::parse_since(&since)?;
            state.control.backfill(id, since).await
        },
        |id, _| format!("/?channel={id}&done=backfill"),
    )
    .await
}

async fn remove(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    let form = form.into_inner();
    if form.confirm.as_deref() != Some("yes") {
        let checked = guard_post(&state, &req, &form.csrf)
            .and_then(|session| path_id(&id).map(|id| (session, id)));
        let (session, id) = match checked {
            Ok(checked) => checked,
            Err(refused) => return refused.page(&state),
        };
        return match state.control.get(id) {
            Ok(view) => channel::confirm_remove(&view, &session.csrf),
            Err(err) => action_failed(err, None),
        };
    }
    let state = &state;
    act(
        state,
        &req,
        &id,
        &form.csrf,
        |id| state.control.remove(id),
        |_, ()| "/?done=removed".to_owned(),
    )
    .await
}

async fn replay(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    let state = &state;
    act(
        state,
        &req,
        &id,
        &form.csrf,
        |id| state.control.replay(id),
        |id, released| format!("/?channel={id}&done=replayed&replayed={released}"),
    )
    .await
}
