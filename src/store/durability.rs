//! Durability and size: flushing buffered writes (blocking, or on Tokio's blocking pool) and the
//! size of the store's files.

use super::{Store, StoreError};

impl Store {
    /// Writes every buffered change to disk before returning (blocking).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.with(|e| e.flush())
    }

    /// Writes every buffered change to disk, without blocking the caller's thread.
    pub async fn flush_async(&self) -> Result<(), StoreError> {
        // sled's own `flush_async` can stall when several run at once; a blocking flush on
        // Tokio's blocking pool does not, and keeps the caller's thread free all the same.
        let store = self.clone();
        match tokio::task::spawn_blocking(move || store.flush()).await {
            Ok(result) => result,
            Err(err) => Err(StoreError::Io {
                source: std::io::Error::other(format!("the flush task failed: {err}")),
            }),
        }
    }

    /// The size of the store's files, in bytes (for the memory engine: the bytes it holds).
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.with(|e| e.size_on_disk())
    }
}
