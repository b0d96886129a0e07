//! The PostgreSQL engine (cluster mode): [`PgEngine`] implements the store's [`Engine`] over one
//! table per [`Table`] (`key bytea` primary key, `value bytea`), plus the cluster's tables (nodes,
//! shard leases) and the mail sink table, all created by the embedded refinery migrations
//! (`migrations/` at the crate root). The only place of inboxd besides `pool.rs` and
//! `coordination.rs` that imports `postgres` or `refinery`.
//!
//! Every call runs on the pool's worker threads (`pool.rs`), never on the caller's. Scans page
//! through the table in key order (`LIMIT` a page, then `key > last`), never loading a whole table.
//! [`Engine::apply`] is one transaction; a commit is durable, so [`Engine::flush`] does nothing.
//! Fenced calls begin their transaction by locking the fence's lease row `FOR SHARE` under the
//! current owner, epoch and expiry (database clock): no row, no write ([`StoreError::Fenced`]).
//! Every transaction that writes or removes a channel record also sends `NOTIFY inboxd` with
//! `channel <id>` (see `notice.rs`), delivered to every node's `listen` on commit.

pub(crate) mod coordination;
mod notice;
mod pool;

use std::sync::Arc;

use postgres::GenericClient;

use crate::store::cluster::Fence;
use crate::store::engine::{Engine, Op, Scan, Table, Visitor};
use crate::store::error::StoreError;

pub(crate) use pool::{Pool, Target};

use pool::Fail;

/// One key and its value.
type Entry = (Vec<u8>, Vec<u8>);

/// Rows per page of a scan.
const PAGE: i64 = 1000;

/// The session-level advisory lock migrations hold, so that nodes starting together migrate one
/// after the other (an arbitrary constant, part of the schema's conventions).
const MIGRATION_LOCK: i64 = 0x696e_626f_7864;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// The database, as `host:port/name` (never the password).
    pub database: String,
    /// The migrations applied by this run (`V1__cluster_store`, …), oldest first; empty when the
    /// schema was already current.
    pub applied: Vec<String>,
}

/// Applies the pending migrations on one connection, under the migration lock.
fn run_migrations(client: &mut postgres::Client, shown: &str) -> Result<Vec<String>, Fail> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
    let report = embedded::migrations::runner().run(client);
    client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])?;
    let report = report.map_err(|err| {
        StoreError::Engine(format!(
            "the schema migration of the PostgreSQL database {shown} failed ({err}); a database migrated by a newer inboxd needs that version"
        ))
    })?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect())
}

/// Applies the schema's pending migrations to the database at `url` (blocking; any thread).
pub(crate) fn migrate(pool: &Pool) -> Result<MigrationReport, StoreError> {
    let shown = pool.target().shown().to_owned();
    let database = shown.clone();
    let applied = pool.run(move |client| run_migrations(client, &shown))?;
    Ok(MigrationReport { database, applied })
}

/// The smallest byte string greater than every string that starts with `prefix`, if any (a prefix
/// of only `0xFF` bytes has none).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The `NOTIFY` payloads of the channel records a batch writes or removes.
fn channel_notices(ops: &[Op]) -> Vec<String> {
    let mut payloads: Vec<String> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Insert {
                table: Table::Channels,
                key,
                ..
            }
            | Op::Remove {
                table: Table::Channels,
                key,
            } => notice::channel_changed(key),
            _ => None,
        })
        .collect();
    payloads.sort();
    payloads.dedup();
    payloads
}

fn send_notices(client: &mut impl GenericClient, payloads: &[String]) -> Result<(), Fail> {
    for payload in payloads {
        client.execute("SELECT pg_notify($1, $2)", &[&notice::CHANNEL, payload])?;
    }
    Ok(())
}

/// Runs the batch's statements inside the caller's transaction.
fn write_ops(client: &mut impl GenericClient, ops: &[Op]) -> Result<(), Fail> {
    for op in ops {
        match op {
            Op::Insert { table, key, value } => {
                client.execute(&upsert_sql(*table), &[key, value])?;
            }
            Op::Remove { table, key } => {
                client.execute(
                    &format!("DELETE FROM {} WHERE key = $1", table.name()),
                    &[key],
                )?;
            }
            Op::Mail {
                channel,
                message_id,
                record_json,
            } => {
                let inserted = client.execute(
                    "INSERT INTO mail (channel_id, message_id, record) VALUES ($1, $2, $3::text::jsonb) \
                     ON CONFLICT (channel_id, message_id) DO NOTHING",
                    &[channel, message_id, record_json],
                )?;
                if inserted > 0 {
                    client.execute(
                        "SELECT pg_notify($1, $2)",
                        &[&notice::MAIL_CHANNEL, channel],
                    )?;
                }
            }
        }
    }
    send_notices(client, &channel_notices(ops))
}

