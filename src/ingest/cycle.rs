//! One cycle of one channel, as plain async functions: take the channel's turn, get an access
//! token, list unread mail page by page, sort it through the ledger, fetch attachments, hand the
//! new mail over, and mark read what the processor acknowledged. Nothing here knows actix: the
//! hand-over is a [`Handover`], so the cycle runs in a unit test as well as in an actor.
//!
//! Every Graph request goes through [`graph_permit`]: it waits for the (app, mailbox)'s
//! `Retry-After` floor, takes the rate limiters' budget and one of the mailbox's 4 slots. Every
//! `Retry-After` Graph sends (on a response or on a `$batch` item) raises that floor, durably,
//! before the cycle goes on.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::{ChannelId, MailItem};
use crate::graph::{GraphError, MAX_BATCH, MarkReadOutcome};
use crate::ingest::context::Ingest;
use crate::ingest::failure::Failure;
use crate::ingest::ledger::AfterFailure;
use crate::ingest::runtime::ChannelRuntime;
use crate::ingest::tokens::{self, Access};
use crate::rate_limit::{MailboxKey, RequestPermit};
use crate::sink::SinkError;
use crate::store::{ChannelRecord, FirstImport};

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
}

impl ChannelJob {
    /// The job of `record`, for incarnation `generation`.
    pub fn new(record: Arc<ChannelRecord>, refresh_margin: Duration, generation: u64) -> Self {
        ChannelJob {
            key: MailboxKey::new(record.client_id.as_str(), record.mailbox.as_str()),
            app: Arc::from(record.client_id.as_str()),
            tenant: Arc::from(record.tenant_id.as_str()),
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
    let outcome = poll(ctx, handover, job, &access).await;
    if let Err(failure) = &outcome
        && failure.is_throttled()
    {
        metrics::counter!("inboxd_graph_requests_total", "outcome" => "throttled").increment(1);
    }
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
async fn observe(ctx: &Ingest, key: &MailboxKey, err: &GraphError) -> Result<(), Failure> {
    if let Some(retry_after) = err.retry_after() {
        ctx.raise_floor(key, retry_after).await?;
    }
    Ok(())
}

/// The lower bound of `receivedDateTime` the channel's first-import policy allows.
pub fn since(record: &ChannelRecord) -> DateTime<Utc> {
    let activated = record.activated_at.unwrap_or(record.created_at);
    match record.first_import {
        FirstImport::AllUnread => DateTime::<Utc>::from_timestamp(0, 0).unwrap_or(activated),
        FirstImport::OnlyNew => activated,
        FirstImport::LastDays(days) => activated - chrono::Duration::days(i64::from(days)),
    }
}

/// Lists unread mail, delivers what is new, marks delivered mail read.
pub async fn poll<H: Handover>(
    ctx: &Ingest,
    handover: &H,
    job: &ChannelJob,
    token: &str,
) -> Result<PollReport, Failure> {
    let record = &job.record;
    let run = &ctx.run;
    let mut report = PollReport::default();
    let mut url = ctx.graph().unread_url(
        &record.mailbox,
        &record.folder,
        since(record),
        run.page_size,
    );
    let mut found = Vec::new();
    loop {
        let permit = graph_permit(ctx, &job.key, &job.app, 1).await;
        let page = ctx.graph().list_page(token, &url).await;
        drop(permit);
        let page = match page {
            Ok(page) => page,
            Err(err) => {
                observe(ctx, &job.key, &err).await?;
                return Err(err.into());
            }
        };
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
    let sorted = ctx.ledger.sort(record.id, found, |wire| wire.id.as_str())?;
    let mut to_mark = sorted.to_mark;
    let mut to_deliver: Vec<MailItem> = sorted
        .to_deliver
        .into_iter()
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
                Err(err) => report.sink_unavailable = Some(err),
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
                if let AfterFailure::Quarantined { failures } = state {
                    tracing::warn!(channel = %record.id, message_id = %message_id, failures, "Message quarantined after repeated failures.");
                    metrics::counter!("inboxd_messages_quarantined_total").increment(1);
                }
            }
        }
    }
    ctx.stats
        .delivered
        .fetch_add(report.delivered, Ordering::Relaxed);
    report.marked_read = mark_read(ctx, job, token, to_mark).await?;
    ctx.stats
        .marked_read
        .fetch_add(report.marked_read, Ordering::Relaxed);
    if report.sink_unavailable.is_some() {
        report.more = false;
    }
    Ok(report)
}

/// Marks messages read in `$batch`es of up to 20, retrying throttled items after their
/// `Retry-After` (which raises the mailbox's floor); records each in the ledger. Items still
/// unmarked are retried by the next poll (the ledger holds them as delivered).
async fn mark_read(
    ctx: &Ingest,
    job: &ChannelJob,
    token: &str,
    ids: Vec<String>,
) -> Result<u64, Failure> {
    let record = &job.record;
    let mut marked = 0u64;
    for chunk in ids.chunks(MAX_BATCH) {
        let mut todo: Vec<String> = chunk.to_vec();
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
            let mut done: Vec<String> = Vec::new();
            let mut again = Vec::new();
            let mut floor: Option<Duration> = None;
            for (id, outcome) in outcomes {
                match outcome {
                    MarkReadOutcome::Done | MarkReadOutcome::Gone => done.push(id),
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
            ctx.ledger
                .record_marked_read(record.id, &done, Utc::now())?;
            if let Some(retry_after) = floor {
                ctx.raise_floor(&job.key, retry_after).await?;
            }
            todo = again;
            if !todo.is_empty() && attempt + 1 < MARK_READ_TRIES && floor.is_none() {
                metrics::counter!("inboxd_throttle_waits_total").increment(1);
                tokio::time::sleep(ctx.run.backoff.initial).await;
            }
        }
    }
    Ok(marked)
}
