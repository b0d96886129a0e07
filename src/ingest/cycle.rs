//! One cycle of one channel, as plain async functions: take the channel's turn, get an access
//! token, list unread mail page by page, sort it through the ledger, fetch attachments, hand the
//! new mail over, and mark read what the processor acknowledged. Nothing here knows actix: the
//! hand-over is a [`Handover`], so the cycle runs in a unit test as well as in an actor.
//!
//! Every Graph request goes through [`graph_permit`]: it waits for the (app, mailbox)'s
//! `Retry-After` floor, takes the rate limiters' budget and one of the mailbox's 4 slots. Every
//! `Retry-After` Graph sends (on a response or on a `$batch` item) raises that floor, durably,
//! before the cycle goes on.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::{ChannelId, MailItem, PollMode};
use crate::graph::{GraphError, MAX_BATCH, MarkReadOutcome};
use crate::ingest::context::Ingest;
use crate::ingest::failure::Failure;
use crate::ingest::ledger::AfterFailure;
use crate::ingest::runtime::ChannelRuntime;
use crate::ingest::tokens::{self, Access};
use crate::rate_limit::{MailboxKey, RequestPermit};
use crate::sink::SinkError;
use crate::store::{ChannelRecord, FirstImport, LedgerEntry};

/// How many times a throttled mark-read item is retried within one cycle.
const MARK_READ_TRIES: u32 = 3;

/// The processor's answer per message: `Ok` once the sink accepted it and the ledger recorded it.
pub type Acks = Vec<(String, Result<(), SinkError>)>;

/// Hands mail to the sink and answers per message (the processor, or a test's fake).
pub trait Handover {
    /// Delivers `items` of `channel`; an `Err` means nothing was taken.
    fn hand_over(
        &self,
        channel: ChannelId,
        items: Vec<MailItem>,
    ) -> impl Future<Output = Result<Acks, String>>;
}

/// What a cycle needs to know about its channel.
#[derive(Debug, Clone)]
pub struct ChannelJob {
    /// The channel's configuration for this incarnation.
    pub record: Arc<ChannelRecord>,
    /// The (app, mailbox) the limits and floors count against.
    pub key: MailboxKey,
    /// The app's key in the per-app limiter.
    pub app: Arc<str>,
    /// The tenant's key in the token-endpoint limiter.
    pub tenant: Arc<str>,
    /// Refresh this long before the access token expires (margin plus the channel's jitter).
    pub refresh_margin: Duration,
    /// The incarnation that runs the cycle.
    pub generation: u64,
    /// How the channel finds new mail.
    pub mode: PollMode,
}

impl ChannelJob {
    /// The job of `record`, for incarnation `generation`.
    pub fn new(
        record: Arc<ChannelRecord>,
        refresh_margin: Duration,
        generation: u64,
        mode: PollMode,
    ) -> Self {
        ChannelJob {
            mode,
            key: MailboxKey::of(&record.client_id, &record.mailbox),
            app: record.client_id.shared(),
            tenant: record.tenant_id.shared(),
            record,
            refresh_margin,
            generation,
        }
    }
}

/// What a successful poll did.
#[derive(Debug, Default)]
pub struct PollReport {
    /// Messages the sink accepted.
    pub delivered: u64,
    /// Messages marked read.
    pub marked_read: u64,
    /// More unread mail is waiting: poll again at once.
    pub more: bool,
    /// The sink could not take mail: back off, the messages stay unread.
    pub sink_unavailable: Option<SinkError>,
}

/// How a cycle ended.
#[derive(Debug)]
pub enum CycleEnd {
    /// It ran; the poll's report or why it failed.
    Ran(Result<PollReport, Failure>),
    /// A newer incarnation of the channel took over before this cycle could start.
    Fenced,
    /// The channel has no token set: it waits for an authorization.
    NoGrant,
}

/// Runs one cycle of `job`'s channel under its turn. `force_refresh` refreshes the access token
/// first (Graph refused it).
pub async fn run_cycle<H: Handover>(
    ctx: &Ingest,
    handover: &H,
    runtime: &ChannelRuntime,
    job: &ChannelJob,
    force_refresh: bool,
) -> CycleEnd {
    let Some(_turn) = runtime.turn(job.generation).await else {
        return CycleEnd::Fenced;
    };
    if !ctx.may_act(job.record.id) {
        return CycleEnd::Ran(Err(Failure::NotOwned));
    }
    // The floor may have risen while this cycle waited (another channel on the mailbox).
    ctx.limiters.wait_floor(&job.key).await;
    let access = match tokens::access_token(
        ctx,
        &job.record,
        runtime,
        &job.tenant,
        force_refresh,
        job.refresh_margin,
    )
    .await
    {
        Ok(Access::Ready(access)) => access,
        Ok(Access::NoGrant) => return CycleEnd::NoGrant,
        Err(failure) => return CycleEnd::Ran(Err(failure)),
    };
    // Graph requests are counted by the Graph client, by endpoint and status class.
    let outcome = super::sources::poll(ctx, handover, runtime, job, &access).await;
    CycleEnd::Ran(outcome)
}

