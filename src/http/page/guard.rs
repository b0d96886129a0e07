//! Who may use the status page: the session of a request, and the checks every POST passes in
//! order (same origin, session, the session's CSRF token), each refusal with its page.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};

use crate::domain::ChannelId;
use crate::http::AppState;
use crate::http::auth::peer;
use crate::http::page::frame::Notice;
use crate::http::page::login;
use crate::http::session::ActiveSession;

/// The live session of the request, if any.
pub fn session(state: &AppState, req: &HttpRequest) -> Option<ActiveSession> {
    state.sessions.current(req, state.auth.fingerprint())
}

/// The login form with `status` and a problem to show.
pub fn login_page(state: &AppState, status: StatusCode, problem: Option<&str>) -> HttpResponse {
    login::login_page(state.sessions.policy().secure, status, problem)
}

/// Why a request was refused before anything happened.
#[derive(Debug)]
pub enum Refusal {
    /// The form did not come from the daemon's own page (what was wrong).
    ForeignOrigin(String),
    /// No live session.
    NoSession,
    /// Not the session's CSRF token.
    WrongCsrf,
    /// The path carries no channel id.
    BadId,
}

impl Refusal {
    /// The page that says what was refused and what to do.
    pub fn page(&self, state: &AppState) -> HttpResponse {
        match self {
            Refusal::ForeignOrigin(what) => Notice::failure(
                "This form did not come from inboxd's status page",
                what,
                &format!(
                    "Open the status page at {} and submit the form there. If that is where you are, set server.public_url to the address in your browser.",
                    state.sessions.policy().origin
                ),
                None,
            )
            .render(StatusCode::FORBIDDEN),
            Refusal::NoSession => login_page(
                state,
                StatusCode::UNAUTHORIZED,
                Some("Your session has ended (or you never logged in): log in again, then repeat the action."),
            ),
            Refusal::WrongCsrf => Notice::failure(
                "This form is not valid any more",
                "The form did not carry this session's CSRF token (it came from another page or an old session).",
                "Reload the status page and submit the form again.",
                None,
            )
            .render(StatusCode::FORBIDDEN),
            Refusal::BadId => Notice::failure(
                "No such channel",
                "The address does not carry a valid channel id.",
                "Open the channel from the status page.",
                None,
            )
            .render(StatusCode::NOT_FOUND),
        }
    }
}

/// Refuses a POST that did not come from the daemon's own page.
pub fn refuse_foreign(state: &AppState, req: &HttpRequest) -> Result<(), Refusal> {
    state.sessions.same_origin(req).map_err(|what| {
        tracing::warn!(peer = %peer(req), path = %req.path(), "Status page form refused: not from inboxd's own origin.");
        Refusal::ForeignOrigin(what)
    })
}

/// The session of a POST, after the origin check, the session and its CSRF token.
pub fn guard_post(
    state: &AppState,
    req: &HttpRequest,
    csrf: &str,
) -> Result<ActiveSession, Refusal> {
    refuse_foreign(state, req)?;
    let session = session(state, req).ok_or(Refusal::NoSession)?;
    if !session.csrf.matches(csrf) {
        tracing::warn!(peer = %peer(req), path = %req.path(), "Status page form refused: wrong CSRF token.");
        return Err(Refusal::WrongCsrf);
    }
    Ok(session)
}

/// The channel id of a path.
pub fn path_id(raw: &str) -> Result<ChannelId, Refusal> {
    ChannelId::parse(raw).map_err(|_| Refusal::BadId)
}
