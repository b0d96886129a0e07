//! Status page sessions: random server-side sessions (a 256-bit id in the cookie; only its SHA-256
//! is kept), which end after an idle time, after an absolute age, at logout, and when the admin
//! token changes; a random CSRF token per session; the cookie's flags; and the same-origin check
//! every form POST passes before anything else.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header::{ORIGIN, REFERER};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::config::ServerSettings;
use crate::http::auth::TokenFingerprint;

/// The cookie that carries a status page session.
pub const SESSION_COOKIE: &str = "inboxd_session";

/// Most live sessions; beyond it, the oldest end first (only a holder of the token can log in).
const SESSIONS_MAX: usize = 10_000;

/// How sessions behave.
#[derive(Debug, Clone)]
pub struct SessionPolicy {
    /// A session ends after this long without a request.
    pub idle: Duration,
    /// A session ends this long after its login.
    pub max_age: Duration,
    /// Whether the cookie is `Secure` (the public URL is https).
    pub secure: bool,
    /// The daemon's own public origin (`scheme://host[:port]`): the only one a form may come from.
    pub origin: String,
}

impl SessionPolicy {
    /// The policy of `[server]`.
    pub fn of(server: &ServerSettings) -> Self {
        let url = server.public_url.as_url();
        SessionPolicy {
            idle: server.session_idle,
            max_age: server.session_max_age,
            secure: url.scheme() == "https",
            origin: url.origin().ascii_serialization(),
        }
    }
}

/// A session's CSRF token: random, bound to the session. `Debug` redacts it.
#[derive(Clone)]
pub struct CsrfToken(String);

impl CsrfToken {
    /// The value for the page's hidden form fields.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is this token (constant time).
    pub fn matches(&self, candidate: &str) -> bool {
        !candidate.is_empty() && bool::from(candidate.as_bytes().ct_eq(self.0.as_bytes()))
    }
}

impl std::fmt::Debug for CsrfToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfToken([redacted])")
    }
}

struct Session {
    csrf: CsrfToken,
    token: TokenFingerprint,
    created: Instant,
    last_seen: Instant,
}

/// A live session, as a handler sees it.
pub struct ActiveSession {
    key: [u8; 32],
    /// Its CSRF token.
    pub csrf: CsrfToken,
}

impl std::fmt::Debug for ActiveSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ActiveSession([redacted])")
    }
}