/// Waits until a Graph request may be sent for this mailbox (its floor passed, the budgets allow
/// `n` requests), then holds a slot for it.
pub async fn graph_permit(ctx: &Ingest, key: &MailboxKey, app: &Arc<str>, n: u32) -> RequestPermit {
    loop {
        ctx.limiters.wait_floor(key).await;
        match ctx.limiters.check_graph_n(key, app, n) {
            Ok(()) => {}
            Err(wait) => {
                metrics::counter!("inboxd_rate_limit_waits_total").increment(1);
                tokio::time::sleep(wait).await;
                continue;
            }
        }
        let Some(permit) = ctx.limiters.acquire_n(key, n.min(4)).await else {
            // The limiters were closed (shutdown): wait a moment and try again.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        // A floor raised while this request waited for its slot holds it too.
        if ctx.limiters.floor(key).is_some() {
            drop(permit);
            continue;
        }
        ctx.stats
            .graph_requests
            .fetch_add(u64::from(n), Ordering::Relaxed);
        return permit;
    }
}

/// Raises the mailbox's floor for a Graph error that carries a `Retry-After`.
pub(super) async fn observe(
    ctx: &Ingest,
    key: &MailboxKey,
    err: &GraphError,
) -> Result<(), Failure> {
    if let Some(retry_after) = err.retry_after() {
        ctx.raise_floor(key, retry_after).await?;
    }
    Ok(())
}

/// `at` without its fraction of a second: Graph's `receivedDateTime` has whole seconds, so a
/// message received in the second a channel was authorized counts as received after it.
fn whole_seconds(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(at.timestamp(), 0).unwrap_or(at)
}

/// The lower bound of `receivedDateTime` the channel's first-import policy allows (whole seconds).
pub fn since(record: &ChannelRecord) -> DateTime<Utc> {
    let activated = whole_seconds(record.activated_at.unwrap_or(record.created_at));
    match record.first_import {
        FirstImport::AllUnread => DateTime::<Utc>::from_timestamp(0, 0).unwrap_or(activated),
        FirstImport::OnlyNew => activated,
        FirstImport::LastDays(days) => activated - chrono::Duration::days(i64::from(days)),
    }
}

/// Whether a message a delta round reports (and the ledger does not know) is mail to deliver: it
/// is within the first-import policy, and either still unread or received since the channel was
/// authorized. A delta round also reports changes to old mail (a flag, a move back), and mail that
/// was read before inboxd listened is not new; mail read by a person since is.
fn is_new_in_delta(
    wire: &crate::graph::model::WireMessage,
    since: DateTime<Utc>,
    activated: DateTime<Utc>,
) -> bool {
    let received = wire.received_date_time;
    let within_policy = received.is_none_or(|at| at >= since);
    let unread = wire.is_read != Some(true);
    within_policy && (unread || received.is_none_or(|at| at >= activated))
}

/// How a batch of found mail is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rules {
    /// Unread mode: everything unknown is new; mail the ledger marked read that shows up unread is
    /// marked read again.
    Unread,
    /// Delta mode: only mail [`is_new_in_delta`] is new; done mail is left alone.
    Delta,
    /// A replay or a backfill an operator asked for: everything unknown is delivered, whatever its
    /// age or read state; done mail is left alone.
    Asked,
}

/// What settling a batch of found mail did.
pub(super) struct Settled {
    pub(super) report: PollReport,
    /// Every message of the batch is delivered (or marked read) or quarantined now.
    pub(super) all_settled: bool,
}

