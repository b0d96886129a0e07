//! The durable store: channels, token sets, cursors, the per-message ledger, pending authorizations
//! and a small metadata map. This is the only module that imports sled; no sled type leaves it.
//!
//! Layout: one sled tree per record kind. Per-channel records are keyed by the channel id's 16
//! bytes; ledger entries by the channel id's 16 bytes followed by the (case-sensitive) Graph message
//! id, so a channel's ledger is one prefix scan. Pending authorizations are keyed by their `state`.
//! Every value is a versioned record (`persisted.rs`); secret fields are sealed with
//! XChaCha20-Poly1305 under the master key (`crypto.rs`), bound to their record and field.
//!
//! Durability: [`Store::put_tokens`] flushes before it returns (a rotated refresh token must survive
//! a crash). Every other write reaches disk on the next background flush (`flush_every_ms`) or on an
//! explicit [`Store::flush`] / [`Store::flush_async`]; ledger writes are cheap for that reason.
//!
//! The engine-agnostic test suite is `tests/store.rs`: it uses only this public API.

mod crypto;
mod error;
mod persisted;
mod records;

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sled::Transactional as _;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::domain::ChannelId;
use crate::domain::secret::MasterKey;

pub use error::{StoreError, StoreErrorKind};
pub use records::{
    ChannelRecord, ChannelState, Cursor, ErrorSource, FirstImport, LastError, LedgerEntry,
    LedgerState, PendingAuthorization, PendingLookup, TokenSet,
};

use crypto::{Crypto, OpenError};

/// How long the tombstone of a used `state` is kept after the state's expiry, so that a replayed
/// callback is answered "already used" rather than "unknown".
pub const USED_PENDING_RETENTION: chrono::Duration = chrono::Duration::hours(1);

/// Tree names. Changing one loses data: they are part of the on-disk format.
const TREE_CHANNELS: &str = "channels";
const TREE_TOKENS: &str = "tokens";
const TREE_CURSORS: &str = "cursors";
const TREE_LEDGER: &str = "ledger";
const TREE_PENDING: &str = "pending";
const TREE_META: &str = "meta";
const TREE_SYSTEM: &str = "inboxd_system";
const SLED_DEFAULT_TREE: &[u8] = b"__sled__default";

const KEY_CHECK: &[u8] = b"key_check";
/// Written and flushed by [`Store::recover`] to see whether the disk takes writes (default tree).
const PROBE_KEY: &[u8] = b"inboxd_write_probe";
const KEY_CHECK_RECORD: &str = "system/key_check";
const KEY_CHECK_MARKER: &str = "inboxd store key check v1";
const STORE_FORMAT: &[u8] = b"format";

/// Tuning of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// The engine's page cache, in bytes (sled's default of 1 GiB is far too much for us).
    pub cache_capacity_bytes: u64,
    /// How often buffered writes are flushed in the background; `None` flushes only on demand.
    pub flush_every_ms: Option<u64>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_capacity_bytes: 64 * 1024 * 1024,
            flush_every_ms: Some(500),
        }
    }
}

/// Which per-channel record a raw access names. Only for the test suite's tamper checks.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawKind {
    /// The channel record.
    Channel,
    /// The token set.
    Tokens,
    /// The cursor.
    Cursor,
}

/// The store. Cheap to clone; every clone shares one open database.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

/// What every clone shares: the open engine (swapped when it is reopened) and what reopening needs.
struct Shared {
    /// The open engine; `None` only while [`Store::recover`] reopens it.
    current: parking_lot::RwLock<Option<Arc<Inner>>>,
    /// Set when an engine call failed with an I/O error: sled then refuses every later call
    /// until it is opened again, whatever the disk does meanwhile.
    broken: AtomicBool,
    /// One recovery at a time.
    recovering: parking_lot::Mutex<()>,
    /// Run after every recovery, before the store counts as working again.
    reopen_hooks: parking_lot::Mutex<Vec<ReopenHook>>,
    crypto: Crypto,
    dir: PathBuf,
    options: StoreOptions,
    path: String,
}

/// Work that must follow a recovery: the writes not flushed before the error are gone, and whoever
/// wrote outside the store on their strength (the JSONL sink) writes them again. An error keeps the
/// store failed; the next recovery runs every hook again, so hooks must be idempotent.
pub type ReopenHook = Box<dyn Fn(&Store) -> Result<(), String> + Send + Sync>;

