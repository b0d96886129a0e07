//! Where a channel on the IMAP transport finds mail: one connection per cycle (XOAUTH2, `SELECT`
//! of the folder), closed at the end of it.
//!
//! The cursor mirrors delta sync's: the folder's UIDVALIDITY and the highest UID below which every
//! message is settled (delivered and `\Seen`, quarantined, or not to deliver by the channel's
//! policy), stored with the channel's cursor and never ahead of the ledger.
//!
//! - No cursor yet, or the folder's UIDVALIDITY changed (a resync): the unseen mail of the folder
//!   is read (within the first-import policy); the ledger recognises what it delivered before
//!   (under the old UIDs) by Internet Message-ID and only sets `\Seen` on it.
//! - A cursor: every message above its UID, read or not, is looked at (mail a person read in
//!   Outlook first is still new if it arrived after the channel was authorized).
//! - A message's id is `imap:<uidvalidity>:<uid>`; the ledger is asked before anything is
//!   fetched, so delivered mail is never downloaded again (only its `\Seen` may be missing).
//! - Messages are fetched with `BODY.PEEK[]` (no implicit `\Seen`), handed over, and only what
//!   the processor acknowledged (the sink accepted it and the ledger recorded it) is marked
//!   `\Seen`, with `UID STORE +FLAGS.SILENT`.
//! - Replays (quarantined mail an operator released) and backfills go through the same
//!   connection.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};

use crate::domain::MailItem;
use crate::imap::mime::{MimeOptions, to_mail_item};
use crate::imap::{Fetched, ImapError, ImapSession};
use crate::ingest::context::Ingest;
use crate::ingest::cycle::{ChannelJob, Handover, PollReport, since};
use crate::ingest::failure::Failure;
use crate::ingest::ledger::AfterFailure;
use crate::ingest::runtime::ChannelRuntime;
use crate::store::{ImapCursor, LedgerEntry, LedgerState};

/// Messages fetched per `UID FETCH`.
const FETCH_CHUNK: usize = 25;

/// The ledger id of the message with `uid` in a folder of `uid_validity`.
pub fn message_id(uid_validity: u32, uid: u32) -> String {
    format!("imap:{uid_validity}:{uid}")
}

/// The (UIDVALIDITY, UID) of a ledger id [`message_id`] wrote.
pub fn parse_message_id(id: &str) -> Option<(u32, u32)> {
    let rest = id.strip_prefix("imap:")?;
    let (validity, uid) = rest.split_once(':')?;
    Some((validity.parse().ok()?, uid.parse().ok()?))
}

/// Which messages a look at the folder delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rules {
    /// The folder's unseen mail (first poll, resync): what the first-import policy allows.
    Unseen,
    /// Mail above the cursor: within the policy, and unseen or received since the channel was
    /// authorized.
    Above,
    /// A replay or backfill an operator asked for: everything the ledger does not know.
    Asked,
}

/// What settling a set of UIDs did.
#[derive(Debug, Default)]
struct Settled {
    report: PollReport,
    /// Every message is delivered and `\Seen`, quarantined, or not to deliver.
    all_settled: bool,
    /// The highest UID up to which everything is settled (in ascending order).
    settled_up_to: Option<u32>,
}

/// One poll of an IMAP channel: connect, sign in, select, find and settle mail, log out.
pub async fn poll<H: Handover>(
    ctx: &Ingest,
    handover: &H,
    runtime: &ChannelRuntime,
    job: &ChannelJob,
    token: &str,
) -> Result<PollReport, Failure> {
    let record = &job.record;
    let opened = ctx
        .imap
        .open(&record.mailbox, token, record.folder.as_str())
        .await;
    let mut session = match opened {
        Ok(session) => session,
        Err(err) => return Err(observe(ctx, job, err).await),
    };
    let result = poll_on(ctx, handover, runtime, job, &mut session).await;
    let result = match result {
        Err(Failure::Imap(err)) => Err(observe(ctx, job, err).await),
        other => other,
    };
    // One connection per cycle: closed whatever happened (a dead one is just dropped).
    if !matches!(
        result,
        Err(Failure::Imap(
            ImapError::Timeout(_) | ImapError::Bye { .. } | ImapError::Connect { .. }
        ))
    ) {
        session.logout().await;
    }
    result
}

