//! The per-message ledger: entries keyed by the channel id's 16 bytes followed by the Graph message
//! id (one prefix scan per channel); get, put (one, a batch of one channel, or a [`LedgerBatch`]
//! across channels), delete, list, count and prune. Writes are not flushed (cheap);
//! `src/ingest/ledger.rs` is their only caller.

use std::ops::ControlFlow;

use chrono::{DateTime, Utc};

use crate::domain::ChannelId;

use super::engine::{Op, Scan, Table};
use super::{LedgerEntry, LedgerState, Store, StoreError, persisted};

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

/// Keys up to this long are built on the stack for a read.
const STACK_KEY: usize = 256;

/// Ledger writes of any number of channels, encoded as they are added and applied by
/// [`Store::ledger_apply`] in one atomic batch (one per channel in cluster mode, where each
/// channel's writes carry its own lease). An entry equal to one of the last two encoded (a
/// group's delivered entries and their Message-ID aliases alternate) is not encoded again.
#[derive(Debug, Default)]
pub struct LedgerBatch {
    writes: Vec<(ChannelId, Op)>,
    encoded: [Option<(LedgerEntry, Vec<u8>)>; 2],
}

impl LedgerBatch {
    /// An empty batch with room for `n` writes.
    pub fn with_capacity(n: usize) -> Self {
        LedgerBatch {
            writes: Vec::with_capacity(n),
            encoded: [None, None],
        }
    }

    /// Inserts or replaces the entry of `message_id` of channel `id`.
    pub fn put(
        &mut self,
        id: ChannelId,
        message_id: &str,
        entry: &LedgerEntry,
    ) -> Result<(), StoreError> {
        let key = ledger_key(id, message_id)?;
        let cached = self
            .encoded
            .iter()
            .flatten()
            .find(|(known, _)| known == entry)
            .map(|(_, bytes)| bytes.clone());
        let value = match cached {
            Some(bytes) => bytes,
            None => {
                let bytes = persisted::encode_ledger(entry)?;
                self.encoded.swap(0, 1);
                self.encoded[0] = Some((entry.clone(), bytes.clone()));
                bytes
            }
        };
        self.writes.push((
            id,
            Op::Insert {
                table: Table::Ledger,
                key,
                value,
            },
        ));
        Ok(())
    }

    /// How many writes it holds.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// Whether it holds no write.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}

impl Store {
    /// Applies a [`LedgerBatch`]: one atomic batch without a fencer; with one (cluster mode), one
    /// fenced batch per channel, in the order of each channel's first write, stopping at the first
    /// refusal (the channels before it are written).
    pub fn ledger_apply(&self, batch: LedgerBatch) -> Result<(), StoreError> {
        let Some((first, _)) = batch.writes.first() else {
            return Ok(());
        };
        let first = *first;
        let one_channel = batch.writes.iter().all(|(id, _)| *id == first);
        if one_channel || self.shared.fencer.read().is_none() {
            let ops: Vec<Op> = batch.writes.into_iter().map(|(_, op)| op).collect();
            return self.apply_run_time(first, &ops);
        }
        let mut channels: Vec<(ChannelId, Vec<Op>)> = Vec::new();
        for (id, op) in batch.writes {
            match channels.iter_mut().find(|(c, _)| *c == id) {
                Some((_, ops)) => ops.push(op),
                None => channels.push((id, vec![op])),
            }
        }
        for (id, ops) in channels {
            self.apply_run_time(id, &ops)?;
        }
        Ok(())
    }

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

    /// The stored bytes of one message's entry, if any (a key that fits is built on the stack).
    fn ledger_raw(&self, id: ChannelId, message_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if message_id.len() + 16 <= STACK_KEY && !message_id.is_empty() {
            let mut buf = [0u8; STACK_KEY];
            let len = 16 + message_id.len();
            buf[..16].copy_from_slice(id.as_bytes());
            buf[16..len].copy_from_slice(message_id.as_bytes());
            self.with(|e| e.get(Table::Ledger, &buf[..len]))
        } else {
            let key = ledger_key(id, message_id)?;
            self.with(|e| e.get(Table::Ledger, &key))
        }
    }

    /// The ledger entry of one message, if any.
    pub fn ledger_get(
        &self,
        id: ChannelId,
        message_id: &str,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        self.ledger_raw(id, message_id)?
            .map(|bytes| {
                persisted::decode_ledger(
                    &|| format!("ledger entry {message_id:?} of channel {id}"),
                    &bytes,
                )
            })
            .transpose()
    }

    /// Only the state of one message's entry, if it has one: cheaper than
    /// [`ledger_get`](Self::ledger_get) (what a poll's sort reads).
    pub fn ledger_state(
        &self,
        id: ChannelId,
        message_id: &str,
    ) -> Result<Option<LedgerState>, StoreError> {
        self.ledger_raw(id, message_id)?
            .map(|bytes| {
                persisted::decode_ledger_state(
                    &|| format!("ledger entry {message_id:?} of channel {id}"),
                    &bytes,
                )
            })
            .transpose()
    }

