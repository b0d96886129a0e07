//! `ChannelActor`: one incarnation of one channel's schedule — when its next cycle runs, what its
//! status is, how it backs off. The cycle itself (token, list, deliver, mark read) is
//! [`ingest::cycle`](crate::ingest::cycle); the channel's invariants that must outlive this actor
//! (one cycle at a time, the token set, the `Retry-After` floors, the slots) are held by its
//! [`ChannelRuntime`] and the limiters, so replacing the actor (an edit, disable + enable, a
//! failure) never breaks them.
//!
//! The actor is in one [`Phase`] at a time: idle (waiting for an authorization or a person),
//! scheduled (a timer is armed), running (a cycle runs; a poke meanwhile runs another after it),
//! stopping (ends when the running cycle does) or failed (reported to the supervisor). Every
//! failure is classified by the catalogue into a status and a retry policy; transient ones back off,
//! never before a `Retry-After`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};

use crate::actors::deps::Deps;
use crate::actors::messages::{ChannelFailed, Poke, Shutdown};
use crate::catalogue::{self, Classification, Retry};
use crate::domain::{ChannelId, ChannelStatus, CredentialKind};
use crate::events;
use crate::ingest::cycle::{self, ChannelJob, CycleEnd, PollReport};
use crate::ingest::failure::{Failure, last_error};
use crate::ingest::runtime::ChannelRuntime;
use crate::retry::Backoff;
use crate::store::{ChannelRecord, ChannelState, ErrorSource, LastError, StoreError};

/// Days before a client secret's expiry at which inboxd warns.
pub const SECRET_WARNING_DAYS: [i64; 4] = [30, 14, 7, 1];

/// Timers fire on this grid (measured from the process's first timer), so the channels of one
/// arbiter that are due within the same few milliseconds wake its thread once, not once each: at
/// 833 polls a second, a wake-up per poll is a sizeable share of an idle poll's CPU. A cycle runs
/// at most this much after it was due (never before: a `Retry-After` floor is only ever delayed),
/// and the lateness recorded is measured from the due time, so it includes the wait.
const TIMER_GRID: Duration = Duration::from_millis(8);

/// `due` rounded up to the timer grid.
fn coalesced(due: Instant) -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let since = due.saturating_duration_since(epoch).as_nanos();
    let grid = TIMER_GRID.as_nanos();
    let rounded = since.div_ceil(grid) * grid;
    let extra = u64::try_from(rounded - since).unwrap_or(0);
    due + Duration::from_nanos(extra)
}

/// Where the actor is in its life.
#[derive(Debug)]
enum Phase {
    /// No cycle is scheduled: the channel waits for an authorization, or for a person (a refused
    /// grant, an expired secret). A poke or a new actor wakes it.
    Idle,
    /// The next cycle is due at `due`.
    Scheduled { due: Instant, timer: SpawnHandle },
    /// A cycle due at `due` runs; `again` when a poll was asked for meanwhile.
    Running { due: Instant, again: bool },
    /// Ends when the running cycle does.
    Stopping,
    /// Stopped on a failure; the supervisor restarts the channel from the store.
    Failed,
}

/// The state of one failure episode, reset by a successful cycle.
#[derive(Debug, Default)]
struct Episode {
    /// Boxed (like `last_error` below): set only while failing, and every channel has an actor.
    backoff: Option<Box<Backoff>>,
    /// The next cycle refreshes the token first (Graph refused it).
    force_refresh: bool,
    /// The one refresh-and-retry after a 401 was spent.
    unauthorized_retried: bool,
    /// The one delayed retry of a `OnceAfterDelay` error was spent.
    once_retried: bool,
}

/// The actor of one channel.
pub struct ChannelActor {
    deps: Arc<Deps>,
    job: ChannelJob,
    runtime: Arc<ChannelRuntime>,
    phase: Phase,
    episode: Episode,
    status: ChannelStatus,
    last_error: Option<Box<LastError>>,
    /// The smallest warning threshold already logged for the secret's expiry.
    secret_warned: Option<i64>,
    /// Poll at once when started (hot add, new authorization, an edit) instead of at its phase.
    poll_at_start: bool,
    /// Shared by every actor (a `Recipient` of its own would be one more allocation per channel).
    supervisor: Arc<Recipient<ChannelFailed>>,
}

