//! `ChannelActor`: one channel's whole life — its tokens, its poll timer, its backoff, its status.
//!
//! A cycle is: refresh the access token if it expires within the margin (persisting the rotated
//! refresh token *before* the new access token is used), list unread mail page by page, hand the new
//! mail to the processor, wait for its acknowledgement, then mark the mail read in `$batch`es.
//! At most one cycle runs at a time (`busy`), so a slow poll never overlaps the next tick and two
//! refreshes of one channel never overlap. Every failure is classified by the catalogue into a
//! status and a retry policy; transient ones back off (never before a `Retry-After`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};

use crate::actors::messages::{ChannelFailed, Poke, ProcessBatch, Shutdown, SimulateFailure};
use crate::actors::shared::{Shared, stable_fraction};
use crate::catalogue::{self, Classification, Retry};
use crate::domain::{ChannelId, ChannelStatus, MailItem};
use crate::graph::{GraphError, MAX_BATCH, MarkReadOutcome};
use crate::oauth::{AppCredentials, OAuthError};
use crate::rate_limit::{MailboxKey, RequestPermit};
use crate::retry::Backoff;
use crate::sink::SinkError;
use crate::store::{
    ChannelRecord, ChannelState, ErrorSource, FirstImport, LastError, LedgerEntry, LedgerState,
    StoreError, TokenSet,
};

/// Days before a client secret's expiry at which inboxd warns.
pub const SECRET_WARNING_DAYS: [i64; 4] = [30, 14, 7, 1];

/// How many times a throttled mark-read item is retried within one cycle.
const MARK_READ_TRIES: u32 = 3;

/// The actor of one channel.
pub struct ChannelActor {
    shared: Arc<Shared>,
    /// The channel's configuration for this incarnation; a change restarts the actor.
    record: Arc<ChannelRecord>,
    /// Keys of this channel in the shared limiters.
    mailbox_key: MailboxKey,
    app_key: Arc<str>,
    tenant_key: Arc<str>,
    /// The token set, loaded from the store, replaced by each refresh.
    tokens: Option<TokenSet>,
    /// `tokens` is newer than the store's copy (a rotated refresh token whose write failed, the
    /// disk being full): it is written before the next poll, and on stop.
    tokens_unsaved: bool,
    /// A cycle is running.
    busy: bool,
    /// A poll was asked for while a cycle ran: run another right after.
    poke_pending: bool,
    /// The fixed-rate schedule's next due time.
    next_due: Option<Instant>,
    /// The pending timer, cancelled when a poll is asked for early.
    timer: Option<SpawnHandle>,
    /// Present while failing; reset on success.
    backoff: Option<Backoff>,
    status: ChannelStatus,
    last_error: Option<LastError>,
    /// The next cycle refreshes the token first (after a 401).
    force_refresh: bool,
    /// The 401 retry was spent in this failure episode.
    unauthorized_retried: bool,
    /// The one delayed retry of a `OnceAfterDelay` error was spent.
    once_retried: bool,
    /// The smallest warning threshold already logged for the secret's expiry.
    secret_warned: Option<i64>,
    /// Poll at once when started (hot add, new authorization) instead of at the channel's phase.
    poll_at_start: bool,
    /// This channel's share of the refresh jitter.
    refresh_spread: Duration,
    /// Stop after the running cycle.
    stopping: bool,
    /// Where to report a failure, and which incarnation this is.
    supervisor: Recipient<ChannelFailed>,
    generation: u64,
    /// Stopped on a failure (reported to the supervisor, which restarts it).
    failed: bool,
}

/// What one cycle produced.
struct CycleResult {
    /// A token set that was refreshed during the cycle.
    refreshed: Option<TokenSet>,
    /// The actor's token set (or `refreshed`) is newer than the store's: its write failed.
    unsaved: bool,
    outcome: Result<PollReport, Failure>,
}

/// The token set a cycle starts with.
struct HeldTokens {
    tokens: TokenSet,
    /// Refresh before polling (the access token expires soon, or Graph answered 401).
    needs_refresh: bool,
    /// The set is newer than the store's copy: write it first.
    unsaved: bool,
}

