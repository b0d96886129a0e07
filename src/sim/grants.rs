//! Refresh-token grants: the chain of refresh tokens that one authorization (a redeemed code or a
//! token minted through `/_sim/tokens` or `/_sim/bulk`) leads to, which of its tokens are still
//! unspent, and whether the grant was revoked because a rotated-out token came back.
//!
//! Microsoft issues a new refresh token on every refresh and leaves the old one valid; stricter
//! identity providers treat a second use of a rotated-out token as theft and revoke the whole grant.
//! Tokens stay stateless (signed claims); this ledger keeps only each grant's *unspent* tokens, so a
//! client that never reuses a token costs one entry per grant however often it refreshes.

use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// What spending a refresh token found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    /// The token had not been used in a successful refresh before; it is now rotated out.
    Fresh,
    /// The token had already been rotated out: it is being reused.
    Reused,
}

#[derive(Debug, Default)]
struct Grant {
    /// Refresh tokens (their nonces) issued for this grant and not yet used in a successful refresh.
    unspent: Vec<u64>,
    /// When the grant was revoked (ms since epoch, simulator clock).
    revoked_at_ms: Option<i64>,
}

/// Every grant that has a refresh token.
#[derive(Debug, Default)]
pub struct Grants {
    next_id: AtomicU64,
    map: DashMap<u64, Grant>,
}

impl Grants {
    /// A new grant id (ids start at 1; 0 means "no grant", as in access tokens).
    pub fn open(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Records that refresh token `nonce` was issued for `grant`.
    pub fn issued(&self, grant: u64, nonce: u64) {
        self.map.entry(grant).or_default().unspent.push(nonce);
    }

    /// When `grant` was revoked, if it was.
    pub fn revoked_at(&self, grant: u64) -> Option<i64> {
        self.map.get(&grant).and_then(|g| g.revoked_at_ms)
    }

    /// Whether token `nonce` of `grant` was already rotated out (without spending it).
    pub fn is_spent(&self, grant: u64, nonce: u64) -> bool {
        self.map
            .get(&grant)
            .is_some_and(|g| !g.unspent.contains(&nonce))
    }

    /// Spends token `nonce` of `grant` for a successful refresh. Atomic per grant: of two concurrent
    /// refreshes with one token, exactly one finds it fresh. A grant this ledger never saw counts as
    /// fresh, so the simulator never reports a reuse it cannot prove.
    pub fn spend(&self, grant: u64, nonce: u64) -> Spend {
        let Some(mut g) = self.map.get_mut(&grant) else {
            return Spend::Fresh;
        };
        match g.unspent.iter().position(|n| *n == nonce) {
            Some(i) => {
                g.unspent.swap_remove(i);
                Spend::Fresh
            }
            None => Spend::Reused,
        }
    }

    /// Revokes `grant`: every later refresh with any of its tokens fails.
    pub fn revoke(&self, grant: u64, now_ms: i64) {
        let mut g = self.map.entry(grant).or_default();
        if g.revoked_at_ms.is_none() {
            g.revoked_at_ms = Some(now_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_fresh_once_then_reused_and_its_successor_is_fresh() {
        let grants = Grants::default();
        let g = grants.open();
        grants.issued(g, 10);
        assert!(!grants.is_spent(g, 10));
        assert_eq!(grants.spend(g, 10), Spend::Fresh);
        grants.issued(g, 11);
        assert!(grants.is_spent(g, 10));
        assert_eq!(grants.spend(g, 10), Spend::Reused);
        assert_eq!(grants.spend(g, 11), Spend::Fresh);
        assert_eq!(grants.revoked_at(g), None);
        grants.revoke(g, 42);
        assert_eq!(grants.revoked_at(g), Some(42));
    }

    #[test]
    fn grants_are_independent_and_unknown_ones_are_never_reported_as_reuse() {
        let grants = Grants::default();
        let (a, b) = (grants.open(), grants.open());
        assert_ne!(a, b);
        grants.issued(a, 1);
        grants.issued(b, 2);
        assert_eq!(grants.spend(a, 1), Spend::Fresh);
        assert_eq!(grants.spend(b, 2), Spend::Fresh);
        assert_eq!(grants.spend(999, 3), Spend::Fresh);
        assert!(!grants.is_spent(999, 3));
    }
}
