//! [`Coordination`] over PostgreSQL: the `nodes` and `shard_lease` tables and `LISTEN/NOTIFY`.
//!
//! Every lease time is computed by the database (`now()` plus the ttl as an interval of seconds):
//! nodes' clocks never enter. Each call is one statement, or one transaction for `leave`. `listen`
//! runs a thread of its own with its own connection (`LISTEN inboxd`), reconnecting with backoff
//! after a loss and then sending [`Notice::Resync`]; it stops once its receiver is dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use postgres::fallible_iterator::FallibleIterator as _;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::store::cluster::{Coordination, Lease, NodeInfo, Notice, SHARDS, ShardOwner};
use crate::store::error::StoreError;

use super::notice;
use super::pool::{Fail, Pool, Target};

/// The cluster coordination of one node, over the store's pool.
pub(crate) struct PgCoordination {
    pool: Arc<Pool>,
    node_id: String,
}

impl PgCoordination {
    pub(crate) fn new(pool: Arc<Pool>, node_id: &str) -> PgCoordination {
        PgCoordination {
            pool,
            node_id: node_id.to_owned(),
        }
    }
}

fn secs(ttl: Duration) -> f64 {
    ttl.as_secs_f64()
}

fn leases(rows: Vec<postgres::Row>) -> Result<Vec<Lease>, Fail> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let shard: i32 = row.try_get(0)?;
        out.push(Lease {
            shard: u32::try_from(shard).map_err(|_| {
                StoreError::corrupt("the shard_lease table", format!("it holds shard {shard}"))
            })?,
            epoch: row.try_get(1)?,
        });
    }
    out.sort_by_key(|l| l.shard);
    Ok(out)
}

impl Coordination for PgCoordination {
    fn node_id(&self) -> &str {
        &self.node_id
    }

    fn heartbeat(&self, address: &str, draining: bool) -> Result<(), StoreError> {
        super::counted("lease");
        let (node, address) = (self.node_id.clone(), address.to_owned());
        self.pool.run(move |client| {
            client.execute(
                "INSERT INTO nodes (node_id, address, heartbeat_at, draining) VALUES ($1, $2, now(), $3) \
                 ON CONFLICT (node_id) DO UPDATE SET address = EXCLUDED.address, \
                 heartbeat_at = now(), draining = EXCLUDED.draining",
                &[&node, &address, &draining],
            )?;
            Ok(())
        })
    }

    fn live_nodes(&self, ttl: Duration) -> Result<Vec<NodeInfo>, StoreError> {
        super::counted("lease");
        let ttl = secs(ttl);
        self.pool.run(move |client| {
            let rows = client.query(
                "SELECT node_id, address, heartbeat_at, draining FROM nodes \
                 WHERE heartbeat_at > now() - make_interval(secs => $1) AND NOT draining \
                 ORDER BY node_id",
                &[&ttl],
            )?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                out.push(NodeInfo {
                    node: row.try_get(0)?,
                    address: row.try_get(1)?,
                    heartbeat_at: row.try_get(2)?,
                    draining: row.try_get(3)?,
                });
            }
            Ok(out)
        })
    }

    fn renew(&self, ttl: Duration) -> Result<Vec<Lease>, StoreError> {
        super::counted("lease");
        let (node, ttl) = (self.node_id.clone(), secs(ttl));
        self.pool.run(move |client| {
            let rows = client.query(
                "UPDATE shard_lease SET expires_at = now() + make_interval(secs => $2) \
                 WHERE owner = $1 AND expires_at > now() RETURNING shard, epoch",
                &[&node, &ttl],
            )?;
            leases(rows)
        })
    }

    fn claim(&self, max: usize, ttl: Duration) -> Result<Vec<Lease>, StoreError> {
        super::counted("lease");
        if max == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(max.min(SHARDS as usize)).unwrap_or(i64::from(SHARDS));
        let (node, ttl) = (self.node_id.clone(), secs(ttl));
        self.pool.run(move |client| {
            let rows = client.query(
                "UPDATE shard_lease AS s SET owner = $1, epoch = s.epoch + 1, \
                 expires_at = now() + make_interval(secs => $3) \
                 FROM (SELECT shard FROM shard_lease WHERE owner IS NULL OR expires_at <= now() \
                       ORDER BY shard FOR UPDATE SKIP LOCKED LIMIT $2) AS free \
                 WHERE s.shard = free.shard RETURNING s.shard, s.epoch",
                &[&node, &limit, &ttl],
            )?;
            leases(rows)
        })
    }

    fn release(&self, shards: &[u32]) -> Result<(), StoreError> {
        super::counted("lease");
        let shards: Vec<i32> = shards
            .iter()
            .filter_map(|s| i32::try_from(*s).ok())
            .collect();
        if shards.is_empty() {
            return Ok(());
        }
        let node = self.node_id.clone();
        self.pool.run(move |client| {
            client.execute(
                "UPDATE shard_lease SET owner = NULL, expires_at = '-infinity' \
                 WHERE owner = $1 AND shard = ANY($2)",
                &[&node, &shards],
            )?;
            Ok(())
        })
    }

    fn leave(&self) -> Result<(), StoreError> {
        super::counted("lease");
        let node = self.node_id.clone();
        self.pool.run(move |client| {
            let mut tx = client.transaction()?;
            tx.execute(
                "UPDATE shard_lease SET owner = NULL, expires_at = '-infinity' WHERE owner = $1",
                &[&node],
            )?;
            tx.execute("DELETE FROM nodes WHERE node_id = $1", &[&node])?;
            tx.commit()?;
            Ok(())
        })
    }

    fn owners(&self) -> Result<Vec<ShardOwner>, StoreError> {
        super::counted("lease");
        self.pool.run(|client| {
            // A lease never held expires at -infinity, which has no chrono value: shown as 1970.
            let rows = client.query(
                "SELECT shard, owner, epoch, GREATEST(expires_at, 'epoch'::timestamptz) \
                 FROM shard_lease ORDER BY shard",
                &[],
            )?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let shard: i32 = row.try_get(0)?;
                let expires_at: DateTime<Utc> = row.try_get(3)?;
                out.push(ShardOwner {
                    shard: u32::try_from(shard).unwrap_or_default(),
                    node: row.try_get(1)?,
                    epoch: row.try_get(2)?,
                    expires_at,
                });
            }
            Ok(out)
        })
    }

    fn notify(&self, notice: &Notice) -> Result<(), StoreError> {
        super::counted("lease");
        let payload = notice::encode(notice);
        self.pool.run(move |client| {
            client.execute("SELECT pg_notify($1, $2)", &[&notice::CHANNEL, &payload])?;
            Ok(())
        })
    }

    fn listen(&self) -> Result<UnboundedReceiver<Notice>, StoreError> {
        let (tx, rx) = unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let target = self.pool.target().clone();
        std::thread::Builder::new()
            .name("inboxd-pg-listen".to_owned())
            .spawn(move || listen_loop(&target, &tx, ready_tx))
            .map_err(StoreError::from_io)?;
        // Listening has begun when this returns: a notice sent after it is heard.
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(rx),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(StoreError::Unavailable {
                database: self.pool.target().shown().to_owned(),
                why: "the listening thread stopped before it listened".to_owned(),
            }),
        }
    }
}

