//! The durable store: channels, token sets, cursors, the per-message ledger, pending authorizations,
//! throttle floors and a small metadata map, behind one API ([`Store`]) whatever the engine.
//!
//! Layers: [`Store`] encodes, versions (`persisted.rs`) and seals (`crypto.rs`) records, checks the
//! master key and recovers after I/O errors; below it, a bytes-level [`engine::Engine`] holds named
//! tables. Engines: sled (`sled_engine.rs`, the only file that imports sled; [`Store::open`]) and
//! memory (`memory.rs`; [`Store::in_memory`], for tests). A PostgreSQL engine for cluster mode would
//! implement the same trait, running each [`engine::Engine::apply`] as one transaction.
//!
//! Layout: one table per record kind. Per-channel records are keyed by the channel id's 16 bytes;
//! ledger entries by the channel id's 16 bytes followed by the (case-sensitive) Graph message id,
//! so a channel's ledger is one prefix scan. Pending authorizations are keyed by their `state`,
//! throttle floors by an opaque string. Every value is a versioned record; secret fields are sealed
//! with XChaCha20-Poly1305 under the master key, bound to their record and field.
//!
//! The master key is checked before the engine is opened for writing: `<store>/keycheck` holds the
//! sealed marker (also kept in the engine's system table). A wrong key changes no byte of the store.
//! A store from before that file is checked through the engine and then gains the file.
//!
//! Files are owner-only: the directory is created 0700, and after the engine opens every file under
//! it is made 0600 and every directory 0700 ([`restrict_umask`] covers files created later).
//!
//! Durability: [`Store::put_tokens`] and [`Store::put_floor`] flush before they return. Every other
//! write reaches disk on the next background flush (`flush_every_ms`) or on an explicit
//! [`Store::flush`] / [`Store::flush_async`]; ledger writes are cheap for that reason.
//!
//! The engine-agnostic test suite is `tests/store.rs`: it uses only this public API and runs every
//! test against both engines.

mod crypto;
mod engine;
mod error;
mod memory;
mod permissions;
mod persisted;
mod records;
mod sled_engine;

use std::io::Write as _;
use std::ops::ControlFlow;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::domain::ChannelId;
use crate::domain::secret::MasterKey;

pub use error::{StoreError, StoreErrorKind};
pub use permissions::restrict_umask;
pub use records::{
    ChannelRecord, ChannelState, Cursor, ErrorSource, FirstImport, LastError, LedgerEntry,
    LedgerState, PendingAuthorization, PendingLookup, TokenSet,
};

use crypto::{Crypto, OpenError};
use engine::{Engine, Op, Scan, Table};

/// How long the tombstone of a used `state` is kept after the state's expiry, so that a replayed
/// callback is answered "already used" rather than "unknown".
pub const USED_PENDING_RETENTION: chrono::Duration = chrono::Duration::hours(1);

/// The longest throttle floor key, in bytes.
pub const MAX_FLOOR_KEY_BYTES: usize = 512;

/// System table keys. Part of the on-disk format.
const KEY_CHECK: &[u8] = b"key_check";
const STORE_FORMAT: &[u8] = b"format";
/// Written and flushed by [`Store::recover`] to see whether the engine takes writes.
const PROBE_KEY: &[u8] = b"inboxd_write_probe";
const KEY_CHECK_RECORD: &str = "system/key_check";
const KEY_CHECK_MARKER: &str = "inboxd store key check v1";
/// The key check file, beside the engine's files, read before the engine is opened.
const KEY_CHECK_FILE: &str = "keycheck";
const KEY_CHECK_TEMP: &str = "keycheck.tmp";

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

/// Which per-channel record a raw access names. Only for the test suite's tamper checks (feature
/// `test-hooks`, never in the product binary).
#[cfg(feature = "test-hooks")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawKind {
    /// The channel record.
    Channel,
    /// The token set.
    Tokens,
    /// The cursor.
    Cursor,
}

/// The store. Cheap to clone; every clone shares one open engine.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

/// Opens the engine again (for [`Store::recover`]), with the store's system records checked.
type Opener = Box<dyn Fn(&Crypto) -> Result<Arc<dyn Engine>, StoreError> + Send + Sync>;