/// Settles mail a poll found: quarantines what did not decode, sorts the rest through the
/// ledger, fetches attachments, hands the new mail over and marks read what was delivered and is
/// still unread. In delta mode, mail the ledger marked read already (our own mark-read seen again,
/// or a person marking it unread later) is left alone; in unread mode it is marked read again.
pub(super) async fn settle<H: Handover>(
    ctx: &Ingest,
    handover: &H,
    job: &ChannelJob,
    token: &str,
    found: Vec<crate::graph::model::WireMessage>,
    malformed: Vec<(String, String)>,
    rules: Rules,
) -> Result<Settled, Failure> {
    let record = &job.record;
    let run = &ctx.run;
    let mut report = PollReport::default();
    let mut all_settled = true;
    let malformed: Vec<(String, String)> = malformed
        .into_iter()
        .filter(|(id, _)| !id.is_empty())
        .collect();
    if !malformed.is_empty() {
        // A message Graph sends in a shape inboxd cannot read will not read better next time.
        for (message_id, _) in ctx
            .ledger
            .record_failures(record.id, &malformed, 1, Utc::now())?
        {
            tracing::warn!(channel = %record.id, message_id = %message_id, "Message quarantined: Graph sent it in a shape inboxd cannot read.");
            metrics::counter!("inboxd_messages_quarantined_total").increment(1);
        }
    }
    let already_read: std::collections::HashSet<String> = found
        .iter()
        .filter(|m| m.is_read == Some(true))
        .map(|m| m.id.clone())
        .collect();
    // Mail delivered while the channel used IMAP is known by its Internet Message-ID.
    let sorted = ctx.ledger.sort_known(
        record.id,
        found,
        |wire| wire.id.as_str(),
        |wire| wire.internet_message_id.as_deref(),
    )?;
    let prior = sorted.prior;
    let mut to_mark = sorted.to_mark;
    if rules == Rules::Unread {
        to_mark.extend(sorted.done);
    }
    let activated = whole_seconds(record.activated_at.unwrap_or(record.created_at));
    let mut to_deliver: Vec<MailItem> = sorted
        .to_deliver
        .into_iter()
        .filter(|wire| rules != Rules::Delta || is_new_in_delta(wire, since(record), activated))
        .map(|wire| wire.into_mail(record.id, &record.mailbox))
        .collect();
    for item in to_deliver.iter_mut().filter(|item| item.has_attachments) {
        let permit = graph_permit(ctx, &job.key, &job.app, 1).await;
        let listed = ctx
            .graph()
            .list_attachments(token, &record.mailbox, &item.message_id)
            .await;
        drop(permit);
        match listed {
            Ok(attachments) => {
                item.attachments = attachments
                    .into_iter()
                    .map(|a| a.into_attachment(run.max_attachment_bytes))
                    .collect();
            }
            // Deleted meanwhile: deliver what was read.
            Err(GraphError::NotFound { .. }) => {}
            Err(err) => {
                observe(ctx, &job.key, &err).await?;
                return Err(err.into());
            }
        }
    }
    if !to_deliver.is_empty() {
        if !ctx.may_act(record.id) {
            return Err(Failure::NotOwned);
        }
        let acks = handover
            .hand_over(record.id, to_deliver)
            .await
            .map_err(Failure::Processor)?;
        let mut refused = Vec::new();
        for (message_id, ack) in acks {
            match ack {
                Ok(()) => {
                    report.delivered += 1;
                    to_mark.push(message_id);
                }
                Err(err) if err.is_message_fault() => refused.push((message_id, err.to_string())),
                Err(err) => {
                    all_settled = false;
                    report.sink_unavailable = Some(err);
                }
            }
        }
        if !refused.is_empty() {
            let after = ctx.ledger.record_failures(
                record.id,
                &refused,
                run.max_delivery_attempts,
                Utc::now(),
            )?;
            for (message_id, state) in after {
                match state {
                    AfterFailure::Quarantined { failures } => {
                        tracing::warn!(channel = %record.id, message_id = %message_id, failures, "Message quarantined after repeated failures.");
                        metrics::counter!("inboxd_messages_quarantined_total").increment(1);
                    }
                    AfterFailure::Retry { .. } => all_settled = false,
                }
            }
        }
    }
    ctx.stats
        .delivered
        .fetch_add(report.delivered, Ordering::Relaxed);
    // Mail a person read already needs no mark-read: the ledger just learns it is done.
    let (read, unread): (Vec<String>, Vec<String>) = to_mark
        .into_iter()
        .partition(|id| already_read.contains(id));
    if !unread.is_empty() && !ctx.may_act(record.id) {
        ctx.ledger
            .record_marked_read_after(record.id, &read, &prior, Utc::now())?;
        return Err(Failure::NotOwned);
    }
    let (marked, unmarked) = mark_read(ctx, job, token, read, unread, &prior).await?;
    report.marked_read = marked;
    if unmarked > 0 {
        // Delivered but not yet marked read: a delta round must read this mail again.
        all_settled = false;
    }
    ctx.stats
        .marked_read
        .fetch_add(report.marked_read, Ordering::Relaxed);
    Ok(Settled {
        report,
        all_settled,
    })
}