fn upsert_sql(table: Table) -> String {
    format!(
        "INSERT INTO {} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        table.name()
    )
}

/// Compare-and-swap inside the caller's transaction.
fn cas_in(
    client: &mut impl GenericClient,
    table: Table,
    key: &[u8],
    expected: Option<&[u8]>,
    new: Option<&[u8]>,
) -> Result<bool, Fail> {
    let name = table.name();
    let swapped =
        match (expected, new) {
            (None, None) => client
                .query_opt(&format!("SELECT 1 FROM {name} WHERE key = $1"), &[&key])?
                .is_none(),
            (None, Some(new)) => client.execute(
                &format!(
                    "INSERT INTO {name} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING"
                ),
                &[&key, &new],
            )? == 1,
            (Some(old), Some(new)) => {
                client.execute(
                    &format!("UPDATE {name} SET value = $3 WHERE key = $1 AND value = $2"),
                    &[&key, &old, &new],
                )? == 1
            }
            (Some(old), None) => {
                client.execute(
                    &format!("DELETE FROM {name} WHERE key = $1 AND value = $2"),
                    &[&key, &old],
                )? == 1
            }
        };
    let changed = swapped && (expected.is_some() || new.is_some());
    if changed
        && table == Table::Channels
        && let Some(payload) = notice::channel_changed(key)
    {
        send_notices(client, &[payload])?;
    }
    Ok(swapped)
}

/// Locks the fence's lease row for the transaction, or refuses: the write must not commit unless
/// this node holds the shard at this epoch and the lease has not expired (database clock).
fn check_fence(client: &mut impl GenericClient, node: &str, fence: Fence) -> Result<(), Fail> {
    let shard = i32::try_from(fence.shard).map_err(|_| StoreError::Fenced)?;
    let held = client.query_opt(
        "SELECT 1 FROM shard_lease WHERE shard = $1 AND owner = $2 AND epoch = $3 \
         AND expires_at > now() FOR SHARE",
        &[&shard, &node, &fence.epoch],
    )?;
    match held {
        Some(_) => Ok(()),
        None => Err(Fail::Store(StoreError::Fenced)),
    }
}

/// The PostgreSQL engine: a pool of connections to one database, and this node's id (the owner
/// fenced writes are checked against).
pub(crate) struct PgEngine {
    pool: Arc<Pool>,
    node_id: Arc<str>,
}

/// Counts one round of the engine with the database, by kind (`read`, `write`): what an operator
/// sizes PostgreSQL by, and what shows that an idle poll writes nothing.
pub(crate) fn counted(kind: &'static str) {
    metrics::counter!("inboxd_store_transactions_total", "engine" => "postgres", "kind" => kind)
        .increment(1);
}

impl PgEngine {
    /// The engine over an open pool (migrations already applied).
    pub(crate) fn new(pool: Arc<Pool>, node_id: &str) -> PgEngine {
        // Exported at zero from the start so rate() works from the first scrape.
        crate::telemetry::metrics::zero("inboxd_store_transactions_total");
        PgEngine {
            pool,
            node_id: Arc::from(node_id),
        }
    }

    /// One page of a scan: up to [`PAGE`] entries after `lower` (inclusive or not) and before
    /// `upper`, in key order.
    fn page(
        &self,
        table: Table,
        lower: Option<(Vec<u8>, bool)>,
        upper: Option<Vec<u8>>,
    ) -> Result<Vec<Entry>, StoreError> {
        counted("read");
        self.pool.run(move |client| {
            let mut sql = format!("SELECT key, value FROM {} WHERE TRUE", table.name());
            let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = Vec::new();
            if let Some((key, inclusive)) = &lower {
                params.push(key);
                let op = if *inclusive { ">=" } else { ">" };
                sql.push_str(&format!(" AND key {op} ${}", params.len()));
            }
            if let Some(key) = &upper {
                params.push(key);
                sql.push_str(&format!(" AND key < ${}", params.len()));
            }
            sql.push_str(&format!(" ORDER BY key LIMIT {PAGE}"));
            let rows = client.query(&sql, &params)?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                out.push((row.try_get(0)?, row.try_get(1)?));
            }
            Ok(out)
        })
    }
}

