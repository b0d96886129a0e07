//! The status page: `/` (channels with filter, search and paging, one channel's details and
//! actions), `/login` and `/logout`, the action forms under `/ui/…`, and the page's own script and
//! style sheet. Server-rendered HTML plus a little plain JavaScript, no build step.
//!
//! Access: the admin token, typed once into the login form, becomes a session cookie
//! (`HttpOnly`, `SameSite=Strict`, `Secure` when the public URL is https). Every POST form carries
//! a CSRF token (an HMAC of the session value) that is checked before anything happens. Every value
//! is escaped; no secret is ever rendered (the secret field of a form is always empty). Actions send
//! the same supervisor control messages as the admin API.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt::Write as _;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, ResponseError as _, web};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac as _};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use crate::actors::messages::{
    AddChannel, PollNow, RemoveChannel, ReplayQuarantine, SetEnabled, UpdateChannel,
};
use crate::domain::{ChannelId, ChannelStatus};
use crate::http::AppState;
use crate::http::admin::start_authorization;
use crate::http::auth::{SESSION_COOKIE, peer};
use crate::http::dto::{ChannelIn, ChannelPatch};
use crate::http::error::ApiError;
use crate::http::pages::escape;
use crate::status::ChannelView;
use crate::store::LedgerState;

/// Channels per page.
pub const PAGE_SIZE: usize = 100;

/// Most quarantined messages the quarantine view lists.
const QUARANTINE_LIST_MAX: usize = 1000;

/// The Content-Security-Policy of every page: scripts and styles from this server only, nothing
/// inline, no framing. (No `form-action`: the authorize form redirects to Microsoft's sign-in.)
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; base-uri 'none'; frame-ancestors 'none'";

const SCRIPT: &str = include_str!("status_page.js");
const STYLE: &str = include_str!("status_page.css");

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
        .route("/ui/channels/{id}/authorize", web::post().to(authorize))
        .route("/ui/channels/{id}/secret", web::post().to(update_secret))
        .route("/ui/channels/{id}/enable", web::post().to(enable))
        .route("/ui/channels/{id}/disable", web::post().to(disable))
        .route("/ui/channels/{id}/poll", web::post().to(poll))
        .route("/ui/channels/{id}/remove", web::post().to(remove))
        .route("/ui/channels/{id}/quarantine", web::get().to(quarantine))
        .route(
            "/ui/channels/{id}/quarantine/replay",
            web::post().to(replay),
        );
}

// ---------------------------------------------------------------------------------------------
// Sessions and CSRF

fn logged_in(state: &AppState, req: &HttpRequest) -> bool {
    req.cookie(SESSION_COOKIE).is_some_and(|c| {
        bool::from(
            c.value()
                .as_bytes()
                .ct_eq(state.auth.session_value().as_bytes()),
        )
    })
}

