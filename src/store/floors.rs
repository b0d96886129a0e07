//! Throttle floors: a `Retry-After` under an opaque key, flushed on write so that it survives a
//! restart; get, list, delete and prune the passed ones.

use std::ops::ControlFlow;

use chrono::{DateTime, Utc};

use super::engine::{Op, Scan, Table};
use super::{Store, StoreError, persisted};

/// The longest throttle floor key, in bytes.
pub const MAX_FLOOR_KEY_BYTES: usize = 512;

fn floor_key(key: &str) -> Result<&[u8], StoreError> {
    if key.is_empty() {
        return Err(StoreError::InvalidInput(
            "a throttle floor needs a non-empty key, such as \"{client_id}/{mailbox}\"".to_owned(),
        ));
    }
    if key.len() > MAX_FLOOR_KEY_BYTES {
        return Err(StoreError::InvalidInput(format!(
            "a throttle floor key is at most {MAX_FLOOR_KEY_BYTES} bytes, this one has {}; use a shorter key such as \"{{client_id}}/{{mailbox}}\"",
            key.len()
        )));
    }
    Ok(key.as_bytes())
}

impl Store {
    /// Records that requests under `key` (opaque, such as `"{client_id}/{mailbox}"`) must wait
    /// until `until` (a `Retry-After`), replacing any floor of that key. Durable when it returns
    /// (flushes), so the floor survives a restart.
    pub fn put_floor(&self, key: &str, until: DateTime<Utc>) -> Result<(), StoreError> {
        let raw_key = floor_key(key)?;
        let bytes = persisted::encode_floor(key, until)?;
        self.with(|e| e.insert(Table::Floors, raw_key, &bytes))?;
        self.flush()
    }

    /// The floor of `key`, if any (including one that has passed and was not pruned yet).
    pub fn get_floor(&self, key: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let raw_key = floor_key(key)?;
        let raw = self.with(|e| e.get(Table::Floors, raw_key))?;
        raw.map(|bytes| persisted::decode_floor(key, &bytes))
            .transpose()
    }

    /// Every floor, sorted by key. A floor that cannot be read is an error, not skipped.
    pub fn list_floors(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let mut out = Vec::new();
        self.scan(Table::Floors, Scan::All, |key, value| {
            let key = std::str::from_utf8(key)
                .map_err(|_| StoreError::corrupt("a throttle floor key", "it is not text"))?;
            out.push((key.to_owned(), persisted::decode_floor(key, value)?));
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(out)
    }

    /// Removes the floor of `key`. Returns whether there was one.
    pub fn delete_floor(&self, key: &str) -> Result<bool, StoreError> {
        let raw_key = floor_key(key)?;
        self.with(|e| e.remove(Table::Floors, raw_key))
    }

    /// Removes the floors that have passed (`until <= now`), and any that cannot be read (a floor
    /// only delays requests: losing one is harmless). Returns how many were removed.
    pub fn prune_floors(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut ops = Vec::new();
        self.scan(Table::Floors, Scan::All, |key, value| {
            let shown = String::from_utf8_lossy(key);
            let gone = match persisted::decode_floor(&shown, value) {
                Ok(until) => until <= now,
                Err(err) => {
                    tracing::warn!(error = %err, "removing a throttle floor it cannot read");
                    true
                }
            };
            if gone {
                ops.push(Op::Remove {
                    table: Table::Floors,
                    key: key.to_vec(),
                });
            }
            Ok(ControlFlow::Continue(()))
        })?;
        self.with(|e| e.apply(&ops))?;
        Ok(ops.len())
    }
}