/// What a successful poll did.
#[derive(Debug, Default)]
struct PollReport {
    delivered: u64,
    marked_read: u64,
    /// More unread mail is waiting: poll again at once.
    more: bool,
    /// The sink could not take mail: back off, the messages stay unread.
    sink_unavailable: Option<SinkError>,
}

/// Why a cycle failed.
#[derive(Debug)]
enum Failure {
    Identity(OAuthError),
    Graph(GraphError),
    Store(StoreError),
    Processor(String),
}

impl From<GraphError> for Failure {
    fn from(err: GraphError) -> Self {
        Failure::Graph(err)
    }
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        Failure::Store(err)
    }
}

impl ChannelActor {
    /// An actor for `record`; `poll_at_start` polls at once instead of at the channel's phase.
    pub fn new(
        shared: Arc<Shared>,
        record: ChannelRecord,
        poll_at_start: bool,
        supervisor: Recipient<ChannelFailed>,
        generation: u64,
    ) -> Self {
        let mailbox_key = MailboxKey::new(record.client_id.as_str(), record.mailbox.as_str());
        let app_key: Arc<str> = Arc::from(record.client_id.as_str());
        let tenant_key: Arc<str> = Arc::from(record.tenant_id.as_str());
        let jitter = shared.run.token_refresh_jitter;
        let refresh_spread = jitter.mul_f64(stable_fraction(record.id, 0x5eed));
        ChannelActor {
            status: record.status,
            last_error: record.last_error.clone(),
            record: Arc::new(record),
            shared,
            mailbox_key,
            app_key,
            tenant_key,
            tokens: None,
            tokens_unsaved: false,
            busy: false,
            poke_pending: false,
            next_due: None,
            timer: None,
            backoff: None,
            force_refresh: false,
            unauthorized_retried: false,
            once_retried: false,
            secret_warned: None,
            poll_at_start,
            refresh_spread,
            stopping: false,
            supervisor,
            generation,
            failed: false,
        }
    }

    fn id(&self) -> ChannelId {
        self.record.id
    }

