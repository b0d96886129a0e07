//! The storage engine seam: a small bytes-level interface ([`Engine`]) over named tables, which
//! every engine implements (sled in `sled_engine.rs`, memory in `memory.rs`, PostgreSQL for cluster
//! mode in `postgres/`). Everything above it (record encoding, versions, sealing, the key
//! check, recovery) is engine-agnostic and lives in `mod.rs`, `persisted.rs` and `crypto.rs`.
//!
//! The contract, which `tests/store.rs` checks for every engine through [`super::Store`]:
//! - keys and values are opaque bytes; a table keeps its keys sorted by bytes (scans run in order);
//! - single-key calls are atomic; [`Engine::apply`] applies all of its operations or none of them,
//!   across tables (a SQL engine runs it as one transaction);
//! - a write is durable once [`Engine::flush`] returned after it;
//! - an I/O error comes back as a `StoreError` of kind `DiskFull`, `ReadOnly` or `Transient`; the
//!   store then counts as broken until [`super::Store::recover`] probes it (and reopens it through the
//!   store's opener if the probe fails). Calls are blocking, like the store's API;
//! - fenced calls ([`Engine::apply_fenced`], [`Engine::compare_and_swap_fenced`]) commit only while
//!   the fence's lease is this node's (PostgreSQL); engines without leases never get a fence and
//!   run them unfenced;
//! - [`Op::Mail`] (the PostgreSQL table sink) is refused by every engine but PostgreSQL.

use std::ops::ControlFlow;

use crate::store::cluster::Fence;
use crate::store::error::StoreError;

/// A named table. The names are part of the on-disk format of every engine: never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Table {
    /// Channel records, keyed by the channel id's 16 bytes.
    Channels,
    /// Token sets, keyed like channels.
    Tokens,
    /// Cursors, keyed like channels.
    Cursors,
    /// The per-message ledger: channel id bytes followed by the Graph message id.
    Ledger,
    /// Pending authorizations, keyed by their `state`.
    Pending,
    /// Small caller-owned metadata values.
    Meta,
    /// Throttle floors (`Retry-After`), keyed by an opaque string.
    Floors,
    /// The store's own records: format version, key check, write probe.
    System,
    /// Each channel's recent events (status changes, failed sign-ins): the channel id's 16 bytes,
    /// then the event's time in nanoseconds (big-endian), so a channel's history is one prefix
    /// scan in time order.
    Events,
    /// App registrations (tenant, client id) with their credential: the app's key text
    /// (`tenant/client`).
    Apps,
    /// The expiring apps' credential kind and expiry, keyed like apps: an index of `Apps` kept in
    /// the same atomic batch as every app write, so the start reads the (few) expiring apps
    /// without scanning every app. Derived: exports leave it out, imports rebuild it.
    AppExpiries,
}

impl Table {
    /// Every table, in a fixed order (`index` is a position in it).
    pub(crate) const ALL: [Table; 11] = [
        Table::Channels,
        Table::Tokens,
        Table::Cursors,
        Table::Ledger,
        Table::Pending,
        Table::Meta,
        Table::Floors,
        Table::System,
        Table::Events,
        Table::Apps,
        Table::AppExpiries,
    ];

    /// The table's name in the engine.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Table::Channels => "channels",
            Table::Tokens => "tokens",
            Table::Cursors => "cursors",
            Table::Ledger => "ledger",
            Table::Pending => "pending",
            Table::Meta => "meta",
            Table::Floors => "floors",
            Table::System => "inboxd_system",
            Table::Events => "events",
            Table::Apps => "apps",
            Table::AppExpiries => "app_expiries",
        }
    }

    /// The table's position in [`Table::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// One write of an atomic [`Engine::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// Insert or replace `key` with `value`.
    Insert {
        /// The table written.
        table: Table,
        /// The key.
        key: Vec<u8>,
        /// The new value.
        value: Vec<u8>,
    },
    /// Remove `key` (nothing if it is absent).
    Remove {
        /// The table written.
        table: Table,
        /// The key.
        key: Vec<u8>,
    },
    /// Deliver a mail into the PostgreSQL sink table `mail`, once per (channel, message id): a
    /// second delivery of the same message changes nothing. PostgreSQL only.
    Mail {
        /// The channel id, as text.
        channel: String,
        /// The Graph message id.
        message_id: String,
        /// The delivered record, JSON text.
        record_json: String,
    },
}