impl ChannelActor {
    /// An actor for `record` as incarnation `generation` (claimed from the channel's runtime);
    /// `poll_at_start` polls at once instead of at the channel's phase.
    pub fn new(
        deps: Arc<Deps>,
        record: ChannelRecord,
        poll_at_start: bool,
        supervisor: Arc<Recipient<ChannelFailed>>,
        runtime: Arc<ChannelRuntime>,
        generation: u64,
    ) -> Self {
        let run = &deps.ingest.run;
        let spread = run
            .token_refresh_jitter
            .mul_f64(record.id.stable_fraction(0x5eed));
        let mode = record.poll_mode.unwrap_or(run.mode);
        // The actor keeps the last error (the record's copy would be a second one, never read).
        let mut record = record;
        let last_error = record.last_error.take();
        ChannelActor {
            status: record.status,
            last_error,
            job: ChannelJob::new(
                Arc::new(record),
                run.token_refresh_margin + spread,
                generation,
                mode,
            ),
            runtime,
            deps,
            phase: Phase::Idle,
            episode: Episode::default(),
            secret_warned: None,
            poll_at_start,
            supervisor,
        }
    }

    fn id(&self) -> ChannelId {
        self.job.record.id
    }

    fn record(&self) -> &ChannelRecord {
        &self.job.record
    }

    /// Whether this actor is still the channel's current incarnation (an old one reports nothing).
    fn is_current(&self) -> bool {
        self.runtime.is_current(self.job.generation)
    }

    /// Decides whether and when the first cycle runs.
    ///
    /// The tokens are read by the first cycle, not here: at a million channels a store read and a
    /// decryption each would hold the start up by seconds. Only a channel still awaiting its
    /// authorization looks now (its grant may have been stored just before a crash, before its
    /// status); a channel whose tokens turn out to be gone waits for its authorization after its
    /// first cycle.
    fn begin(&mut self, ctx: &mut Context<Self>) {
        if self.status == ChannelStatus::AwaitingAuthorization {
            match self.runtime.has_tokens(&self.deps.ingest.store, self.id()) {
                Ok(true) => {}
                Ok(false) => {
                    if !self.secret_expired(Utc::now()) {
                        self.publish(None);
                    }
                    return;
                }
                Err(err) => {
                    tracing::error!(channel = %self.id(), error = %err, "Could not read the channel's tokens; stopping so the supervisor restarts it.");
                    self.phase = Phase::Failed;
                    ctx.stop();
                    return;
                }
            }
        }
        if self.secret_expired(Utc::now()) {
            return;
        }
        // A grant that Microsoft refused stays refused across restarts: wait for the operator.
        let halted = matches!(
            self.status,
            ChannelStatus::NeedsReauthorization | ChannelStatus::Blocked
        ) && self
            .last_error
            .as_ref()
            .is_some_and(|e| e.source != ErrorSource::Graph);
        if halted && !self.poll_at_start {
            self.publish(None);
            return;
        }
        let first = if self.poll_at_start {
            Duration::ZERO
        } else {
            // A stable phase per channel plus jitter, so a restart causes no thundering herd.
            let run = &self.deps.ingest.run;
            let phase = run.interval.mul_f64(self.id().stable_fraction(0));
            let jitter = run.jitter.mul_f64(rand::random::<f64>());
            (phase + jitter).min(run.interval)
        };
        self.schedule(ctx, Instant::now() + first);
    }

    /// How long from now until the mailbox's `Retry-After` floor passes (zero when none).
    fn floor_wait(&self) -> Duration {
        self.deps
            .ingest
            .limiters
            .floor(&self.job.key)
            .and_then(|floor| (floor - Utc::now()).to_std().ok())
            .unwrap_or_default()
    }

    /// Arms the timer for `due` (never before the mailbox's floor), replacing any pending one.
    fn schedule(&mut self, ctx: &mut Context<Self>, due: Instant) {
        if let Phase::Scheduled { timer, .. } = std::mem::replace(&mut self.phase, Phase::Idle) {
            ctx.cancel_future(timer);
        }
        let now = Instant::now();
        let due = due.max(now + self.floor_wait());
        let delay = coalesced(due).saturating_duration_since(now);
        let timer = ctx.run_later(delay, |act, ctx| act.tick(ctx));
        self.phase = Phase::Scheduled { due, timer };
        let at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
        self.publish(Some(at));
    }

    /// Publishes this channel's row on the status board (only the current incarnation does).
    fn publish(&self, next_poll_at: Option<DateTime<Utc>>) {
        if !self.is_current() {
            return;
        }
        let status = self.status;
        let last_error = self.last_error.clone();
        let warning = self.runtime.warning().map(Box::new);
        let attempts = self.episode.backoff.as_ref().map_or(0, |b| b.attempts());
        self.deps.board.update(self.id(), |row| {
            row.status = status;
            row.last_error = last_error;
            row.warning = warning;
            row.next_poll_at = next_poll_at;
            row.attempts = attempts;
        });
    }

