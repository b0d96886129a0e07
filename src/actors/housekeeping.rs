//! The housekeeper: keeps the store bounded and brings it back after a write error.
//!
//! - At start, then every quarter of the retention (between a second and an hour), it removes
//!   ledger entries of mail marked read longer ago than the ledger's retention
//!   (`store.ledger_retention_days`) and authorization states that expired (with the tombstones of
//!   used ones), so the store's size follows the mail in flight, not all mail ever.
//! - Every second it checks whether the store failed with an I/O error (a full disk, a file-size
//!   limit, a read-only remount). sled refuses every call after one until it is opened again, so
//!   the housekeeper calls [`Store::recover`] until the disk takes writes again: at once, then
//!   after waits that double from 1 s up to 30 s while the disk stays full (each attempt reopens
//!   the engine, which reads its log). Meanwhile the
//!   channels back off with the store's error on their status; they resume on their next retry.
//!
//! Both run on the blocking pool: the store's calls block.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;

use crate::actors::messages::Terminate;
use crate::store::Store;

/// How often the housekeeper looks at a failed store.
const RECOVER_EVERY: Duration = Duration::from_secs(1);
/// The longest wait between two recovery attempts: each failed attempt reopens the engine (which
/// reads its log), so a disk that stays full is retried less and less often, up to this.
const RECOVER_AT_MOST_EVERY: Duration = Duration::from_secs(30);

/// Prunes the store and recovers it after I/O errors.
pub struct Housekeeper {
    store: Store,
    retention: Duration,
    prune_every: Duration,
    /// A prune or a recovery is running on the blocking pool.
    busy: Arc<AtomicBool>,
    /// The last recovery failed (its successor logs at debug level, not as a new warning).
    failing: bool,
    /// After failed recoveries: no attempt before this; the wait doubles with each failure.
    next_attempt: Option<(std::time::Instant, Duration)>,
}

impl Housekeeper {
    /// A housekeeper for `store` that prunes ledger entries older than `retention`, checking
    /// every quarter of the retention, but not more often than every second nor less often than
    /// every hour (a prune reads the whole ledger).
    pub fn new(store: Store, retention: Duration) -> Housekeeper {
        let prune_every = (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600));
        Housekeeper {
            store,
            retention,
            prune_every,
            busy: Arc::new(AtomicBool::new(false)),
            failing: false,
            next_attempt: None,
        }
    }

    /// Runs `work` on the blocking pool unless other work still runs.
    fn off_thread<T, W, D>(&mut self, ctx: &mut Context<Self>, work: W, done: D)
    where
        T: Send + 'static,
        W: FnOnce(Store) -> T + Send + 'static,
        D: FnOnce(&mut Self, T) + 'static,
    {
        if self.busy.swap(true, Ordering::SeqCst) {
            return;
        }
        let store = self.store.clone();
        let busy = Arc::clone(&self.busy);
        let task = actix_web::rt::task::spawn_blocking(move || work(store));
        ctx.spawn(
            async move {
                let out = task.await;
                busy.store(false, Ordering::SeqCst);
                out
            }
            .into_actor(self)
            .map(move |out, act, _| match out {
                Ok(out) => done(act, out),
                Err(err) => tracing::error!(error = %err, "A store housekeeping task failed."),
            }),
        );
    }

    fn prune(&mut self, ctx: &mut Context<Self>) {
        let retention = chrono::Duration::from_std(self.retention).unwrap_or(chrono::Duration::MAX);
        self.off_thread(
            ctx,
            move |store| {
                let now = Utc::now();
                let ledger = crate::ingest::Ledger::new(store.clone()).prune(now - retention);
                let pending = store.prune_pending(now);
                if let Err(err) = store.prune_floors(now) {
                    tracing::warn!(error = %err, "Could not prune passed throttling floors.");
                }
                (ledger, pending)
            },
            |_, (ledger, pending)| {
                match ledger {
                    Ok(0) => {}
                    Ok(n) => {
                        metrics::counter!("inboxd_ledger_pruned_total").increment(n as u64);
                        tracing::debug!(entries = n, "Pruned ledger entries past their retention.");
                    }
                    Err(err) => tracing::warn!(error = %err, "Could not prune the ledger."),
                }
                if let Err(err) = pending {
                    tracing::warn!(error = %err, "Could not prune expired authorization states.");
                }
            },
        );
    }

    fn recover(&mut self, ctx: &mut Context<Self>) {
        if !self.store.is_broken() {
            return;
        }
        if self
            .next_attempt
            .is_some_and(|(at, _)| std::time::Instant::now() < at)
        {
            return;
        }
        self.off_thread(
            ctx,
            |store| store.recover(),
            |act, outcome| match outcome {
                Ok(recovered) => {
                    if recovered {
                        metrics::counter!("inboxd_store_recoveries_total", "outcome" => "ok")
                            .increment(1);
                    }
                    act.failing = false;
                    act.next_attempt = None;
                }
                Err(err) => {
                    metrics::counter!("inboxd_store_recoveries_total", "outcome" => "failed")
                        .increment(1);
                    if act.failing {
                        tracing::debug!(error = %err, "The store still refuses writes.");
                    } else {
                        tracing::warn!(error = %err, "The store refuses writes; inboxd retries (every 1 to 30 s) and resumes on its own once the disk takes writes again.");
                    }
                    act.failing = true;
                    let wait = act.next_attempt.map_or(RECOVER_EVERY, |(_, wait)| {
                        (wait * 2).min(RECOVER_AT_MOST_EVERY)
                    });
                    act.next_attempt = Some((std::time::Instant::now() + wait, wait));
                }
            },
        );
    }
}

