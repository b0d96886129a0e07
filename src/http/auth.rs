//! Who holds the admin token: its constant-time check (the token can be replaced while running,
//! which ends the status page's sessions made with the old one), and the per-address limit on
//! failed attempts, which refuses a blocked address before any comparison.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use actix_web::HttpRequest;
use actix_web::http::header::AUTHORIZATION;
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::domain::secret::AdminToken;
use crate::http::error::ApiError;

/// Which admin token a session was made with: a digest of the token's digest, so that a session
/// made before the token changed stops working. Compared, never shown.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenFingerprint([u8; 32]);

impl std::fmt::Debug for TokenFingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenFingerprint([redacted])")
    }
}

/// The admin token's SHA-256 digest (the token itself is not kept).
struct TokenDigest([u8; 32]);

impl TokenDigest {
    fn of(token: &AdminToken) -> Self {
        TokenDigest(sha256(&[token.expose().as_bytes()]))
    }

    fn fingerprint(&self) -> TokenFingerprint {
        TokenFingerprint(sha256(&[b"inboxd-session-token-v2\0", &self.0]))
    }
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// Checks the admin token, behind the failed-attempt limit.
pub struct AuthGuard {
    token: RwLock<TokenDigest>,
    failures: FailureLimit,
}

impl AuthGuard {
    /// A guard for `token`, allowing `failures_per_min` failed attempts per address per minute.
    pub fn new(token: &AdminToken, failures_per_min: NonZeroU32) -> Self {
        AuthGuard {
            token: RwLock::new(TokenDigest::of(token)),
            failures: FailureLimit::new(failures_per_min),
        }
    }

    /// Replaces the admin token: the old one stops working, and so does every status page
    /// session made with it.
    pub fn replace_token(&self, token: &AdminToken) {
        *self.token.write().unwrap_or_else(PoisonError::into_inner) = TokenDigest::of(token);
    }

    /// The fingerprint of the current token, which a session is made with.
    pub fn fingerprint(&self) -> TokenFingerprint {
        self.token
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .fingerprint()
    }

    fn matches(&self, candidate: &str) -> bool {
        let candidate = sha256(&[candidate.as_bytes()]);
        let current = self.token.read().unwrap_or_else(PoisonError::into_inner);
        bool::from(candidate.ct_eq(&current.0))
    }

    /// Checks `candidate` for a request from `peer`: a blocked address is refused (429) before
    /// the comparison; a wrong token counts against the address (401, or 429 once blocked).
    /// Answers the fingerprint of the token on success.
    pub fn verify(&self, peer: IpAddr, candidate: &str) -> Result<TokenFingerprint, ApiError> {
        self.failures.gate(peer)?;
        let candidate = candidate.trim();
        if !candidate.is_empty() && self.matches(candidate) {
            return Ok(self.fingerprint());
        }
        Err(self.failures.record(peer))
    }

    /// The admin API's check: `Authorization: Bearer <admin token>`, nothing else (a status page
    /// cookie is not accepted, so another site cannot ride on a logged-in browser).
    pub fn check_bearer(&self, req: &HttpRequest) -> Result<(), ApiError> {
        let bearer = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .unwrap_or("");
        self.verify(peer(req), bearer).map(|_| ())
    }
}

/// Failed attempts per client address: a governor budget of `failures_per_min` per minute; an
/// address whose budget is spent is blocked until a new attempt is allowed.
struct FailureLimit {
    budget: DefaultKeyedRateLimiter<IpAddr, StateInformationMiddleware>,
    /// How long a spent budget takes to allow one more attempt.
    refill: Duration,
    blocked: Mutex<HashMap<IpAddr, Instant>>,
}

/// Above this many tracked addresses, forgotten ones are pruned.
const TRACKED_ADDRESSES_MAX: usize = 10_000;

impl FailureLimit {
    fn new(failures_per_min: NonZeroU32) -> Self {
        let quota = Quota::per_minute(failures_per_min);
        FailureLimit {
            budget: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            refill: quota.replenish_interval(),
            blocked: Mutex::new(HashMap::new()),
        }
    }

    /// Refuses a blocked address, with how long it must wait.
    fn gate(&self, peer: IpAddr) -> Result<(), ApiError> {
        let blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        match blocked.get(&peer) {
            Some(until) => {
                let now = Instant::now();
                if *until > now {
                    metrics::counter!("inboxd_admin_auth_blocked_total").increment(1);
                    Err(ApiError::TooManyAttempts {
                        retry_after: until.duration_since(now),
                    })
                } else {
                    Ok(())
                }
            }
            None => Ok(()),
        }
    }

    /// Counts a failed attempt; answers the refusal to send.
    fn record(&self, peer: IpAddr) -> ApiError {
        metrics::counter!("inboxd_admin_auth_failures_total").increment(1);
        // `Ok` with nothing left: this failure spent the budget; it is answered as a wrong token,
        // and the address is blocked from the next attempt on.
        let (spent, refused) = match self.budget.check_key(&peer) {
            Ok(snapshot) => (snapshot.remaining_burst_capacity() == 0, false),
            Err(_) => (true, true),
        };
        let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        if blocked.len() > TRACKED_ADDRESSES_MAX {
            let now = Instant::now();
            blocked.retain(|_, until| *until > now);
            self.budget.retain_recent();
            self.budget.shrink_to_fit();
        }
        if spent {
            blocked.insert(peer, Instant::now() + self.refill);
            tracing::warn!(peer = %peer, "Too many failed admin-token attempts: the address is blocked.");
        }
        if refused {
            ApiError::TooManyAttempts {
                retry_after: self.refill,
            }
        } else {
            ApiError::Unauthorized
        }
    }
}

/// The client's address (the direct peer; a reverse proxy's address when behind one).
pub fn peer(req: &HttpRequest) -> IpAddr {
    req.peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn guard(per_min: u32) -> AuthGuard {
        AuthGuard::new(
            &AdminToken::new("the-right-admin-token-0123456789").unwrap(),
            NonZeroU32::new(per_min).unwrap(),
        )
    }

    #[test]
    fn a_blocked_address_is_refused_even_with_the_right_token_and_others_are_not() {
        let guard = guard(3);
        let attacker: IpAddr = "192.0.2.1".parse().unwrap();
        let operator: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(matches!(
                guard.verify(attacker, "guess"),
                Err(ApiError::Unauthorized)
            ));
        }
        assert!(matches!(
            guard.verify(attacker, "guess"),
            Err(ApiError::TooManyAttempts { .. })
        ));
        assert!(matches!(
            guard.verify(attacker, "the-right-admin-token-0123456789"),
            Err(ApiError::TooManyAttempts { .. })
        ));
        assert!(
            guard
                .verify(operator, "the-right-admin-token-0123456789")
                .is_ok()
        );
    }

    #[test]
    fn a_new_token_changes_the_fingerprint_and_the_old_token_stops_working() {
        let guard = guard(10);
        let before = guard.fingerprint();
        guard.replace_token(&AdminToken::new("a-brand-new-admin-token-98765").unwrap());
        assert_ne!(before, guard.fingerprint());
        let peer: IpAddr = "192.0.2.3".parse().unwrap();
        assert!(
            guard
                .verify(peer, "the-right-admin-token-0123456789")
                .is_err()
        );
        assert!(guard.verify(peer, "a-brand-new-admin-token-98765").is_ok());
    }
}