    /// Loads the tokens and decides whether and when the first poll runs.
    fn begin(&mut self, ctx: &mut Context<Self>) {
        self.busy = false;
        self.tokens = match self.shared.store.get_tokens(self.id()) {
            Ok(tokens) => tokens,
            Err(err) => {
                tracing::error!(channel = %self.id(), error = %err, "Could not read the channel's tokens; stopping so the supervisor restarts it.");
                self.failed = true;
                ctx.stop();
                return;
            }
        };
        if self.secret_expired(Utc::now()) {
            return;
        }
        if self.tokens.is_none() {
            let waiting_for_person = matches!(
                self.status,
                ChannelStatus::NeedsReauthorization | ChannelStatus::Blocked
            );
            if !waiting_for_person {
                self.set_status(ChannelStatus::AwaitingAuthorization, None);
            }
            self.publish(None);
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
        let now = Instant::now();
        let first = if self.poll_at_start {
            Duration::ZERO
        } else {
            // A stable phase per channel plus jitter, so a restart causes no thundering herd.
            let interval = self.shared.run.interval;
            let phase = interval.mul_f64(stable_fraction(self.id(), 0));
            let jitter = self.shared.run.jitter.mul_f64(rand::random::<f64>());
            (phase + jitter).min(interval)
        };
        self.next_due = Some(now + first);
        self.schedule(ctx, first);
    }

    /// Arms the timer `delay` from now, replacing any pending one.
    fn schedule(&mut self, ctx: &mut Context<Self>, delay: Duration) {
        if let Some(handle) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        self.timer = Some(ctx.run_later(delay, |act, ctx| {
            act.timer = None;
            act.tick(ctx);
        }));
        let at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
        self.publish(Some(at));
    }

    /// Publishes this channel's row on the status board.
    fn publish(&self, next_poll_at: Option<DateTime<Utc>>) {
        let status = self.status;
        let last_error = self.last_error.clone();
        self.shared.board.update(self.id(), |row| {
            row.status = status;
            row.last_error = last_error;
            row.next_poll_at = next_poll_at;
        });
    }

    /// Changes the status and last error, persisting them when they changed.
    fn set_status(&mut self, status: ChannelStatus, error: Option<LastError>) {
        let changed = status != self.status
            || error.as_ref().map(|e| (&e.code, &e.message))
                != self.last_error.as_ref().map(|e| (&e.code, &e.message));
        self.status = status;
        if error.is_some() || status == ChannelStatus::Active {
            self.last_error = error;
        }
        if changed {
            self.persist_state(None);
            tracing::info!(channel = %self.id(), mailbox = %self.record.mailbox, status = %status,
                code = self.last_error.as_ref().map(|e| e.code.as_str()).unwrap_or(""), "Channel status changed.");
        }
    }

    fn persist_state(&self, success_at: Option<DateTime<Utc>>) {
        let state = ChannelState {
            status: self.status,
            last_error: self.last_error.clone(),
            last_poll_at: Some(Utc::now()),
            last_success_at: success_at,
        };
        if let Err(err) = self.shared.store.update_channel_state(self.id(), &state) {
            tracing::warn!(channel = %self.id(), error = %err, "Could not persist the channel's status.");
        }
    }

    /// Whether the secret's date has passed (the channel is then blocked); logs the warnings before.
    fn secret_expired(&mut self, now: DateTime<Utc>) -> bool {
        let Some(expires_at) = self.record.client_secret_expires_at else {
            return false;
        };
        let days_left = (expires_at - now).num_days();
        metrics::gauge!("inboxd_client_secret_days_left_min").set(days_left as f64);
        if expires_at <= now {
            let entry = Classification::of(catalogue::codes::SECRET_EXPIRED);
            let error = entry.map(|c| {
                last_error(
                    ErrorSource::Inboxd,
                    &c,
                    format!(
                        "The client secret expired on {}.",
                        expires_at.format("%Y-%m-%d")
                    ),
                    None,
                    None,
                )
            });
            self.set_status(ChannelStatus::Blocked, error);
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
            tracing::warn!(channel = %self.id(), mailbox = %self.record.mailbox, days_left,
                "The channel's client secret expires soon: make a new secret in the Azure portal and run `inboxd channel update ID --client-secret-file FILE`.");
        }
        false
    }

    /// Starts a cycle unless one runs.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        if self.busy {
            self.poke_pending = true;
            return;
        }
        let now = Instant::now();
        if self.secret_expired(Utc::now()) {
            return;
        }
        if self.shared.store.is_broken() {
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
                self.on_failure(Failure::Store(StoreError::Io {
                    source: std::io::Error::other(
                        "the store refuses writes since an I/O error; inboxd reopens it as soon as the disk takes writes again",
                    ),
                }))
            };
            if let Some(delay) = delay {
                self.next_due = Some(now + delay);
                self.schedule(ctx, delay);
            }
            return;
        }
        let Some(tokens) = self.tokens.clone() else {
            return;
        };
        let lateness = self
            .next_due
            .map(|due| now.saturating_duration_since(due))
            .unwrap_or_default();
        self.shared.stats.record_lateness(lateness);
        self.busy = true;
        self.shared
            .board
            .update(self.id(), |row| row.last_poll_at = Some(Utc::now()));
        let needs_refresh = self.force_refresh || self.expires_soon(&tokens);
        self.force_refresh = false;
        let cycle = run_cycle(
            Arc::clone(&self.shared),
            Arc::clone(&self.record),
            self.mailbox_key.clone(),
            Arc::clone(&self.app_key),
            Arc::clone(&self.tenant_key),
            HeldTokens {
                tokens,
                needs_refresh,
                unsaved: self.tokens_unsaved,
            },
        );
        ctx.spawn(
            cycle
                .into_actor(self)
                .map(|result, act, ctx| act.finish(result, ctx)),
        );
    }

    fn expires_soon(&self, tokens: &TokenSet) -> bool {
        let margin = self.shared.run.token_refresh_margin + self.refresh_spread;
        let margin = chrono::Duration::from_std(margin).unwrap_or_default();
        tokens.access_expires_at - margin <= Utc::now()
    }

    /// Handles a finished cycle: status, backoff and the next tick.
    fn finish(&mut self, result: CycleResult, ctx: &mut Context<Self>) {
        self.busy = false;
        if let Some(tokens) = result.refreshed {
            self.tokens = Some(tokens);
        }
        self.tokens_unsaved = result.unsaved;
        if self.stopping {
            ctx.stop();
            return;
        }
        let interval = self.shared.run.interval;
        let delay = match result.outcome {
            Ok(report) => self.on_success(report),
            Err(failure) => self.on_failure(failure),
        };
        let delay = if self.poke_pending {
            self.poke_pending = false;
            Some(Duration::ZERO)
        } else {
            delay
        };
        match delay {
            Some(delay) => {
                let now = Instant::now();
                // Keep the fixed-rate cadence when on schedule; skip ticks a long cycle overran.
                if delay == interval {
                    let mut due = self.next_due.unwrap_or(now);
                    while due <= now {
                        due += interval;
                    }
                    self.next_due = Some(due);
                    self.schedule(ctx, due - now);
                } else {
                    self.next_due = Some(now + delay);
                    self.schedule(ctx, delay);
                }
            }
            None => self.publish(None),
        }
    }

    /// Returns the delay to the next cycle.
    fn on_success(&mut self, report: PollReport) -> Option<Duration> {
        let now = Utc::now();
        if report.delivered > 0 {
            let today = now.date_naive();
            self.shared.board.update(self.id(), |row| {
                if row.messages_day != Some(today) {
                    row.messages_day = Some(today);
                    row.messages_today = 0;
                }
                row.messages_today += report.delivered;
                row.last_success_at = Some(now);
            });
        } else {
            self.shared
                .board
                .update(self.id(), |row| row.last_success_at = Some(now));
        }
        if let Some(err) = report.sink_unavailable {
            let class = Classification::of(catalogue::codes::SINK_UNAVAILABLE);
            let error = class
                .as_ref()
                .map(|c| last_error(ErrorSource::Sink, c, err.to_string(), None, None));
            self.set_status(ChannelStatus::BackingOff, error);
            return Some(self.backoff_delay(None));
        }
        self.backoff = None;
        self.unauthorized_retried = false;
        self.once_retried = false;
        if self.status != ChannelStatus::Active {
            self.set_status(ChannelStatus::Active, None);
            self.persist_state(Some(now));
        }
        if report.more {
            // A backlog: go on at once; the limiters keep it fair to other channels.
            return Some(Duration::from_millis(10));
        }
        Some(self.shared.run.interval)
    }

    fn backoff_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let policy = self.shared.run.backoff;
        self.backoff
            .get_or_insert_with(|| Backoff::new(policy))
            .next_delay(retry_after)
    }

    /// Classifies a failure; returns the delay to the next cycle, or `None` to wait for a person.
    fn on_failure(&mut self, failure: Failure) -> Option<Duration> {
        let (source, class, message, retry_after, ids) = match &failure {
            Failure::Identity(err) => {
                // The token set may be dead: whatever runs next (a retry, "Poll now") refreshes first.
                self.force_refresh = true;
                (
                    ErrorSource::IdentityPlatform,
                    err.classify(),
                    err.message(),
                    err.retry_after(),
                    err.ids(),
                )
            }
            Failure::Graph(err) => {
                if err.needs_token_refresh() {
                    // The access token was refused: whatever runs next refreshes first.
                    self.force_refresh = true;
                    if !self.unauthorized_retried {
                        // Refresh once and retry once; a second 401 is classified below.
                        self.unauthorized_retried = true;
                        return Some(Duration::ZERO);
                    }
                }
                let class = match err.http_status() {
                    Some(status) => catalogue::classify_graph_error(status, err.code()),
                    None => catalogue::classify_graph_error(503, err.code()),
                };
                (
                    ErrorSource::Graph,
                    class,
                    err.to_string(),
                    err.retry_after(),
                    (None, None),
                )
            }
            Failure::Store(err) => {
                let code = if err.is_disk_full() {
                    catalogue::codes::DISK_FULL
                } else if err.is_read_only() {
                    catalogue::codes::STORE_READ_ONLY
                } else {
                    catalogue::codes::STORE_UNAVAILABLE
                };
                let class = Classification::of(code)
                    .unwrap_or_else(|| catalogue::classify_graph_error(503, ""));
                (
                    ErrorSource::Store,
                    class,
                    err.to_string(),
                    None,
                    (None, None),
                )
            }
            Failure::Processor(text) => {
                let class = Classification::of(catalogue::codes::SINK_UNAVAILABLE)
                    .unwrap_or_else(|| catalogue::classify_graph_error(503, ""));
                (ErrorSource::Sink, class, text.clone(), None, (None, None))
            }
        };
        if matches!(failure, Failure::Graph(ref e) if e.is_throttled()) {
            metrics::counter!("inboxd_throttle_waits_total").increment(1);
        }
        let error = last_error(source, &class, message, ids.0, ids.1);
        tracing::warn!(channel = %self.id(), mailbox = %self.record.mailbox, code = %error.code, retry = %class.retry(), "Channel cycle failed.");
        match class.retry() {
            Retry::Backoff | Retry::ResyncThenRetry => {
                self.set_status(ChannelStatus::BackingOff, Some(error));
                Some(self.backoff_delay(retry_after))
            }
            Retry::OnceAfterDelay if !self.once_retried => {
                self.once_retried = true;
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
                    ErrorSource::Graph => Some(self.shared.run.interval),
                    // A refused grant stays refused: wait for re-authorization or a new secret.
                    _ => None,
                }
            }
        }
    }
}

