//! Channel records: insert, read, list (whole or by page), count, update the run-time state with a
//! compare-and-swap, and delete a channel with everything it owns in one atomic batch.

use std::ops::ControlFlow;
use std::sync::{Mutex, mpsc};

use crate::domain::ChannelId;

use super::engine::{Op, Scan, Table};
use super::{ChannelRecord, ChannelState, Store, StoreError, persisted};

fn channel_id_from_key(what: &str, key: &[u8]) -> Result<ChannelId, StoreError> {
    let bytes: [u8; 16] = key
        .get(..16)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| StoreError::corrupt(what, "its key is shorter than a channel id"))?;
    Ok(ChannelId::from_bytes(bytes))
}

impl Store {
    /// Inserts or replaces a channel.
    pub fn put_channel(&self, channel: &ChannelRecord) -> Result<(), StoreError> {
        let bytes = persisted::encode_channel(channel)?;
        self.with(|e| e.insert(Table::Channels, channel.id.as_bytes(), &bytes))
    }

    /// Updates a channel's run-time state (status, last error, poll times) and nothing else, with a
    /// compare-and-swap so a concurrent configuration change is never overwritten. A channel that
    /// was removed meanwhile stays removed. Fenced in cluster mode (see [`Store::set_fencer`]).
    pub fn update_channel_state(
        &self,
        id: ChannelId,
        state: &ChannelState,
    ) -> Result<(), StoreError> {
        loop {
            let Some(current) = self.with(|e| e.get(Table::Channels, id.as_bytes()))? else {
                return Ok(());
            };
            let mut record = persisted::decode_channel(id, &current)?;
            record.status = state.status;
            record.last_error = state.last_error.clone().map(Box::new);
            if state.last_poll_at.is_some() {
                record.last_poll_at = state.last_poll_at;
            }
            if state.last_success_at.is_some() {
                record.last_success_at = state.last_success_at;
            }
            let bytes = persisted::encode_channel(&record)?;
            let swapped =
                self.compare_and_swap_run_time(id, Table::Channels, Some(&current), Some(&bytes))?;
            if swapped {
                return Ok(());
            }
        }
    }

    /// The channel with this id, if any.
    pub fn get_channel(&self, id: ChannelId) -> Result<Option<ChannelRecord>, StoreError> {
        let raw = self.with(|e| e.get(Table::Channels, id.as_bytes()))?;
        raw.map(|bytes| persisted::decode_channel(id, &bytes))
            .transpose()
    }

