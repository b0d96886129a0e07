//! Where a cycle finds mail: the unread list, a delta round from the stored cursor (each page
//! settled before the cursor moves; a lost sync state restarts the round; a folder that refuses
//! the delta query falls back to the unread list with a warning), a backfill an operator asked
//! for, and replays of quarantined mail, fetched by id. What is found is settled by
//! [`cycle::settle`](super::cycle). Channels on the IMAP transport poll through
//! [`imap_source`](super::imap_source) instead.

use crate::domain::PollMode;
use crate::graph::GraphError;
use crate::ingest::context::Ingest;
use crate::ingest::cycle::{
    ChannelJob, Handover, PollReport, Rules, graph_permit, observe, settle, since,
};
use crate::ingest::failure::Failure;
use crate::ingest::runtime::ChannelRuntime;
use crate::store::Cursor;

/// Finds new mail in the channel's mode, delivers it, marks delivered mail read. A folder that
/// refuses the delta query is polled for unread mail instead, with a warning on the channel.
pub async fn poll<H: Handover>(
    ctx: &Ingest,
    handover: &H,
    runtime: &ChannelRuntime,
    job: &ChannelJob,
    token: &str,
) -> Result<PollReport, Failure> {
    if job.record.transport == crate::domain::Transport::Imap {
        return super::imap_source::poll(ctx, handover, runtime, job, token).await;
    }
    let replayed = replay(ctx, handover, runtime, job, token).await?;
    if runtime.backfill().is_some() {
        let mut report = backfill(ctx, handover, runtime, job, token).await?;
        report.delivered += replayed.delivered;
        report.marked_read += replayed.marked_read;
        return Ok(report);
    }
    let mut report = if job.mode == PollMode::Unread || runtime.delta_refused() {
        poll_unread(ctx, handover, job, token).await?
    } else {
        poll_delta_or_unread(ctx, handover, runtime, job, token).await?
    };
    report.delivered += replayed.delivered;
    report.marked_read += replayed.marked_read;
    Ok(report)
}

/// Delivers the messages an operator released from quarantine, fetched by id.
async fn replay<H: Handover>(
    ctx: &Ingest,
    handover: &H,
    runtime: &ChannelRuntime,
    job: &ChannelJob,
    token: &str,
) -> Result<PollReport, Failure> {
    let ids = runtime.take_replays();
    if ids.is_empty() {
        return Ok(PollReport::default());
    }
    let mut found = Vec::with_capacity(ids.len());
    for (index, id) in ids.iter().enumerate() {
        let permit = graph_permit(ctx, &job.key, &job.app, 1).await;
        let got = ctx
            .graph()
            .get_message(token, &job.record.mailbox, id)
            .await;
        drop(permit);
        match got {
            Ok(message) => found.push(message),
            // Gone from the mailbox meanwhile: nothing left to replay.
            Err(GraphError::NotFound { .. }) => {}
            Err(err) => {
                runtime.requeue_replays(ids[index..].to_vec());
                observe(ctx, &job.key, &err).await?;
                return Err(err.into());
            }
        }
    }
    // An operator asked for these: delivered whatever their age or read state.
    let settled = settle(ctx, handover, job, token, found, Vec::new(), Rules::Asked).await?;
    Ok(settled.report)
}