/// Builds the operator-facing error from a classification.
fn last_error(
    source: ErrorSource,
    class: &Classification,
    message: String,
    trace_id: Option<String>,
    correlation_id: Option<String>,
) -> LastError {
    LastError {
        source,
        code: class.code().to_owned(),
        message,
        remedy: class.remedy().to_owned(),
        at: Utc::now(),
        trace_id,
        correlation_id,
    }
}

impl Actor for ChannelActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.shared
            .stats
            .live_channels
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.begin(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.shared
            .stats
            .live_channels
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if self.tokens_unsaved
            && let Some(tokens) = &self.tokens
        {
            // Last chance for a rotated refresh token the store refused earlier.
            if let Err(err) = self.shared.store.put_tokens(self.id(), tokens) {
                tracing::error!(channel = %self.id(), error = %err, "The channel's rotated refresh token could not be saved before it stopped; if the channel asks for authorization after a restart, authorize it again.");
            }
        }
        if self.failed && !self.stopping {
            self.supervisor.do_send(ChannelFailed {
                id: self.id(),
                generation: self.generation,
            });
        }
    }
}

impl Handler<Poke> for ChannelActor {
    type Result = ();

    fn handle(&mut self, _: Poke, ctx: &mut Context<Self>) {
        if self.busy {
            self.poke_pending = true;
            return;
        }
        if self.tokens.is_none() {
            return;
        }
        self.next_due = Some(Instant::now());
        self.schedule(ctx, Duration::ZERO);
    }
}