impl Engine for PgEngine {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        counted("read");
        let key = key.to_vec();
        self.pool.run(move |client| {
            let row = client.query_opt(
                &format!("SELECT value FROM {} WHERE key = $1", table.name()),
                &[&key],
            )?;
            Ok(row.map(|r| r.try_get(0)).transpose()?)
        })
    }

    fn insert(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.apply(&[Op::Insert {
            table,
            key: key.to_vec(),
            value: value.to_vec(),
        }])
    }

    fn remove(&self, table: Table, key: &[u8]) -> Result<bool, StoreError> {
        counted("write");
        let key = key.to_vec();
        self.pool.run(move |client| {
            let mut tx = client.transaction()?;
            let removed = tx.execute(
                &format!("DELETE FROM {} WHERE key = $1", table.name()),
                &[&key],
            )? > 0;
            if removed
                && table == Table::Channels
                && let Some(payload) = notice::channel_changed(&key)
            {
                send_notices(&mut tx, &[payload])?;
            }
            tx.commit()?;
            Ok(removed)
        })
    }

    fn compare_and_swap(
        &self,
        table: Table,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        let (key, expected, new) = (
            key.to_vec(),
            expected.map(<[u8]>::to_vec),
            new.map(<[u8]>::to_vec),
        );
        counted("write");
        self.pool.run(move |client| {
            let mut tx = client.transaction()?;
            let swapped = cas_in(&mut tx, table, &key, expected.as_deref(), new.as_deref())?;
            tx.commit()?;
            Ok(swapped)
        })
    }

    fn scan(
        &self,
        table: Table,
        scan: Scan<'_>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        let (mut lower, upper) = match scan {
            Scan::All => (None, None),
            Scan::Prefix(prefix) => (Some((prefix.to_vec(), true)), prefix_end(prefix)),
            Scan::After(after) => (Some((after.to_vec(), false)), None),
        };
        loop {
            let page = self.page(table, lower.clone(), upper.clone())?;
            let full = page.len() >= usize::try_from(PAGE).unwrap_or(usize::MAX);
            let mut last = None;
            for (key, value) in page {
                if visit(&key, &value).is_break() {
                    return Ok(());
                }
                last = Some(key);
            }
            match last {
                Some(key) if full => lower = Some((key, false)),
                _ => return Ok(()),
            }
        }
    }

    fn apply(&self, ops: &[Op]) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        counted("write");
        let ops = ops.to_vec();
        self.pool.run(move |client| {
            let mut tx = client.transaction()?;
            write_ops(&mut tx, &ops)?;
            tx.commit()?;
            Ok(())
        })
    }

    fn apply_fenced(&self, fence: Fence, ops: &[Op]) -> Result<(), StoreError> {
        counted("write");
        let ops = ops.to_vec();
        let node = self.node_id.clone();
        self.pool.run(move |client| {
            let mut tx = client.transaction()?;
            check_fence(&mut tx, &node, fence)?;
            write_ops(&mut tx, &ops)?;
            tx.commit()?;
            Ok(())
        })
    }

    fn compare_and_swap_fenced(
        &self,
        fence: Fence,
        table: Table,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        let (key, expected, new) = (
            key.to_vec(),
            expected.map(<[u8]>::to_vec),
            new.map(<[u8]>::to_vec),
        );
        let node = self.node_id.clone();
        counted("write");
        self.pool.run(move |client| {
            let mut tx = client.transaction()?;
            check_fence(&mut tx, &node, fence)?;
            let swapped = cas_in(&mut tx, table, &key, expected.as_deref(), new.as_deref())?;
            tx.commit()?;
            Ok(swapped)
        })
    }

    fn heals_itself(&self) -> bool {
        // Each worker connects again on its next job: a lost connection or a restarted server
        // costs the calls that were in flight, not a reopen of the store.
        true
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Every write is a committed transaction: durable once it returned.
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.pool.run(|client| {
            let row = client.query_one("SELECT pg_database_size(current_database())", &[])?;
            let size: i64 = row.try_get(0)?;
            Ok(u64::try_from(size).unwrap_or(0))
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_carry_past_ff_bytes() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
        assert_eq!(prefix_end(b""), None);
        assert_eq!(prefix_end(&[0x00, 0xFE, 0xFF]), Some(vec![0x00, 0xFF]));
    }
}