/// Works on the channel's backfill: every message received since its date, read or not, that the
/// ledger does not know as delivered, page by page (at most `max_messages_per_poll` per cycle;
/// the next cycle goes on from the page it reached, before the normal poll resumes).
async fn backfill<H: Handover>(
    ctx: &Ingest,
    handover: &H,
    runtime: &ChannelRuntime,
    job: &ChannelJob,
    token: &str,
) -> Result<PollReport, Failure> {
    let Some(mut state) = runtime.backfill() else {
        return Ok(PollReport::default());
    };
    let record = &job.record;
    let run = &ctx.run;
    let mut url = state.next_link.clone().unwrap_or_else(|| {
        ctx.graph()
            .received_since_url(&record.mailbox, &record.folder, state.since, run.page_size)
    });
    let mut report = PollReport::default();
    let mut taken = 0usize;
    loop {
        let page = get_page(ctx, job, token, &url, None).await?;
        taken += page.messages.len();
        let settled = settle(
            ctx,
            handover,
            job,
            token,
            page.messages,
            page.malformed,
            Rules::Asked,
        )
        .await?;
        report.delivered += settled.report.delivered;
        report.marked_read += settled.report.marked_read;
        state.delivered += settled.report.delivered;
        if settled.report.sink_unavailable.is_some() || !settled.all_settled {
            report.sink_unavailable = settled.report.sink_unavailable;
            runtime.set_backfill(Some(state));
            return Ok(report);
        }
        match page.next_link {
            Some(next) if taken < run.max_messages_per_poll as usize => url = next,
            Some(next) => {
                state.next_link = Some(next);
                runtime.set_backfill(Some(state));
                report.more = true;
                return Ok(report);
            }
            None => {
                tracing::info!(channel = %record.id, since = %state.since, delivered = state.delivered,
                    "Backfill done: every message received since the date is delivered.");
                metrics::counter!("inboxd_backfilled_messages_total").increment(state.delivered);
                runtime.set_backfill(None);
                // The normal poll follows at once.
                report.more = true;
                return Ok(report);
            }
        }
    }
}

/// Delta mode, or unread mode for a folder that refuses the delta query.
async fn poll_delta_or_unread<H: Handover>(
    ctx: &Ingest,
    handover: &H,
    runtime: &ChannelRuntime,
    job: &ChannelJob,
    token: &str,
) -> Result<PollReport, Failure> {
    match poll_delta(ctx, handover, job, token).await {
        Err(Failure::Graph(err)) if delta_refused(&err) => {
            let report = poll_unread(ctx, handover, job, token).await?;
            // Unread mail can be listed, so it is the delta query that the folder refuses.
            let class =
                crate::catalogue::Classification::of(crate::catalogue::codes::DELTA_UNAVAILABLE);
            if let Some(class) = class {
                tracing::warn!(channel = %job.record.id, mailbox = %job.record.mailbox, folder = %job.record.folder, error = %err,
                    "The folder refuses the delta query; the channel polls unread mail instead.");
                runtime.refuse_delta(crate::ingest::failure::last_error(
                    crate::store::ErrorSource::Graph,
                    &class,
                    format!(
                        "Graph refused the delta query on folder {}: {err}",
                        job.record.folder
                    ),
                    None,
                    None,
                ));
            }
            Ok(report)
        }
        other => other,
    }
}

/// Whether Graph refused the delta query itself (not throttling, not the token, not an outage).
fn delta_refused(err: &GraphError) -> bool {
    matches!(err.http_status(), Some(400 | 404 | 405 | 501))
        && !matches!(err.code(), "syncStateNotFound" | "SyncStateNotFound")
}

/// Whether Graph says the delta link expired (410 `syncStateNotFound`): the round starts again.
fn sync_state_lost(err: &GraphError) -> bool {
    err.http_status() == Some(410)
        || err.code().eq_ignore_ascii_case("syncStateNotFound")
        || err.code().eq_ignore_ascii_case("resyncRequired")
}

/// Unread mode: lists unread mail page by page, oldest first.
async fn poll_unread<H: Handover>(
    ctx: &Ingest,
    handover: &H,
    job: &ChannelJob,
    token: &str,
) -> Result<PollReport, Failure> {
    let record = &job.record;
    let run = &ctx.run;
    let mut url = ctx.graph().unread_url(
        &record.mailbox,
        &record.folder,
        since(record),
        run.page_size,
    );
    let mut found = Vec::new();
    let mut malformed = Vec::new();
    let mut more = false;
    loop {
        let page = get_page(ctx, job, token, &url, None).await?;
        found.extend(page.messages);
        malformed.extend(page.malformed);
        match page.next_link {
            Some(next) if found.len() < run.max_messages_per_poll as usize => url = next,
            Some(_) => {
                more = true;
                break;
            }
            None => break,
        }
    }
    let mut settled = settle(ctx, handover, job, token, found, malformed, Rules::Unread).await?;
    settled.report.more = more && settled.report.sink_unavailable.is_none();
    Ok(settled.report)
}

