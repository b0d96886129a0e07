//! Cursors: where each channel's polling resumes. Not flushed on write.

use crate::domain::ChannelId;

use super::engine::Table;
use super::{Cursor, Store, StoreError, persisted};

impl Store {
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
}