impl Op {
    /// The table an insert or remove writes; `None` for a mail delivery.
    pub(crate) fn table(&self) -> Option<Table> {
        match self {
            Op::Insert { table, .. } | Op::Remove { table, .. } => Some(*table),
            Op::Mail { .. } => None,
        }
    }
}

/// What engines without a mail table answer to [`Op::Mail`].
pub(crate) fn mail_needs_postgres() -> StoreError {
    StoreError::InvalidInput(
        "the postgres sink needs store.engine = \"postgres\" (this store is not in PostgreSQL): set processor.sink to \"jsonl\" or \"webhook\", or move the store to PostgreSQL".to_owned(),
    )
}

/// Which keys a scan visits, in key order.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scan<'a> {
    /// Every key of the table.
    All,
    /// The keys that start with these bytes.
    Prefix(&'a [u8]),
    /// The keys strictly greater than these bytes.
    After(&'a [u8]),
}

impl Scan<'_> {
    /// Whether `key` is in this scan (for engines that filter by hand).
    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        match self {
            Scan::All => true,
            Scan::Prefix(prefix) => key.starts_with(prefix),
            Scan::After(after) => key > *after,
        }
    }
}

/// What a scan's visitor sees of each entry: the key and the value.
pub(crate) type Visitor<'v> = dyn FnMut(&[u8], &[u8]) -> ControlFlow<()> + 'v;

/// A storage engine: named tables of sorted byte keys and byte values.
///
/// A visitor passed to [`Engine::scan`] must not call the engine: an engine may hold a lock while it
/// visits. Collect what is needed and act after the scan.
pub(crate) trait Engine: Send + Sync {
    /// The value of `key`, if any.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Inserts or replaces `key`.
    fn insert(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError>;

    /// Removes `key`; answers whether it was there.
    fn remove(&self, table: Table, key: &[u8]) -> Result<bool, StoreError>;

    /// Sets `key` to `new` (`None` removes it) if its current value is `expected` (`None`: absent).
    /// Answers whether it did.
    fn compare_and_swap(
        &self,
        table: Table,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError>;

    /// Visits the entries of `scan` in key order until the visitor breaks.
    fn scan(&self, table: Table, scan: Scan<'_>, visit: &mut Visitor<'_>)
    -> Result<(), StoreError>;

    /// Applies every operation or none, across tables, in order.
    fn apply(&self, ops: &[Op]) -> Result<(), StoreError>;

    /// [`Engine::apply`], committed only while `fence` is this node's current lease; otherwise
    /// nothing is written and the answer is [`StoreError::Fenced`]. Engines without leases (sled,
    /// memory) are never given a fence and just apply.
    fn apply_fenced(&self, fence: Fence, ops: &[Op]) -> Result<(), StoreError> {
        let _ = fence;
        self.apply(ops)
    }

    /// [`Engine::compare_and_swap`], fenced like [`Engine::apply_fenced`].
    fn compare_and_swap_fenced(
        &self,
        fence: Fence,
        table: Table,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        let _ = fence;
        self.compare_and_swap(table, key, expected, new)
    }

    /// Makes every write before this call durable (blocking).
    fn flush(&self) -> Result<(), StoreError>;

    /// Whether the engine recovers from its I/O errors on its own (a database client reconnects),
    /// so that one failed call must not mark the whole store broken until a reopen. sled needs
    /// the reopen; PostgreSQL does not.
    fn heals_itself(&self) -> bool {
        false
    }

    /// The space the engine takes, in bytes (on disk, or in memory for an in-memory engine).
    fn size_on_disk(&self) -> Result<u64, StoreError>;
}
