//! Cluster mode: many inboxd nodes on one PostgreSQL store, each polling the channels of the
//! shards it holds a lease on.
//!
//! - [`shard`]: which shard a channel belongs to (its mailbox: tenant, app, mailbox address).
//! - [`ownership`]: what this node holds right now (shards with their epochs), the local deadline
//!   after which it performs no side effect, and the fence each run-time write carries.
//! - [`keeper`]: the lease keeper, a thread of its own so that no slow poll ever delays a renewal:
//!   heartbeat, renew, claim a fair share, hand shards back when others join, and leave on
//!   shutdown. It tells the channel supervisor what it adopted and what it lost.
//!
//! The store owns the SQL (`store::cluster::Coordination`); this module owns the policy. In the
//! single-node (sled) mode none of it runs: there is no [`ownership::Ownership`] and every channel
//! is this node's.

pub mod keeper;
pub mod ownership;
pub mod shard;

pub use keeper::{Keeper, KeeperHandle, Members};
pub use ownership::Ownership;
pub use shard::shard_of;