impl Handler<Shutdown> for ChannelActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        // Let a running cycle finish (its mail is acknowledged and marked read), then stop.
        self.stopping = true;
        if let Some(handle) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        if !self.busy {
            ctx.stop();
        }
    }
}

impl Handler<SimulateFailure> for ChannelActor {
    type Result = ();

    fn handle(&mut self, _: SimulateFailure, ctx: &mut Context<Self>) {
        tracing::warn!(channel = %self.id(), "Channel actor failing on request.");
        self.failed = true;
        ctx.stop();
    }
}

/// Waits until a Graph request may be sent for this mailbox, then holds a slot for it.
async fn graph_permit(
    shared: &Shared,
    key: &MailboxKey,
    app: &Arc<str>,
    n: u32,
) -> Option<RequestPermit> {
    loop {
        match shared.limiters.check_graph_n(key, app, n) {
            Ok(()) => break,
            Err(wait) => {
                metrics::counter!("inboxd_rate_limit_waits_total").increment(1);
                actix_rt::time::sleep(wait).await;
            }
        }
    }
    shared
        .stats
        .graph_requests
        .fetch_add(u64::from(n), std::sync::atomic::Ordering::Relaxed);
    shared.limiters.acquire_n(key, n.min(4)).await
}

/// One cycle: refresh if needed, then poll. Runs off the actor's state, on clones.
async fn run_cycle(
    shared: Arc<Shared>,
    record: Arc<ChannelRecord>,
    key: MailboxKey,
    app: Arc<str>,
    tenant: Arc<str>,
    held: HeldTokens,
) -> CycleResult {
    let HeldTokens {
        tokens,
        needs_refresh,
        unsaved,
    } = held;
    if unsaved && let Err(err) = save_tokens(&shared, record.id, &tokens).await {
        return CycleResult {
            refreshed: None,
            unsaved: true,
            outcome: Err(err),
        };
    }
    let mut refreshed = None;
    let access = if needs_refresh {
        match refresh(&shared, &record, &tenant, &tokens).await {
            Ok(fresh) => {
                let access = fresh.access_token.expose().to_owned();
                refreshed = Some(fresh);
                access
            }
            Err((failure, fresh)) => {
                return CycleResult {
                    unsaved: fresh.is_some(),
                    refreshed: fresh,
                    outcome: Err(failure),
                };
            }
        }
    } else {
        tokens.access_token.expose().to_owned()
    };
    let outcome = poll(&shared, &record, &key, &app, &access).await;
    let outcome = match outcome {
        Err(Failure::Graph(err)) if err.is_throttled() => {
            metrics::counter!("inboxd_graph_requests_total", "outcome" => "throttled").increment(1);
            Err(Failure::Graph(err))
        }
        other => other,
    };
    CycleResult {
        refreshed,
        unsaved: false,
        outcome,
    }
}