/// One open engine and its trees.
struct Inner {
    db: sled::Db,
    channels: sled::Tree,
    tokens: sled::Tree,
    cursors: sled::Tree,
    ledger: sled::Tree,
    pending: sled::Tree,
    meta: sled::Tree,
    path: String,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Best effort: whatever the background flusher has not written yet.
        if let Err(err) = self.db.flush() {
            tracing::warn!(path = %self.path, error = %err, "the store could not flush on close");
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

fn ledger_key(id: ChannelId, message_id: &str) -> Result<Vec<u8>, StoreError> {
    if message_id.is_empty() {
        return Err(StoreError::InvalidInput(
            "a ledger entry needs a non-empty message id".to_owned(),
        ));
    }
    let mut key = Vec::with_capacity(16 + message_id.len());
    key.extend_from_slice(id.as_bytes());
    key.extend_from_slice(message_id.as_bytes());
    Ok(key)
}

fn channel_id_from_key(what: &str, key: &[u8]) -> Result<ChannelId, StoreError> {
    let bytes: [u8; 16] = key
        .get(..16)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| StoreError::corrupt(what, "its key is shorter than a channel id"))?;
    Ok(ChannelId::from_bytes(bytes))
}

/// Refuses a path that exists but cannot be a store, before the engine creates files in it.
fn check_path(path: &Path, shown: &str) -> Result<(), StoreError> {
    let not_a_store = |why: &str| StoreError::NotAStore {
        path: shown.to_owned(),
        why: why.to_owned(),
    };
    match std::fs::metadata(path) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(StoreError::from_io(err)),
        Ok(meta) if !meta.is_dir() => Err(not_a_store("it is a file, not a directory")),
        Ok(_) => {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(path).map_err(StoreError::from_io)? {
                names.push(entry.map_err(StoreError::from_io)?.file_name());
            }
            let has_engine_files =
                names.iter().any(|n| n == "db") && names.iter().any(|n| n == "conf");
            if names.is_empty() || has_engine_files {
                Ok(())
            } else {
                Err(not_a_store(
                    "the directory holds other files and no store (no `db` and `conf` files)",
                ))
            }
        }
    }
}

/// Whether the engine takes a durable write.
fn probe(inner: &Inner) -> sled::Result<()> {
    inner.db.insert(
        PROBE_KEY,
        Utc::now().timestamp_millis().to_be_bytes().to_vec(),
    )?;
    inner.db.flush()?;
    Ok(())
}

/// Opens the engine at `path`, refusing a database of another program, a newer format and a
/// wrong key, and creating the system records of a new store.
fn open_engine(
    path: &Path,
    shown: &str,
    crypto: &Crypto,
    options: &StoreOptions,
) -> Result<Inner, StoreError> {
    let sled_err = |err| StoreError::from_sled(err, shown);
    let db = sled::Config::new()
        .path(path)
        .cache_capacity(options.cache_capacity_bytes)
        .flush_every_ms(options.flush_every_ms)
        .open()
        .map_err(sled_err)?;
    let ours = [
        TREE_CHANNELS,
        TREE_TOKENS,
        TREE_CURSORS,
        TREE_LEDGER,
        TREE_PENDING,
        TREE_META,
        TREE_SYSTEM,
    ];
    // A database of another program is refused before anything is written into it.
    let names = db.tree_names();
    let has_system = names.iter().any(|name| &name[..] == TREE_SYSTEM.as_bytes());
    let foreign_trees = names.iter().any(|name| {
        &name[..] != SLED_DEFAULT_TREE && !ours.iter().any(|o| o.as_bytes() == &name[..])
    });
    if !has_system && (foreign_trees || !db.is_empty()) {
        return Err(StoreError::NotAStore {
            path: shown.to_owned(),
            why: "it is a database of another program".to_owned(),
        });
    }
    let open_tree = |name: &str| db.open_tree(name).map_err(sled_err);
    let system = open_tree(TREE_SYSTEM)?;

    if let Some(raw) = system.get(STORE_FORMAT).map_err(sled_err)? {
        let found = raw
            .as_ref()
            .try_into()
            .map(u32::from_be_bytes)
            .map_err(|_| StoreError::corrupt("the store's format marker", "wrong length"))?;
        if found > persisted::FORMAT_VERSION {
            return Err(StoreError::UnsupportedVersion {
                what: "store".to_owned(),
                found,
                supported: persisted::FORMAT_VERSION,
            });
        }
    }
    match system.get(KEY_CHECK).map_err(sled_err)? {
        Some(sealed) => {
            let sealed = std::str::from_utf8(&sealed)
                .map_err(|_| StoreError::corrupt("the store's key check", "it is not text"))?;
            match crypto.open(KEY_CHECK_RECORD, "marker", sealed) {
                Ok(marker) if marker.as_str() == KEY_CHECK_MARKER => {}
                Err(OpenError::Authentication) => return Err(StoreError::WrongMasterKey),
                Ok(_) => {
                    return Err(StoreError::corrupt(
                        "the store's key check",
                        "it holds an unexpected marker",
                    ));
                }
                Err(err) => {
                    return Err(StoreError::corrupt("the store's key check", err.describe()));
                }
            }
        }
        None => {
            let sealed = crypto
                .seal(KEY_CHECK_RECORD, "marker", KEY_CHECK_MARKER)
                .map_err(|_| StoreError::Engine("could not encrypt the key check".into()))?;
            system
                .insert(
                    STORE_FORMAT,
                    persisted::FORMAT_VERSION.to_be_bytes().to_vec(),
                )
                .map_err(sled_err)?;
            system
                .insert(KEY_CHECK, sealed.as_bytes())
                .map_err(sled_err)?;
            db.flush().map_err(sled_err)?;
        }
    }

    let inner = Inner {
        channels: open_tree(TREE_CHANNELS)?,
        tokens: open_tree(TREE_TOKENS)?,
        cursors: open_tree(TREE_CURSORS)?,
        ledger: open_tree(TREE_LEDGER)?,
        pending: open_tree(TREE_PENDING)?,
        meta: open_tree(TREE_META)?,
        db,
        path: shown.to_owned(),
    };
    Ok(inner)
}