/// Raises the mailbox's floor when the server suggested a backoff; answers the failure.
async fn observe(ctx: &Ingest, job: &ChannelJob, err: ImapError) -> Failure {
    if let Some(retry_after) = err.retry_after()
        && let Err(store) = ctx.raise_floor(&job.key, retry_after).await
    {
        return Failure::from(store);
    }
    Failure::Imap(err)
}

async fn poll_on<H: Handover>(
    ctx: &Ingest,
    handover: &H,
    runtime: &ChannelRuntime,
    job: &ChannelJob,
    session: &mut ImapSession,
) -> Result<PollReport, Failure> {
    let mut report = replay(ctx, handover, runtime, job, session).await?;
    if let Some(mut backfill) = runtime.backfill() {
        let query = format!("SINCE {}", backfill.since.format("%d-%b-%Y"));
        let uids = session.uid_search(&query).await?;
        let (uids, more) = take(uids, ctx.run.max_messages_per_poll as usize);
        let settled = settle(ctx, handover, job, session, &uids, Rules::Asked).await?;
        add(&mut report, &settled.report);
        backfill.delivered += settled.report.delivered;
        if more || !settled.all_settled {
            report.more = more && settled.report.sink_unavailable.is_none();
            report.sink_unavailable = settled.report.sink_unavailable;
            runtime.set_backfill(Some(backfill));
        } else {
            tracing::info!(channel = %job.record.id, since = %backfill.since, delivered = backfill.delivered,
                "Backfill done: every message received since the date is delivered.");
            metrics::counter!("inboxd_backfilled_messages_total").increment(backfill.delivered);
            runtime.set_backfill(None);
            report.more = true;
        }
        return Ok(report);
    }
    let record = &job.record;
    let mut cursor = ctx.store.get_cursor(record.id)?.unwrap_or_default();
    let validity = session.uid_validity;
    let position = match cursor.imap {
        Some(at) if at.uid_validity == validity => Some(at.settled_uid),
        Some(at) => {
            tracing::info!(channel = %record.id, old = at.uid_validity, new = validity,
                "The folder's UIDVALIDITY changed: its unseen mail is read again; the ledger recognises what was delivered by Message-ID.");
            None
        }
        None => None,
    };
    let (uids, rules) = match position {
        Some(settled) => {
            let above = session
                .uid_search(&format!("UID {}:*", settled.saturating_add(1)))
                .await?;
            // `n:*` names the last message even when its UID is below n.
            let above: Vec<u32> = above.into_iter().filter(|uid| *uid > settled).collect();
            (above, Rules::Above)
        }
        None => (session.uid_search("UNSEEN").await?, Rules::Unseen),
    };
    let (uids, more) = take(uids, ctx.run.max_messages_per_poll as usize);
    let settled = settle(ctx, handover, job, session, &uids, rules).await?;
    add(&mut report, &settled.report);
    report.sink_unavailable = settled.report.sink_unavailable.clone();
    report.more = more && report.sink_unavailable.is_none();
    let new_position = match rules {
        Rules::Above => settled
            .settled_up_to
            .map(|uid| uid.max(position.unwrap_or(0))),
        // Every unseen message below UIDNEXT was looked at: the rest below it was read before
        // inboxd listened, or is mail this channel does not take.
        _ if settled.all_settled && !more => session
            .uid_next
            .map(|next| next.saturating_sub(1))
            .or_else(|| uids.last().copied()),
        _ => None,
    };
    if let Some(settled_uid) = new_position {
        let next = ImapCursor {
            uid_validity: validity,
            settled_uid,
        };
        if cursor.imap != Some(next) {
            cursor.imap = Some(next);
            ctx.store.put_cursor(record.id, &cursor)?;
        }
    }
    Ok(report)
}

