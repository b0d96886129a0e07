//! Export and import: a store's tables as JSON lines, to move a store from one engine to another
//! (sled to PostgreSQL: export with the sled configuration, import with `store.engine =
//! "postgres"`). Engine-agnostic.
//!
//! One line per entry: `{"table": "channels", "key": "<base64>", "value": "<base64>"}`, tables in a
//! fixed order (channels first), keys sorted. Values are copied as stored: secrets stay sealed under
//! the master key, so the file holds no secret in clear, and both stores must use the same master
//! key. The system table (format marker, key check) is not exported: the target has its own.

use std::io::{BufRead, Write};
use std::ops::ControlFlow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::domain::ChannelId;

use super::engine::{Op, Scan, Table};
use super::{Store, StoreError, persisted};

/// Entries per transaction of an import.
const IMPORT_BATCH: usize = 1000;

/// How many entries of each table an export wrote or an import read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportCounts {
    /// Channel records.
    pub channels: usize,
    /// Token sets.
    pub tokens: usize,
    /// Cursors.
    pub cursors: usize,
    /// Ledger entries.
    pub ledger: usize,
    /// Pending authorizations (and their tombstones).
    pub pending: usize,
    /// Metadata values.
    pub meta: usize,
    /// Throttle floors.
    pub floors: usize,
    /// Channel events.
    pub events: usize,
    /// App registrations.
    pub apps: usize,
}

impl ExportCounts {
    /// Every entry, all tables together.
    pub fn total(&self) -> usize {
        self.channels
            + self.tokens
            + self.cursors
            + self.ledger
            + self.pending
            + self.meta
            + self.floors
            + self.events
            + self.apps
    }

    fn count(&mut self, table: Table) {
        match table {
            Table::Channels => self.channels += 1,
            Table::Tokens => self.tokens += 1,
            Table::Cursors => self.cursors += 1,
            Table::Ledger => self.ledger += 1,
            Table::Pending => self.pending += 1,
            Table::Meta => self.meta += 1,
            Table::Floors => self.floors += 1,
            Table::Events => self.events += 1,
            Table::Apps => self.apps += 1,
            Table::System | Table::AppExpiries => {}
        }
    }
}

impl std::fmt::Display for ExportCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} channels, {} token sets, {} cursors, {} ledger entries, {} pending authorizations, {} metadata values, {} throttle floors, {} channel events, {} apps",
            self.channels,
            self.tokens,
            self.cursors,
            self.ledger,
            self.pending,
            self.meta,
            self.floors,
            self.events,
            self.apps
        )
    }
}

#[derive(Serialize, Deserialize)]
struct Line {
    table: String,
    key: String,
    value: String,
}

/// The tables an export holds, in file order.
/// The sealed tables come first, so an import checks the master key on its first lines (and holds
/// nothing back until then).
fn exported_tables() -> impl Iterator<Item = Table> {
    [Table::Apps, Table::Tokens].into_iter().chain(
        Table::ALL
            .into_iter()
            // The expiry index is derived from the apps: an import rebuilds it.
            .filter(|t| {
                !matches!(
                    t,
                    Table::System | Table::Apps | Table::Tokens | Table::AppExpiries
                )
            }),
    )
}

fn write_failed(err: impl std::fmt::Display) -> StoreError {
    StoreError::InvalidInput(format!(
        "the export could not be written ({err}): check the output file's directory and free space"
    ))
}

impl Store {
    /// Writes every entry of every table but the system table to `out`, as JSON lines (see the
    /// module doc). Secrets stay sealed. The caller creates the file owner-only (mode 0600).
    pub fn export(&self, out: &mut dyn Write) -> Result<ExportCounts, StoreError> {
        let mut counts = ExportCounts::default();
        for table in exported_tables() {
            self.scan(table, Scan::All, |key, value| {
                let line = Line {
                    table: table.name().to_owned(),
                    key: B64.encode(key),
                    value: B64.encode(value),
                };
                serde_json::to_writer(&mut *out, &line).map_err(write_failed)?;
                out.write_all(b"\n").map_err(write_failed)?;
                counts.count(table);
                Ok(ControlFlow::Continue(()))
            })?;
        }
        out.flush().map_err(write_failed)?;
        Ok(counts)
    }