impl Store {
    /// Opens the store at `path`, creating it if the path does not exist or is an empty directory.
    ///
    /// Fails with [`StoreErrorKind::WrongKey`] if `key` is not the key the store was created with,
    /// [`StoreErrorKind::Locked`] if another process holds it, [`StoreErrorKind::NotAStore`] if the
    /// path holds something else.
    pub fn open(path: &Path, key: MasterKey, options: StoreOptions) -> Result<Store, StoreError> {
        let shown = path.display().to_string();
        if options.flush_every_ms == Some(0) {
            return Err(StoreError::InvalidInput(
                "flush_every_ms must be at least 1 (milliseconds), or None to flush only on demand"
                    .to_owned(),
            ));
        }
        check_path(path, &shown)?;
        let crypto = Crypto::new(&key);
        drop(key);
        let inner = open_engine(path, &shown, &crypto, &options)?;
        Ok(Store {
            shared: Arc::new(Shared {
                current: parking_lot::RwLock::new(Some(Arc::new(inner))),
                broken: AtomicBool::new(false),
                recovering: parking_lot::Mutex::new(()),
                reopen_hooks: parking_lot::Mutex::new(Vec::new()),
                crypto,
                dir: path.to_path_buf(),
                options,
                path: shown,
            }),
        })
    }

    /// The directory the store lives in.
    pub fn path(&self) -> &str {
        &self.shared.path
    }

    fn sled_err(&self, err: sled::Error) -> StoreError {
        let err = StoreError::from_sled(err, &self.shared.path);
        if matches!(
            err.kind(),
            StoreErrorKind::DiskFull | StoreErrorKind::ReadOnly | StoreErrorKind::Transient
        ) {
            // sled keeps failing after an I/O error until it is opened again: mark it for
            // `recover`.
            self.shared.broken.store(true, Ordering::SeqCst);
        }
        err
    }

    /// The open engine, or a transient error while it is being reopened.
    fn db(&self) -> Result<Arc<Inner>, StoreError> {
        self.shared
            .current
            .read()
            .clone()
            .ok_or_else(|| StoreError::Io {
                source: std::io::Error::other(
                    "the store is being reopened after a write error; inboxd retries on its own",
                ),
            })
    }