/// Writes a channel's token set durably (`put_tokens` flushes: off the arbiter's thread).
async fn save_tokens(shared: &Shared, id: ChannelId, tokens: &TokenSet) -> Result<(), Failure> {
    let store = shared.store.clone();
    let to_store = tokens.clone();
    match actix_web::rt::task::spawn_blocking(move || store.put_tokens(id, &to_store)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(Failure::Store(err)),
        Err(err) => Err(Failure::Processor(format!(
            "the token store task failed: {err}"
        ))),
    }
}

/// Refreshes the access token and persists the rotated refresh token durably before returning it.
/// A failed write still hands back the new set with the failure: the actor keeps it and writes it
/// again later, because the old refresh token may no longer be accepted.
async fn refresh(
    shared: &Shared,
    record: &ChannelRecord,
    tenant: &Arc<str>,
    tokens: &TokenSet,
) -> Result<TokenSet, (Failure, Option<TokenSet>)> {
    while let Err(wait) = shared.limiters.check_token(tenant) {
        actix_rt::time::sleep(wait).await;
    }
    let app = AppCredentials {
        tenant: &record.tenant_id,
        client_id: &record.client_id,
        client_secret: &record.client_secret,
    };
    let grant = match shared.oauth().refresh(app, &tokens.refresh_token).await {
        Ok(grant) => grant,
        Err(err) => {
            metrics::counter!("inboxd_token_refreshes_total", "outcome" => "failed").increment(1);
            return Err((Failure::Identity(err), None));
        }
    };
    let now = Utc::now();
    let fresh = TokenSet {
        access_token: grant.access_token,
        access_expires_at: now + chrono::Duration::from_std(grant.expires_in).unwrap_or_default(),
        // Microsoft may leave the refresh token out; the old one then stays valid.
        refresh_token: grant
            .refresh_token
            .unwrap_or_else(|| tokens.refresh_token.clone()),
        scope: grant.scope,
        obtained_at: now,
    };
    if let Err(err) = save_tokens(shared, record.id, &fresh).await {
        return Err((err, Some(fresh)));
    }
    shared
        .stats
        .refreshes
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    metrics::counter!("inboxd_token_refreshes_total", "outcome" => "ok").increment(1);
    Ok(fresh)
}

