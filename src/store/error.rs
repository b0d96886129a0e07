//! The store's error: what went wrong with durable state, and what the caller should do about it.
//!
//! Callers decide by [`StoreError::kind`]: a [`StoreErrorKind::Transient`] or
//! [`StoreErrorKind::DiskFull`] error means "stop taking new mail and retry later"; the others mean
//! "refuse to start (or refuse this record) until an operator acts".

use std::io;

/// The policy class of a [`StoreError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreErrorKind {
    /// The disk (or quota) is full: stop taking new mail, retry once space is freed.
    DiskFull,
    /// The store's files cannot be written (read-only file system or missing permission).
    ReadOnly,
    /// Another process holds the store open.
    Locked,
    /// An I/O error that may pass: retry later.
    Transient,
    /// The master key does not match the one the store was created with.
    WrongKey,
    /// Stored bytes do not decode or do not decrypt: the store is damaged or was tampered with.
    Corrupt,
    /// A record was written by a newer inboxd (unknown format version).
    Incompatible,
    /// The path is not an inboxd store.
    NotAStore,
    /// The caller passed a value the store cannot hold (e.g. an empty message id).
    InvalidInput,
    /// A fenced write (cluster mode) was refused: this node no longer holds the lease of the
    /// channel's shard, so another node polls the channel now. Nothing to do: not an error of the
    /// store, which stays healthy.
    Fenced,
}

/// An error of the durable store. The message says what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store at the path could not be opened because another process holds it.
    #[error(
        "the store at {path} is in use by another process (its lock is held): stop the other inboxd using this store.path, or point this one at another directory"
    )]
    Locked {
        /// The store directory.
        path: String,
    },
    /// The path exists but is not a store.
    #[error(
        "{path} is not an inboxd store: {why}; set store.path to an empty or non-existent directory (inboxd creates it) or to an existing store"
    )]
    NotAStore {
        /// The path given.
        path: String,
        /// Why it was refused.
        why: String,
    },
    /// The master key given does not open this store.
    #[error(
        "the master key does not match the one this store was created with: give the original key (INBOXD_MASTER_KEY or security.master_key_file); a store cannot be read with another key"
    )]
    WrongMasterKey,
    /// A record's bytes could not be decoded or decrypted.
    #[error(
        "stored {what} is damaged and cannot be read ({why}): restore the store from a backup, or remove and re-add the affected channel"
    )]
    Corrupt {
        /// Which record (kind and key, never a secret).
        what: String,
        /// What failed.
        why: String,
    },
    /// A record carries a format version this build does not know.
    #[error(
        "stored {what} has format version {found}, but this inboxd reads versions up to {supported}: it was written by a newer inboxd; run that version (or newer) against this store"
    )]
    UnsupportedVersion {
        /// Which record.
        what: String,
        /// The version found.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The disk is full.
    #[error(
        "the disk holding the store is full ({source}): free space on that file system; inboxd stops taking new mail and retries"
    )]
    DiskFull {
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The store's files cannot be written.
    #[error(
        "the store cannot be written ({source}): check that store.path is on a writable file system and owned by the user running inboxd"
    )]
    ReadOnly {
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Another I/O error.
    #[error("the store could not read or write its files ({source}); inboxd retries later")]
    Io {
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The storage engine reported an internal problem.
    #[error(
        "the storage engine failed: {0}; restart inboxd, and if it persists restore the store from a backup"
    )]
    Engine(String),
    /// The caller passed a value the store cannot hold.
    #[error("invalid value for the store: {0}")]
    InvalidInput(String),
    /// PostgreSQL refused the work for a reason an operator must fix (the login, a missing
    /// database, a refused statement); the text says what and how.
    #[error("{0}")]
    Database(String),
    /// A fenced write was refused: the lease it carried is no longer this node's.
    #[error(
        "this node no longer holds the lease of the channel's shard; another node polls the channel now: nothing to do"
    )]
    Fenced,
    /// The database (PostgreSQL engine) cannot be reached or refused the work for a while: it is
    /// down, restarting, shutting down, or the transaction lost a serialization conflict.
    #[error(
        "the PostgreSQL database {database} is unavailable ({why}); inboxd retries later: check that PostgreSQL runs and accepts connections from this host"
    )]
    Unavailable {
        /// The database, as `host:port/name` (never the password).
        database: String,
        /// What failed.
        why: String,
    },
}