    /// Changes the status and last error, persisting them when they changed.
    fn set_status(&mut self, status: ChannelStatus, error: Option<LastError>) {
        let previous = self.status;
        let changed = status != self.status
            || error.as_ref().map(|e| (&e.code, &e.message))
                != self.last_error.as_ref().map(|e| (&e.code, &e.message));
        self.status = status;
        if error.is_some() || status == ChannelStatus::Active {
            self.last_error = error.map(Box::new);
        }
        if changed {
            self.persist_state(None);
            tracing::info!(channel = %self.id(), mailbox = %self.record().mailbox, status = %status,
                code = self.last_error.as_ref().map(|e| e.code.as_str()).unwrap_or(""), "Channel status changed.");
        }
        if status != previous && self.is_current() {
            self.deps.ingest.events.emit(
                self.id(),
                self.record().mailbox.as_str(),
                events::status_changed(previous, status, self.last_error.as_deref()),
            );
        }
    }

    fn persist_state(&self, success_at: Option<DateTime<Utc>>) {
        if !self.is_current() {
            return;
        }
        let state = ChannelState {
            status: self.status,
            last_error: self.last_error.as_deref().cloned(),
            last_poll_at: Some(Utc::now()),
            last_success_at: success_at,
        };
        if let Err(err) = self
            .deps
            .ingest
            .store
            .update_channel_state(self.id(), &state)
        {
            tracing::warn!(channel = %self.id(), error = %err, "Could not persist the channel's status.");
        }
    }

    /// Whether the app's credential (secret or certificate) is past its date (the channel is then
    /// blocked, with the remedy of its kind); logs the warnings before.
    fn secret_expired(&mut self, now: DateTime<Utc>) -> bool {
        let Some((kind, expires_at)) = self.deps.ingest.apps.expiry(self.record()) else {
            return false;
        };
        let days_left = (expires_at - now).num_days();
        let (code, what) = match kind {
            CredentialKind::Secret => (catalogue::codes::SECRET_EXPIRED, "client secret"),
            CredentialKind::Certificate => (catalogue::codes::CERTIFICATE_EXPIRED, "certificate"),
        };
        if expires_at <= now {
            let error = Classification::of(code).map(|c| {
                last_error(
                    ErrorSource::Inboxd,
                    &c,
                    format!(
                        "The app's {what} expired on {}.",
                        expires_at.format("%Y-%m-%d %H:%M UTC")
                    ),
                    None,
                    None,
                )
            });
            self.set_status(ChannelStatus::Blocked, error);
            self.phase = Phase::Idle;
            self.publish(None);
            return true;
        }
        if let Some(threshold) = SECRET_WARNING_DAYS
            .iter()
            .copied()
            .filter(|t| days_left < *t)
            .min()
            && self.secret_warned.is_none_or(|warned| threshold < warned)
        {
            self.secret_warned = Some(threshold);
            tracing::warn!(channel = %self.id(), mailbox = %self.record().mailbox, days_left, credential = what,
                "The channel's app credential expires soon: make a new one in the Azure portal and run `inboxd app rotate APP` (see `inboxd app list`).");
        }
        false
    }