/// The CSRF token of the session: HMAC-SHA256 keyed with the session value.
pub fn csrf_token(state: &AppState) -> String {
    match Hmac::<Sha256>::new_from_slice(state.auth.session_value().as_bytes()) {
        Ok(mut mac) => {
            mac.update(b"inboxd-csrf-v1");
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

fn secure_cookies(state: &AppState) -> bool {
    state.redirect_uri.starts_with("https://")
}

/// The refusal of a POST without a session (401, counted as a failed attempt) or without the right
/// CSRF token (403).
fn refuse_post(state: &AppState, req: &HttpRequest, csrf: &str) -> Option<HttpResponse> {
    if !logged_in(state, req) {
        let status = match state.auth.record_failure(peer(req)) {
            Err(err) => err.status_code(),
            Ok(()) => StatusCode::UNAUTHORIZED,
        };
        return Some(login_page(
            state,
            status,
            Some(
                "Your session has ended (or you never logged in): log in again, then repeat the action.",
            ),
        ));
    }
    let expected = csrf_token(state);
    if expected.is_empty() || !bool::from(csrf.as_bytes().ct_eq(expected.as_bytes())) {
        tracing::warn!(peer = %peer(req), path = %req.path(), "Status page form refused: wrong CSRF token.");
        return Some(message_page(
            StatusCode::FORBIDDEN,
            "This form is not valid any more",
            "The form did not carry this session's CSRF token (it came from another page or an old session).",
            "Reload the status page and submit the form again.",
            None,
        ));
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Page frame and small renderers

fn html(status: StatusCode, title: &str, body: &str) -> HttpResponse {
    let mut page = String::with_capacity(body.len() + 600);
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · inboxd</title>\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<link rel=\"stylesheet\" href=\"/ui/app.css\"></head><body>\n{}\n\
<script src=\"/ui/app.js\"></script></body></html>\n",
        escape(title),
        body
    );
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Content-Security-Policy", CSP))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .body(page)
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((LOCATION, location.to_owned()))
        .insert_header(("Cache-Control", "no-store"))
        .finish()
}

/// A page saying what happened and what to do, with a way back.
fn message_page(
    status: StatusCode,
    title: &str,
    detail: &str,
    remedy: &str,
    channel: Option<ChannelId>,
) -> HttpResponse {
    let back = match channel {
        Some(id) => format!("/?channel={id}"),
        None => "/".to_owned(),
    };
    let body = format!(
        "<main class=\"narrow\"><h1 class=\"problem\">{}</h1><p id=\"detail\">{}</p>\
<h2>What to do</h2><p id=\"remedy\">{}</p><p><a href=\"{}\">Back to the status page</a></p></main>",
        escape(title),
        escape(detail),
        escape(remedy),
        escape(&back)
    );
    html(status, title, &body)
}

/// Turns a failed action into a page.
fn action_failed(err: ApiError, channel: Option<ChannelId>) -> HttpResponse {
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
        ApiError::Unauthorized | ApiError::TooManyAttempts => (
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
    message_page(status, title, &err.to_string(), remedy, channel)
}

fn attr(text: &str) -> String {
    escape(text)
}

/// "in 5 s", "3 min ago": the same wording as the page's script.
fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (at - now).num_seconds();
    let abs = secs.unsigned_abs();
    if abs < 2 {
        return "now".to_owned();
    }
    let amount = if abs < 120 {
        format!("{abs} s")
    } else if abs < 7200 {
        format!("{} min", abs / 60)
    } else if abs < 172_800 {
        format!("{} h", abs / 3600)
    } else {
        format!("{} days", abs / 86_400)
    };
    if secs > 0 {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

fn time_cell(at: Option<DateTime<Utc>>, now: DateTime<Utc>, never: &str) -> String {
    match at {
        Some(at) => {
            let iso = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            format!(
                "<time datetime=\"{iso}\" title=\"{iso}\" data-rel>{}</time>",
                relative(at, now)
            )
        }
        None => format!("<span class=\"muted\">{}</span>", escape(never)),
    }
}

fn secret_cell(view: &ChannelView, now: DateTime<Utc>) -> String {
    match view.secret_days_left(now) {
        None => "<span class=\"muted\">not set</span>".to_owned(),
        Some(days) if days < 0 => format!(
            "<span class=\"bad\" title=\"make a new client secret and use Update secret\">expired {} days ago</span>",
            -days
        ),
        Some(days) if days < 14 => format!(
            "<span class=\"bad\" title=\"make a new client secret and use Update secret\">{days} days left</span>"
        ),
        Some(days) if days < 30 => format!("<span class=\"warn\">{days} days left</span>"),
        Some(days) => format!("{days} days left"),
    }
}

fn messages_today(view: &ChannelView, now: DateTime<Utc>) -> u64 {
    if view.messages_day == Some(now.date_naive()) {
        view.messages_today
    } else {
        0
    }
}

fn status_cell(status: ChannelStatus) -> String {
    format!(
        "<span class=\"status status-{0}\">{0}</span>",
        status.as_str()
    )
}

fn csrf_field(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        attr(csrf)
    )
}

fn button_form(action: &str, csrf: &str, label: &str, class: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}\" class=\"inline\">{}<button type=\"submit\" class=\"{}\">{}</button></form>",
        attr(action),
        csrf_field(csrf),
        attr(class),
        escape(label)
    )
}

/// A hint of what the status means when there is no error to show.
fn status_hint(status: ChannelStatus) -> &'static str {
    match status {
        ChannelStatus::Disabled => "Disabled by an operator: enable it to poll again.",
        ChannelStatus::AwaitingAuthorization => {
            "Waiting for an administrator to sign in: use Authorize, and register the redirect URI in Azure first."
        }
        ChannelStatus::Active => "Polling normally.",
        ChannelStatus::BackingOff => {
            "Failing for a reason that should pass (throttling, an outage): inboxd retries on its own."
        }
        ChannelStatus::NeedsReauthorization => {
            "Its grant is no longer valid: use Update auth info."
        }
        ChannelStatus::Blocked => {
            "Microsoft refuses it for a reason an administrator must fix: see the remedy, then Update auth info."
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Login and logout

fn login_page(state: &AppState, status: StatusCode, problem: Option<&str>) -> HttpResponse {
    let mut body = String::from("<main class=\"narrow\"><h1>inboxd</h1>");
    if let Some(problem) = problem {
        let _ = write!(
            body,
            "<p class=\"flash problem\" id=\"login-problem\" role=\"alert\">{}</p>",
            escape(problem)
        );
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/login\" id=\"login\">\
<label for=\"token\">Admin token</label>\
<input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"current-password\" required autofocus>\
<button type=\"submit\">Log in</button></form>\
<p class=\"muted\">The token is the value of INBOXD_ADMIN_TOKEN (or the file named by security.admin_token_file).{}</p></main>",
        if secure_cookies(state) {
            ""
        } else {
            " This server's public URL is not https: use it only on a trusted network or behind a TLS proxy."
        }
    );
    html(status, "Log in", &body)
}

async fn login_form(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if logged_in(&state, &req) {
        return see_other("/");
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
    let token = form.into_inner().token;
    if !token.trim().is_empty() && state.auth.token_matches(token.trim()) {
        tracing::info!(peer = %peer(&req), "Status page login.");
        let cookie = Cookie::build(SESSION_COOKIE, state.auth.session_value())
            .path("/")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(secure_cookies(&state))
            .finish();
        return HttpResponse::SeeOther()
            .insert_header((LOCATION, "/"))
            .insert_header(("Cache-Control", "no-store"))
            .cookie(cookie)
            .finish();
    }
    tracing::warn!(peer = %peer(&req), "Status page login with a wrong token.");
    match state.auth.record_failure(peer(&req)) {
        Err(ApiError::TooManyAttempts) => login_page(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many failed attempts from this address: wait a minute, then try again."),
        ),
        _ => login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            Some("That is not the admin token."),
        ),
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
    if let Some(refused) = refuse_post(&state, &req, &form.csrf) {
        return refused;
    }
    let mut cookie = Cookie::build(SESSION_COOKIE, "")
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure_cookies(&state))
        .finish();
    cookie.make_removal();
    HttpResponse::SeeOther()
        .insert_header((LOCATION, "/login"))
        .cookie(cookie)
        .finish()
}

async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(SCRIPT)
}

async fn style() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(STYLE)
}

// ---------------------------------------------------------------------------------------------
// The page

/// Query of `GET /`.
#[derive(Debug, Default)]
struct IndexQuery {
    status: Option<ChannelStatus>,
    q: String,
    page: usize,
    channel: Option<ChannelId>,
    done: Option<&'static str>,
    replayed: Option<usize>,
}

impl IndexQuery {
    fn from_map(map: &HashMap<String, String>) -> Self {
        let get = |k: &str| map.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        IndexQuery {
            status: get("status").and_then(|s| s.parse().ok()),
            q: get("q").unwrap_or_default().chars().take(200).collect(),
            page: get("page")
                .and_then(|p| p.parse::<usize>().ok())
                .unwrap_or(1)
                .max(1),
            channel: get("channel").and_then(|c| ChannelId::parse(c).ok()),
            done: get("done").and_then(|d| match d {
                "added" => {
                    Some("Channel added. Next: register the redirect URI in Azure, then Authorize.")
                }
                "secret" => Some("The client secret was updated."),
                "enabled" => Some("Channel enabled."),
                "disabled" => Some("Channel disabled: it does not poll until enabled."),
                "polling" => Some("Polling now."),
                "removed" => Some("Channel removed, with everything stored for it."),
                "replayed" => Some("Quarantined messages released for delivery."),
                _ => None,
            }),
            replayed: get("replayed").and_then(|n| n.parse().ok()),
        }
    }

    /// The query string of a page of this listing.
    fn link(&self, page: usize) -> String {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        if let Some(status) = self.status {
            out.append_pair("status", status.as_str());
        }
        if !self.q.is_empty() {
            out.append_pair("q", &self.q);
        }
        if page > 1 {
            out.append_pair("page", &page.to_string());
        }
        let query = out.finish();
        if query.is_empty() {
            "/".to_owned()
        } else {
            format!("/?{query}")
        }
    }
}

async fn index(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    if !logged_in(&state, &req) {
        return login_page(&state, StatusCode::OK, None);
    }
    let query = IndexQuery::from_map(&query);
    let now = Utc::now();
    let csrf = csrf_token(&state);

    // One pass over the board: count every status and keep the rows that match.
    let counts: [Cell<usize>; 6] = Default::default();
    let needle = query.q.to_lowercase();
    let offset = (query.page - 1).saturating_mul(PAGE_SIZE);
    let (total, rows) = state.shared.board.page(
        |row| {
            if let Some(i) = ChannelStatus::ALL.iter().position(|s| *s == row.status) {
                counts[i].set(counts[i].get() + 1);
            }
            query.status.is_none_or(|s| row.status == s)
                && (needle.is_empty()
                    || row.name.to_lowercase().contains(&needle)
                    || row.mailbox.contains(&needle)
                    || row.tenant_id.contains(&needle)
                    || row.id.to_string().contains(&needle))
        },
        offset,
        PAGE_SIZE,
    );
    let all: usize = counts.iter().map(Cell::get).sum();

    let mut body = String::with_capacity(4096 + rows.len() * 1024);
    let _ = write!(
        body,
        "<header><h1><a href=\"/\">inboxd</a></h1><nav class=\"counts\" id=\"counts\">{all} {}:",
        if all == 1 { "channel" } else { "channels" }
    );
    for (status, count) in ChannelStatus::ALL.iter().zip(counts.iter()) {
        let _ = write!(
            body,
            " <a href=\"/?status={0}\" class=\"status-{0}\" data-count=\"{1}\">{0} {1}</a>",
            status.as_str(),
            count.get()
        );
    }
    let _ = write!(
        body,
        "</nav><label class=\"autorefresh\"><input type=\"checkbox\" id=\"autorefresh\"> auto-refresh</label>{}</header>\n<main>\n",
        button_form("/logout", &csrf, "Log out", "secondary")
    );

    if let Some(done) = query.done {
        let extra = query
            .replayed
            .map(|n| format!(" ({n} messages)"))
            .unwrap_or_default();
        let _ = write!(
            body,
            "<p class=\"flash ok\" id=\"flash\" role=\"status\">{}{}</p>",
            escape(done),
            extra
        );
    }

    if let Some(id) = query.channel {
        match state.shared.board.get(id) {
            Some(view) => detail(&mut body, &state, &view, &csrf, now),
            None => {
                let _ = write!(
                    body,
                    "<p class=\"flash problem\" id=\"flash\">No channel has the id {}: it may have been removed.</p>",
                    escape(&id.to_string())
                );
            }
        }
    }

    add_form(&mut body, &state, &csrf, all == 0);

    // Filter and search.
    let _ = write!(
        body,
        "<form method=\"get\" action=\"/\" id=\"filter\" class=\"filter\" role=\"search\">\
<label>Status <select name=\"status\" id=\"filter-status\"><option value=\"\">any</option>"
    );
    for status in ChannelStatus::ALL {
        let _ = write!(
            body,
            "<option value=\"{0}\"{1}>{0}</option>",
            status.as_str(),
            if query.status == Some(status) {
                " selected"
            } else {
                ""
            }
        );
    }
    let _ = write!(
        body,
        "</select></label> <label>Search <input type=\"search\" name=\"q\" id=\"filter-q\" value=\"{}\" placeholder=\"name, mailbox, tenant or id\"></label> \
<button type=\"submit\">Filter</button></form>",
        attr(&query.q)
    );

    let first = if total == 0 { 0 } else { offset + 1 };
    let last = (offset + rows.len()).min(total);
    let _ = write!(
        body,
        "<p class=\"muted\" id=\"showing\">Showing {first}–{last} of {total} matching channels.</p>"
    );
    body.push_str(
        "<table id=\"channels\"><thead><tr><th>Name</th><th>Mailbox</th><th>Tenant</th><th>Status</th>\
<th>Last successful poll</th><th>Next poll</th><th>Today</th><th>Last error</th><th>Secret expires</th></tr></thead><tbody>\n",
    );
    for view in &rows {
        row(&mut body, view, now);
    }
    if rows.is_empty() {
        body.push_str("<tr><td colspan=\"9\" class=\"muted\">No channel matches.</td></tr>\n");
    }
    body.push_str("</tbody></table>\n");

    // Paging.
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    body.push_str("<nav class=\"pager\" id=\"pager\">");
    if query.page > 1 {
        let _ = write!(
            body,
            "<a href=\"{}\" rel=\"prev\">← previous</a> ",
            attr(&query.link(query.page - 1))
        );
    }
    let _ = write!(body, "page {} of {pages}", query.page.min(pages).max(1));
    if query.page < pages {
        let _ = write!(
            body,
            " <a href=\"{}\" rel=\"next\">next →</a>",
            attr(&query.link(query.page + 1))
        );
    }
    body.push_str("</nav>\n</main>");
    html(StatusCode::OK, "Channels", &body)
}

fn row(body: &mut String, view: &ChannelView, now: DateTime<Utc>) {
    let id = view.id.to_string();
    let error = match &view.last_error {
        Some(e) => format!(
            "<code>{}</code> {}<div class=\"remedy\">{}</div>",
            escape(&e.code),
            escape(&truncate(&e.message, 200)),
            escape(&truncate(&e.remedy, 160))
        ),
        None => String::new(),
    };
    let _ = writeln!(
        body,
        "<tr data-channel-id=\"{id}\" data-status=\"{status}\"><td><a href=\"/?channel={id}\">{name}</a>{disabled}</td>\
<td>{mailbox}</td><td class=\"mono\">{tenant}</td><td>{status_cell}</td><td class=\"last-success\">{success}</td>\
<td class=\"next-poll\">{next}</td><td class=\"num\">{today}</td><td class=\"error\">{error}</td><td>{secret}</td></tr>",
        name = escape(&view.name),
        disabled = if view.enabled {
            ""
        } else {
            " <span class=\"muted\">(disabled)</span>"
        },
        mailbox = escape(&view.mailbox),
        tenant = escape(&view.tenant_id),
        status = view.status.as_str(),
        status_cell = status_cell(view.status),
        success = time_cell(view.last_success_at, now, "never"),
        next = if view.enabled {
            time_cell(view.next_poll_at, now, "–")
        } else {
            "<span class=\"muted\">–</span>".to_owned()
        },
        today = messages_today(view, now),
        secret = secret_cell(view, now),
    );
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max).collect();
    out.push('…');
    out
}

fn detail(body: &mut String, state: &AppState, view: &ChannelView, csrf: &str, now: DateTime<Utc>) {
    let id = view.id.to_string();
    let _ = write!(
        body,
        "<section id=\"detail\" class=\"card\" data-channel-id=\"{id}\" data-status=\"{status}\">\
<h2>{name}</h2><dl>\
<dt>Status</dt><dd id=\"detail-status\">{status_cell} <span class=\"muted\">{hint}</span></dd>\
<dt>Mailbox</dt><dd id=\"detail-mailbox\">{mailbox} <span class=\"muted\">folder {folder}</span></dd>\
<dt>Tenant</dt><dd class=\"mono\">{tenant}</dd><dt>App (client) id</dt><dd class=\"mono\">{client}</dd>\
<dt>Channel id</dt><dd class=\"mono\">{id}</dd>\
<dt>Last successful poll</dt><dd id=\"detail-last-success\">{success}</dd>\
<dt>Last poll</dt><dd id=\"detail-last-poll\">{last_poll}</dd>\
<dt>Next poll</dt><dd id=\"detail-next-poll\">{next}</dd>\
<dt>Messages today</dt><dd id=\"detail-today\">{today}</dd>\
<dt>Client secret</dt><dd id=\"detail-secret\">{secret}</dd>\
<dt>Redirect URI</dt><dd><code>{redirect}</code></dd></dl>",
        status = view.status.as_str(),
        name = escape(&view.name),
        status_cell = status_cell(view.status),
        hint = escape(status_hint(view.status)),
        mailbox = escape(&view.mailbox),
        folder = escape(&view.folder),
        tenant = escape(&view.tenant_id),
        client = escape(&view.client_id),
        success = time_cell(view.last_success_at, now, "never"),
        last_poll = time_cell(view.last_poll_at, now, "never"),
        next = if view.enabled {
            time_cell(view.next_poll_at, now, "–")
        } else {
            "<span class=\"muted\">not while disabled</span>".to_owned()
        },
        today = messages_today(view, now),
        secret = secret_cell(view, now),
        redirect = escape(&state.redirect_uri),
    );
    if let Some(e) = &view.last_error {
        let _ = write!(
            body,
            "<div class=\"last-error\" id=\"detail-error\"><h3>Last error <code id=\"detail-error-code\">{}</code> \
<span class=\"muted\">{} · from {}</span></h3><p id=\"detail-error-message\">{}</p>\
<p><strong>What to do:</strong> <span id=\"detail-remedy\">{}</span></p>",
            escape(&e.code),
            time_cell(Some(e.at), now, ""),
            escape(e.source.as_str()),
            escape(&e.message),
            escape(&e.remedy)
        );
        if e.trace_id.is_some() || e.correlation_id.is_some() {
            body.push_str("<p class=\"muted\">");
            if let Some(t) = &e.trace_id {
                let _ = write!(body, "Trace ID <code>{}</code> ", escape(t));
            }
            if let Some(c) = &e.correlation_id {
                let _ = write!(body, "Correlation ID <code>{}</code>", escape(c));
            }
            body.push_str("</p>");
        }
        body.push_str("</div>");
    }

    // Actions.
    let base = format!("/ui/channels/{id}");
    let auth_label = if view.status == ChannelStatus::AwaitingAuthorization {
        "Authorize"
    } else {
        "Update auth info"
    };
    body.push_str("<div class=\"actions\" id=\"actions\">");
    body.push_str(&button_form(
        &format!("{base}/authorize"),
        csrf,
        auth_label,
        "primary",
    ));
    if view.enabled {
        body.push_str(&button_form(&format!("{base}/poll"), csrf, "Poll now", ""));
        body.push_str(&button_form(
            &format!("{base}/disable"),
            csrf,
            "Disable",
            "",
        ));
    } else {
        body.push_str(&button_form(&format!("{base}/enable"), csrf, "Enable", ""));
    }
    let _ = write!(
        body,
        "<a class=\"button\" href=\"{base}/quarantine\">View quarantine</a>"
    );
    body.push_str(&button_form(
        &format!("{base}/remove"),
        csrf,
        "Remove…",
        "danger",
    ));
    body.push_str("</div>");
    let _ = write!(
        body,
        "<details id=\"secret-form\"><summary>Update secret</summary>\
<form method=\"post\" action=\"{base}/secret\" autocomplete=\"off\">{}\
<label>New client secret value <input type=\"password\" name=\"client_secret\" required autocomplete=\"new-password\"></label>\
<label>Expires (optional) <input type=\"date\" name=\"client_secret_expires_at\"></label>\
<button type=\"submit\">Update secret</button>\
<p class=\"muted\">The value (not the secret's id) from Certificates &amp; secrets in the Azure portal. No new sign-in is needed.</p>\
</form></details></section>",
        csrf_field(csrf)
    );
}

fn add_form(body: &mut String, state: &AppState, csrf: &str, open: bool) {
    let _ = write!(
        body,
        "<details id=\"add\" class=\"card\"{open}><summary>Add a channel</summary>\
<p>Register this redirect URI (platform \"Web\") in the app registration in Azure first: \
<code id=\"redirect-uri\">{redirect}</code></p>\
<form method=\"post\" action=\"/ui/channels\" class=\"grid\" autocomplete=\"off\">{csrf}\
<label>Name <input name=\"name\" placeholder=\"(the mailbox)\"></label>\
<label>Mailbox <input name=\"mailbox\" type=\"email\" required placeholder=\"support@contoso.com\"></label>\
<label>Tenant (directory) id <input name=\"tenant_id\" required placeholder=\"GUID or contoso.onmicrosoft.com\"></label>\
<label>App (client) id <input name=\"client_id\" required placeholder=\"GUID\"></label>\
<label>Client secret value <input name=\"client_secret\" type=\"password\" required autocomplete=\"new-password\"></label>\
<label>Secret expires <input name=\"client_secret_expires_at\" type=\"date\"></label>\
<label>Folder <input name=\"folder\" placeholder=\"inbox\"></label>\
<label>First poll imports <select name=\"first_import\"><option value=\"\">(default)</option>\
<option value=\"all\">all unread</option><option value=\"new\">only new mail</option>\
<option value=\"last_days:7\">the last 7 days</option></select></label>\
<button type=\"submit\" class=\"primary\">Add channel</button></form></details>",
        open = if open { " open" } else { "" },
        redirect = escape(&state.redirect_uri),
        csrf = csrf_field(csrf),
    );
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
}

async fn add(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<AddForm>,
) -> HttpResponse {
    let form = form.into_inner();
    if let Some(refused) = refuse_post(&state, &req, &form.csrf) {
        return refused;
    }
    let input = ChannelIn {
        tenant_id: form.tenant_id.trim().to_owned(),
        client_id: form.client_id.trim().to_owned(),
        client_secret: form.client_secret,
        mailbox: form.mailbox.trim().to_owned(),
        folder: some(&form.folder),
        name: some(&form.name),
        enabled: Some(true),
        client_secret_expires_at: some(&form.client_secret_expires_at),
        first_import: some(&form.first_import),
    };
    let record = match input.into_record(state.default_first_import) {
        Ok(record) => record,
        Err(err) => return action_failed(err, None),
    };
    match state.supervisor.send(AddChannel { record }).await {
        Ok(Ok(view)) => {
            tracing::info!(channel = %view.id, mailbox = %view.mailbox, "Channel added from the status page.");
            see_other(&format!("/?channel={}&done=added", view.id))
        }
        Ok(Err(err)) => action_failed(err.into(), None),
        Err(err) => action_failed(err.into(), None),
    }
}

fn path_id(raw: &str) -> Option<ChannelId> {
    ChannelId::parse(raw).ok()
}

fn bad_id() -> HttpResponse {
    message_page(
        StatusCode::NOT_FOUND,
        "No such channel",
        "The address does not carry a valid channel id.",
        "Open the channel from the status page.",
        None,
    )
}

async fn authorize(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    if let Some(refused) = refuse_post(&state, &req, &form.csrf) {
        return refused;
    }
    let Some(id) = path_id(&id) else {
        return bad_id();
    };
    match start_authorization(&state, id).await {
        Ok(url) => {
            tracing::info!(channel = %id, "Authorization started from the status page.");
            see_other(&url)
        }
        Err(err) => action_failed(err, Some(id)),
    }
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
}

async fn update_secret(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    form: web::Form<SecretForm>,
) -> HttpResponse {
    let form = form.into_inner();
    if let Some(refused) = refuse_post(&state, &req, &form.csrf) {
        return refused;
    }
    let Some(id) = path_id(&id) else {
        return bad_id();
    };
    let result = async {
        let mut record = state
            .shared
            .ingest
            .store
            .get_channel(id)
            .map_err(|e| ApiError::Unavailable(e.to_string()))?
            .ok_or_else(|| ApiError::NotFound(format!("no channel has the id {id}")))?;
        let patch = ChannelPatch {
            client_secret: Some(form.client_secret),
            client_secret_expires_at: some(&form.client_secret_expires_at).map(Some),
            ..ChannelPatch::default()
        };
        let reauthorize = patch.apply(&mut record)?;
        state
            .supervisor
            .send(UpdateChannel {
                record,
                reauthorize,
            })
            .await??;
        Ok::<(), ApiError>(())
    }
    .await;
    match result {
        Ok(()) => {
            tracing::info!(channel = %id, "Client secret updated from the status page.");
            see_other(&format!("/?channel={id}&done=secret"))
        }
        Err(err) => action_failed(err, Some(id)),
    }
}

async fn set_enabled(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: &str,
    csrf: &str,
    enabled: bool,
) -> HttpResponse {
    if let Some(refused) = refuse_post(&state, &req, csrf) {
        return refused;
    }
    let Some(id) = path_id(id) else {
        return bad_id();
    };
    match state.supervisor.send(SetEnabled { id, enabled }).await {
        Ok(Ok(_)) => see_other(&format!(
            "/?channel={id}&done={}",
            if enabled { "enabled" } else { "disabled" }
        )),
        Ok(Err(err)) => action_failed(err.into(), Some(id)),
        Err(err) => action_failed(err.into(), Some(id)),
    }
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
    if let Some(refused) = refuse_post(&state, &req, &form.csrf) {
        return refused;
    }
    let Some(id) = path_id(&id) else {
        return bad_id();
    };
    match state.supervisor.send(PollNow { id }).await {
        Ok(Ok(_)) => see_other(&format!("/?channel={id}&done=polling")),
        Ok(Err(err)) => action_failed(err.into(), Some(id)),
        Err(err) => action_failed(err.into(), Some(id)),
    }
}

async fn remove(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    let form = form.into_inner();
    if let Some(refused) = refuse_post(&state, &req, &form.csrf) {
        return refused;
    }
    let Some(id) = path_id(&id) else {
        return bad_id();
    };
    if form.confirm.as_deref() != Some("yes") {
        let Some(view) = state.shared.board.get(id) else {
            return action_failed(
                ApiError::NotFound(format!("no channel has the id {id}")),
                None,
            );
        };
        let body = format!(
            "<main class=\"narrow\"><h1 class=\"problem\">Remove {name}?</h1>\
<p>inboxd stops reading <strong>{mailbox}</strong> and deletes everything it stored for this channel: \
its configuration, tokens, cursor and message ledger. Mail already delivered stays where it was delivered. \
This cannot be undone; to read the mailbox again, add the channel again and authorize it.</p>\
<form method=\"post\" action=\"/ui/channels/{id}/remove\" id=\"confirm-remove\">{csrf}\
<input type=\"hidden\" name=\"confirm\" value=\"yes\">\
<button type=\"submit\" class=\"danger\">Remove the channel</button> <a href=\"/?channel={id}\">Cancel</a></form></main>",
            name = escape(&view.name),
            mailbox = escape(&view.mailbox),
            csrf = csrf_field(&csrf_token(&state)),
        );
        return html(StatusCode::OK, "Remove a channel", &body);
    }
    match state.supervisor.send(RemoveChannel { id }).await {
        Ok(Ok(())) => {
            tracing::info!(channel = %id, "Channel removed from the status page.");
            see_other("/?done=removed")
        }
        Ok(Err(err)) => action_failed(err.into(), Some(id)),
        Err(err) => action_failed(err.into(), Some(id)),
    }
}

async fn quarantine(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    if !logged_in(&state, &req) {
        return login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            Some("Log in to see this page."),
        );
    }
    let Some(id) = path_id(&id) else {
        return bad_id();
    };
    let Some(view) = state.shared.board.get(id) else {
        return action_failed(
            ApiError::NotFound(format!("no channel has the id {id}")),
            None,
        );
    };
    let store = state.shared.ingest.store.clone();
    let entries = match actix_web::rt::task::spawn_blocking(move || {
        store.ledger_list(id, Some(LedgerState::Quarantined), QUARANTINE_LIST_MAX)
    })
    .await
    {
        Ok(Ok(entries)) => entries,
        Ok(Err(err)) => return action_failed(ApiError::Unavailable(err.to_string()), Some(id)),
        Err(err) => return action_failed(ApiError::Internal(err.to_string()), Some(id)),
    };
    let now = Utc::now();
    let mut body = format!(
        "<header><h1><a href=\"/\">inboxd</a></h1></header><main><h2>Quarantine of {name}</h2>\
<p>Messages that failed {mailbox}'s delivery too often and wait for an operator. \
Fix the cause (see each error), then replay: they are delivered again on the next poll.</p>\
<p><a href=\"/?channel={id}\">Back to the channel</a></p>",
        name = escape(&view.name),
        mailbox = escape(&view.mailbox),
    );
    if entries.is_empty() {
        body.push_str("<p id=\"quarantine-empty\">Nothing is quarantined.</p>");
    } else {
        let _ = write!(
            body,
            "<p>{} message(s){}.</p><table id=\"quarantine\"><thead><tr><th>Message id</th><th>Failures</th>\
<th>Last error</th><th>First seen</th><th>Updated</th></tr></thead><tbody>",
            entries.len(),
            if entries.len() >= QUARANTINE_LIST_MAX {
                " (the first ones)"
            } else {
                ""
            }
        );
        for (message_id, entry) in &entries {
            let _ = write!(
                body,
                "<tr><td class=\"mono\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(message_id),
                entry.failures,
                escape(entry.last_error.as_deref().unwrap_or("")),
                time_cell(Some(entry.first_seen_at), now, ""),
                time_cell(Some(entry.updated_at), now, ""),
            );
        }
        body.push_str("</tbody></table>");
        body.push_str(&button_form(
            &format!("/ui/channels/{id}/quarantine/replay"),
            &csrf_token(&state),
            "Replay quarantine",
            "primary",
        ));
    }
    body.push_str("</main>");
    html(StatusCode::OK, "Quarantine", &body)
}

async fn replay(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    if let Some(refused) = refuse_post(&state, &req, &form.csrf) {
        return refused;
    }
    let Some(id) = path_id(&id) else {
        return bad_id();
    };
    match state.supervisor.send(ReplayQuarantine { id }).await {
        Ok(Ok(released)) => see_other(&format!("/?channel={id}&done=replayed&replayed={released}")),
        Ok(Err(err)) => action_failed(err.into(), Some(id)),
        Err(err) => action_failed(err.into(), Some(id)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_naturally() {
        let now = Utc::now();
        assert_eq!(relative(now, now), "now");
        assert_eq!(
            relative(now + chrono::Duration::seconds(30), now),
            "in 30 s"
        );
        assert_eq!(
            relative(now - chrono::Duration::minutes(5), now),
            "5 min ago"
        );
        assert_eq!(relative(now - chrono::Duration::hours(5), now), "5 h ago");
        assert_eq!(
            relative(now + chrono::Duration::days(20), now),
            "in 20 days"
        );
    }

    #[test]
    fn listing_links_keep_the_filter_and_escape_the_search() {
        let mut map = HashMap::new();
        map.insert("status".to_owned(), "blocked".to_owned());
        map.insert("q".to_owned(), "a&b <x>".to_owned());
        map.insert("page".to_owned(), "0".to_owned());
        map.insert("done".to_owned(), "<script>".to_owned());
        let query = IndexQuery::from_map(&map);
        assert_eq!(query.page, 1);
        assert!(query.done.is_none(), "unknown notices are not reflected");
        assert_eq!(query.link(2), "/?status=blocked&q=a%26b+%3Cx%3E&page=2");
        assert_eq!(query.link(1), "/?status=blocked&q=a%26b+%3Cx%3E");
    }

    #[test]
    fn truncation_keeps_short_text() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("abcdef", 3), "abc…");
    }
}
