//! Channel records: insert, read, list (whole or by page), count, update the run-time state with a
//! compare-and-swap, and delete a channel with everything it owns in one atomic batch.

use std::ops::ControlFlow;

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