    /// The timer fired: starts a cycle.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        let due = match self.phase {
            Phase::Scheduled { due, .. } => due,
            Phase::Idle => Instant::now(),
            Phase::Running { .. } | Phase::Stopping | Phase::Failed => return,
        };
        self.phase = Phase::Idle;
        if self.secret_expired(Utc::now()) {
            return;
        }
        let now = Instant::now();
        if self.deps.ingest.store.is_broken() {
            // The store refuses writes: nothing a cycle did could be recorded, and mail handed to
            // the sink now would be handed over again. Wait (with backoff) for the housekeeper to
            // reopen the store, keeping the store's error on the status.
            let delay = if self
                .last_error
                .as_ref()
                .is_some_and(|e| e.source == ErrorSource::Store)
            {
                Some(self.backoff_delay(None))
            } else {
                let err = self
                    .deps
                    .ingest
                    .store
                    .broken_error()
                    .unwrap_or_else(|| StoreError::Io {
                        source: std::io::Error::other(
                            "the store refuses writes since an I/O error; inboxd reopens it as soon as the disk takes writes again",
                        ),
                    });
                self.on_failure(Failure::Store(err))
            };
            if let Some(delay) = delay {
                self.schedule(ctx, now + delay);
            }
            return;
        }
        self.deps
            .ingest
            .stats
            .record_lateness(now.saturating_duration_since(due));
        self.phase = Phase::Running { due, again: false };
        self.deps
            .board
            .update(self.id(), |row| row.last_poll_at = Some(Utc::now()));
        let force_refresh = std::mem::take(&mut self.episode.force_refresh);
        let deps = Arc::clone(&self.deps);
        let runtime = Arc::clone(&self.runtime);
        let job = self.job.clone();
        let cycle = async move {
            cycle::run_cycle(&deps.ingest, &deps.processor, &runtime, &job, force_refresh).await
        };
        ctx.spawn(
            cycle
                .into_actor(self)
                .map(|end, act, ctx| act.finish(end, ctx)),
        );
    }

    /// Handles a finished cycle: status, backoff and the next tick.
    fn finish(&mut self, end: CycleEnd, ctx: &mut Context<Self>) {
        let (due, again) = match self.phase {
            Phase::Running { due, again } => (due, again),
            Phase::Stopping | Phase::Failed => {
                ctx.stop();
                return;
            }
            Phase::Idle | Phase::Scheduled { .. } => (Instant::now(), false),
        };
        self.phase = Phase::Idle;
        let interval = self.deps.ingest.run.interval;
        let delay = match end {
            CycleEnd::Fenced => {
                // A newer incarnation runs the channel now.
                ctx.stop();
                return;
            }
            CycleEnd::Ran(Err(failure)) if failure.is_not_owned() => {
                // Cluster mode: another node holds the channel's shard now. Not a failure of
                // the channel: its status is the new owner's to write.
                tracing::info!(channel = %self.id(), "The channel's shard moved to another node: it stops here.");
                self.phase = Phase::Stopping;
                ctx.stop();
                return;
            }
            CycleEnd::NoGrant => {
                // No token set: wait for an authorization (or for the person a refused grant
                // already waits for).
                let waiting_for_person = matches!(
                    self.status,
                    ChannelStatus::NeedsReauthorization | ChannelStatus::Blocked
                );
                if !waiting_for_person {
                    self.set_status(ChannelStatus::AwaitingAuthorization, None);
                }
                None
            }
            CycleEnd::Ran(Ok(report)) => self.on_success(report),
            CycleEnd::Ran(Err(failure)) => self.on_failure(failure),
        };
        let delay = if again { Some(Duration::ZERO) } else { delay };
        match delay {
            Some(delay) if delay == interval => {
                // Keep the fixed-rate cadence when on schedule; skip ticks a long cycle overran.
                let now = Instant::now();
                let mut next = due;
                while next <= now {
                    next += interval;
                }
                self.schedule(ctx, next);
            }
            Some(delay) => self.schedule(ctx, Instant::now() + delay),
            None => self.publish(None),
        }
    }

    /// Returns the delay to the next cycle.
    fn on_success(&mut self, report: PollReport) -> Option<Duration> {
        let now = Utc::now();
        if self.is_current() {
            let delivered = report.delivered;
            self.deps.board.update(self.id(), |row| {
                if delivered > 0 {
                    let today = now.date_naive();
                    if row.messages_day != Some(today) {
                        row.messages_day = Some(today);
                        row.messages_today = 0;
                    }
                    row.messages_today += delivered;
                }
                row.last_success_at = Some(now);
            });
        }
        if let Some(err) = report.sink_unavailable {
            // The sink took the mail but the ledger could not record it: that is the store's
            // failure (a full disk), and the status says so, not the sink's.
            if let Some(store_err) = self.deps.ingest.store.broken_error() {
                return self.on_failure(Failure::Store(store_err));
            }
            let error = Classification::of(catalogue::codes::SINK_UNAVAILABLE)
                .map(|c| last_error(ErrorSource::Sink, &c, err.to_string(), None, None));
            self.set_status(ChannelStatus::BackingOff, error);
            return Some(self.backoff_delay(None));
        }
        self.episode = Episode::default();
        if self.status != ChannelStatus::Active {
            self.set_status(ChannelStatus::Active, None);
            self.persist_state(Some(now));
        }
        if report.more {
            // A backlog: go on at once; the limiters keep it fair to other channels.
            return Some(Duration::from_millis(10));
        }
        Some(self.deps.ingest.run.interval)
    }

    fn backoff_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let policy = self.deps.ingest.run.backoff;
        self.episode
            .backoff
            .get_or_insert_with(|| Box::new(Backoff::new(policy)))
            .next_delay(retry_after)
    }

    /// Classifies a failure; returns the delay to the next cycle, or `None` to wait for a person.
    fn on_failure(&mut self, failure: Failure) -> Option<Duration> {
        match &failure {
            // The token set may be dead: whatever runs next (a retry, "Poll now") refreshes first.
            Failure::Identity(_) => self.episode.force_refresh = true,
            failure if failure.needs_token_refresh() => {
                self.episode.force_refresh = true;
                if !self.episode.unauthorized_retried {
                    // Refresh once and retry once; a second 401 is classified below.
                    self.episode.unauthorized_retried = true;
                    return Some(Duration::ZERO);
                }
            }
            _ => {}
        }
        if failure.is_throttled() {
            metrics::counter!("inboxd_throttle_waits_total").increment(1);
        }
        let classified = failure.classify();
        let (class, error, retry_after) =
            (classified.class, classified.error, classified.retry_after);
        let source = error.source;
        tracing::warn!(channel = %self.id(), mailbox = %self.record().mailbox, code = %error.code, retry = %class.retry(), "Channel cycle failed.");
        match class.retry() {
            Retry::Backoff | Retry::ResyncThenRetry => {
                self.set_status(ChannelStatus::BackingOff, Some(error));
                Some(self.backoff_delay(retry_after))
            }
            Retry::OnceAfterDelay if !self.episode.once_retried => {
                self.episode.once_retried = true;
                self.set_status(ChannelStatus::BackingOff, Some(error));
                Some(catalogue::RETRY_ONCE_DELAY.max(retry_after.unwrap_or_default()))
            }
            Retry::No | Retry::OnceAfterDelay | Retry::RefreshThenRetryOnce => {
                let status = match class.status() {
                    ChannelStatus::Active
                    | ChannelStatus::Disabled
                    | ChannelStatus::AwaitingAuthorization => ChannelStatus::Blocked,
                    other => other,
                };
                self.set_status(status, Some(error));
                match source {
                    // A token refused even after a refresh belongs to a dead grant: wait for a person.
                    ErrorSource::Graph if class.retry() == Retry::RefreshThenRetryOnce => None,
                    // Graph refusals (a missing mailbox permission, a wrong folder) are fixed outside
                    // inboxd: keep trying at the normal cadence so the channel recovers by itself.
                    ErrorSource::Graph => Some(self.deps.ingest.run.interval),
                    // A refused grant stays refused: wait for re-authorization or a new secret.
                    _ => None,
                }
            }
        }
    }
}