impl StoreError {
    /// The policy class of this error.
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::Locked { .. } => StoreErrorKind::Locked,
            StoreError::NotAStore { .. } => StoreErrorKind::NotAStore,
            StoreError::WrongMasterKey => StoreErrorKind::WrongKey,
            StoreError::Corrupt { .. } | StoreError::Engine(_) => StoreErrorKind::Corrupt,
            StoreError::UnsupportedVersion { .. } => StoreErrorKind::Incompatible,
            StoreError::DiskFull { .. } => StoreErrorKind::DiskFull,
            StoreError::ReadOnly { .. } => StoreErrorKind::ReadOnly,
            StoreError::Io { .. } => StoreErrorKind::Transient,
            StoreError::InvalidInput(_) => StoreErrorKind::InvalidInput,
            StoreError::Fenced => StoreErrorKind::Fenced,
            StoreError::Database(_) => StoreErrorKind::Corrupt,
            StoreError::Unavailable { .. } => StoreErrorKind::Transient,
        }
    }

    /// Whether the disk is full (stop taking new mail, retry later).
    pub fn is_disk_full(&self) -> bool {
        self.kind() == StoreErrorKind::DiskFull
    }

    /// Whether the store cannot be written at all.
    pub fn is_read_only(&self) -> bool {
        self.kind() == StoreErrorKind::ReadOnly
    }

    /// Whether retrying later may succeed without an operator changing the store itself
    /// (transient I/O, a full disk that gets freed).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind(),
            StoreErrorKind::Transient | StoreErrorKind::DiskFull
        )
    }

    /// Whether the daemon should refuse to start (or stop) on this error: a wrong key, a damaged or
    /// newer-format store, a path that is not a store, a store held by another process.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self.kind(),
            StoreErrorKind::WrongKey
                | StoreErrorKind::Corrupt
                | StoreErrorKind::Incompatible
                | StoreErrorKind::NotAStore
                | StoreErrorKind::Locked
                | StoreErrorKind::ReadOnly
        )
    }

    pub(crate) fn corrupt(what: impl Into<String>, why: impl Into<String>) -> Self {
        StoreError::Corrupt {
            what: what.into(),
            why: why.into(),
        }
    }

    /// Classifies an I/O error by what the caller can do about it.
    pub(crate) fn from_io(source: io::Error) -> Self {
        match source.kind() {
            io::ErrorKind::StorageFull
            | io::ErrorKind::QuotaExceeded
            | io::ErrorKind::FileTooLarge => StoreError::DiskFull { source },
            io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::PermissionDenied => {
                StoreError::ReadOnly { source }
            }
            _ => match source.raw_os_error() {
                Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG) => {
                    StoreError::DiskFull { source }
                }
                Some(libc::EROFS) | Some(libc::EACCES) | Some(libc::EPERM) => {
                    StoreError::ReadOnly { source }
                }
                _ => StoreError::Io { source },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_classified_for_policy() {
        let full = StoreError::from_io(io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(full.is_disk_full() && full.is_retryable() && !full.is_fatal());
        let ro = StoreError::from_io(io::Error::from_raw_os_error(libc::EROFS));
        assert!(ro.is_read_only() && ro.is_fatal());
        // A file-size limit (RLIMIT_FSIZE, a quota on one file) is a full disk for the store.
        let too_large = StoreError::from_io(io::Error::from_raw_os_error(libc::EFBIG));
        assert!(too_large.is_disk_full() && too_large.is_retryable());
        let other = StoreError::from_io(io::Error::other("flaky"));
        assert_eq!(other.kind(), StoreErrorKind::Transient);
        assert!(StoreError::WrongMasterKey.is_fatal());
        assert!(
            StoreError::WrongMasterKey
                .to_string()
                .contains("master key")
        );
    }

    #[test]
    fn a_fenced_write_is_neither_fatal_nor_retryable() {
        let fenced = StoreError::Fenced;
        assert_eq!(fenced.kind(), StoreErrorKind::Fenced);
        assert!(!fenced.is_fatal() && !fenced.is_retryable());
        assert!(fenced.to_string().contains("nothing to do"), "{fenced}");
        let down = StoreError::Unavailable {
            database: "db.example:5432/inboxd".into(),
            why: "connection refused".into(),
        };
        assert!(down.is_retryable() && !down.is_fatal());
    }
}