/// The first `max` UIDs (ascending), and whether there were more.
fn take(mut uids: Vec<u32>, max: usize) -> (Vec<u32>, bool) {
    uids.sort_unstable();
    let more = uids.len() > max.max(1);
    uids.truncate(max.max(1));
    (uids, more)
}

fn add(report: &mut PollReport, more: &PollReport) {
    report.delivered += more.delivered;
    report.marked_read += more.marked_read;
}

/// Delivers the messages an operator released from quarantine, fetched by UID (those of an older
/// UIDVALIDITY are gone from the folder's numbering: nothing left to replay).
async fn replay<H: Handover>(
    ctx: &Ingest,
    handover: &H,
    runtime: &ChannelRuntime,
    job: &ChannelJob,
    session: &mut ImapSession,
) -> Result<PollReport, Failure> {
    let ids = runtime.take_replays();
    if ids.is_empty() {
        return Ok(PollReport::default());
    }
    let uids: Vec<u32> = ids
        .iter()
        .filter_map(|id| parse_message_id(id))
        .filter(|(validity, _)| *validity == session.uid_validity)
        .map(|(_, uid)| uid)
        .collect();
    match settle(ctx, handover, job, session, &uids, Rules::Asked).await {
        Ok(settled) => Ok(settled.report),
        Err(failure) => {
            runtime.requeue_replays(ids);
            Err(failure)
        }
    }
}

/// Whether a fetched message is mail to deliver under `rules`.
fn is_new(
    rules: Rules,
    seen: bool,
    received: Option<DateTime<Utc>>,
    since: DateTime<Utc>,
    activated: DateTime<Utc>,
) -> bool {
    let within_policy = received.is_none_or(|at| at >= since);
    match rules {
        Rules::Asked => true,
        Rules::Unseen => within_policy,
        Rules::Above => within_policy && (!seen || received.is_none_or(|at| at >= activated)),
    }
}

/// Settles `uids` (ascending): asks the ledger first (delivered mail only needs its `\Seen`),
/// fetches the rest a chunk at a time, hands the new mail over, and marks `\Seen` what the
/// processor acknowledged. Stops at the first chunk that could not be settled whole.
async fn settle<H: Handover>(
    ctx: &Ingest,
    handover: &H,
    job: &ChannelJob,
    session: &mut ImapSession,
    uids: &[u32],
    rules: Rules,
) -> Result<Settled, Failure> {
    let record = &job.record;
    let validity = session.uid_validity;
    let mut settled = Settled {
        all_settled: true,
        ..Settled::default()
    };
    // The ledger first: nothing it knows is fetched again.
    let mut to_fetch = Vec::new();
    let mut to_mark = Vec::new();
    // The entries of mail to mark, as read here: the mark-read writes from them.
    let mut delivered = HashMap::new();
    for uid in uids {
        let id = message_id(validity, *uid);
        let entry = ctx.store.ledger_get(record.id, &id)?;
        match entry.as_ref().map(|e| e.state) {
            Some(LedgerState::Delivered) => {
                to_mark.push(*uid);
                delivered.insert(id, entry);
            }
            Some(LedgerState::MarkedRead | LedgerState::Quarantined) => {}
            _ => to_fetch.push(*uid),
        }
    }
    if !to_mark.is_empty() {
        // Delivered before (a crash, or a STORE that failed): only the \Seen is missing.
        mark_seen(ctx, job, session, &to_mark, &delivered, &mut settled.report).await?;
    }
    let since = since(record);
    let activated = record.activated_at.unwrap_or(record.created_at);
    let options = MimeOptions {
        html: ctx.imap.html_body(),
        max_attachment_bytes: ctx.run.max_attachment_bytes,
    };
    let mut fetched_up_to: Option<u32> = to_fetch.first().map(|uid| uid.saturating_sub(1));
    if to_fetch.is_empty() {
        fetched_up_to = uids.last().copied();
    }
    for chunk in to_fetch.chunks(FETCH_CHUNK) {
        let fetched = session.fetch(chunk).await?;
        let done = settle_chunk(
            ctx,
            handover,
            job,
            session,
            fetched,
            rules,
            since,
            activated,
            options,
            &mut settled.report,
        )
        .await?;
        if !done {
            settled.all_settled = false;
            break;
        }
        fetched_up_to = chunk.last().copied();
    }
    if settled.all_settled {
        // Everything asked for is settled, including UIDs above the last fetched one that the
        // ledger knew. Otherwise the position stays below the first chunk not settled.
        fetched_up_to = fetched_up_to.max(uids.last().copied());
    }
    settled.settled_up_to = fetched_up_to;
    Ok(settled)
}