    /// One message's entry as a poll's sort reads it: its state and, unless that is
    /// [`LedgerState::MarkedRead`] (done mail seen again, whose state is all a sort needs), the
    /// whole entry, which the writes after the sort start from instead of reading it again.
    pub fn ledger_sighting(
        &self,
        id: ChannelId,
        message_id: &str,
    ) -> Result<Option<(LedgerState, Option<LedgerEntry>)>, StoreError> {
        let Some(bytes) = self.ledger_raw(id, message_id)? else {
            return Ok(None);
        };
        let what = || format!("ledger entry {message_id:?} of channel {id}");
        let state = persisted::decode_ledger_state(&what, &bytes)?;
        let entry = match state {
            LedgerState::MarkedRead => None,
            _ => Some(persisted::decode_ledger(&what, &bytes)?),
        };
        Ok(Some((state, entry)))
    }

    /// Inserts or replaces the ledger entry of one message (not flushed: cheap). Fenced in
    /// cluster mode (see [`Store::set_fencer`]).
    pub fn ledger_put(
        &self,
        id: ChannelId,
        message_id: &str,
        entry: &LedgerEntry,
    ) -> Result<(), StoreError> {
        let key = ledger_key(id, message_id)?;
        let value = persisted::encode_ledger(entry)?;
        self.apply_run_time(
            id,
            &[Op::Insert {
                table: Table::Ledger,
                key,
                value,
            }],
        )
    }

    fn ledger_ops(id: ChannelId, entries: &[(String, LedgerEntry)]) -> Result<Vec<Op>, StoreError> {
        let mut ops = Vec::with_capacity(entries.len());
        for (message_id, entry) in entries {
            ops.push(Op::Insert {
                table: Table::Ledger,
                key: ledger_key(id, message_id)?,
                value: persisted::encode_ledger(entry)?,
            });
        }
        Ok(ops)
    }

    /// Inserts or replaces many ledger entries of one channel in one atomic batch. Fenced in
    /// cluster mode (see [`Store::set_fencer`]).
    pub fn ledger_put_many(
        &self,
        id: ChannelId,
        entries: &[(String, LedgerEntry)],
    ) -> Result<(), StoreError> {
        let ops = Self::ledger_ops(id, entries)?;
        self.apply_run_time(id, &ops)
    }

    /// The exactly-once table sink: inserts or replaces ledger entries of one channel and delivers
    /// `mails` (message id, record as JSON text) into the PostgreSQL `mail` table, all in one
    /// transaction (fenced in cluster mode). A mail already delivered for the channel is left as
    /// it is, so a repeated call changes nothing more. Only a PostgreSQL store has the table: sled
    /// and memory refuse a call with mails ([`StoreErrorKind::InvalidInput`](super::StoreErrorKind)).
    pub fn ledger_put_many_with_mail(
        &self,
        id: ChannelId,
        entries: &[(String, LedgerEntry)],
        mails: &[(String, String)],
    ) -> Result<(), StoreError> {
        let mut ops = Self::ledger_ops(id, entries)?;
        let channel = id.to_string();
        for (message_id, record_json) in mails {
            if message_id.is_empty() {
                return Err(StoreError::InvalidInput(
                    "a mail for the postgres sink needs a non-empty message id".to_owned(),
                ));
            }
            if serde_json::from_str::<serde::de::IgnoredAny>(record_json).is_err() {
                return Err(StoreError::InvalidInput(format!(
                    "the mail record of message {message_id:?} is not JSON text"
                )));
            }
            ops.push(Op::Mail {
                channel: channel.clone(),
                message_id: message_id.clone(),
                record_json: record_json.clone(),
            });
        }
        self.apply_run_time(id, &ops)
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

    /// How many messages of each channel are quarantined: one scan of the whole ledger (at start,
    /// off the start-up path). Channels with none are absent.
    pub fn ledger_quarantine_counts(
        &self,
    ) -> Result<std::collections::HashMap<ChannelId, u32>, StoreError> {
        let mut counts = std::collections::HashMap::new();
        self.scan(Table::Ledger, Scan::All, |key, value| {
            let quarantined = persisted::decode_ledger(&|| "a ledger entry".to_owned(), value)
                .is_ok_and(|entry| entry.state == LedgerState::Quarantined);
            if quarantined
                && let Some(id) = key.get(..16).and_then(|b| <[u8; 16]>::try_from(b).ok())
            {
                *counts.entry(ChannelId::from_bytes(id)).or_insert(0u32) += 1;
            }
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(counts)
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
}