    /// Reads an export (see [`Store::export`]) into this store, which must hold no channel yet,
    /// in transactions of 1000 entries, then flushes. Both stores must use the same master key:
    /// the first channel record is decrypted before anything is written
    /// ([`StoreError::WrongMasterKey`] otherwise).
    pub fn import(&self, input: &mut dyn BufRead) -> Result<ExportCounts, StoreError> {
        let existing = self.count_channels()?;
        if existing > 0 {
            return Err(StoreError::InvalidInput(format!(
                "the target store already holds {existing} channels: import only into an empty store (a new PostgreSQL database, or a new store.path), so that nothing is overwritten or mixed"
            )));
        }
        let mut counts = ExportCounts::default();
        let mut batch: Vec<Op> = Vec::new();
        // Nothing is written before a channel record proved the master key (or the file ended).
        let mut key_checked = false;
        let mut line = String::new();
        let mut number = 0usize;
        loop {
            line.clear();
            let read = input.read_line(&mut line).map_err(|err| {
                StoreError::InvalidInput(format!("the export could not be read: {err}"))
            })?;
            if read == 0 {
                break;
            }
            number += 1;
            if line.trim().is_empty() {
                continue;
            }
            let bad = |why: String| {
                StoreError::InvalidInput(format!(
                    "line {number} of the export is not an entry of an inboxd export ({why}): give the file `inboxd store export` wrote, unchanged"
                ))
            };
            let parsed: Line = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
            let table = exported_tables()
                .find(|t| t.name() == parsed.table)
                .ok_or_else(|| bad(format!("unknown table {:?}", parsed.table)))?;
            let key = B64
                .decode(&parsed.key)
                .map_err(|e| bad(format!("key: {e}")))?;
            let value = B64
                .decode(&parsed.value)
                .map_err(|e| bad(format!("value: {e}")))?;
            if !key_checked {
                key_checked = self.check_sealed(table, &key, &value)?;
            }
            counts.count(table);
            let expiry = match table {
                Table::Apps => super::apps::expiry_entry_of(&key, &value)?,
                _ => None,
            };
            batch.push(Op::Insert { table, key, value });
            batch.extend(expiry);
            if key_checked && batch.len() >= IMPORT_BATCH {
                self.with(|e| e.apply(&batch))?;
                batch.clear();
            }
        }
        // An export with nothing sealed in it (no app, no token) has nothing the key protects.
        for chunk in batch.chunks(IMPORT_BATCH) {
            self.with(|e| e.apply(chunk))?;
        }
        self.flush()?;
        // An export from before apps carries secrets in its channels: move them now.
        self.adopt_legacy_secrets()?;
        Ok(counts)
    }

    /// Decrypts an exported sealed record (an app, a token set, or a channel from before apps)
    /// with this store's key: `true` once one did, `false` for a record with nothing sealed.
    fn check_sealed(&self, table: Table, key: &[u8], value: &[u8]) -> Result<bool, StoreError> {
        let id = || -> Result<ChannelId, StoreError> {
            let bytes: [u8; 16] = key.get(..16).and_then(|b| b.try_into().ok()).ok_or_else(|| {
                StoreError::InvalidInput(
                    "a key of the export is not a channel id: give the file `inboxd store export` wrote, unchanged".to_owned(),
                )
            })?;
            Ok(ChannelId::from_bytes(bytes))
        };
        let crypto = &self.shared.crypto;
        let opened = match table {
            Table::Apps => persisted::decode_app(crypto, value).map(|_| true),
            Table::Tokens => persisted::decode_tokens(crypto, id()?, value).map(|_| true),
            Table::Channels => {
                persisted::legacy_channel_secret(crypto, id()?, value).map(|s| s.is_some())
            }
            _ => Ok(false),
        };
        match opened {
            Ok(checked) => Ok(checked),
            // A record sealed under another key fails its authentication: the keys differ.
            Err(StoreError::Corrupt { .. }) => Err(StoreError::WrongMasterKey),
            Err(other) => Err(other),
        }
    }
}