    fn tx_err(&self, err: TransactionError<StoreError>) -> StoreError {
        match err {
            TransactionError::Abort(err) => err,
            TransactionError::Storage(err) => self.sled_err(err),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Channels

    /// Inserts or replaces a channel.
    pub fn put_channel(&self, channel: &ChannelRecord) -> Result<(), StoreError> {
        let bytes = persisted::encode_channel(&self.shared.crypto, channel)?;
        self.db()?
            .channels
            .insert(channel.id.as_bytes(), bytes)
            .map_err(|e| self.sled_err(e))?;
        Ok(())
    }

    /// Updates a channel's run-time state (status, last error, poll times) and nothing else, with a
    /// compare-and-swap so a concurrent configuration change is never overwritten. A channel that
    /// was removed meanwhile stays removed.
    pub fn update_channel_state(
        &self,
        id: ChannelId,
        state: &ChannelState,
    ) -> Result<(), StoreError> {
        loop {
            let Some(current) = self
                .db()?
                .channels
                .get(id.as_bytes())
                .map_err(|e| self.sled_err(e))?
            else {
                return Ok(());
            };
            let mut record = persisted::decode_channel(&self.shared.crypto, id, &current)?;
            record.status = state.status;
            record.last_error = state.last_error.clone();
            if state.last_poll_at.is_some() {
                record.last_poll_at = state.last_poll_at;
            }
            if state.last_success_at.is_some() {
                record.last_success_at = state.last_success_at;
            }
            let bytes = persisted::encode_channel(&self.shared.crypto, &record)?;
            let swapped = self
                .db()?
                .channels
                .compare_and_swap(id.as_bytes(), Some(current), Some(bytes))
                .map_err(|e| self.sled_err(e))?;
            if swapped.is_ok() {
                return Ok(());
            }
        }
    }

    /// The channel with this id, if any.
    pub fn get_channel(&self, id: ChannelId) -> Result<Option<ChannelRecord>, StoreError> {
        let raw = self
            .db()?
            .channels
            .get(id.as_bytes())
            .map_err(|e| self.sled_err(e))?;
        raw.map(|bytes| persisted::decode_channel(&self.shared.crypto, id, &bytes))
            .transpose()
    }

    fn decode_channel_entry(
        &self,
        entry: sled::Result<(sled::IVec, sled::IVec)>,
    ) -> Result<ChannelRecord, StoreError> {
        let (key, value) = entry.map_err(|e| self.sled_err(e))?;
        let id = channel_id_from_key("a channel record", &key)?;
        persisted::decode_channel(&self.shared.crypto, id, &value)
    }

    /// Every channel, sorted by id.
    pub fn list_channels(&self) -> Result<Vec<ChannelRecord>, StoreError> {
        self.db()?
            .channels
            .iter()
            .map(|entry| self.decode_channel_entry(entry))
            .collect()
    }

    /// Up to `limit` channels with ids after `after` (from the first if `None`), sorted by id.
    pub fn list_channels_page(
        &self,
        after: Option<ChannelId>,
        limit: usize,
    ) -> Result<Vec<ChannelRecord>, StoreError> {
        let lower = match after {
            Some(id) => Bound::Excluded(id.as_bytes().to_vec()),
            None => Bound::Unbounded,
        };
        self.db()?
            .channels
            .range::<Vec<u8>, _>((lower, Bound::Unbounded))
            .take(limit)
            .map(|entry| self.decode_channel_entry(entry))
            .collect()
    }

    /// How many channels there are.
    pub fn count_channels(&self) -> Result<usize, StoreError> {
        let mut count = 0;
        for key in self.db()?.channels.iter().keys() {
            key.map_err(|e| self.sled_err(e))?;
            count += 1;
        }
        Ok(count)
    }

    /// Removes a channel with its tokens, cursor, ledger and pending authorizations, in one
    /// transaction. Returns whether the channel existed. Stop the channel's actor first: entries it
    /// writes afterwards would outlive the channel.
    pub fn delete_channel(&self, id: ChannelId) -> Result<bool, StoreError> {
        let inner = self.db()?;
        let mut ledger_keys = Vec::new();
        for key in inner.ledger.scan_prefix(id.as_bytes()).keys() {
            ledger_keys.push(key.map_err(|e| self.sled_err(e))?);
        }
        let mut pending_keys = Vec::new();
        for entry in inner.pending.iter() {
            let (key, value) = entry.map_err(|e| self.sled_err(e))?;
            let state = String::from_utf8_lossy(&key).into_owned();
            // A pending record that no longer decodes cannot be told apart; leave it to prune.
            if persisted::decode_pending_raw(&state, &value).is_ok_and(|p| p.is_for(id)) {
                pending_keys.push(key);
            }
        }
        let key = id.as_bytes();
        (
            &inner.channels,
            &inner.tokens,
            &inner.cursors,
            &inner.ledger,
            &inner.pending,
        )
            .transaction(
                |(channels, tokens, cursors, ledger, pending)| -> TxResult<bool> {
                    let existed = channels.remove(&key[..])?.is_some();
                    tokens.remove(&key[..])?;
                    cursors.remove(&key[..])?;
                    for k in &ledger_keys {
                        ledger.remove(k)?;
                    }
                    for k in &pending_keys {
                        pending.remove(k)?;
                    }
                    Ok(existed)
                },
            )
            .map_err(|e| self.tx_err(e))
    }

    // -----------------------------------------------------------------------------------------
    // Tokens

    /// Stores a channel's token set and flushes before returning: a rotated refresh token survives
    /// a crash right after this call.
    pub fn put_tokens(&self, id: ChannelId, tokens: &TokenSet) -> Result<(), StoreError> {
        let bytes = persisted::encode_tokens(&self.shared.crypto, id, tokens)?;
        self.db()?
            .tokens
            .insert(id.as_bytes(), bytes)
            .map_err(|e| self.sled_err(e))?;
        self.flush()
    }

    /// Stores many token sets (channels imported or provisioned together) and flushes once: durable
    /// when it returns, at the cost of one flush instead of one per channel.
    pub fn put_tokens_many(&self, sets: &[(ChannelId, TokenSet)]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (id, tokens) in sets {
            batch.insert(
                id.as_bytes().as_slice(),
                persisted::encode_tokens(&self.shared.crypto, *id, tokens)?,
            );
        }
        self.db()?
            .tokens
            .apply_batch(batch)
            .map_err(|e| self.sled_err(e))?;
        self.flush()
    }

    /// A channel's token set, if any.
    pub fn get_tokens(&self, id: ChannelId) -> Result<Option<TokenSet>, StoreError> {
        let raw = self
            .db()?
            .tokens
            .get(id.as_bytes())
            .map_err(|e| self.sled_err(e))?;
        raw.map(|bytes| persisted::decode_tokens(&self.shared.crypto, id, &bytes))
            .transpose()
    }

    /// Removes a channel's token set (a revoked grant). Returns whether there was one.
    pub fn delete_tokens(&self, id: ChannelId) -> Result<bool, StoreError> {
        let old = self
            .db()?
            .tokens
            .remove(id.as_bytes())
            .map_err(|e| self.sled_err(e))?;
        Ok(old.is_some())
    }

    // -----------------------------------------------------------------------------------------
    // Cursors

    /// Stores a channel's cursor.
    pub fn put_cursor(&self, id: ChannelId, cursor: &Cursor) -> Result<(), StoreError> {
        let bytes = persisted::encode_cursor(id, cursor)?;
        self.db()?
            .cursors
            .insert(id.as_bytes(), bytes)
            .map_err(|e| self.sled_err(e))?;
        Ok(())
    }

    /// A channel's cursor, if any.
    pub fn get_cursor(&self, id: ChannelId) -> Result<Option<Cursor>, StoreError> {
        let raw = self
            .db()?
            .cursors
            .get(id.as_bytes())
            .map_err(|e| self.sled_err(e))?;
        raw.map(|bytes| persisted::decode_cursor(id, &bytes))
            .transpose()
    }

    // -----------------------------------------------------------------------------------------
    // Ledger

    fn decode_ledger_entry(
        &self,
        id: ChannelId,
        entry: sled::Result<(sled::IVec, sled::IVec)>,
    ) -> Result<(String, LedgerEntry), StoreError> {
        let (key, value) = entry.map_err(|e| self.sled_err(e))?;
        let message_id = key
            .get(16..)
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or_else(|| {
                StoreError::corrupt(
                    format!("a ledger key of channel {id}"),
                    "its message id is not text",
                )
            })?
            .to_owned();
        let entry = persisted::decode_ledger(
            &|| format!("ledger entry {message_id:?} of channel {id}"),
            &value,
        )?;
        Ok((message_id, entry))
    }

    /// The ledger entry of one message, if any.
    pub fn ledger_get(
        &self,
        id: ChannelId,
        message_id: &str,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        let key = ledger_key(id, message_id)?;
        let raw = self.db()?.ledger.get(key).map_err(|e| self.sled_err(e))?;
        raw.map(|bytes| {
            persisted::decode_ledger(
                &|| format!("ledger entry {message_id:?} of channel {id}"),
                &bytes,
            )
        })
        .transpose()
    }

    /// Inserts or replaces the ledger entry of one message (not flushed: cheap).
    pub fn ledger_put(
        &self,
        id: ChannelId,
        message_id: &str,
        entry: &LedgerEntry,
    ) -> Result<(), StoreError> {
        let key = ledger_key(id, message_id)?;
        let bytes = persisted::encode_ledger(entry)?;
        self.db()?
            .ledger
            .insert(key, bytes)
            .map_err(|e| self.sled_err(e))?;
        Ok(())
    }

    /// Inserts or replaces many ledger entries of one channel in one atomic batch.
    pub fn ledger_put_many(
        &self,
        id: ChannelId,
        entries: &[(String, LedgerEntry)],
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (message_id, entry) in entries {
            batch.insert(
                ledger_key(id, message_id)?,
                persisted::encode_ledger(entry)?,
            );
        }
        self.db()?
            .ledger
            .apply_batch(batch)
            .map_err(|e| self.sled_err(e))
    }

    /// Removes the ledger entry of one message. Returns whether there was one.
    pub fn ledger_delete(&self, id: ChannelId, message_id: &str) -> Result<bool, StoreError> {
        let key = ledger_key(id, message_id)?;
        let old = self
            .db()?
            .ledger
            .remove(key)
            .map_err(|e| self.sled_err(e))?;
        Ok(old.is_some())
    }

    /// Up to `limit` ledger entries of a channel, in `state` if given, sorted by message id bytes.
    pub fn ledger_list(
        &self,
        id: ChannelId,
        state: Option<LedgerState>,
        limit: usize,
    ) -> Result<Vec<(String, LedgerEntry)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.db()?.ledger.scan_prefix(id.as_bytes()) {
            if out.len() >= limit {
                break;
            }
            let (message_id, entry) = self.decode_ledger_entry(id, entry)?;
            if state.is_none_or(|s| s == entry.state) {
                out.push((message_id, entry));
            }
        }
        Ok(out)
    }

    /// How many ledger entries a channel has.
    pub fn ledger_count(&self, id: ChannelId) -> Result<usize, StoreError> {
        let mut count = 0;
        for key in self.db()?.ledger.scan_prefix(id.as_bytes()).keys() {
            key.map_err(|e| self.sled_err(e))?;
            count += 1;
        }
        Ok(count)
    }

    /// Removes `MarkedRead` entries (of every channel) last updated before `older_than`. Entries
    /// in any other state are kept whatever their age. Returns how many were removed.
    pub fn ledger_prune(&self, older_than: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        for entry in self.db()?.ledger.iter() {
            let (key, value) = entry.map_err(|e| self.sled_err(e))?;
            let entry = match persisted::decode_ledger(&|| "a ledger entry".to_owned(), &value) {
                Ok(entry) => entry,
                Err(err) => {
                    // Kept for an operator to look at; pruning carries on with the rest.
                    tracing::warn!(error = %err, "ledger prune skipped an entry it cannot read");
                    continue;
                }
            };
            if entry.state == LedgerState::MarkedRead && entry.updated_at < older_than {
                batch.remove(key);
                removed += 1;
            }
        }
        self.db()?
            .ledger
            .apply_batch(batch)
            .map_err(|e| self.sled_err(e))?;
        Ok(removed)
    }

    // -----------------------------------------------------------------------------------------
    // Pending authorizations

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
            .db()?
            .pending
            .compare_and_swap(state.as_bytes(), None as Option<&[u8]>, Some(bytes))
            .map_err(|e| self.sled_err(e))?;
        swapped.map_err(|_| {
            StoreError::InvalidInput(
                "this authorization state exists already; make a fresh random state".to_owned(),
            )
        })
    }

