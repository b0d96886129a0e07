//! Cluster coordination through the store (cluster mode, PostgreSQL engine only): node heartbeats,
//! shard leases with an epoch, the fence every run-time write carries, and change notifications.
//!
//! The store owns the SQL; the policy (how many shards to hold, when to renew, when to stop side
//! effects) lives in `crate::cluster`, which talks to the store through [`Coordination`] only.
//!
//! Lease times use the database's clock (`now()`), never a node's: a lease expires `ttl` after the
//! commit of its last renewal, and a fenced write commits only while its lease is current.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::ChannelId;

use super::StoreError;

/// The number of shards channels are hashed onto. Part of the schema: never change it.
pub const SHARDS: u32 = 1024;

/// A held lease: this node owns `shard` at `epoch` until the lease expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    /// The shard, `0..SHARDS`.
    pub shard: u32,
    /// The lease's epoch: raised by one on every claim of the shard, by any node.
    pub epoch: i64,
}

/// What a run-time write of a channel carries in cluster mode: it commits only if this node still
/// holds `shard` at `epoch` and the lease has not expired (by the database's clock).
pub type Fence = Lease;

/// Who holds a shard, as the status page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardOwner {
    /// The shard.
    pub shard: u32,
    /// The owning node's id, `None` when no node holds it.
    pub node: Option<String>,
    /// The lease's epoch.
    pub epoch: i64,
    /// When the lease expires (database clock).
    pub expires_at: DateTime<Utc>,
}

/// A node as the nodes table shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's id (unique per process start).
    pub node: String,
    /// Where its admin API answers, as it announced it (for operators).
    pub address: String,
    /// Its last heartbeat (database clock).
    pub heartbeat_at: DateTime<Utc>,
    /// Whether it is shutting down (hands its shards back, takes no new ones).
    pub draining: bool,
}

/// What a node hears from the others (PostgreSQL `LISTEN/NOTIFY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A channel record was written or removed (by any node, admin or run-time write): reload it.
    ChannelChanged(ChannelId),
    /// An operator asked for a poll of this channel now (on a node that does not own it).
    PollNow(ChannelId),
    /// An operator asked for a backfill of this channel from this time.
    Backfill(ChannelId, DateTime<Utc>),
    /// An operator released this channel's quarantined messages on a node that does not run it:
    /// the owner releases them and delivers them again.
    ReplayQuarantine(ChannelId),
    /// The listening connection was lost and is back: notices may have been missed, so reconcile
    /// everything from the tables.
    Resync,
}

/// The store's cluster coordination (implemented by the PostgreSQL engine).
///
/// Every call is blocking and short (one statement or one transaction).
pub trait Coordination: Send + Sync {
    /// This node's id (set when the store was opened; unique per process start).
    fn node_id(&self) -> &str;

    /// Records this node's heartbeat (upsert of its row, `heartbeat_at = now()`), with `address`
    /// and whether it is `draining`.
    fn heartbeat(&self, address: &str, draining: bool) -> Result<(), StoreError>;

    /// The nodes whose heartbeat is younger than `ttl` and which are not draining.
    fn live_nodes(&self, ttl: Duration) -> Result<Vec<NodeInfo>, StoreError>;

    /// Renews every lease this node still holds (one statement): `expires_at = now() + ttl` where
    /// `owner = me and expires_at > now()`. Answers the leases renewed; a shard missing from the
    /// answer is lost.
    fn renew(&self, ttl: Duration) -> Result<Vec<Lease>, StoreError>;

    /// Claims up to `max` shards that no live lease holds (never owned, released, or expired),
    /// skipping rows another node is claiming (`FOR UPDATE SKIP LOCKED`); each claim raises the
    /// shard's epoch by one. Answers the new leases.
    fn claim(&self, max: usize, ttl: Duration) -> Result<Vec<Lease>, StoreError>;

    /// Gives these shards back (owner cleared, expired at once) if this node still holds them.
    fn release(&self, shards: &[u32]) -> Result<(), StoreError>;

    /// Gives every shard back and removes this node's row (a clean shutdown).
    fn leave(&self) -> Result<(), StoreError>;

    /// Every shard's owner and lease.
    fn owners(&self) -> Result<Vec<ShardOwner>, StoreError>;

    /// Tells every node (including this one) something (`NOTIFY`).
    fn notify(&self, notice: &Notice) -> Result<(), StoreError>;

    /// Starts listening (a dedicated connection and thread, reconnecting on its own; after a
    /// reconnect it sends [`Notice::Resync`]). Every notice arrives on the returned channel.
    fn listen(&self) -> Result<tokio::sync::mpsc::UnboundedReceiver<Notice>, StoreError>;
}

/// Answers the fence for a channel's run-time write: `None` when this node does not hold the
/// channel's shard (the write is refused with [`StoreError::Fenced`] without reaching the engine).
pub type Fencer = Arc<dyn Fn(ChannelId) -> Option<Fence> + Send + Sync>;