/// Marks messages read in `$batch`es of up to 20, retrying throttled items after their
/// `Retry-After` (which raises the mailbox's floor), then records in the ledger, in one write for
/// the page, every message Graph confirmed (marked, or gone) together with `read` (mail a person
/// read already, which needs no request); that write happens also when a later request failed, so
/// what Graph confirmed is never asked again, and nothing Graph did not confirm is recorded.
/// Answers how many were marked and how many were not: those are retried by the next poll (the
/// ledger holds them as delivered). `prior` is what the sort read of them (no second read).
async fn mark_read(
    ctx: &Ingest,
    job: &ChannelJob,
    token: &str,
    read: Vec<String>,
    ids: Vec<String>,
    prior: &HashMap<String, Option<LedgerEntry>>,
) -> Result<(u64, usize), Failure> {
    let mut confirmed = read;
    let sent = send_mark_read(ctx, job, token, ids, &mut confirmed).await;
    ctx.ledger
        .record_marked_read_after(job.record.id, &confirmed, prior, Utc::now())?;
    sent
}

/// The `$batch` requests of [`mark_read`]: adds each id Graph confirmed to `confirmed`.
async fn send_mark_read(
    ctx: &Ingest,
    job: &ChannelJob,
    token: &str,
    ids: Vec<String>,
    confirmed: &mut Vec<String>,
) -> Result<(u64, usize), Failure> {
    let record = &job.record;
    let mut marked = 0u64;
    let mut unmarked = 0usize;
    confirmed.reserve(ids.len());
    let mut rest = ids.into_iter();
    loop {
        let mut todo: Vec<String> = rest.by_ref().take(MAX_BATCH).collect();
        if todo.is_empty() {
            break;
        }
        for attempt in 0..MARK_READ_TRIES {
            if todo.is_empty() {
                break;
            }
            let permit = graph_permit(ctx, &job.key, &job.app, todo.len() as u32).await;
            let outcomes = ctx.graph().mark_read(token, &record.mailbox, &todo).await;
            drop(permit);
            let outcomes = match outcomes {
                Ok(outcomes) => outcomes,
                Err(err) => {
                    observe(ctx, &job.key, &err).await?;
                    return Err(err.into());
                }
            };
            let mut again = Vec::new();
            let mut floor: Option<Duration> = None;
            for (id, outcome) in outcomes {
                match outcome {
                    MarkReadOutcome::Done | MarkReadOutcome::Gone => {
                        marked += 1;
                        confirmed.push(id);
                    }
                    MarkReadOutcome::Throttled(retry_after) => {
                        floor = floor.max(retry_after);
                        again.push(id);
                    }
                    MarkReadOutcome::Failed(err) if err.is_retriable() => {
                        floor = floor.max(err.retry_after());
                        again.push(id);
                    }
                    MarkReadOutcome::Failed(err) => {
                        unmarked += 1;
                        tracing::warn!(channel = %record.id, message_id = %id, error = %err, "Could not mark a message read; the next poll tries again.");
                    }
                }
            }
            if let Some(retry_after) = floor {
                ctx.raise_floor(&job.key, retry_after).await?;
            }
            todo = again;
            if !todo.is_empty() && attempt + 1 < MARK_READ_TRIES && floor.is_none() {
                metrics::counter!("inboxd_throttle_waits_total").increment(1);
                tokio::time::sleep(ctx.run.backoff.initial).await;
            }
        }
        unmarked += todo.len();
    }
    Ok((marked, unmarked))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    //! The cycle on its own: no actor, a fake hand-over, the simulator over HTTP.

    use std::sync::Mutex;

    use super::*;

    use crate::sim::client::{Delivery, SimClient};

    /// Takes mail as the processor would (the ledger learns of each delivery before the ack), or
    /// refuses the messages whose subject says so, as a sink refuses a message it cannot take.
    struct FakeSink {
        ledger: crate::ingest::Ledger,
        taken: Mutex<Vec<String>>,
    }

    impl Handover for FakeSink {
        async fn hand_over(
            &self,
            channel: ChannelId,
            items: Vec<MailItem>,
        ) -> Result<Acks, String> {
            let mut acks = Vec::new();
            for item in items {
                if item.subject.contains("poison") {
                    acks.push((
                        item.message_id.clone(),
                        Err(SinkError::Rejected {
                            status: 422,
                            reason: "the receiver cannot parse it".to_owned(),
                        }),
                    ));
                    continue;
                }
                self.ledger
                    .record_delivered(channel, &[item.message_id.as_str()], Utc::now())
                    .map_err(|e| e.to_string())?;
                self.taken.lock().unwrap().push(item.message_id.clone());
                acks.push((item.message_id, Ok(())));
            }
            Ok(acks)
        }
    }

    struct Setup {
        _sim: crate::sim::SimHandle,
        sim: SimClient,
        ctx: Ingest,
        job: ChannelJob,
        upn: String,
    }

    async fn setup() -> Setup {
        let upn = "cycle@cycle.example".to_owned();
        let seeded = crate::ingest::test_support::authorized_channel(
            &upn,
            crate::domain::Transport::Graph,
            None,
        )
        .await;
        let (sim_handle, sim, record) = (seeded.sim_handle, seeded.sim, seeded.record);
        let ctx = crate::ingest::test_support::context(seeded.store, &seeded.url, PollMode::Unread);
        let generation = ctx.runtimes.get(record.id).claim();
        let job = ChannelJob::new(
            Arc::new(record),
            Duration::from_secs(300),
            generation,
            PollMode::Unread,
        );
        Setup {
            _sim: sim_handle,
            sim,
            ctx,
            job,
            upn,
        }
    }

    #[actix_rt::test]
    async fn a_cycle_hands_over_new_mail_once_and_marks_read_only_what_was_taken() {
        let s = setup().await;
        s.sim
            .deliver(&s.upn, &Delivery::generated(25))
            .await
            .unwrap();
        s.sim
            .deliver(
                &s.upn,
                &Delivery {
                    messages: vec![serde_json::json!({"subject": "poison"})],
                    unread: true,
                    ..Delivery::default()
                },
            )
            .await
            .unwrap();
        let sink = FakeSink {
            ledger: s.ctx.ledger.clone(),
            taken: Mutex::new(Vec::new()),
        };
        let runtime = s.ctx.runtimes.get(s.job.record.id);
        // First cycle: 25 taken and marked read (3 pages of 10), the poison refused and left unread.
        let CycleEnd::Ran(Ok(report)) = run_cycle(&s.ctx, &sink, &runtime, &s.job, false).await
        else {
            panic!("the cycle failed");
        };
        assert_eq!((report.delivered, report.marked_read), (25, 25));
        let state = s.sim.mailbox_state(&s.upn).await.unwrap();
        assert_eq!(state.unread, 1, "only the refused message stays unread");
        // Second cycle: the refused message fails again and is quarantined (2 attempts); nothing
        // is handed over twice.
        let CycleEnd::Ran(Ok(report)) = run_cycle(&s.ctx, &sink, &runtime, &s.job, false).await
        else {
            panic!("the cycle failed");
        };
        assert_eq!(report.delivered, 0);
        let taken = sink.taken.lock().unwrap().clone();
        let unique: std::collections::HashSet<_> = taken.iter().collect();
        assert_eq!((taken.len(), unique.len()), (25, 25));
        let quarantined = s.ctx.ledger.quarantined(s.job.record.id, 10).unwrap();
        assert_eq!(quarantined.len(), 1);
        // Third cycle: the quarantined message no longer blocks anything and is not retried.
        let CycleEnd::Ran(Ok(report)) = run_cycle(&s.ctx, &sink, &runtime, &s.job, false).await
        else {
            panic!("the cycle failed");
        };
        assert_eq!(report.delivered, 0);
        assert_eq!(sink.taken.lock().unwrap().len(), 25);
    }

    #[actix_rt::test]
    async fn an_old_incarnation_is_fenced_off_before_it_sends_anything() {
        let s = setup().await;
        let sink = FakeSink {
            ledger: s.ctx.ledger.clone(),
            taken: Mutex::new(Vec::new()),
        };
        let runtime = s.ctx.runtimes.get(s.job.record.id);
        runtime.claim();
        let before = s.sim.counters(Some(&s.upn)).await.unwrap();
        assert!(matches!(
            run_cycle(&s.ctx, &sink, &runtime, &s.job, false).await,
            CycleEnd::Fenced
        ));
        let after = s.sim.counters(Some(&s.upn)).await.unwrap();
        assert_eq!(
            before.requests, after.requests,
            "a fenced cycle reached Graph"
        );
    }
}
