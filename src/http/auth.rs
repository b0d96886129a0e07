//! The admin token check: constant-time comparison, and a per-address limit on failed attempts.

use std::net::IpAddr;
use std::num::NonZeroU32;

use actix_web::HttpRequest;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::domain::secret::AdminToken;
use crate::http::error::ApiError;

/// The cookie that carries a status-page session.
pub const SESSION_COOKIE: &str = "inboxd_session";

/// Checks admin credentials.
pub struct AuthGuard {
    /// SHA-256 of the token: compared in constant time, and the token itself is not kept around.
    token_digest: [u8; 32],
    /// The session cookie value: an HMAC-like digest of the token, so the cookie is not the token.
    session_digest: [u8; 32],
    failures: DefaultKeyedRateLimiter<IpAddr>,
}

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

impl AuthGuard {
    /// A guard for `token`, allowing `failures_per_min` failed attempts per address per minute.
    pub fn new(token: AdminToken, failures_per_min: NonZeroU32) -> Self {
        AuthGuard {
            token_digest: digest(&[token.expose().as_bytes()]),
            session_digest: digest(&[b"inboxd-session-v1\0", token.expose().as_bytes()]),
            failures: RateLimiter::keyed(Quota::per_minute(failures_per_min)),
        }
    }

    /// Whether `candidate` is the admin token (constant time).
    pub fn token_matches(&self, candidate: &str) -> bool {
        let candidate = digest(&[candidate.as_bytes()]);
        bool::from(candidate.ct_eq(&self.token_digest))
    }

    /// The session cookie value for a logged-in browser.
    pub fn session_value(&self) -> String {
        hex::encode(self.session_digest)
    }

    fn session_matches(&self, candidate: &str) -> bool {
        let Ok(bytes) = hex::decode(candidate) else {
            return false;
        };
        bool::from(bytes.as_slice().ct_eq(&self.session_digest))
    }

    /// Refuses the request unless it carries the token (bearer) or a session cookie.
    pub fn check(&self, req: &HttpRequest) -> Result<(), ApiError> {
        let peer = peer(req);
        let bearer = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            });
        let ok = match bearer {
            Some(token) => self.token_matches(token.trim()),
            None => req
                .cookie(SESSION_COOKIE)
                .is_some_and(|c| self.session_matches(c.value())),
        };
        if ok {
            return Ok(());
        }
        self.record_failure(peer)
    }

    /// Counts a failed attempt; refuses once the address is over its budget.
    pub fn record_failure(&self, peer: IpAddr) -> Result<(), ApiError> {
        metrics::counter!("inboxd_admin_auth_failures_total").increment(1);
        if self.failures.check_key(&peer).is_err() {
            return Err(ApiError::TooManyAttempts);
        }
        Err(ApiError::Unauthorized)
    }
}

/// The client's address (the direct peer; a reverse proxy's address when behind one).
pub fn peer(req: &HttpRequest) -> IpAddr {
    req.peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}
