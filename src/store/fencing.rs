//! The fencer (cluster mode): [`Store::set_fencer`] and the plumbing that gives each run-time write
//! of a channel the lease of its shard, or refuses it with [`StoreError::Fenced`] before it reaches
//! the engine when this node does not hold that shard.

use crate::domain::ChannelId;

use super::cluster::{Fence, Fencer};
use super::engine::{Op, Table};
use super::{Store, StoreError};

impl Store {
    /// From now on, the run-time writes of a channel (`update_channel_state`, `put_cursor`,
    /// `put_tokens`, `ledger_put`, `ledger_put_many`, `ledger_put_many_with_mail`) carry the fence
    /// `fencer` answers for the channel, and commit only while that lease is this node's. A fencer
    /// answering `None` refuses the write with [`StoreError::Fenced`] without touching the engine.
    /// Only a PostgreSQL store checks fences; sled and memory apply fenced writes as they are.
    pub fn set_fencer(&self, fencer: Fencer) {
        *self.shared.fencer.write() = Some(fencer);
    }

    /// The fence of a run-time write of `id`: `Ok(None)` without a fencer (unfenced), the fence,
    /// or [`StoreError::Fenced`] when this node does not hold the channel's shard.
    pub(super) fn fence(&self, id: ChannelId) -> Result<Option<Fence>, StoreError> {
        let fencer = self.shared.fencer.read().clone();
        match fencer {
            None => Ok(None),
            Some(fencer) => fencer(id).map(Some).ok_or(StoreError::Fenced),
        }
    }

    /// Applies a run-time batch of `id`, fenced when the store has a fencer.
    pub(super) fn apply_run_time(&self, id: ChannelId, ops: &[Op]) -> Result<(), StoreError> {
        match self.fence(id)? {
            None => self.with(|e| e.apply(ops)),
            Some(fence) => self.with(|e| e.apply_fenced(fence, ops)),
        }
    }

    /// A run-time compare-and-swap of `id`, fenced when the store has a fencer.
    pub(super) fn compare_and_swap_run_time(
        &self,
        id: ChannelId,
        table: Table,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        let key = id.as_bytes();
        match self.fence(id)? {
            None => self.with(|e| e.compare_and_swap(table, key, expected, new)),
            Some(fence) => {
                self.with(|e| e.compare_and_swap_fenced(fence, table, key, expected, new))
            }
        }
    }
}