    /// Takes the pending authorization of `state`, once: the first call gets it, later calls get
    /// [`PendingLookup::AlreadyUsed`] until the tombstone is pruned. An expired state is removed
    /// and answers [`PendingLookup::Expired`].
    pub fn take_pending(
        &self,
        state: &str,
        now: DateTime<Utc>,
    ) -> Result<PendingLookup, StoreError> {
        enum Taken {
            Unknown,
            Used,
            Expired,
            Found(persisted::PendingV1),
        }
        let taken = self
            .db()?
            .pending
            .transaction(|tx| -> TxResult<Taken> {
                let Some(raw) = tx.get(state.as_bytes())? else {
                    return Ok(Taken::Unknown);
                };
                let stored = persisted::decode_pending_raw(state, &raw)
                    .map_err(ConflictableTransactionError::Abort)?;
                if stored.used_at.is_some() {
                    return Ok(Taken::Used);
                }
                if stored.expires_at <= now {
                    tx.remove(state.as_bytes())?;
                    return Ok(Taken::Expired);
                }
                let tombstone = persisted::encode_pending_raw(state, &stored.used(now))
                    .map_err(ConflictableTransactionError::Abort)?;
                tx.insert(state.as_bytes(), tombstone)?;
                Ok(Taken::Found(stored))
            })
            .map_err(|e| self.tx_err(e))?;
        Ok(match taken {
            Taken::Unknown => PendingLookup::Unknown,
            Taken::Used => PendingLookup::AlreadyUsed,
            Taken::Expired => PendingLookup::Expired,
            Taken::Found(stored) => {
                PendingLookup::Found(persisted::open_pending(&self.shared.crypto, state, stored)?)
            }
        })
    }