/// The live sessions.
pub struct Sessions {
    policy: SessionPolicy,
    live: Mutex<HashMap<[u8; 32], Session>>,
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn key_of(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// No sessions yet.
    pub fn new(policy: SessionPolicy) -> Self {
        Sessions {
            policy,
            live: Mutex::new(HashMap::new()),
        }
    }

    /// How sessions behave.
    pub fn policy(&self) -> &SessionPolicy {
        &self.policy
    }

    fn alive(&self, session: &Session, token: TokenFingerprint, now: Instant) -> bool {
        session.token == token
            && now.duration_since(session.last_seen) < self.policy.idle
            && now.duration_since(session.created) < self.policy.max_age
    }

    /// Starts a session made with the token `token`; answers its cookie.
    pub fn start(&self, token: TokenFingerprint) -> Cookie<'static> {
        let id = random_hex();
        let now = Instant::now();
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        if live.len() >= SESSIONS_MAX {
            live.retain(|_, s| self.alive(s, token, now));
        }
        if live.len() >= SESSIONS_MAX {
            let oldest = live
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(key, _)| *key);
            if let Some(key) = oldest {
                live.remove(&key);
            }
        }
        live.insert(
            key_of(&id),
            Session {
                csrf: CsrfToken(random_hex()),
                token,
                created: now,
                last_seen: now,
            },
        );
        drop(live);
        let max_age = actix_web::cookie::time::Duration::seconds(
            i64::try_from(self.policy.max_age.as_secs()).unwrap_or(i64::MAX),
        );
        self.cookie(id).max_age(max_age).finish()
    }

    fn cookie(&self, value: String) -> actix_web::cookie::CookieBuilder<'static> {
        Cookie::build(SESSION_COOKIE, value)
            .path("/")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(self.policy.secure)
    }

    /// The session of the request's cookie, if it is alive and made with the current token
    /// `token`; using it counts as activity. A dead session is forgotten.
    pub fn current(&self, req: &HttpRequest, token: TokenFingerprint) -> Option<ActiveSession> {
        let cookie = req.cookie(SESSION_COOKIE)?;
        if cookie.value().is_empty() {
            return None;
        }
        let key = key_of(cookie.value());
        let now = Instant::now();
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let session = live.get_mut(&key)?;
        if !self.alive(session, token, now) {
            live.remove(&key);
            return None;
        }
        session.last_seen = now;
        Some(ActiveSession {
            key,
            csrf: session.csrf.clone(),
        })
    }

    /// Ends `session`; answers the cookie that removes it from the browser.
    pub fn end(&self, session: &ActiveSession) -> Cookie<'static> {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&session.key);
        let mut cookie = self.cookie(String::new()).finish();
        cookie.make_removal();
        cookie
    }

    /// Whether the request comes from the daemon's own pages: its `Origin` (or, without one, its
    /// `Referer`) must be the public origin. Answers what is wrong otherwise.
    pub fn same_origin(&self, req: &HttpRequest) -> Result<(), String> {
        let header = |name| {
            req.headers()
                .get(name)
                .map(|v| v.to_str().unwrap_or("(not text)").to_owned())
        };
        let (what, origin) = match (header(ORIGIN), header(REFERER)) {
            (Some(origin), _) => ("Origin", origin),
            (None, Some(referer)) => (
                "Referer",
                url::Url::parse(&referer)
                    .map(|u| u.origin().ascii_serialization())
                    .unwrap_or(referer),
            ),
            (None, None) => {
                return Err(format!(
                    "the form carried neither Origin nor Referer, so inboxd cannot tell that it came from its own page {}",
                    self.policy.origin
                ));
            }
        };
        if origin == self.policy.origin {
            return Ok(());
        }
        let shown: String = origin.chars().take(100).collect();
        Err(format!(
            "the form came from {shown} ({what}), not from inboxd's own page {} (server.public_url)",
            self.policy.origin
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::domain::secret::AdminToken;
    use crate::http::auth::AuthGuard;
    use actix_web::test::TestRequest;

    fn sessions(idle: u64, max_age: u64) -> Sessions {
        Sessions::new(SessionPolicy {
            idle: Duration::from_secs(idle),
            max_age: Duration::from_secs(max_age),
            secure: false,
            origin: "http://127.0.0.1:8080".to_owned(),
        })
    }

    #[test]
    fn two_logins_give_different_cookies_and_csrf_tokens() {
        let guard = AuthGuard::new(
            &AdminToken::new("admin-token-for-the-session-test").unwrap(),
            std::num::NonZeroU32::new(10).unwrap(),
        );
        let sessions = sessions(60, 600);
        let a = sessions.start(guard.fingerprint());
        let b = sessions.start(guard.fingerprint());
        assert_ne!(a.value(), b.value());
        assert_eq!(a.value().len(), 64);
        let req_a = TestRequest::default().cookie(a.clone()).to_http_request();
        let req_b = TestRequest::default().cookie(b.clone()).to_http_request();
        let sa = sessions.current(&req_a, guard.fingerprint()).unwrap();
        let sb = sessions.current(&req_b, guard.fingerprint()).unwrap();
        assert!(!sa.csrf.matches(sb.csrf.expose()));
        assert!(!format!("{sa:?}{:?}", sa.csrf).contains(sa.csrf.expose()));
    }

    #[test]
    fn a_change_of_the_admin_token_ends_the_session() {
        let guard = AuthGuard::new(
            &AdminToken::new("admin-token-for-the-session-test").unwrap(),
            std::num::NonZeroU32::new(10).unwrap(),
        );
        let sessions = sessions(60, 600);
        let cookie = sessions.start(guard.fingerprint());
        let req = TestRequest::default().cookie(cookie).to_http_request();
        assert!(sessions.current(&req, guard.fingerprint()).is_some());
        guard.replace_token(&AdminToken::new("another-admin-token-entirely").unwrap());
        assert!(sessions.current(&req, guard.fingerprint()).is_none());
    }

    #[test]
    fn only_the_public_origin_passes() {
        let sessions = sessions(60, 600);
        let ok = TestRequest::default()
            .insert_header((ORIGIN, "http://127.0.0.1:8080"))
            .to_http_request();
        assert!(sessions.same_origin(&ok).is_ok());
        let referer = TestRequest::default()
            .insert_header((REFERER, "http://127.0.0.1:8080/?channel=x"))
            .to_http_request();
        assert!(sessions.same_origin(&referer).is_ok());
        for (name, value) in [
            (ORIGIN, "https://evil.example"),
            (ORIGIN, "null"),
            (REFERER, "http://127.0.0.1:8081/"),
        ] {
            let req = TestRequest::default()
                .insert_header((name, value))
                .to_http_request();
            assert!(sessions.same_origin(&req).is_err(), "{value}");
        }
        assert!(
            sessions
                .same_origin(&TestRequest::default().to_http_request())
                .is_err()
        );
    }
}