/// Delta mode: one round of the folder's changes from the stored cursor. Each page's mail is
/// settled (delivered, or quarantined) before the cursor moves past it, so the cursor is never
/// ahead of the ledger; a lost sync state (410) starts the round again from the newest mail
/// delivered, and the ledger drops what it had already.
async fn poll_delta<H: Handover>(
    ctx: &Ingest,
    handover: &H,
    job: &ChannelJob,
    token: &str,
) -> Result<PollReport, Failure> {
    let record = &job.record;
    let run = &ctx.run;
    let mut cursor = ctx.store.get_cursor(record.id)?.unwrap_or_default();
    let start = |cursor: &Cursor| {
        ctx.graph().delta_url(
            &record.mailbox,
            &record.folder,
            cursor.last_received_at.unwrap_or_else(|| since(record)),
        )
    };
    let mut url = cursor.delta_link.clone().unwrap_or_else(|| start(&cursor));
    let mut report = PollReport::default();
    let mut taken = 0usize;
    let mut restarted = false;
    loop {
        let page = match get_page(ctx, job, token, &url, Some(run.page_size)).await {
            Ok(page) => page,
            Err(Failure::Graph(err)) if sync_state_lost(&err) && !restarted => {
                tracing::info!(channel = %record.id, "The delta sync state expired; the round starts again from the newest mail delivered.");
                metrics::counter!("inboxd_delta_resyncs_total").increment(1);
                restarted = true;
                cursor.delta_link = None;
                ctx.store.put_cursor(record.id, &cursor)?;
                url = start(&cursor);
                continue;
            }
            Err(failure) => return Err(failure),
        };
        taken += page.messages.len();
        let newest = page
            .messages
            .iter()
            .filter_map(|m| m.received_date_time)
            .max();
        let settled = settle(
            ctx,
            handover,
            job,
            token,
            page.messages,
            page.malformed,
            Rules::Delta,
        )
        .await?;
        report.delivered += settled.report.delivered;
        report.marked_read += settled.report.marked_read;
        if settled.report.sink_unavailable.is_some() || !settled.all_settled {
            // Some mail of this page is still to deliver: the cursor stays where it was, and the
            // next poll reads this page again (the ledger drops what was delivered meanwhile).
            report.sink_unavailable = settled.report.sink_unavailable;
            return Ok(report);
        }
        let before = cursor.clone();
        cursor.last_received_at = cursor.last_received_at.max(newest);
        let next = page.next_link.clone().or(page.delta_link.clone());
        if next.is_some() {
            cursor.delta_link = next;
        }
        // An idle round ends on the link it started from: nothing to write.
        if cursor != before {
            ctx.store.put_cursor(record.id, &cursor)?;
        }
        match (page.next_link, page.delta_link) {
            (Some(next), _) if taken < run.max_messages_per_poll as usize => url = next,
            (Some(_), _) => {
                report.more = true;
                return Ok(report);
            }
            (None, _) => return Ok(report),
        }
    }
}

/// Fetches one page (a delta page when `delta_page_size` is given) through the mailbox's gate,
/// raising its floor on a `Retry-After`.
async fn get_page(
    ctx: &Ingest,
    job: &ChannelJob,
    token: &str,
    url: &str,
    delta_page_size: Option<u32>,
) -> Result<crate::graph::model::Page, Failure> {
    let permit = graph_permit(ctx, &job.key, &job.app, 1).await;
    let page = match delta_page_size {
        Some(size) => ctx.graph().delta_page(token, url, size).await,
        None => ctx.graph().list_page(token, url).await,
    };
    drop(permit);
    match page {
        Ok(page) => Ok(page),
        Err(err) => {
            observe(ctx, &job.key, &err).await?;
            Err(err.into())
        }
    }
}