/// The lower bound of `receivedDateTime` the channel's first-import policy allows.
fn since(record: &ChannelRecord) -> DateTime<Utc> {
    let activated = record.activated_at.unwrap_or(record.created_at);
    match record.first_import {
        FirstImport::AllUnread => DateTime::<Utc>::from_timestamp(0, 0).unwrap_or(activated),
        FirstImport::OnlyNew => activated,
        FirstImport::LastDays(days) => activated - chrono::Duration::days(i64::from(days)),
    }
}

/// Lists unread mail, delivers what is new, marks delivered mail read.
async fn poll(
    shared: &Shared,
    record: &ChannelRecord,
    key: &MailboxKey,
    app: &Arc<str>,
    token: &str,
) -> Result<PollReport, Failure> {
    let run = &shared.run;
    let mut report = PollReport::default();
    let mut url = shared.graph().unread_url(
        &record.mailbox,
        &record.folder,
        since(record),
        run.page_size,
    );
    let mut found = Vec::new();
    loop {
        let _permit = graph_permit(shared, key, app, 1).await;
        let page = shared.graph().list_page(token, &url).await?;
        metrics::counter!("inboxd_graph_requests_total", "outcome" => "ok").increment(1);
        found.extend(page.value);
        match page.next_link {
            Some(next) if found.len() < run.max_messages_per_poll as usize => url = next,
            Some(_) => {
                report.more = true;
                break;
            }
            None => break,
        }
    }
    // Sort out what the ledger already knows.
    let mut to_deliver: Vec<MailItem> = Vec::new();
    let mut to_mark: Vec<String> = Vec::new();
    for wire in found {
        match shared.store.ledger_get(record.id, &wire.id)? {
            Some(entry) if entry.state == LedgerState::Quarantined => {}
            Some(entry)
                if matches!(
                    entry.state,
                    LedgerState::Delivered | LedgerState::MarkedRead
                ) =>
            {
                to_mark.push(wire.id)
            }
            _ => to_deliver.push(wire.into_mail(record.id, &record.mailbox)),
        }
    }
    for item in to_deliver.iter_mut().filter(|item| item.has_attachments) {
        let _permit = graph_permit(shared, key, app, 1).await;
        match shared
            .graph()
            .list_attachments(token, &record.mailbox, &item.message_id)
            .await
        {
            Ok(attachments) => {
                item.attachments = attachments
                    .into_iter()
                    .map(|a| a.into_attachment(run.max_attachment_bytes))
                    .collect();
            }
            // Deleted meanwhile: deliver what was read.
            Err(GraphError::NotFound { .. }) => {}
            Err(err) => return Err(err.into()),
        }
    }
    if !to_deliver.is_empty() {
        let previous: Vec<(String, Option<LedgerEntry>)> = to_deliver
            .iter()
            .map(|item| {
                Ok((
                    item.message_id.clone(),
                    shared.store.ledger_get(record.id, &item.message_id)?,
                ))
            })
            .collect::<Result<_, StoreError>>()?;
        let acks = shared
            .processor
            .send(ProcessBatch {
                channel_id: record.id,
                items: to_deliver,
            })
            .await
            .map_err(|err| Failure::Processor(format!("the processor is not running: {err}")))?;
        let mut failed: Vec<(String, LedgerEntry)> = Vec::new();
        for (message_id, ack) in acks {
            match ack {
                Ok(()) => {
                    report.delivered += 1;
                    to_mark.push(message_id);
                }
                Err(err) if err.is_message_fault() => {
                    let now = Utc::now();
                    let before = previous
                        .iter()
                        .find(|(id, _)| *id == message_id)
                        .and_then(|(_, e)| e.clone());
                    let failures = before.as_ref().map_or(0, |e| e.failures) + 1;
                    let state = if failures >= run.max_delivery_attempts {
                        LedgerState::Quarantined
                    } else {
                        LedgerState::Discovered
                    };
                    if state == LedgerState::Quarantined {
                        tracing::warn!(channel = %record.id, message_id = %message_id, failures, "Message quarantined after repeated failures.");
                        metrics::counter!("inboxd_messages_quarantined_total").increment(1);
                    }
                    failed.push((
                        message_id,
                        LedgerEntry {
                            state,
                            failures,
                            last_error: Some(err.to_string()),
                            received_at: before.as_ref().and_then(|e| e.received_at),
                            first_seen_at: before.as_ref().map_or(now, |e| e.first_seen_at),
                            updated_at: now,
                        },
                    ));
                }
                Err(err) => report.sink_unavailable = Some(err),
            }
        }
        if !failed.is_empty() {
            shared.store.ledger_put_many(record.id, &failed)?;
        }
    }
    shared
        .stats
        .delivered
        .fetch_add(report.delivered, std::sync::atomic::Ordering::Relaxed);
    report.marked_read = mark_read(shared, record, key, app, token, to_mark).await?;
    shared
        .stats
        .marked_read
        .fetch_add(report.marked_read, std::sync::atomic::Ordering::Relaxed);
    if report.sink_unavailable.is_some() {
        report.more = false;
    }
    Ok(report)
}