impl Actor for ChannelActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.deps
            .ingest
            .stats
            .live_channels
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.begin(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.deps
            .ingest
            .stats
            .live_channels
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if matches!(self.phase, Phase::Failed) {
            self.supervisor.do_send(ChannelFailed {
                id: self.id(),
                generation: self.job.generation,
            });
        }
    }
}

impl Handler<Poke> for ChannelActor {
    type Result = ();

    fn handle(&mut self, _: Poke, ctx: &mut Context<Self>) {
        match &mut self.phase {
            Phase::Running { again, .. } => *again = true,
            Phase::Stopping | Phase::Failed => {}
            Phase::Idle | Phase::Scheduled { .. } => {
                // Poll now, or when the mailbox's `Retry-After` floor passes (`schedule` holds it).
                self.schedule(ctx, Instant::now());
            }
        }
    }
}

impl Handler<Shutdown> for ChannelActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        // Let a running cycle finish (its mail is acknowledged and marked read), then stop.
        match std::mem::replace(&mut self.phase, Phase::Stopping) {
            Phase::Running { .. } => {}
            Phase::Scheduled { timer, .. } => {
                ctx.cancel_future(timer);
                ctx.stop();
            }
            Phase::Idle | Phase::Stopping | Phase::Failed => ctx.stop(),
        }
    }
}

/// A test hook (feature `test-hooks`): fail as a bug would, so the supervisor's restart is tested.
#[cfg(feature = "test-hooks")]
impl Handler<crate::actors::messages::SimulateFailure> for ChannelActor {
    type Result = ();

    fn handle(&mut self, _: crate::actors::messages::SimulateFailure, ctx: &mut Context<Self>) {
        tracing::warn!(channel = %self.id(), "Channel actor failing on request.");
        self.phase = Phase::Failed;
        ctx.stop();
    }
}