/// What every clone shares: the open engine (swapped when it is reopened) and what reopening needs.
struct Shared {
    /// The open engine; `None` only while [`Store::recover`] reopens it.
    current: parking_lot::RwLock<Option<Arc<dyn Engine>>>,
    /// Set when an engine call failed with an I/O error: sled then refuses every later call
    /// until it is opened again, whatever the disk does meanwhile.
    broken: AtomicBool,
    /// One recovery at a time.
    recovering: parking_lot::Mutex<()>,
    /// Run after every recovery, before the store counts as working again.
    reopen_hooks: parking_lot::Mutex<Vec<ReopenHook>>,
    crypto: Crypto,
    opener: Opener,
    path: String,
}

/// Work that must follow a recovery: the writes not flushed before the error are gone, and whoever
/// wrote outside the store on their strength (the JSONL sink) writes them again. An error keeps the
/// store failed; the next recovery runs every hook again, so hooks must be idempotent.
pub type ReopenHook = Box<dyn Fn(&Store) -> Result<(), String> + Send + Sync>;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

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

/// Refuses a path that exists but cannot be a store, before anything is created in it.
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
            if names.is_empty() || sled_engine::holds_engine_files(&names) {
                Ok(())
            } else {
                Err(not_a_store(
                    "the directory holds other files and no store (no `db` and `conf` files)",
                ))
            }
        }
    }
}

/// Opens a sealed key check marker: `Ok(())` for this key, [`StoreError::WrongMasterKey`] for
/// another, `Corrupt` (naming `what` and `remedy`) for anything else.
fn verify_marker(
    crypto: &Crypto,
    sealed: &str,
    what: &str,
    remedy: &str,
) -> Result<(), StoreError> {
    match crypto.open(KEY_CHECK_RECORD, "marker", sealed) {
        Ok(marker) if marker.as_str() == KEY_CHECK_MARKER => Ok(()),
        Err(OpenError::Authentication) => Err(StoreError::WrongMasterKey),
        Ok(_) => Err(StoreError::corrupt(
            what,
            format!("it holds an unexpected marker{remedy}"),
        )),
        Err(err) => Err(StoreError::corrupt(
            what,
            format!("{}{remedy}", err.describe()),
        )),
    }
}

/// Checks the key check file of the store in `dir`, without opening the engine. `Ok(false)` when
/// there is no such file (a new store, or one written before the file existed).
fn verify_key_check_file(dir: &Path, crypto: &Crypto) -> Result<bool, StoreError> {
    let file = dir.join(KEY_CHECK_FILE);
    let what = format!("the key check file {}", file.display());
    let remedy = format!(
        "; if the master key is right, remove {} and inboxd writes it again from the store's own key check",
        file.display()
    );
    let bytes = match std::fs::read(&file) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(StoreError::from_io(err)),
    };
    let sealed = persisted::decode_key_check_file(&what, &bytes).map_err(|err| match err {
        StoreError::Corrupt { what, why } => StoreError::Corrupt {
            what,
            why: format!("{why}{remedy}"),
        },
        other => other,
    })?;
    verify_marker(crypto, &sealed, &what, &remedy)?;
    Ok(true)
}

/// Writes the key check file atomically: a temporary file, fsynced, renamed over the file, and the
/// directory fsynced. Mode 0600.
fn write_key_check_file(dir: &Path, crypto: &Crypto) -> Result<(), StoreError> {
    let sealed = crypto
        .seal(KEY_CHECK_RECORD, "marker", KEY_CHECK_MARKER)
        .map_err(|_| StoreError::Engine("could not encrypt the key check".into()))?;
    let bytes = persisted::encode_key_check_file(&sealed)?;
    let temp = dir.join(KEY_CHECK_TEMP);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(permissions::FILE_MODE)
        .open(&temp)
        .map_err(StoreError::from_io)?;
    file.write_all(&bytes).map_err(StoreError::from_io)?;
    file.sync_all().map_err(StoreError::from_io)?;
    drop(file);
    std::fs::rename(&temp, dir.join(KEY_CHECK_FILE)).map_err(StoreError::from_io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::from_io)
}

