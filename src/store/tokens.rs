//! Token sets: each channel's OAuth tokens, sealed, and flushed before a write returns so that a
//! rotated refresh token survives a crash.

use crate::domain::ChannelId;

use super::engine::{Op, Table};
use super::{Store, StoreError, TokenSet, persisted};

impl Store {
    /// Stores a channel's refreshed token set and flushes before returning: a rotated refresh
    /// token survives a crash right after this call. Fenced in cluster mode (see
    /// [`Store::set_fencer`]): only the node polling the channel refreshes its tokens.
    pub fn put_tokens(&self, id: ChannelId, tokens: &TokenSet) -> Result<(), StoreError> {
        let bytes = persisted::encode_tokens(&self.shared.crypto, id, tokens)?;
        self.apply_run_time(
            id,
            &[Op::Insert {
                table: Table::Tokens,
                key: id.as_bytes().to_vec(),
                value: bytes,
            }],
        )?;
        self.flush()
    }

    /// Stores a new grant (the authorization callback's token set) and flushes before returning.
    /// Never fenced: the callback may reach any node.
    pub fn put_granted_tokens(&self, id: ChannelId, tokens: &TokenSet) -> Result<(), StoreError> {
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
}
