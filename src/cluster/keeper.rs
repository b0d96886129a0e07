//! The lease keeper: one thread per node that keeps the node's share of the shards.
//!
//! Each round (every third of the lease TTL): heartbeat, renew every held lease in one statement
//! (a shard missing from the answer is lost at once), count the live nodes, claim up to the fair
//! share (`ceil(shards / live nodes)`) or hand back what is over it, and read who owns what. That
//! is five statements per node per round, whatever the number of channels.
//!
//! It runs on a thread of its own with blocking store calls, so neither a slow poll nor a busy
//! arbiter ever delays a renewal. When the database cannot be reached, the node keeps its leases
//! until its local deadline, then drops them all and stops every channel: by then the database
//! may have given the shards to another node.
//!
//! Shards are handed back in this order: dropped from [`Ownership`] (no write or side effect for
//! them from that instant), their channels stopped ([`Members::release`]), then released in the
//! database so another node can claim them without waiting for the TTL. On shutdown the node hands
//! everything back and removes its row.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::cluster::ownership::Ownership;
use crate::store::StoreError;
use crate::store::cluster::{Coordination, SHARDS};

/// What the keeper tells the channel supervisor.
pub trait Members: Send + Sync + 'static {
    /// This node now holds these shards: start their channels (tokens, cursors and floors are read
    /// from the store, never from what this node cached before).
    fn adopt(&self, shards: Vec<u32>);

    /// This node no longer holds these shards (they are already dropped from the ownership): stop
    /// their channels. Returns once they are stopped, or after `wait`.
    fn release(&self, shards: Vec<u32>, wait: Duration);
}

/// The keeper, before it starts.
pub struct Keeper {
    coordination: Arc<dyn Coordination>,
    ownership: Arc<Ownership>,
    members: Arc<dyn Members>,
    address: String,
}