/// Checks the store's system records in a freshly opened engine (format version, key check), and
/// writes them (flushed) into a new one.
fn init_system(engine: &dyn Engine, crypto: &Crypto) -> Result<(), StoreError> {
    if let Some(raw) = engine.get(Table::System, STORE_FORMAT)? {
        let found = raw
            .as_slice()
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
    match engine.get(Table::System, KEY_CHECK)? {
        Some(sealed) => {
            let sealed = std::str::from_utf8(&sealed)
                .map_err(|_| StoreError::corrupt("the store's key check", "it is not text"))?;
            verify_marker(crypto, sealed, "the store's key check", "")
        }
        None => {
            let sealed = crypto
                .seal(KEY_CHECK_RECORD, "marker", KEY_CHECK_MARKER)
                .map_err(|_| StoreError::Engine("could not encrypt the key check".into()))?;
            engine.apply(&[
                Op::Insert {
                    table: Table::System,
                    key: STORE_FORMAT.to_vec(),
                    value: persisted::FORMAT_VERSION.to_be_bytes().to_vec(),
                },
                Op::Insert {
                    table: Table::System,
                    key: KEY_CHECK.to_vec(),
                    value: sealed.into_bytes(),
                },
            ])?;
            engine.flush()
        }
    }
}

/// Whether the engine takes a durable write.
fn probe(engine: &dyn Engine) -> Result<(), StoreError> {
    engine.insert(
        Table::System,
        PROBE_KEY,
        &Utc::now().timestamp_millis().to_be_bytes(),
    )?;
    engine.flush()
}

impl Store {
    /// Opens the store at `path` (the sled engine), creating it if the path does not exist or is an
    /// empty directory. The master key is checked before the engine is opened: a wrong key changes
    /// nothing in the directory.
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
        let has_key_check_file = verify_key_check_file(path, &crypto)?;
        permissions::create_private_dir(path).map_err(StoreError::from_io)?;

        let dir: PathBuf = path.to_path_buf();
        let opener_shown = shown.clone();
        let opener: Opener = Box::new(move |crypto: &Crypto| {
            let engine = sled_engine::SledEngine::open(&dir, &opener_shown, &options)?;
            init_system(&engine, crypto)?;
            Ok(Arc::new(engine) as Arc<dyn Engine>)
        });
        let engine = opener(&crypto)?;
        if !has_key_check_file {
            // A new store, or one from before the file: the engine's check passed, so the key is
            // right; from now on the file checks it before the engine opens.
            write_key_check_file(path, &crypto)?;
        }
        permissions::restrict_tree(path).map_err(StoreError::from_io)?;
        Ok(Store::assemble(engine, opener, crypto, shown))
    }

    /// A store held in memory only (the memory engine): nothing survives the process. For tests of
    /// other modules, and any use that needs the store's behaviour without its files.
    pub fn in_memory(key: MasterKey) -> Result<Store, StoreError> {
        let crypto = Crypto::new(&key);
        drop(key);
        let engine: Arc<dyn Engine> = Arc::new(memory::MemoryEngine::new());
        init_system(engine.as_ref(), &crypto)?;
        // "Reopening" a memory store keeps its data: it never fails with an I/O error anyway.
        let kept = engine.clone();
        let opener: Opener = Box::new(move |_: &Crypto| Ok(kept.clone()));
        Ok(Store::assemble(
            engine,
            opener,
            crypto,
            "(in memory)".to_owned(),
        ))
    }

    fn assemble(engine: Arc<dyn Engine>, opener: Opener, crypto: Crypto, path: String) -> Store {
        Store {
            shared: Arc::new(Shared {
                current: parking_lot::RwLock::new(Some(engine)),
                broken: AtomicBool::new(false),
                recovering: parking_lot::Mutex::new(()),
                reopen_hooks: parking_lot::Mutex::new(Vec::new()),
                crypto,
                opener,
                path,
            }),
        }
    }

    /// The directory the store lives in (`(in memory)` for [`Store::in_memory`]).
    pub fn path(&self) -> &str {
        &self.shared.path
    }

    /// The open engine, or a transient error while it is being reopened.
    fn engine(&self) -> Result<Arc<dyn Engine>, StoreError> {
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

    /// Runs one engine call, marking the store broken on an I/O error: sled keeps failing after
    /// one until it is opened again, so [`Store::recover`] must look at it.
    fn with<T>(
        &self,
        call: impl FnOnce(&dyn Engine) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let engine = self.engine()?;
        let result = call(engine.as_ref());
        if let Err(err) = &result
            && matches!(
                err.kind(),
                StoreErrorKind::DiskFull | StoreErrorKind::ReadOnly | StoreErrorKind::Transient
            )
        {
            self.shared.broken.store(true, Ordering::SeqCst);
        }
        result
    }

    /// Visits the entries of a scan with a fallible visitor; the first error ends the scan.
    fn scan(
        &self,
        table: Table,
        scan: Scan<'_>,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<ControlFlow<()>, StoreError>,
    ) -> Result<(), StoreError> {
        let mut failed = None;
        self.with(|engine| {
            engine.scan(table, scan, &mut |key, value| match visit(key, value) {
                Ok(flow) => flow,
                Err(err) => {
                    failed = Some(err);
                    ControlFlow::Break(())
                }
            })
        })?;
        failed.map_or(Ok(()), Err)
    }

    /// How many entries a scan visits.
    fn count(&self, table: Table, scan: Scan<'_>) -> Result<usize, StoreError> {
        let mut count = 0;
        self.scan(table, scan, |_, _| {
            count += 1;
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(count)
    }

    // -----------------------------------------------------------------------------------------
    // Channels

    /// Inserts or replaces a channel.
    pub fn put_channel(&self, channel: &ChannelRecord) -> Result<(), StoreError> {
        let bytes = persisted::encode_channel(&self.shared.crypto, channel)?;
        self.with(|e| e.insert(Table::Channels, channel.id.as_bytes(), &bytes))
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
            let Some(current) = self.with(|e| e.get(Table::Channels, id.as_bytes()))? else {
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
            let swapped = self.with(|e| {
                e.compare_and_swap(Table::Channels, id.as_bytes(), Some(&current), Some(&bytes))
            })?;
            if swapped {
                return Ok(());
            }
        }
    }

    /// The channel with this id, if any.
    pub fn get_channel(&self, id: ChannelId) -> Result<Option<ChannelRecord>, StoreError> {
        let raw = self.with(|e| e.get(Table::Channels, id.as_bytes()))?;
        raw.map(|bytes| persisted::decode_channel(&self.shared.crypto, id, &bytes))
            .transpose()
    }

    fn decode_channel_entry(&self, key: &[u8], value: &[u8]) -> Result<ChannelRecord, StoreError> {
        let id = channel_id_from_key("a channel record", key)?;
        persisted::decode_channel(&self.shared.crypto, id, value)
    }

    /// Every channel, sorted by id.
    pub fn list_channels(&self) -> Result<Vec<ChannelRecord>, StoreError> {
        let mut out = Vec::new();
        self.scan(Table::Channels, Scan::All, |key, value| {
            out.push(self.decode_channel_entry(key, value)?);
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(out)
    }

    /// Up to `limit` channels with ids after `after` (from the first if `None`), sorted by id.
    pub fn list_channels_page(
        &self,
        after: Option<ChannelId>,
        limit: usize,
    ) -> Result<Vec<ChannelRecord>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let after_bytes = after.map(|id| *id.as_bytes());
        let scan = match &after_bytes {
            Some(bytes) => Scan::After(bytes),
            None => Scan::All,
        };
        self.scan(Table::Channels, scan, |key, value| {
            out.push(self.decode_channel_entry(key, value)?);
            Ok(if out.len() >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        })?;
        Ok(out)
    }

    /// How many channels there are.
    pub fn count_channels(&self) -> Result<usize, StoreError> {
        self.count(Table::Channels, Scan::All)
    }

    /// Removes a channel with its tokens, cursor, ledger and pending authorizations, in one
    /// atomic batch. Returns whether the channel existed. Stop the channel's actor first: entries
    /// it writes afterwards would outlive the channel.
    pub fn delete_channel(&self, id: ChannelId) -> Result<bool, StoreError> {
        let key = id.as_bytes().to_vec();
        let existed = self.with(|e| e.get(Table::Channels, &key))?.is_some();
        let mut ops = Vec::new();
        for table in [Table::Channels, Table::Tokens, Table::Cursors] {
            ops.push(Op::Remove {
                table,
                key: key.clone(),
            });
        }
        self.scan(Table::Ledger, Scan::Prefix(&key), |k, _| {
            ops.push(Op::Remove {
                table: Table::Ledger,
                key: k.to_vec(),
            });
            Ok(ControlFlow::Continue(()))
        })?;
        self.scan(Table::Pending, Scan::All, |k, value| {
            let state = String::from_utf8_lossy(k);
            // A pending record that no longer decodes cannot be told apart; leave it to prune.
            if persisted::decode_pending_raw(&state, value).is_ok_and(|p| p.is_for(id)) {
                ops.push(Op::Remove {
                    table: Table::Pending,
                    key: k.to_vec(),
                });
            }
            Ok(ControlFlow::Continue(()))
        })?;
        self.with(|e| e.apply(&ops))?;
        Ok(existed)
    }

    // -----------------------------------------------------------------------------------------
    // Tokens

    /// Stores a channel's token set and flushes before returning: a rotated refresh token survives
    /// a crash right after this call.
    pub fn put_tokens(&self, id: ChannelId, tokens: &TokenSet) -> Result<(), StoreError> {
        let bytes = persisted::encode_tokens(&self.shared.crypto, id, tokens)?;
        self.with(|e| e.insert(Table::Tokens, id.as_bytes(), &bytes))?;
        self.flush()
    }

    /// Stores many token sets (channels imported or provisioned together) and flushes once: durable
    /// when it returns, at the cost of one flush instead of one per channel.
    pub fn put_tokens_many(&self, sets: &[(ChannelId, TokenSet)]) -> Result<(), StoreError> {
        let mut ops = Vec::with_capacity(sets.len());
        for (id, tokens) in sets {
            ops.push(Op::Insert {
                table: Table::Tokens,
                key: id.as_bytes().to_vec(),
                value: persisted::encode_tokens(&self.shared.crypto, *id, tokens)?,
            });
        }
        self.with(|e| e.apply(&ops))?;
        self.flush()
    }

    /// A channel's token set, if any.
    pub fn get_tokens(&self, id: ChannelId) -> Result<Option<TokenSet>, StoreError> {
        let raw = self.with(|e| e.get(Table::Tokens, id.as_bytes()))?;
        raw.map(|bytes| persisted::decode_tokens(&self.shared.crypto, id, &bytes))
            .transpose()
    }

    /// Removes a channel's token set (a revoked grant). Returns whether there was one.
    pub fn delete_tokens(&self, id: ChannelId) -> Result<bool, StoreError> {
        self.with(|e| e.remove(Table::Tokens, id.as_bytes()))
    }

    // -----------------------------------------------------------------------------------------
    // Cursors

    /// Stores a channel's cursor.
    pub fn put_cursor(&self, id: ChannelId, cursor: &Cursor) -> Result<(), StoreError> {
        let bytes = persisted::encode_cursor(id, cursor)?;
        self.with(|e| e.insert(Table::Cursors, id.as_bytes(), &bytes))
    }

    /// A channel's cursor, if any.
    pub fn get_cursor(&self, id: ChannelId) -> Result<Option<Cursor>, StoreError> {
        let raw = self.with(|e| e.get(Table::Cursors, id.as_bytes()))?;
        raw.map(|bytes| persisted::decode_cursor(id, &bytes))
            .transpose()
    }

    // -----------------------------------------------------------------------------------------
    // Ledger

    fn decode_ledger_entry(
        id: ChannelId,
        key: &[u8],
        value: &[u8],
    ) -> Result<(String, LedgerEntry), StoreError> {
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
            value,
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
        let raw = self.with(|e| e.get(Table::Ledger, &key))?;
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
        self.with(|e| e.insert(Table::Ledger, &key, &bytes))
    }

    /// Inserts or replaces many ledger entries of one channel in one atomic batch.
    pub fn ledger_put_many(
        &self,
        id: ChannelId,
        entries: &[(String, LedgerEntry)],
    ) -> Result<(), StoreError> {
        let mut ops = Vec::with_capacity(entries.len());
        for (message_id, entry) in entries {
            ops.push(Op::Insert {
                table: Table::Ledger,
                key: ledger_key(id, message_id)?,
                value: persisted::encode_ledger(entry)?,
            });
        }
        self.with(|e| e.apply(&ops))
    }

    /// Removes the ledger entry of one message. Returns whether there was one.
    pub fn ledger_delete(&self, id: ChannelId, message_id: &str) -> Result<bool, StoreError> {
        let key = ledger_key(id, message_id)?;
        self.with(|e| e.remove(Table::Ledger, &key))
    }

    /// Up to `limit` ledger entries of a channel, in `state` if given, sorted by message id bytes.
    pub fn ledger_list(
        &self,
        id: ChannelId,
        state: Option<LedgerState>,
        limit: usize,
    ) -> Result<Vec<(String, LedgerEntry)>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.scan(Table::Ledger, Scan::Prefix(id.as_bytes()), |key, value| {
            let (message_id, entry) = Self::decode_ledger_entry(id, key, value)?;
            if state.is_none_or(|s| s == entry.state) {
                out.push((message_id, entry));
            }
            Ok(if out.len() >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        })?;
        Ok(out)
    }

    /// How many ledger entries a channel has.
    pub fn ledger_count(&self, id: ChannelId) -> Result<usize, StoreError> {
        self.count(Table::Ledger, Scan::Prefix(id.as_bytes()))
    }

    /// Removes `MarkedRead` entries (of every channel) last updated before `older_than`. Entries
    /// in any other state are kept whatever their age. Returns how many were removed.
    pub fn ledger_prune(&self, older_than: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut ops = Vec::new();
        self.scan(Table::Ledger, Scan::All, |key, value| {
            match persisted::decode_ledger(&|| "a ledger entry".to_owned(), value) {
                Ok(entry) => {
                    if entry.state == LedgerState::MarkedRead && entry.updated_at < older_than {
                        ops.push(Op::Remove {
                            table: Table::Ledger,
                            key: key.to_vec(),
                        });
                    }
                }
                Err(err) => {
                    // Kept for an operator to look at; pruning carries on with the rest.
                    tracing::warn!(error = %err, "ledger prune skipped an entry it cannot read");
                }
            }
            Ok(ControlFlow::Continue(()))
        })?;
        self.with(|e| e.apply(&ops))?;
        Ok(ops.len())
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

    // -----------------------------------------------------------------------------------------
    // Throttle floors

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

    // -----------------------------------------------------------------------------------------
    // Metadata

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

    // -----------------------------------------------------------------------------------------
    // Durability and size

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
        let healthy = self
            .engine()
            .is_ok_and(|engine| probe(engine.as_ref()).is_ok());
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
        let engine = loop {
            match (self.shared.opener)(&self.shared.crypto) {
                Ok(engine) => break engine,
                Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(err) => return Err(err),
            }
        };
        let probed = probe(engine.as_ref());
        *self.shared.current.write() = Some(engine);
        probed
    }

    // -----------------------------------------------------------------------------------------
    // Raw access, for the test suite's tamper checks only (feature `test-hooks`).

    #[cfg(feature = "test-hooks")]
    fn raw_table(kind: RawKind) -> Table {
        match kind {
            RawKind::Channel => Table::Channels,
            RawKind::Tokens => Table::Tokens,
            RawKind::Cursor => Table::Cursors,
        }
    }

    /// The stored bytes of a per-channel record. For tests that tamper with the store.
    #[cfg(feature = "test-hooks")]
    pub fn raw_get(&self, kind: RawKind, id: ChannelId) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(|e| e.get(Self::raw_table(kind), id.as_bytes()))
    }

    /// Overwrites the stored bytes of a per-channel record. For tests that tamper with the store.
    #[cfg(feature = "test-hooks")]
    pub fn raw_put(&self, kind: RawKind, id: ChannelId, bytes: &[u8]) -> Result<(), StoreError> {
        self.with(|e| e.insert(Self::raw_table(kind), id.as_bytes(), bytes))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A memory engine that behaves like sled on a full disk: while `full` is set writes fail, and
    /// after one failure this instance fails every call until it is replaced (reopened).
    struct Faulty {
        inner: Arc<memory::MemoryEngine>,
        full: Arc<AtomicBool>,
        failed: AtomicBool,
    }

    impl Faulty {
        fn check(&self, write: bool) -> Result<(), StoreError> {
            if self.failed.load(Ordering::SeqCst) || (write && self.full.load(Ordering::SeqCst)) {
                self.failed.store(true, Ordering::SeqCst);
                return Err(StoreError::from_io(std::io::Error::from_raw_os_error(
                    libc::ENOSPC,
                )));
            }
            Ok(())
        }
    }

    impl Engine for Faulty {
        fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.check(false)?;
            self.inner.get(table, key)
        }
        fn insert(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
            self.check(true)?;
            self.inner.insert(table, key, value)
        }
        fn remove(&self, table: Table, key: &[u8]) -> Result<bool, StoreError> {
            self.check(true)?;
            self.inner.remove(table, key)
        }
        fn compare_and_swap(
            &self,
            table: Table,
            key: &[u8],
            expected: Option<&[u8]>,
            new: Option<&[u8]>,
        ) -> Result<bool, StoreError> {
            self.check(true)?;
            self.inner.compare_and_swap(table, key, expected, new)
        }
        fn scan(
            &self,
            table: Table,
            scan: Scan<'_>,
            visit: &mut engine::Visitor<'_>,
        ) -> Result<(), StoreError> {
            self.check(false)?;
            self.inner.scan(table, scan, visit)
        }
        fn apply(&self, ops: &[Op]) -> Result<(), StoreError> {
            self.check(true)?;
            self.inner.apply(ops)
        }
        fn flush(&self) -> Result<(), StoreError> {
            self.check(true)?;
            self.inner.flush()
        }
        fn size_on_disk(&self) -> Result<u64, StoreError> {
            self.inner.size_on_disk()
        }
    }

    #[test]
    fn an_engine_that_failed_is_reopened_once_it_takes_writes_and_the_hooks_run() {
        let data = Arc::new(memory::MemoryEngine::new());
        let full = Arc::new(AtomicBool::new(false));
        let opens = Arc::new(AtomicUsize::new(0));
        let make = {
            let (data, full, opens) = (data.clone(), full.clone(), opens.clone());
            move || {
                opens.fetch_add(1, Ordering::SeqCst);
                Arc::new(Faulty {
                    inner: data.clone(),
                    full: full.clone(),
                    failed: AtomicBool::new(false),
                })
            }
        };
        let crypto = Crypto::new(&MasterKey::generate());
        let first = make();
        init_system(first.as_ref(), &crypto).unwrap();
        let opener: Opener = Box::new(move |crypto: &Crypto| {
            let engine = make();
            init_system(engine.as_ref(), crypto)?;
            Ok(engine as Arc<dyn Engine>)
        });
        let store = Store::assemble(first, opener, crypto, "faulty".to_owned());
        let hooks = Arc::new(AtomicUsize::new(0));
        let counted = hooks.clone();
        store.on_reopen(Box::new(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }));
        assert!(
            !store.recover().unwrap(),
            "a healthy store needs no recovery"
        );

        store.put_meta("before", b"1").unwrap();
        full.store(true, Ordering::SeqCst);
        let err = store.put_meta("during", b"2").unwrap_err();
        assert!(err.is_disk_full(), "{err}");
        assert!(store.is_broken());
        // Reads fail too, as sled's do, until the engine is reopened.
        assert!(store.get_meta("before").is_err());
        // While the disk is full, recovery fails and the store stays broken.
        assert!(store.recover().unwrap_err().is_disk_full());
        assert!(store.is_broken());
        assert_eq!(hooks.load(Ordering::SeqCst), 0);

        full.store(false, Ordering::SeqCst);
        assert!(store.recover().unwrap());
        assert!(!store.is_broken());
        assert_eq!(hooks.load(Ordering::SeqCst), 1);
        assert!(
            opens.load(Ordering::SeqCst) >= 3,
            "the engine was not reopened"
        );
        assert_eq!(store.get_meta("before").unwrap(), Some(b"1".to_vec()));
        store.put_meta("after", b"3").unwrap();
        assert!(!store.recover().unwrap());
    }

    #[test]
    fn a_failing_hook_keeps_the_store_broken_and_runs_again_next_time() {
        let store = Store::in_memory(MasterKey::generate()).unwrap();
        let fail = Arc::new(AtomicBool::new(true));
        let flag = fail.clone();
        store.on_reopen(Box::new(move |_| {
            if flag.load(Ordering::SeqCst) {
                Err("the sink is not ready".to_owned())
            } else {
                Ok(())
            }
        }));
        store.shared.broken.store(true, Ordering::SeqCst);
        let err = store.recover().unwrap_err();
        assert!(err.to_string().contains("the sink is not ready"), "{err}");
        assert!(store.is_broken());
        fail.store(false, Ordering::SeqCst);
        assert!(store.recover().unwrap());
        assert!(!store.is_broken());
    }
}