impl Actor for Housekeeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Once at start (a daemon restarted often would otherwise never prune), then regularly.
        self.prune(ctx);
        ctx.run_interval(RECOVER_EVERY, |act, ctx| act.recover(ctx));
        ctx.run_interval(self.prune_every, |act, ctx| act.prune(ctx));
    }
}

impl Handler<Terminate> for Housekeeper {
    type Result = ();

    fn handle(&mut self, _: Terminate, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::domain::ChannelId;
    use crate::domain::secret::MasterKey;
    use crate::store::{LedgerEntry, LedgerState, StoreOptions};

    fn entry(state: LedgerState, age: chrono::Duration) -> LedgerEntry {
        let when = Utc::now() - age;
        LedgerEntry {
            state,
            failures: 0,
            last_error: None,
            received_at: None,
            first_seen_at: when,
            updated_at: when,
        }
    }

    #[actix_rt::test]
    async fn the_housekeeper_prunes_mail_marked_read_past_the_retention_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open(dir.path(), MasterKey::generate(), StoreOptions::default()).unwrap();
        let id = ChannelId::generate();
        let hour = chrono::Duration::hours(1);
        let fresh = chrono::Duration::zero();
        store
            .ledger_put(id, "old-read", &entry(LedgerState::MarkedRead, hour))
            .unwrap();
        store
            .ledger_put(id, "new-read", &entry(LedgerState::MarkedRead, fresh))
            .unwrap();
        store
            .ledger_put(id, "old-delivered", &entry(LedgerState::Delivered, hour))
            .unwrap();
        store
            .ledger_put(
                id,
                "old-quarantined",
                &entry(LedgerState::Quarantined, hour),
            )
            .unwrap();

        let housekeeper = Housekeeper::new(store.clone(), Duration::from_secs(60)).start();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.ledger_get(id, "old-read").unwrap().is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "the old entry was never pruned"
            );
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        housekeeper.send(Terminate).await.unwrap();
        // Mail not yet marked read is never pruned, however old: it is still being worked on.
        for kept in ["new-read", "old-delivered", "old-quarantined"] {
            assert!(
                store.ledger_get(id, kept).unwrap().is_some(),
                "{kept} was pruned"
            );
        }
        assert!(!store.is_broken());
        assert!(
            !store.recover().unwrap(),
            "a healthy store needs no recovery"
        );
    }
}