/// Connects and subscribes to the notice channel.
fn subscribe(target: &Target) -> Result<postgres::Client, StoreError> {
    let mut client = target.connect()?;
    client
        .batch_execute(&format!("LISTEN {}", notice::CHANNEL))
        .map_err(|err| target.map(&err))?;
    Ok(client)
}

/// The listening thread: forwards notices until the receiver is dropped; after a lost connection
/// it reconnects with backoff (0.1 s doubling up to 5 s) and sends [`Notice::Resync`].
fn listen_loop(
    target: &Target,
    tx: &UnboundedSender<Notice>,
    ready: std::sync::mpsc::SyncSender<Result<(), StoreError>>,
) {
    let mut client = match subscribe(target) {
        Ok(client) => {
            let _ = ready.send(Ok(()));
            client
        }
        Err(err) => {
            let _ = ready.send(Err(err));
            return;
        }
    };
    let wait = Duration::from_millis(250);
    let mut last_check = Instant::now();
    loop {
        if tx.is_closed() {
            return;
        }
        let began = Instant::now();
        let next = client.notifications().timeout_iter(wait).next();
        let lost = match next {
            Ok(Some(note)) => {
                if let Some(notice) = notice::decode(note.payload())
                    && tx.send(notice).is_err()
                {
                    return;
                }
                false
            }
            // A quiet spell: nothing to forward. An answer well before the timeout means the
            // connection ended; and every few seconds a query proves the connection alive.
            Ok(None) => {
                let early = began.elapsed() < wait / 2;
                if early || last_check.elapsed() > Duration::from_secs(5) {
                    last_check = Instant::now();
                    client.is_closed() || client.batch_execute("SELECT 1").is_err()
                } else {
                    false
                }
            }
            Err(err) => {
                tracing::warn!(database = %target.shown(), error = %target.map(&err), "The cluster's notice connection was lost; reconnecting.");
                true
            }
        };
        if lost {
            let mut backoff = Duration::from_millis(100);
            client = loop {
                if tx.is_closed() {
                    return;
                }
                std::thread::sleep(backoff);
                match subscribe(target) {
                    Ok(client) => break client,
                    Err(err) => {
                        tracing::warn!(database = %target.shown(), error = %err, "The cluster's notice connection could not be made again; retrying.");
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            };
            last_check = Instant::now();
            if tx.send(Notice::Resync).is_err() {
                return;
            }
        }
    }
}
