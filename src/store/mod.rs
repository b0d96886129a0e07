//! The durable store: channels, token sets, cursors, the per-message ledger, pending authorizations,
//! throttle floors and a small metadata map, behind one API ([`Store`]) whatever the engine.
//!
//! Layers: [`Store`] encodes, versions (`persisted.rs`) and seals (`crypto.rs`) records, checks the
//! master key and recovers after I/O errors; below it, a bytes-level [`engine::Engine`] holds named
//! tables. Engines: sled (`sled_engine.rs`, the only file that imports sled; [`Store::open`]),
//! memory (`memory.rs`; [`Store::in_memory`], for tests) and PostgreSQL for cluster mode
//! (`postgres/`, the only place that imports `postgres`; [`Store::open_postgres`]), which runs each
//! [`engine::Engine::apply`] as one transaction and also offers the cluster's [`Coordination`].
//!
//! Fencing (cluster mode): once [`Store::set_fencer`] gave the store a [`Fencer`], the run-time
//! writes of a channel (`update_channel_state`, `put_cursor`, `put_tokens`, `ledger_put`,
//! `ledger_put_many`, `ledger_put_many_with_mail`) carry the lease of the channel's shard and
//! commit only while it is this node's; otherwise they fail with [`StoreError::Fenced`]. Admin
//! writes (channels added, changed or removed, grants, cursor resets, pruning) stay unfenced.
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
//! Files: this one holds [`Store`], its opening and the engine plumbing every operation goes
//! through; `keycheck.rs` the key check and system records; `channels.rs`, `tokens.rs`,
//! `cursors.rs`, `ledger.rs`, `pending.rs`, `floors.rs` and `meta.rs` one record kind each;
//! `durability.rs` flushing and size; `recovery.rs` the recovery after I/O errors; `fencing.rs` the
//! fencer; `transfer.rs` export and import (moving a store to another engine). The records
//! themselves are `records.rs`, their encoding `persisted.rs`.
//!
//! The engine-agnostic test suite is `tests/store.rs`: it uses only this public API and runs every
//! test against both engines.

mod apps;
mod channels;
pub mod cluster;
mod crypto;
mod cursors;
mod durability;
mod engine;
mod error;
mod events;
mod fencing;
mod floors;
mod invitations;
mod keycheck;
mod ledger;
mod memory;
mod meta;
mod pending;
mod permissions;
mod persisted;
mod postgres;
mod records;
mod recovery;
mod sled_engine;
mod tokens;
mod transfer;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(feature = "test-hooks")]
use crate::domain::ChannelId;
use crate::domain::secret::MasterKey;

pub use cluster::{Coordination, Fencer};
pub use error::{StoreError, StoreErrorKind};
pub use events::ChannelEvent;
pub use floors::MAX_FLOOR_KEY_BYTES;
pub use invitations::{Invitation, InvitationLookup, invitation_id};
pub use ledger::LedgerBatch;
pub use pending::USED_PENDING_RETENTION;
pub use permissions::restrict_umask;
pub use postgres::MigrationReport;
pub use records::{
    AppKey, AppRecord, AppSummary, ChannelRecord, ChannelState, Cursor, ErrorSource, FirstImport,
    ImapCursor, LastError, LedgerEntry, LedgerState, PendingAuthorization, PendingLookup, TokenSet,
};
pub use recovery::ReopenHook;
pub use transfer::ExportCounts;

use crypto::Crypto;
use engine::{Engine, Scan, Table};
use keycheck::{AppIndex, init_system, verify_key_check_file, write_key_check_file};

/// Tuning of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// The engine's page cache, in bytes (sled's default of 1 GiB is far too much for us).
    pub cache_capacity_bytes: u64,
    /// How often buffered writes are flushed in the background; `None` flushes only on demand.
    pub flush_every_ms: Option<u64>,
    /// Whether opening moves the client secrets of channel records written before apps into
    /// their apps (one scan of every channel record). The daemon turns it off and reads its
    /// channels with [`Store::load_channels`], which does the same in the scan it makes anyway.
    pub adopt_legacy_secrets_at_open: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_capacity_bytes: 64 * 1024 * 1024,
            flush_every_ms: Some(500),
            adopt_legacy_secrets_at_open: true,
        }
    }
}

/// How a PostgreSQL store is opened ([`Store::open_postgres`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// Connections (and worker threads) of the store's pool.
    pub pool: usize,
    /// This node's id: the owner its leases and fenced writes name. Unique per process start
    /// (`<node_name>-<8 random hex>`).
    pub node_id: String,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            pool: 8,
            node_id: format!("inboxd-{}", random_suffix()),
        }
    }
}

