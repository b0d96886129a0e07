//! What this node holds right now: its leases (shard → epoch), the shard of every channel it knows,
//! the local deadline after which it performs no side effect, and the owner of every shard as last
//! read (for the status page).
//!
//! The deadline: the keeper sets it to the moment it *sent* its last successful renewal plus the
//! lease TTL minus a margin, on the monotonic clock. The database gives a shard to another node only
//! a TTL after the renewal *committed*, which is later; so this node always stops first, even when
//! it was frozen (SIGSTOP, a stalled VM) and wakes up believing it still owns everything.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use parking_lot::RwLock;

use crate::domain::ChannelId;
use crate::store::cluster::{Fence, Fencer, Lease, ShardOwner};

/// This node's share of the cluster.
pub struct Ownership {
    node_id: String,
    ttl: Duration,
    held: RwLock<Held>,
    shards: DashMap<ChannelId, u32>,
    owners: RwLock<HashMap<u32, String>>,
}

/// The leases held and until when they may be used.
struct Held {
    leases: HashMap<u32, i64>,
    /// No side effect and no run-time write at or after this instant.
    deadline: Instant,
}

impl std::fmt::Debug for Ownership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.held.read();
        f.debug_struct("Ownership")
            .field("node_id", &self.node_id)
            .field("shards", &held.leases.len())
            .finish_non_exhaustive()
    }
}