/// Settles one fetched chunk; answers whether all of it is settled.
#[allow(clippy::too_many_arguments)]
async fn settle_chunk<H: Handover>(
    ctx: &Ingest,
    handover: &H,
    job: &ChannelJob,
    session: &mut ImapSession,
    fetched: Vec<Fetched>,
    rules: Rules,
    since: DateTime<Utc>,
    activated: DateTime<Utc>,
    options: MimeOptions,
    report: &mut PollReport,
) -> Result<bool, Failure> {
    let record = &job.record;
    let validity = session.uid_validity;
    let mut all_settled = true;
    let mut seen: HashMap<String, (u32, bool)> = HashMap::new();
    let mut items: Vec<MailItem> = Vec::with_capacity(fetched.len());
    let mut malformed = Vec::new();
    for message in fetched {
        let id = message_id(validity, message.uid);
        seen.insert(id.clone(), (message.uid, message.seen));
        if !is_new(rules, message.seen, message.internal_date, since, activated) {
            continue;
        }
        match to_mail_item(
            &message.raw,
            record.id,
            &record.mailbox,
            id.clone(),
            message.internal_date,
            options,
        ) {
            Some(item) => items.push(item),
            None => malformed.push((id, "the message is not RFC 5322 mail".to_owned())),
        }
    }
    if !malformed.is_empty() {
        for (message_id, _) in ctx
            .ledger
            .record_failures(record.id, &malformed, 1, Utc::now())?
        {
            tracing::warn!(channel = %record.id, message_id = %message_id, "Message quarantined: the IMAP server sent a message inboxd cannot read.");
            metrics::counter!("inboxd_messages_quarantined_total").increment(1);
        }
    }
    // Mail delivered under Graph (or before a UIDVALIDITY change) is known by its Message-ID.
    let sorted = ctx.ledger.sort_known(
        record.id,
        items,
        |item| item.message_id.as_str(),
        |item| item.internet_message_id.as_deref(),
    )?;
    // What the sort read of each message: the mark-read below writes from it, reading nothing.
    let prior = sorted.prior;
    let mut acked: Vec<String> = sorted.to_mark;
    let mut done: Vec<String> = sorted.done;
    if !sorted.to_deliver.is_empty() {
        if !ctx.may_act(record.id) {
            return Err(Failure::NotOwned);
        }
        let acks = handover
            .hand_over(record.id, sorted.to_deliver)
            .await
            .map_err(Failure::Processor)?;
        let mut refused = Vec::new();
        for (message_id, ack) in acks {
            match ack {
                Ok(()) => {
                    report.delivered += 1;
                    acked.push(message_id);
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
                ctx.run.max_delivery_attempts,
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
    // Acknowledged mail already \Seen (a person read it) needs no STORE: the ledger learns it is done.
    let mut unseen_uids = Vec::new();
    for id in acked {
        match seen.get(&id) {
            Some((uid, false)) => unseen_uids.push(*uid),
            _ => done.push(id),
        }
    }
    ctx.ledger
        .record_marked_read_after(record.id, &done, &prior, Utc::now())?;
    mark_seen(ctx, job, session, &unseen_uids, &prior, report).await?;
    Ok(all_settled)
}

/// `UID STORE +FLAGS.SILENT (\Seen)` for mail the sink accepted, then the ledger records it from
/// `prior`, what the chunk's sort read of it.
async fn mark_seen(
    ctx: &Ingest,
    job: &ChannelJob,
    session: &mut ImapSession,
    uids: &[u32],
    prior: &HashMap<String, Option<LedgerEntry>>,
    report: &mut PollReport,
) -> Result<(), Failure> {
    if uids.is_empty() {
        return Ok(());
    }
    if !ctx.may_act(job.record.id) {
        return Err(Failure::NotOwned);
    }
    session.mark_seen(uids).await?;
    let ids: Vec<String> = uids
        .iter()
        .map(|uid| message_id(session.uid_validity, *uid))
        .collect();
    ctx.ledger
        .record_marked_read_after(job.record.id, &ids, prior, Utc::now())?;
    report.marked_read += uids.len() as u64;
    ctx.stats
        .marked_read
        .fetch_add(uids.len() as u64, Ordering::Relaxed);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    //! The IMAP source on its own: a fake hand-over, the simulator's IMAP server on loopback.

    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    use crate::domain::{ChannelId, PollMode, Transport};

    use crate::imap::{ImapClient, ImapEndpoint};
    use crate::ingest::Ingest;
    use crate::ingest::cycle::{Acks, CycleEnd, run_cycle};

    use crate::sim::client::{Delivery, SimClient};
    use crate::sink::SinkError;

    /// Takes mail as the processor would (the ledger first, then the ack), refusing mail whose
    /// subject says "poison", as a receiver refuses what it cannot parse.
    struct FakeSink {
        ledger: crate::ingest::Ledger,
        taken: Mutex<Vec<MailItem>>,
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
                    .record_delivered_mail(
                        channel,
                        &[(
                            item.message_id.as_str(),
                            item.internet_message_id.as_deref(),
                        )],
                        Utc::now(),
                    )
                    .map_err(|e| e.to_string())?;
                acks.push((item.message_id.clone(), Ok(())));
                self.taken.lock().unwrap().push(item);
            }
            Ok(acks)
        }
    }

    struct Setup {
        _sim: crate::sim::SimHandle,
        sim: SimClient,
        sim_url: String,
        ctx: Ingest,
        job: ChannelJob,
        upn: String,
        sink: FakeSink,
    }

    async fn setup() -> Setup {
        let upn = "imap@imap.example".to_owned();
        let scope = "offline_access https://outlook.office.com/IMAP.AccessAsUser.All";
        let seeded =
            crate::ingest::test_support::authorized_channel(&upn, Transport::Imap, Some(scope))
                .await;
        let imap_addr = seeded.sim_handle.imap_addr().unwrap();
        let (sim_handle, sim, record) = (seeded.sim_handle, seeded.sim, seeded.record);
        let ctx = crate::ingest::test_support::context(seeded.store, &seeded.url, PollMode::Delta)
            .with_imap(ImapClient::new(
                ImapEndpoint::parse(&format!("imap://{imap_addr}")).unwrap(),
                Duration::from_secs(5),
                2,
            ));
        let generation = ctx.runtimes.get(record.id).claim();
        let job = ChannelJob::new(
            Arc::new(record),
            Duration::from_secs(300),
            generation,
            PollMode::Delta,
        );
        let sink = FakeSink {
            ledger: ctx.ledger.clone(),
            taken: Mutex::new(Vec::new()),
        };
        Setup {
            sim_url: sim_handle.url(),
            _sim: sim_handle,
            sim,
            ctx,
            job,
            upn,
            sink,
        }
    }

    async fn cycle(s: &Setup) -> PollReport {
        let runtime = s.ctx.runtimes.get(s.job.record.id);
        match run_cycle(&s.ctx, &s.sink, &runtime, &s.job, false).await {
            CycleEnd::Ran(Ok(report)) => report,
            other => panic!("the cycle failed: {other:?}"),
        }
    }

    #[actix_rt::test]
    async fn imap_mail_is_delivered_once_and_seen_only_after_the_sink_took_it() {
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
        let report = cycle(&s).await;
        assert_eq!((report.delivered, report.marked_read), (25, 25));
        let state = s.sim.mailbox_state(&s.upn).await.unwrap();
        assert_eq!(state.unread, 1, "only the refused message stays unseen");
        {
            let taken = s.sink.taken.lock().unwrap();
            assert!(taken.iter().all(|m| m.message_id.starts_with("imap:")));
            // The same record as Graph's: the Internet Message-ID as Graph writes it, a sender.
            let by_imid: std::collections::HashSet<_> = state
                .messages
                .iter()
                .map(|m| m.internet_message_id.clone())
                .collect();
            assert!(taken.iter().all(|m| {
                m.internet_message_id
                    .as_ref()
                    .is_some_and(|id| by_imid.contains(id))
            }));
            assert!(taken.iter().all(|m| m.from.is_some()));
        }
        // The refused message fails again and is quarantined; nothing is handed over twice, and
        // the poison is never \Seen.
        let report = cycle(&s).await;
        assert_eq!(report.delivered, 0);
        assert_eq!(
            s.ctx.ledger.quarantined(s.job.record.id, 10).unwrap().len(),
            1
        );
        let report = cycle(&s).await;
        assert_eq!(report.delivered, 0);
        assert_eq!(s.sink.taken.lock().unwrap().len(), 25);
        assert_eq!(s.sim.mailbox_state(&s.upn).await.unwrap().unread, 1);
        let cursor = s.ctx.store.get_cursor(s.job.record.id).unwrap().unwrap();
        assert!(
            cursor.imap.is_some(),
            "the cursor holds the folder's position"
        );
    }

    #[actix_rt::test]
    async fn a_uidvalidity_change_is_a_resync_that_delivers_nothing_twice() {
        let s = setup().await;
        s.sim
            .deliver(&s.upn, &Delivery::generated(6))
            .await
            .unwrap();
        assert_eq!(cycle(&s).await.delivered, 6);
        // Three more arrive; one of the first six is marked unread again by a person, then the
        // server renumbers the folder (a new UIDVALIDITY).
        s.sim
            .deliver(&s.upn, &Delivery::generated(3))
            .await
            .unwrap();
        let state = s.sim.mailbox_state(&s.upn).await.unwrap();
        let first = state
            .messages
            .iter()
            .find(|m| m.is_read)
            .unwrap()
            .id
            .clone();
        let http = reqwest::Client::new();
        let unread_again = http
            .patch(format!(
                "{}/_sim/mailboxes/{}/messages/{first}",
                s.sim_url, s.upn
            ))
            .json(&serde_json::json!({"is_read": false}))
            .send()
            .await
            .unwrap();
        assert!(unread_again.status().is_success());
        let bumped = http
            .post(format!(
                "{}/_sim/mailboxes/{}/folders/inbox/uidvalidity",
                s.sim_url, s.upn
            ))
            .send()
            .await
            .unwrap();
        assert!(bumped.status().is_success(), "{}", bumped.status());
        // The resync reads the unseen mail under the new UIDs: the message marked unread again
        // is known by its Message-ID (it only gets its `\\Seen` back), the new ones are delivered.
        let report = cycle(&s).await;
        assert_eq!(report.delivered, 3, "only the new mail is delivered");
        let (count, ids) = {
            let taken = s.sink.taken.lock().unwrap();
            let ids: std::collections::HashSet<_> = taken
                .iter()
                .map(|m| m.internet_message_id.clone())
                .collect();
            (taken.len(), ids.len())
        };
        assert_eq!((count, ids), (9, 9));
        assert_eq!(s.sim.mailbox_state(&s.upn).await.unwrap().unread, 0);
    }

    #[actix_rt::test]
    async fn a_refused_or_dropped_command_is_an_error_and_never_moves_the_cursor() {
        let s = setup().await;
        assert_eq!(cycle(&s).await.delivered, 0);
        for spec in [
            serde_json::json!({"kind": "throttle", "retry_after": 0.2, "mailbox": s.upn,
                   "endpoints": ["imap_fetch"], "count": 2}),
            serde_json::json!({"kind": "imap_bye", "mailbox": s.upn, "endpoints": ["imap_store"], "count": 1}),
            serde_json::json!({"kind": "reset", "mailbox": s.upn, "endpoints": ["imap_search"], "count": 1}),
        ] {
            s.sim.add_fault_json(&spec).await.unwrap();
        }
        s.sim
            .deliver(&s.upn, &Delivery::generated(30))
            .await
            .unwrap();
        let runtime = s.ctx.runtimes.get(s.job.record.id);
        let settled = |s: &Setup| {
            s.ctx
                .store
                .get_cursor(s.job.record.id)
                .unwrap()
                .and_then(|c| c.imap)
                .map(|c| c.settled_uid)
        };
        let mut codes = Vec::new();
        let report = loop {
            match run_cycle(&s.ctx, &s.sink, &runtime, &s.job, false).await {
                CycleEnd::Ran(Ok(report)) => break report,
                CycleEnd::Ran(Err(Failure::Imap(err))) => {
                    assert_eq!(settled(&s), Some(0), "{err} moved the cursor");
                    codes.push(err.code());
                }
                other => panic!("unexpected: {other:?}"),
            }
            assert!(codes.len() < 10, "the faults never ended: {codes:?}");
        };
        // The dropped search, two throttled fetches, the BYE instead of the STORE.
        assert_eq!(
            codes,
            [
                crate::imap::codes::BYE,
                crate::imap::codes::THROTTLED,
                crate::imap::codes::THROTTLED,
                crate::imap::codes::BYE
            ]
        );
        // The 25 delivered before the BYE only get their \\Seen; the other 5 are delivered.
        assert_eq!((report.delivered, report.marked_read), (5, 30));
        assert_eq!(settled(&s), Some(30));
        assert_eq!(s.sink.taken.lock().unwrap().len(), 30);
        assert_eq!(s.sim.mailbox_state(&s.upn).await.unwrap().unread, 0);
    }

    #[test]
    fn message_ids_round_trip_and_the_uid_list_is_capped_in_order() {
        assert_eq!(message_id(7, 42), "imap:7:42");
        assert_eq!(parse_message_id("imap:7:42"), Some((7, 42)));
        assert_eq!(parse_message_id("AAMkAGI2"), None);
        assert_eq!(take(vec![9, 3, 5], 2), (vec![3, 5], true));
        assert_eq!(take(vec![9, 3], 5), (vec![3, 9], false));
    }

    #[test]
    fn read_mail_above_the_cursor_is_new_only_if_it_arrived_after_authorization() {
        let activated = Utc::now();
        let since = activated - chrono::Duration::days(1);
        let before = Some(activated - chrono::Duration::hours(1));
        let after = Some(activated + chrono::Duration::hours(1));
        assert!(is_new(Rules::Above, false, before, since, activated));
        assert!(!is_new(Rules::Above, true, before, since, activated));
        assert!(is_new(Rules::Above, true, after, since, activated));
        let too_old = Some(since - chrono::Duration::hours(1));
        assert!(!is_new(Rules::Unseen, false, too_old, since, activated));
        assert!(is_new(Rules::Asked, true, too_old, since, activated));
    }
}
