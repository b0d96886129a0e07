//! Metadata: a small map of values whose format (and versioning) the caller owns. Neither sealed
//! nor flushed on write.

use super::engine::Table;
use super::{Store, StoreError};

impl Store {
    /// Stores a small metadata value as given: the caller owns its format (and its versioning).
    /// It is not encrypted (never put a secret here) and not flushed.
    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.with(|e| e.insert(Table::Meta, key.as_bytes(), value))
    }

    /// A metadata value, if any.
    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(|e| e.get(Table::Meta, key.as_bytes()))
    }

    /// Removes a metadata value. Returns whether there was one.
    pub fn delete_meta(&self, key: &str) -> Result<bool, StoreError> {
        self.with(|e| e.remove(Table::Meta, key.as_bytes()))
    }
}