impl Ownership {
    /// A node `node_id` with leases of `ttl`, holding nothing yet.
    pub fn new(node_id: impl Into<String>, ttl: Duration) -> Self {
        Ownership {
            node_id: node_id.into(),
            ttl,
            held: RwLock::new(Held {
                leases: HashMap::new(),
                deadline: Instant::now(),
            }),
            shards: DashMap::new(),
            owners: RwLock::new(HashMap::new()),
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The lease TTL.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How long before the database's expiry this node stops on its own: a sixth of the TTL, at
    /// least one second (room for a statement in flight and for clock rate differences).
    pub fn margin(&self) -> Duration {
        (self.ttl / 6).max(Duration::from_secs(1))
    }

    /// Records that `channel` belongs to `shard` (every node knows every channel's shard).
    pub fn assign(&self, channel: ChannelId, shard: u32) {
        self.shards.insert(channel, shard);
    }

    /// Forgets a removed channel.
    pub fn forget(&self, channel: ChannelId) {
        self.shards.remove(&channel);
    }

    /// The shard of a known channel.
    pub fn shard(&self, channel: ChannelId) -> Option<u32> {
        self.shards.get(&channel).map(|s| *s)
    }

    /// The fence of a run-time write of `channel`: its shard's lease, if this node holds it. The
    /// database decides whether the lease is still current (epoch and expiry by its own clock),
    /// so a write may commit a little past the local deadline, never past the lease.
    pub fn fence(&self, channel: ChannelId) -> Option<Fence> {
        let shard = self.shard(channel)?;
        let held = self.held.read();
        held.leases.get(&shard).map(|&epoch| Lease { shard, epoch })
    }

    /// Whether this node may act for `channel` now (side effects: sink calls, mark-read, token
    /// refreshes, run-time writes).
    pub fn may_act(&self, channel: ChannelId) -> bool {
        self.fence(channel).is_some() && !self.time_left().is_zero()
    }

    /// Whether this node holds `shard` (deadline aside: for deciding what to run).
    pub fn holds(&self, shard: u32) -> bool {
        self.held.read().leases.contains_key(&shard)
    }

    /// Whether this node should run `channel` (it holds the channel's shard).
    pub fn runs(&self, channel: ChannelId) -> bool {
        self.shard(channel).is_some_and(|shard| self.holds(shard))
    }

    /// The shards held, in order.
    pub fn held_shards(&self) -> Vec<u32> {
        let mut shards: Vec<u32> = self.held.read().leases.keys().copied().collect();
        shards.sort_unstable();
        shards
    }

    /// How long the node may still act (zero once the deadline passed).
    pub fn time_left(&self) -> Duration {
        self.held
            .read()
            .deadline
            .saturating_duration_since(Instant::now())
    }

    /// After a renewal sent at `sent` answered `renewed`: those leases stand until the new
    /// deadline; answers the shards lost (held before, missing from the answer).
    pub fn renewed(&self, sent: Instant, renewed: &[Lease]) -> Vec<u32> {
        let mut held = self.held.write();
        let answer: HashMap<u32, i64> = renewed.iter().map(|l| (l.shard, l.epoch)).collect();
        let lost: Vec<u32> = held
            .leases
            .keys()
            .filter(|shard| !answer.contains_key(shard))
            .copied()
            .collect();
        held.leases = answer;
        held.deadline = sent + self.ttl.saturating_sub(self.margin());
        lost
    }

    /// Adds leases claimed by a statement sent at `sent`. The deadline stays the earlier of the
    /// two (one deadline for the node, the conservative one).
    pub fn claimed(&self, sent: Instant, claimed: &[Lease]) {
        let mut held = self.held.write();
        if held.leases.is_empty() {
            held.deadline = sent + self.ttl.saturating_sub(self.margin());
        }
        for lease in claimed {
            held.leases.insert(lease.shard, lease.epoch);
        }
    }

    /// Drops shards (lost, or about to be handed back): from now on nothing is written or done for
    /// their channels.
    pub fn drop_shards(&self, shards: &[u32]) {
        let mut held = self.held.write();
        for shard in shards {
            held.leases.remove(shard);
        }
    }

    /// Drops every lease (the renewal failed past the deadline, or the node is leaving). Answers
    /// the shards dropped.
    pub fn drop_all(&self) -> Vec<u32> {
        let mut held = self.held.write();
        let mut shards: Vec<u32> = held.leases.drain().map(|(shard, _)| shard).collect();
        shards.sort_unstable();
        shards
    }

    /// The channels of these shards, among those this node knows.
    pub fn channels_of(&self, shards: &[u32]) -> Vec<ChannelId> {
        let wanted: std::collections::HashSet<u32> = shards.iter().copied().collect();
        self.shards
            .iter()
            .filter(|entry| wanted.contains(entry.value()))
            .map(|entry| *entry.key())
            .collect()
    }

    /// Records who holds every shard (read by the keeper once per round).
    pub fn set_owners(&self, owners: &[ShardOwner]) {
        let map = owners
            .iter()
            .filter_map(|o| o.node.clone().map(|node| (o.shard, node)))
            .collect();
        *self.owners.write() = map;
    }

    /// The node running `channel`, as last read (this node's id for its own channels).
    pub fn owner_of(&self, channel: ChannelId) -> Option<String> {
        let shard = self.shard(channel)?;
        if self.holds(shard) {
            return Some(self.node_id.clone());
        }
        self.owners.read().get(&shard).cloned()
    }

    /// The fencer the store consults before each run-time write.
    pub fn fencer(self: &Arc<Self>) -> Fencer {
        let me = Arc::clone(self);
        Arc::new(move |channel| me.fence(channel))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn lease(shard: u32, epoch: i64) -> Lease {
        Lease { shard, epoch }
    }

    #[test]
    fn a_write_is_fenced_by_the_shard_lease_held_now() {
        let own = Ownership::new("n1", Duration::from_secs(30));
        let channel = ChannelId::generate();
        own.assign(channel, 7);
        assert_eq!(own.fence(channel), None, "nothing held yet");
        own.claimed(Instant::now(), &[lease(7, 3)]);
        assert_eq!(own.fence(channel), Some(lease(7, 3)));
        assert!(own.runs(channel));
        // The renewal no longer lists shard 7: it is lost at once.
        let lost = own.renewed(Instant::now(), &[]);
        assert_eq!(lost, vec![7]);
        assert_eq!(own.fence(channel), None);
        assert!(!own.runs(channel));
    }

    #[test]
    fn past_the_local_deadline_nothing_is_done_even_with_the_leases_held() {
        let own = Ownership::new("n1", Duration::from_secs(6));
        let channel = ChannelId::generate();
        own.assign(channel, 1);
        // A renewal sent long ago (a frozen node): the deadline passed before the database's
        // expiry, so the node stops first.
        let long_ago = Instant::now() - Duration::from_secs(6);
        own.claimed(long_ago, &[lease(1, 1)]);
        assert!(own.runs(channel), "still listed as held");
        assert!(
            !own.may_act(channel),
            "but no side effect past the deadline"
        );
        assert_eq!(own.time_left(), Duration::ZERO);
        // A renewal sent now opens it again, for TTL minus the margin.
        own.renewed(Instant::now(), &[lease(1, 1)]);
        assert!(own.may_act(channel));
        assert!(own.time_left() <= Duration::from_secs(5));
    }

    #[test]
    fn owners_are_known_for_channels_elsewhere() {
        let own = Ownership::new("n1", Duration::from_secs(30));
        let mine = ChannelId::generate();
        let theirs = ChannelId::generate();
        own.assign(mine, 1);
        own.assign(theirs, 2);
        own.claimed(Instant::now(), &[lease(1, 1)]);
        own.set_owners(&[ShardOwner {
            shard: 2,
            node: Some("n2".into()),
            epoch: 4,
            expires_at: chrono::Utc::now(),
        }]);
        assert_eq!(own.owner_of(mine).as_deref(), Some("n1"));
        assert_eq!(own.owner_of(theirs).as_deref(), Some("n2"));
        assert_eq!(own.channels_of(&[2]), vec![theirs]);
    }
}
