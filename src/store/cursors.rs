//! Cursors: where each channel's polling resumes. Not flushed on write.

use crate::domain::ChannelId;

use super::engine::{Op, Table};
use super::{Cursor, Store, StoreError, persisted};

impl Store {
    /// Stores a channel's cursor (a poll's progress). Fenced in cluster mode (see
    /// [`Store::set_fencer`]).
    pub fn put_cursor(&self, id: ChannelId, cursor: &Cursor) -> Result<(), StoreError> {
        let bytes = persisted::encode_cursor(id, cursor)?;
        self.apply_run_time(
            id,
            &[Op::Insert {
                table: Table::Cursors,
                key: id.as_bytes().to_vec(),
                value: bytes,
            }],
        )
    }

    /// Resets a channel's cursor to the start (an operator's or the supervisor's decision, not a
    /// poll's progress): never fenced, any node may do it.
    pub fn reset_cursor(&self, id: ChannelId) -> Result<(), StoreError> {
        let bytes = persisted::encode_cursor(id, &Cursor::default())?;
        self.with(|e| e.insert(Table::Cursors, id.as_bytes(), &bytes))
    }

    /// A channel's cursor, if any.
    pub fn get_cursor(&self, id: ChannelId) -> Result<Option<Cursor>, StoreError> {
        let raw = self.with(|e| e.get(Table::Cursors, id.as_bytes()))?;
        raw.map(|bytes| persisted::decode_cursor(id, &bytes))
            .transpose()
    }
}