/// Eight random hex digits: what makes a node id unique per process start.
pub fn random_suffix() -> String {
    let bytes: [u8; 4] = rand::random();
    hex::encode(bytes)
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
    /// What broke it (kind and text of the I/O error), for callers that report the store's state.
    broken_by: parking_lot::Mutex<Option<(StoreErrorKind, String)>>,
    /// One recovery at a time.
    recovering: parking_lot::Mutex<()>,
    /// Run after every recovery, before the store counts as working again.
    reopen_hooks: parking_lot::Mutex<Vec<ReopenHook>>,
    /// The cluster coordination (PostgreSQL only).
    coordination: Option<Arc<dyn Coordination>>,
    /// Answers the fence of a channel's run-time write (cluster mode); `None`: writes unfenced.
    fencer: parking_lot::RwLock<Option<Fencer>>,
    crypto: Crypto,
    opener: Opener,
    path: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
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
        let adopt_at_open = options.adopt_legacy_secrets_at_open;
        let opener: Opener = Box::new(move |crypto: &Crypto| {
            let engine = sled_engine::SledEngine::open(&dir, &opener_shown, &options)?;
            init_system(&engine, crypto, AppIndex::Scan)?;
            Ok(Arc::new(engine) as Arc<dyn Engine>)
        });
        let engine = opener(&crypto)?;
        if !has_key_check_file {
            // A new store, or one from before the file: the engine's check passed, so the key is
            // right; from now on the file checks it before the engine opens.
            write_key_check_file(path, &crypto)?;
        }
        permissions::restrict_tree(path).map_err(StoreError::from_io)?;
        let store = Store::assemble(engine, opener, crypto, shown, None);
        if adopt_at_open {
            store.adopt_legacy_secrets()?;
        }
        Ok(store)
    }

    /// Opens the store in the PostgreSQL database at `url` (cluster mode): applies the schema's
    /// pending migrations, then checks the master key against the store's system records exactly
    /// as [`Store::open`] does (a new database gets them; a wrong key writes nothing and fails with
    /// [`StoreErrorKind::WrongKey`]). Blocking; callable from any thread, a Tokio runtime's
    /// included: the connections live on the store's own worker threads (`options.pool`).
    pub fn open_postgres(
        url: &str,
        key: MasterKey,
        options: PgOptions,
    ) -> Result<Store, StoreError> {
        if options.node_id.trim().is_empty() {
            return Err(StoreError::InvalidInput(
                "a PostgreSQL store needs a node id (PgOptions::node_id)".to_owned(),
            ));
        }
        let crypto = Crypto::new(&key);
        drop(key);
        let target = Arc::new(postgres::Target::parse(url)?);
        let shown = format!("postgres {}", target.shown());
        let pool = Arc::new(postgres::Pool::start(target, options.pool)?);
        postgres::migrate(&pool)?;
        let engine: Arc<dyn Engine> =
            Arc::new(postgres::PgEngine::new(pool.clone(), &options.node_id));
        init_system(engine.as_ref(), &crypto, AppIndex::Migrated)?;
        // "Reopening" keeps the engine: its workers connect again on their own after a loss.
        let kept = engine.clone();
        let opener: Opener = Box::new(move |_: &Crypto| Ok(kept.clone()));
        let coordination: Arc<dyn Coordination> = Arc::new(
            postgres::coordination::PgCoordination::new(pool, &options.node_id),
        );
        let store = Store::assemble(engine, opener, crypto, shown, Some(coordination));
        store.adopt_legacy_secrets()?;
        Ok(store)
    }

    /// Applies the schema's pending migrations to the PostgreSQL database at `url` and says which
    /// it applied (none when the schema is current). Blocking; callable from any thread.
    pub fn migrate_postgres(url: &str) -> Result<MigrationReport, StoreError> {
        let target = Arc::new(postgres::Target::parse(url)?);
        let pool = postgres::Pool::start(target, 1)?;
        postgres::migrate(&pool)
    }

    /// The cluster coordination of this store: `Some` for PostgreSQL, `None` for sled and memory.
    pub fn coordination(&self) -> Option<Arc<dyn Coordination>> {
        self.shared.coordination.clone()
    }

    /// A store held in memory only (the memory engine): nothing survives the process. For tests of
    /// other modules, and any use that needs the store's behaviour without its files.
    pub fn in_memory(key: MasterKey) -> Result<Store, StoreError> {
        let crypto = Crypto::new(&key);
        drop(key);
        let engine: Arc<dyn Engine> = Arc::new(memory::MemoryEngine::new());
        init_system(engine.as_ref(), &crypto, AppIndex::Scan)?;
        // "Reopening" a memory store keeps its data: it never fails with an I/O error anyway.
        let kept = engine.clone();
        let opener: Opener = Box::new(move |_: &Crypto| Ok(kept.clone()));
        Ok(Store::assemble(
            engine,
            opener,
            crypto,
            "(in memory)".to_owned(),
            None,
        ))
    }

    fn assemble(
        engine: Arc<dyn Engine>,
        opener: Opener,
        crypto: Crypto,
        path: String,
        coordination: Option<Arc<dyn Coordination>>,
    ) -> Store {
        Store {
            shared: Arc::new(Shared {
                current: parking_lot::RwLock::new(Some(engine)),
                broken: AtomicBool::new(false),
                broken_by: parking_lot::Mutex::new(None),
                recovering: parking_lot::Mutex::new(()),
                reopen_hooks: parking_lot::Mutex::new(Vec::new()),
                coordination,
                fencer: parking_lot::RwLock::new(None),
                crypto,
                opener,
                path,
            }),
        }
    }

    /// The directory the store lives in (`(in memory)` for [`Store::in_memory`], `postgres
    /// host:port/name` for PostgreSQL: never a password).
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
            && !engine.heals_itself()
            && matches!(
                err.kind(),
                StoreErrorKind::DiskFull | StoreErrorKind::ReadOnly | StoreErrorKind::Transient
            )
        {
            *self.shared.broken_by.lock() = Some((err.kind(), err.to_string()));
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