    /// Removes expired pending authorizations and the tombstones of used ones past
    /// [`USED_PENDING_RETENTION`]. Returns how many were removed.
    pub fn prune_pending(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        for entry in self.db()?.pending.iter() {
            let (key, value) = entry.map_err(|e| self.sled_err(e))?;
            let state = String::from_utf8_lossy(&key).into_owned();
            let stored = match persisted::decode_pending_raw(&state, &value) {
                Ok(stored) => stored,
                Err(err) => {
                    // A pending state that cannot be read can never complete an authorization.
                    tracing::warn!(error = %err, "removing a pending authorization it cannot read");
                    batch.remove(key);
                    removed += 1;
                    continue;
                }
            };
            let gone = match stored.used_at {
                None => stored.expires_at <= now,
                Some(used_at) => stored.expires_at.max(used_at) + USED_PENDING_RETENTION <= now,
            };
            if gone {
                batch.remove(key);
                removed += 1;
            }
        }
        self.db()?
            .pending
            .apply_batch(batch)
            .map_err(|e| self.sled_err(e))?;
        Ok(removed)
    }

    // -----------------------------------------------------------------------------------------
    // Metadata

    /// Stores a small metadata value as given: the caller owns its format (and its versioning).
    /// It is not encrypted (never put a secret here) and not flushed.
    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.db()?
            .meta
            .insert(key.as_bytes(), value)
            .map_err(|e| self.sled_err(e))?;
        Ok(())
    }

    /// A metadata value, if any.
    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let raw = self
            .db()?
            .meta
            .get(key.as_bytes())
            .map_err(|e| self.sled_err(e))?;
        Ok(raw.map(|v| v.to_vec()))
    }

    /// Removes a metadata value. Returns whether there was one.
    pub fn delete_meta(&self, key: &str) -> Result<bool, StoreError> {
        let old = self
            .db()?
            .meta
            .remove(key.as_bytes())
            .map_err(|e| self.sled_err(e))?;
        Ok(old.is_some())
    }

    // -----------------------------------------------------------------------------------------
    // Durability and size

    /// Writes every buffered change to disk before returning (blocking).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db()?.db.flush().map_err(|e| self.sled_err(e))?;
        Ok(())
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

    /// The size of the store's files, in bytes.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.db()?.db.size_on_disk().map_err(|e| self.sled_err(e))
    }

    // -----------------------------------------------------------------------------------------
    // Recovery after I/O errors

    /// Whether an engine call failed with an I/O error since the last successful
    /// [`recover`](Self::recover): the store then refuses writes until it is recovered.
    pub fn is_broken(&self) -> bool {
        self.shared.broken.load(Ordering::SeqCst)
    }

    /// Brings a store back after an I/O error (a full disk, a file-size limit, a read-only
    /// remount) once the disk takes writes again. sled refuses every call after such an error
    /// until it is opened again, so this probes with a durable write and, if that fails, closes
    /// the engine (waiting up to 5 s for calls in flight), opens it again and probes once more.
    /// Everything flushed before the error is kept; what was not flushed is gone, which every
    /// caller allows for: nothing is acknowledged before its flush, and the [`ReopenHook`]s run
    /// before the store counts as working again.
    ///
    /// Answers `Ok(false)` when there was nothing to recover, `Ok(true)` when the store works
    /// again, and the error when the disk still refuses (call again later). Blocking.
    pub fn recover(&self) -> Result<bool, StoreError> {
        if !self.is_broken() {
            return Ok(false);
        }
        let _one = self.shared.recovering.lock();
        if !self.is_broken() {
            return Ok(true);
        }
        let healthy = self.db().is_ok_and(|inner| probe(&inner).is_ok());
        if !healthy {
            self.reopen()?;
        }
        // What the failed engine had not flushed is gone: let its writers write it again.
        for hook in self.shared.reopen_hooks.lock().iter() {
            hook(self).map_err(|why| StoreError::Io {
                source: std::io::Error::other(format!(
                    "the store was reopened but could not be brought up to date: {why}"
                )),
            })?;
        }
        self.flush()?;
        self.shared.broken.store(false, Ordering::SeqCst);
        if healthy {
            return Ok(true);
        }
        tracing::info!(path = %self.shared.path, "The store was reopened after a write error and takes writes again.");
        Ok(true)
    }

    /// Registers work to run after each recovery (see [`ReopenHook`]).
    pub fn on_reopen(&self, hook: ReopenHook) {
        self.shared.reopen_hooks.lock().push(hook);
    }

    /// Closes the failed engine (waiting up to 5 s for calls in flight), opens it again and probes
    /// it with a durable write.
    fn reopen(&self) -> Result<(), StoreError> {
        // Nobody gets the failed engine from now on; wait for the calls in flight.
        let old = self.shared.current.write().take();
        if let Some(old) = old {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Arc::strong_count(&old) > 1 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            drop(old);
        }
        // sled's lock is released once the last handle is gone; a call that outlived the
        // wait above holds it a little longer.
        let deadline = Instant::now() + Duration::from_secs(5);
        let inner = loop {
            match open_engine(
                &self.shared.dir,
                &self.shared.path,
                &self.shared.crypto,
                &self.shared.options,
            ) {
                Ok(inner) => break inner,
                Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(err) => return Err(err),
            }
        };
        let probed = probe(&inner).map_err(|err| StoreError::from_sled(err, &self.shared.path));
        *self.shared.current.write() = Some(Arc::new(inner));
        probed
    }

    // -----------------------------------------------------------------------------------------
    // Raw access, for the test suite's tamper checks only.

    fn raw_tree(&self, kind: RawKind) -> Result<sled::Tree, StoreError> {
        let inner = self.db()?;
        Ok(match kind {
            RawKind::Channel => inner.channels.clone(),
            RawKind::Tokens => inner.tokens.clone(),
            RawKind::Cursor => inner.cursors.clone(),
        })
    }

    /// The stored bytes of a per-channel record. For tests that tamper with the store.
    #[doc(hidden)]
    pub fn raw_get(&self, kind: RawKind, id: ChannelId) -> Result<Option<Vec<u8>>, StoreError> {
        let raw = self
            .raw_tree(kind)?
            .get(id.as_bytes())
            .map_err(|e| self.sled_err(e))?;
        Ok(raw.map(|v| v.to_vec()))
    }

    /// Overwrites the stored bytes of a per-channel record. For tests that tamper with the store.
    #[doc(hidden)]
    pub fn raw_put(&self, kind: RawKind, id: ChannelId, bytes: &[u8]) -> Result<(), StoreError> {
        self.raw_tree(kind)?
            .insert(id.as_bytes(), bytes)
            .map_err(|e| self.sled_err(e))?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn a_database_of_another_program_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("their_tree")
                .unwrap()
                .insert(b"k", b"v")
                .unwrap();
            db.flush().unwrap();
        }
        let err =
            Store::open(dir.path(), MasterKey::generate(), StoreOptions::default()).unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::NotAStore, "{err}");
        let db = sled::open(dir.path()).unwrap();
        assert!(
            !db.tree_names()
                .iter()
                .any(|n| &n[..] == TREE_SYSTEM.as_bytes())
        );
    }

    #[test]
    fn a_store_of_a_newer_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::generate();
        drop(Store::open(dir.path(), key.clone(), StoreOptions::default()).unwrap());
        {
            let db = sled::open(dir.path()).unwrap();
            let system = db.open_tree(TREE_SYSTEM).unwrap();
            system.insert(STORE_FORMAT, &99u32.to_be_bytes()).unwrap();
            db.flush().unwrap();
        }
        let err = Store::open(dir.path(), key, StoreOptions::default()).unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Incompatible, "{err}");
        assert!(err.to_string().contains("newer inboxd"), "{err}");
    }
}