    fn decode_channel_entry(&self, key: &[u8], value: &[u8]) -> Result<ChannelRecord, StoreError> {
        let id = channel_id_from_key("a channel record", key)?;
        persisted::decode_channel(id, value)
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

    /// Every channel, sorted by id, as the daemon's start reads them: the scan hands its entries
    /// in chunks to `threads` decoding threads (decoding, not reading, is most of the time: about
    /// 5 µs a record against 2 µs), and a record written before apps has its client secret moved
    /// into its app first ([`StoreOptions::adopt_legacy_secrets_at_open`](super::StoreOptions)
    /// off makes this the one scan of the start). Answers the channels and how many records gave
    /// their secret to an app (their apps were created or kept).
    pub fn load_channels(&self, threads: usize) -> Result<(Vec<ChannelRecord>, usize), StoreError> {
        self.load_channels_with(threads, |record| record)
    }

    /// [`load_channels`](Self::load_channels), each record handed to `then` on the thread that
    /// decoded it, so the caller's own work per record (at the daemon's start: the channel's board
    /// row, its actor's mailbox) is spread over the decoding threads too. `then` must not have
    /// side effects: a store whose records still carry client secrets is read twice (the records
    /// of the first read dropped).
    pub fn load_channels_with<T: Send>(
        &self,
        threads: usize,
        then: impl Fn(ChannelRecord) -> T + Sync,
    ) -> Result<(Vec<T>, usize), StoreError> {
        let (channels, legacy) = self.decode_channels_in_parallel(threads.max(1), &then)?;
        if !legacy {
            return Ok((channels, 0));
        }
        drop(channels);
        let adopted = self.adopt_legacy_secrets()?;
        Ok((
            self.list_channels()?.into_iter().map(then).collect(),
            adopted,
        ))
    }

    /// The scan of [`load_channels_with`](Self::load_channels_with): every record decoded and
    /// handed to `then`, sorted by id, and whether any still carries a client secret (then none
    /// is handed to `then`: the caller reads again).
    fn decode_channels_in_parallel<T: Send>(
        &self,
        threads: usize,
        then: &(impl Fn(ChannelRecord) -> T + Sync),
    ) -> Result<(Vec<T>, bool), StoreError> {
        /// Entries per chunk handed to a decoding thread.
        const CHUNK: usize = 2048;
        type Decoded<T> = (usize, Result<(Vec<T>, bool), StoreError>);
        // Chunks waiting for a thread: at most two per thread, so memory stays bounded.
        let (raw_tx, raw_rx) = mpsc::sync_channel::<(usize, RawChunk)>(threads * 2);
        let raw_rx = Mutex::new(raw_rx);
        let (out_tx, out_rx) = mpsc::channel::<Decoded<T>>();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                let raw_rx = &raw_rx;
                let out_tx = out_tx.clone();
                scope.spawn(move || {
                    loop {
                        let next = match raw_rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok((index, chunk)) = next else { return };
                        let decoded = chunk.decode(self).map(|(records, legacy)| {
                            let done = if legacy {
                                Vec::new()
                            } else {
                                records.into_iter().map(then).collect()
                            };
                            (done, legacy)
                        });
                        if out_tx.send((index, decoded)).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(out_tx);
            let mut chunk = RawChunk::default();
            let mut sent = 0usize;
            let scanned = self.scan(Table::Channels, Scan::All, |key, value| {
                chunk.push(key, value);
                if chunk.len() >= CHUNK {
                    let full = std::mem::take(&mut chunk);
                    raw_tx.send((sent, full)).map_err(|_| {
                        StoreError::Engine("a thread decoding channel records stopped".into())
                    })?;
                    sent += 1;
                }
                Ok(ControlFlow::Continue(()))
            });
            if scanned.is_ok() && chunk.len() > 0 {
                let _ = raw_tx.send((sent, chunk));
                sent += 1;
            }
            drop(raw_tx);
            let mut parts: Vec<Option<Vec<T>>> = (0..sent).map(|_| None).collect();
            let mut legacy = false;
            let mut failed = scanned.err();
            for (index, decoded) in out_rx {
                match decoded {
                    Ok((records, any_legacy)) => {
                        legacy |= any_legacy;
                        if let Some(slot) = parts.get_mut(index) {
                            *slot = Some(records);
                        }
                    }
                    Err(err) => {
                        failed.get_or_insert(err);
                    }
                }
            }
            if let Some(err) = failed {
                return Err(err);
            }
            let mut out = Vec::with_capacity(parts.iter().flatten().map(Vec::len).sum());
            for part in parts {
                let part = part.ok_or_else(|| {
                    StoreError::Engine("a chunk of channel records was not decoded".into())
                })?;
                out.extend(part);
            }
            Ok((out, legacy))
        })
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
        for table in [Table::Ledger, Table::Events] {
            self.scan(table, Scan::Prefix(&key), |k, _| {
                ops.push(Op::Remove {
                    table,
                    key: k.to_vec(),
                });
                Ok(ControlFlow::Continue(()))
            })?;
        }
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
}

/// Channel entries as scanned (keys and values back to back in one buffer), on their way to a
/// decoding thread.
#[derive(Default)]
struct RawChunk {
    bytes: Vec<u8>,
    /// Each entry's key end and value end in `bytes`.
    ends: Vec<(usize, usize)>,
}

impl RawChunk {
    fn push(&mut self, key: &[u8], value: &[u8]) {
        self.bytes.extend_from_slice(key);
        let key_end = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.ends.push((key_end, self.bytes.len()));
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    /// The chunk's records, and whether any still carries a client secret.
    fn decode(&self, store: &Store) -> Result<(Vec<ChannelRecord>, bool), StoreError> {
        let mut records = Vec::with_capacity(self.ends.len());
        let mut legacy = false;
        let mut start = 0;
        for &(key_end, value_end) in &self.ends {
            let key = self.bytes.get(start..key_end).unwrap_or_default();
            let value = self.bytes.get(key_end..value_end).unwrap_or_default();
            legacy |= super::apps::mentions_client_secret(value);
            records.push(store.decode_channel_entry(key, value)?);
            start = value_end;
        }
        Ok((records, legacy))
    }
}