/// Marks messages read in `$batch`es of up to 20, retrying throttled items after their
/// `Retry-After`; records each in the ledger. Items still unmarked are retried by the next poll.
async fn mark_read(
    shared: &Shared,
    record: &ChannelRecord,
    key: &MailboxKey,
    app: &Arc<str>,
    token: &str,
    ids: Vec<String>,
) -> Result<u64, Failure> {
    let mut marked = 0u64;
    for chunk in ids.chunks(MAX_BATCH) {
        let mut todo: Vec<String> = chunk.to_vec();
        for attempt in 0..MARK_READ_TRIES {
            if todo.is_empty() {
                break;
            }
            let permit = graph_permit(shared, key, app, todo.len() as u32).await;
            let outcomes = shared
                .graph()
                .mark_read(token, &record.mailbox, &todo)
                .await?;
            drop(permit);
            let now = Utc::now();
            let mut done: Vec<(String, LedgerEntry)> = Vec::new();
            let mut again = Vec::new();
            let mut floor: Option<Duration> = None;
            for (id, outcome) in outcomes {
                match outcome {
                    MarkReadOutcome::Done | MarkReadOutcome::Gone => done.push((
                        id,
                        LedgerEntry {
                            state: LedgerState::MarkedRead,
                            failures: 0,
                            last_error: None,
                            received_at: None,
                            first_seen_at: now,
                            updated_at: now,
                        },
                    )),
                    MarkReadOutcome::Throttled(retry_after) => {
                        floor = floor.max(retry_after);
                        again.push(id);
                    }
                    MarkReadOutcome::Failed(err) if err.is_retriable() => {
                        floor = floor.max(err.retry_after());
                        again.push(id);
                    }
                    MarkReadOutcome::Failed(err) => {
                        tracing::warn!(channel = %record.id, message_id = %id, error = %err, "Could not mark a message read; the next poll tries again.");
                    }
                }
            }
            marked += done.len() as u64;
            if !done.is_empty() {
                shared.store.ledger_put_many(record.id, &done)?;
            }
            todo = again;
            if !todo.is_empty() && attempt + 1 < MARK_READ_TRIES {
                metrics::counter!("inboxd_throttle_waits_total").increment(1);
                let policy = shared.run.backoff;
                let wait = floor.unwrap_or(policy.initial);
                actix_rt::time::sleep(wait).await;
            }
        }
    }
    Ok(marked)
}