/// A running keeper: stop it to leave the cluster.
pub struct KeeperHandle {
    signal: Arc<Signal>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Signal {
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Keeper {
    /// A keeper of `ownership` through `coordination`, telling `members`; `address` is where this
    /// node's admin API answers (shown to operators).
    pub fn new(
        coordination: Arc<dyn Coordination>,
        ownership: Arc<Ownership>,
        members: Arc<dyn Members>,
        address: impl Into<String>,
    ) -> Self {
        Keeper {
            coordination,
            ownership,
            members,
            address: address.into(),
        }
    }

    /// The time between two rounds: a third of the TTL (two renewals may fail before the deadline).
    pub fn period(&self) -> Duration {
        (self.ownership.ttl() / 3).max(Duration::from_millis(300))
    }

    /// Runs the first round now (so the node holds its share when this returns, if the database
    /// answers), then the rest on a thread of its own.
    pub fn start(self) -> std::io::Result<KeeperHandle> {
        // Exported at zero from the start so rate() works from the first scrape.
        crate::telemetry::metrics::zero("inboxd_cluster_shards_claimed_total");
        crate::telemetry::metrics::zero("inboxd_cluster_shards_lost_total");
        if let Err(err) = self.round() {
            tracing::warn!(error = %err, "The first lease round failed; the keeper retries on its own.");
        }
        let signal = Arc::new(Signal::default());
        let thread_signal = Arc::clone(&signal);
        let thread = std::thread::Builder::new()
            .name("inboxd-lease-keeper".to_owned())
            .spawn(move || self.run(&thread_signal))?;
        Ok(KeeperHandle {
            signal,
            thread: Some(thread),
        })
    }

    fn run(self, signal: &Signal) {
        let period = self.period();
        loop {
            {
                let mut stop = signal.stop.lock();
                if !*stop {
                    signal.wake.wait_for(&mut stop, period);
                }
                if *stop {
                    break;
                }
            }
            if let Err(err) = self.round() {
                tracing::warn!(error = %err, time_left_ms = self.ownership.time_left().as_millis() as u64,
                    "A lease round failed; the node keeps its shards until its deadline and retries.");
            }
        }
        self.leave();
    }

    /// One round: heartbeat and renewal, then the share.
    pub fn round(&self) -> Result<(), StoreError> {
        let ttl = self.ownership.ttl();
        let sent = Instant::now();
        let renewed = self
            .coordination
            .heartbeat(&self.address, false)
            .and_then(|()| self.coordination.renew(ttl));
        match renewed {
            Ok(renewed) => {
                let lost = self.ownership.renewed(sent, &renewed);
                if !lost.is_empty() {
                    tracing::warn!(
                        shards = lost.len(),
                        "Leases lost (another node holds them now): their channels stop here."
                    );
                    metrics::counter!("inboxd_cluster_shards_lost_total")
                        .increment(lost.len() as u64);
                    self.members.release(lost, Duration::ZERO);
                }
            }
            Err(err) => {
                if self.ownership.time_left().is_zero() {
                    let all = self.ownership.drop_all();
                    if !all.is_empty() {
                        tracing::error!(shards = all.len(), error = %err,
                            "The lease renewal failed until the deadline: every channel stops on this node until the database answers again.");
                        metrics::counter!("inboxd_cluster_shards_lost_total")
                            .increment(all.len() as u64);
                        self.members.release(all, Duration::ZERO);
                    }
                }
                return Err(err);
            }
        }
        let live = self.coordination.live_nodes(ttl)?.len().max(1);
        let share = SHARDS.div_ceil(u32::try_from(live).unwrap_or(u32::MAX)) as usize;
        let held = self.ownership.held_shards();
        if held.len() < share {
            let sent = Instant::now();
            let claimed = self.coordination.claim(share - held.len(), ttl)?;
            if !claimed.is_empty() {
                self.ownership.claimed(sent, &claimed);
                let shards: Vec<u32> = claimed.iter().map(|l| l.shard).collect();
                tracing::info!(
                    shards = shards.len(),
                    held = held.len() + shards.len(),
                    share,
                    "Shards claimed."
                );
                metrics::counter!("inboxd_cluster_shards_claimed_total")
                    .increment(shards.len() as u64);
                self.members.adopt(shards);
            }
        } else if held.len() > share {
            // Over the fair share (a node joined): hand the highest shards back.
            let extra: Vec<u32> = held[share..].to_vec();
            tracing::info!(
                shards = extra.len(),
                share,
                live,
                "Handing shards back to rebalance."
            );
            self.hand_back(extra);
        }
        metrics::gauge!("inboxd_cluster_shards_held")
            .set(self.ownership.held_shards().len() as f64);
        metrics::gauge!("inboxd_cluster_nodes_live").set(live as f64);
        self.ownership.set_owners(&self.coordination.owners()?);
        Ok(())
    }

    fn hand_back(&self, shards: Vec<u32>) {
        self.ownership.drop_shards(&shards);
        self.members.release(shards.clone(), self.period());
        if let Err(err) = self.coordination.release(&shards) {
            // They expire on their own after the TTL.
            tracing::warn!(error = %err, "Could not hand shards back; they expire on their own.");
        }
    }

    fn leave(&self) {
        let _ = self.coordination.heartbeat(&self.address, true);
        let all = self.ownership.drop_all();
        let count = all.len();
        self.members.release(all, self.ownership.ttl());
        match self.coordination.leave() {
            Ok(()) => tracing::info!(shards = count, "Left the cluster: every shard handed back."),
            Err(err) => {
                tracing::warn!(error = %err, "Could not hand the shards back on leaving; they expire on their own after the lease TTL.")
            }
        }
    }
}

impl KeeperHandle {
    /// Stops the keeper: it hands every shard back (stopping their channels first) and leaves.
    /// Blocking: call it off the async threads.
    pub fn stop(mut self) {
        *self.signal.stop.lock() = true;
        self.signal.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use chrono::Utc;

    use super::*;
    use crate::store::cluster::{Lease, NodeInfo, Notice, ShardOwner};

    /// The database, in memory: what the PostgreSQL engine does, with an `Instant` clock.
    #[derive(Default)]
    struct Db {
        nodes: HashMap<String, (Instant, bool)>,
        leases: HashMap<u32, (Option<String>, i64, Instant)>,
    }

    struct Fake {
        db: Arc<Mutex<Db>>,
        me: String,
    }

    impl Coordination for Fake {
        fn node_id(&self) -> &str {
            &self.me
        }
        fn heartbeat(&self, _: &str, draining: bool) -> Result<(), StoreError> {
            self.db
                .lock()
                .nodes
                .insert(self.me.clone(), (Instant::now(), draining));
            Ok(())
        }
        fn live_nodes(&self, ttl: Duration) -> Result<Vec<NodeInfo>, StoreError> {
            let db = self.db.lock();
            Ok(db
                .nodes
                .iter()
                .filter(|(_, (at, draining))| at.elapsed() < ttl && !draining)
                .map(|(node, _)| NodeInfo {
                    node: node.clone(),
                    address: String::new(),
                    heartbeat_at: Utc::now(),
                    draining: false,
                })
                .collect())
        }
        fn renew(&self, ttl: Duration) -> Result<Vec<Lease>, StoreError> {
            let mut db = self.db.lock();
            let now = Instant::now();
            let mut out = Vec::new();
            for (shard, (owner, epoch, expires)) in db.leases.iter_mut() {
                if owner.as_deref() == Some(self.me.as_str()) && *expires > now {
                    *expires = now + ttl;
                    out.push(Lease {
                        shard: *shard,
                        epoch: *epoch,
                    });
                }
            }
            Ok(out)
        }
        fn claim(&self, max: usize, ttl: Duration) -> Result<Vec<Lease>, StoreError> {
            let mut db = self.db.lock();
            let now = Instant::now();
            let mut out = Vec::new();
            for shard in 0..SHARDS {
                if out.len() == max {
                    break;
                }
                let entry = db.leases.entry(shard).or_insert((None, 0, now));
                if entry.0.is_none() || entry.2 <= now {
                    *entry = (Some(self.me.clone()), entry.1 + 1, now + ttl);
                    out.push(Lease {
                        shard,
                        epoch: entry.1,
                    });
                }
            }
            Ok(out)
        }
        fn release(&self, shards: &[u32]) -> Result<(), StoreError> {
            let mut db = self.db.lock();
            for shard in shards {
                if let Some(entry) = db.leases.get_mut(shard)
                    && entry.0.as_deref() == Some(self.me.as_str())
                {
                    entry.0 = None;
                }
            }
            Ok(())
        }
        fn leave(&self) -> Result<(), StoreError> {
            let all: Vec<u32> = (0..SHARDS).collect();
            self.release(&all)?;
            self.db.lock().nodes.remove(&self.me);
            Ok(())
        }
        fn owners(&self) -> Result<Vec<ShardOwner>, StoreError> {
            Ok(Vec::new())
        }
        fn notify(&self, _: &Notice) -> Result<(), StoreError> {
            Ok(())
        }
        fn listen(&self) -> Result<tokio::sync::mpsc::UnboundedReceiver<Notice>, StoreError> {
            Ok(tokio::sync::mpsc::unbounded_channel().1)
        }
    }

    #[derive(Default)]
    struct Running(Mutex<HashSet<u32>>);

    impl Members for Running {
        fn adopt(&self, shards: Vec<u32>) {
            self.0.lock().extend(shards);
        }
        fn release(&self, shards: Vec<u32>, _: Duration) {
            let mut running = self.0.lock();
            for shard in shards {
                running.remove(&shard);
            }
        }
    }

    struct Node {
        keeper: Keeper,
        ownership: Arc<Ownership>,
        running: Arc<Running>,
    }

    fn node(db: &Arc<Mutex<Db>>, name: &str, ttl: Duration) -> Node {
        let ownership = Arc::new(Ownership::new(name, ttl));
        let running = Arc::new(Running::default());
        let keeper = Keeper::new(
            Arc::new(Fake {
                db: Arc::clone(db),
                me: name.to_owned(),
            }),
            Arc::clone(&ownership),
            Arc::clone(&running) as Arc<dyn Members>,
            "127.0.0.1:0",
        );
        Node {
            keeper,
            ownership,
            running,
        }
    }

    fn rounds(nodes: &[&Node], n: usize) {
        for _ in 0..n {
            for node in nodes {
                node.keeper.round().unwrap();
            }
        }
    }

    /// Every shard is run by exactly one node, and each node runs what it holds.
    fn assert_partition(nodes: &[&Node]) {
        let mut seen = HashSet::new();
        for node in nodes {
            let held: HashSet<u32> = node.ownership.held_shards().into_iter().collect();
            assert_eq!(*node.running.0.lock(), held, "runs exactly what it holds");
            for shard in held {
                assert!(seen.insert(shard), "shard {shard} held twice");
            }
        }
        assert_eq!(seen.len(), SHARDS as usize, "every shard held");
    }

    #[test]
    fn nodes_share_the_shards_and_a_joining_node_gets_its_share() {
        let db = Arc::new(Mutex::new(Db::default()));
        let ttl = Duration::from_secs(30);
        let (a, b, c) = (
            node(&db, "a", ttl),
            node(&db, "b", ttl),
            node(&db, "c", ttl),
        );
        rounds(&[&a], 1);
        assert_eq!(a.ownership.held_shards().len(), SHARDS as usize);
        rounds(&[&a, &b, &c], 3);
        assert_partition(&[&a, &b, &c]);
        for n in [&a, &b, &c] {
            let held = n.ownership.held_shards().len();
            assert!((340..=342).contains(&held), "{held} shards");
        }
        let d = node(&db, "d", ttl);
        rounds(&[&a, &b, &c, &d], 3);
        assert_partition(&[&a, &b, &c, &d]);
        assert_eq!(d.ownership.held_shards().len(), 256);
    }

    #[test]
    fn a_dead_nodes_shards_go_to_the_others_after_the_ttl_and_never_before() {
        let db = Arc::new(Mutex::new(Db::default()));
        let ttl = Duration::from_millis(600);
        let (a, b, c) = (
            node(&db, "a", ttl),
            node(&db, "b", ttl),
            node(&db, "c", ttl),
        );
        rounds(&[&a, &b, &c], 3);
        assert_partition(&[&a, &b, &c]);
        // c dies: it renews no more. Before its TTL nothing of it moves.
        let of_c = c.ownership.held_shards();
        rounds(&[&a, &b], 1);
        for shard in &of_c {
            assert!(!a.ownership.holds(*shard) && !b.ownership.holds(*shard));
        }
        std::thread::sleep(ttl + Duration::from_millis(50));
        rounds(&[&a, &b], 2);
        assert_partition(&[&a, &b]);
        // The dead node, were it to wake up, may act for none of it: its deadline passed.
        assert_eq!(c.ownership.time_left(), Duration::ZERO);
    }

    #[test]
    fn a_leaving_node_hands_everything_back_at_once() {
        let db = Arc::new(Mutex::new(Db::default()));
        let ttl = Duration::from_secs(30);
        let (a, b) = (node(&db, "a", ttl), node(&db, "b", ttl));
        rounds(&[&a, &b], 3);
        assert_partition(&[&a, &b]);
        b.keeper.leave();
        assert!(b.running.0.lock().is_empty());
        // No TTL to wait for: the next round of `a` takes all of it.
        rounds(&[&a], 1);
        assert_partition(&[&a]);
    }
}
