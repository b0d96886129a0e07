//! Pending authorizations: the single-use OAuth `state`s, sealed with their PKCE verifier, taken
//! once with a compare-and-swap (a tombstone answers a replay) and pruned after expiry.

use std::ops::ControlFlow;

use chrono::{DateTime, Utc};

use super::engine::{Op, Scan, Table};
use super::{PendingAuthorization, PendingLookup, Store, StoreError, persisted};

/// How long the tombstone of a used `state` is kept after the state's expiry, so that a replayed
/// callback is answered "already used" rather than "unknown".
pub const USED_PENDING_RETENTION: chrono::Duration = chrono::Duration::hours(1);

impl Store {
    /// Records a pending authorization under its `state`. A state that exists already (pending or
    /// used) is refused: states are single-use.
    pub fn put_pending(
        &self,
        state: &str,
        pending: &PendingAuthorization,
    ) -> Result<(), StoreError> {
        if state.is_empty() {
            return Err(StoreError::InvalidInput(
                "a pending authorization needs a non-empty state".to_owned(),
            ));
        }
        let bytes = persisted::encode_pending(&self.shared.crypto, state, pending)?;
        let swapped = self
            .with(|e| e.compare_and_swap(Table::Pending, state.as_bytes(), None, Some(&bytes)))?;
        if swapped {
            Ok(())
        } else {
            Err(StoreError::InvalidInput(
                "this authorization state exists already; make a fresh random state".to_owned(),
            ))
        }
    }

    /// Takes the pending authorization of `state`, once: the first call gets it, later calls get
    /// [`PendingLookup::AlreadyUsed`] until the tombstone is pruned. An expired state is removed
    /// and answers [`PendingLookup::Expired`].
    pub fn take_pending(
        &self,
        state: &str,
        now: DateTime<Utc>,
    ) -> Result<PendingLookup, StoreError> {
        // A compare-and-swap from the bytes read: of simultaneous takes, exactly one wins; the
        // others read again and find the tombstone.
        loop {
            let Some(raw) = self.with(|e| e.get(Table::Pending, state.as_bytes()))? else {
                return Ok(PendingLookup::Unknown);
            };
            let stored = persisted::decode_pending_raw(state, &raw)?;
            if stored.used_at.is_some() {
                return Ok(PendingLookup::AlreadyUsed);
            }
            if stored.expires_at <= now {
                let removed = self.with(|e| {
                    e.compare_and_swap(Table::Pending, state.as_bytes(), Some(&raw), None)
                })?;
                if removed {
                    return Ok(PendingLookup::Expired);
                }
                continue;
            }
            let tombstone = persisted::encode_pending_raw(state, &stored.used(now))?;
            let taken = self.with(|e| {
                e.compare_and_swap(
                    Table::Pending,
                    state.as_bytes(),
                    Some(&raw),
                    Some(&tombstone),
                )
            })?;
            if taken {
                return Ok(PendingLookup::Found(persisted::open_pending(
                    &self.shared.crypto,
                    state,
                    stored,
                )?));
            }
        }
    }

    /// Removes expired pending authorizations and the tombstones of used ones past
    /// [`USED_PENDING_RETENTION`]. Returns how many were removed.
    pub fn prune_pending(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut ops = Vec::new();
        self.scan(Table::Pending, Scan::All, |key, value| {
            let state = String::from_utf8_lossy(key);
            let gone = match persisted::decode_pending_raw(&state, value) {
                Ok(stored) => match stored.used_at {
                    None => stored.expires_at <= now,
                    Some(used_at) => stored.expires_at.max(used_at) + USED_PENDING_RETENTION <= now,
                },
                Err(err) => {
                    // A pending state that cannot be read can never complete an authorization.
                    tracing::warn!(error = %err, "removing a pending authorization it cannot read");
                    true
                }
            };
            if gone {
                ops.push(Op::Remove {
                    table: Table::Pending,
                    key: key.to_vec(),
                });
            }
            Ok(ControlFlow::Continue(()))
        })?;
        self.with(|e| e.apply(&ops))?;
        Ok(ops.len())
    }
}
