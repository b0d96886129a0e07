//! `ProcessorActor` and its [`Processor`] handle: hand mail to the sink and acknowledge each
//! message only after the sink accepted it durably, recording it as delivered in the ledger first.
//!
//! Channels hand their mail over through the cheap, cloneable [`Processor`] (a shared core: the
//! bounded queue, its wake-up and the room semaphore), without an actor mailbox in between; the
//! actor owns the lifecycle (the JSONL writer thread and the checkpoint task, ended by
//! `Terminate`).
//!
//! It is bounded: a batch waits for room (`queue_capacity` messages in flight) before it is queued,
//! so a slow sink slows the channels down instead of growing a queue without limit. The JSONL sink
//! commits in groups: a dedicated OS thread (`jsonl-writer`) takes every batch queued while it
//! worked, appends them with one `fsync`, records them all as delivered in one ledger batch, then
//! answers each batch. A background task moves the JSONL checkpoint forward once the ledger
//! entries before it are durable, so a restart rescans only the tail of the file.
//!
//! It is the one writer of "delivered" in the ledger, and acknowledges nothing whose delivery the
//! ledger could not record: the mail then stays unread and is delivered again (the JSONL sink
//! skips what the ledger knows; the webhook's receiver drops repeats by their idempotency key).

use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use tokio::sync::{Notify, Semaphore, oneshot};

use crate::actors::messages::Terminate;
use crate::domain::{ChannelId, MailItem};
use crate::ingest::Ledger;
use crate::ingest::cycle::{Acks, Handover};
use crate::ingest::ledger::{Known, KnownMail};
use crate::ingest::recovery::store_checkpoint;
use crate::sink::{JsonlSink, SinkError, SinkRecord, WebhookSink};
use crate::store::StoreError;

/// How often the JSONL checkpoint moves forward.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

/// The sink behind the processor.
pub enum SinkBackend {
    /// A JSONL file, written from the processor's `jsonl-writer` thread.
    Jsonl(Arc<Mutex<JsonlSink>>),
    /// A webhook receiver, with this many deliveries at once.
    Webhook(Arc<WebhookSink>, usize),
    /// The PostgreSQL table sink (cluster mode): each mail goes into the `mail` table in the same
    /// transaction as its ledger entry, exactly once across nodes.
    Postgres,
}

/// One batch waiting for the JSONL writer.
struct Job {
    channel: ChannelId,
    records: Vec<SinkRecord>,
    done: oneshot::Sender<Acks>,
}

/// The JSONL writer's queue.
#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    /// The writer ended: nothing queued now would be written.
    gone: bool,
}

/// The state the handles, the writer thread and the checkpoint task share.
struct Core {
    ledger: Ledger,
    backend: SinkBackend,
    room: Arc<Semaphore>,
    capacity: u32,
    queue: Mutex<Queue>,
    /// Wakes the JSONL writer thread.
    work: Condvar,
    /// Set by `Terminate`: the writer finishes what is queued and ends.
    closed: std::sync::atomic::AtomicBool,
    /// Wakes the checkpoint task at shutdown.
    closing: Notify,
}

/// A handle on the processor: what a channel hands its mail to. Cheap to clone.
#[derive(Clone)]
pub struct Processor {
    core: Arc<Core>,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor").finish_non_exhaustive()
    }
}

/// The shared processor's lifecycle: its background work, ended by `Terminate`.
pub struct ProcessorActor {
    core: Arc<Core>,
    /// The checkpoint task, awaited at `Terminate` so the store is released.
    tasks: Vec<actix_rt::task::JoinHandle<()>>,
    /// Answers (by closing) when the JSONL writer thread ended.
    writer_done: Option<oneshot::Receiver<()>>,
}

impl ProcessorActor {
    /// A processor in front of `backend`, holding at most `queue_capacity` messages at once.
    pub fn new(ledger: Ledger, backend: SinkBackend, queue_capacity: usize) -> Self {
        let capacity = u32::try_from(queue_capacity.clamp(1, 1_000_000)).unwrap_or(10_000);
        ProcessorActor {
            core: Arc::new(Core {
                ledger,
                backend,
                room: Arc::new(Semaphore::new(capacity as usize)),
                capacity,
                queue: Mutex::new(Queue::default()),
                work: Condvar::new(),
                closed: std::sync::atomic::AtomicBool::new(false),
                closing: Notify::new(),
            }),
            tasks: Vec::new(),
            writer_done: None,
        }
    }

    /// The handle channels hand their mail to.
    pub fn handle(&self) -> Processor {
        Processor {
            core: Arc::clone(&self.core),
        }
    }
}

impl Actor for ProcessorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
        if let SinkBackend::Jsonl(file) = &self.core.backend {
            let (finished, writer_done) = oneshot::channel::<()>();
            let core = Arc::clone(&self.core);
            let spawned = std::thread::Builder::new()
                .name("jsonl-writer".to_owned())
                .spawn(move || {
                    writer_loop(&core);
                    drop(finished);
                });
            match spawned {
                Ok(_) => self.writer_done = Some(writer_done),
                Err(err) => {
                    // Nothing can be written: every batch is refused (the channels back off).
                    tracing::error!(error = %err, "Could not start the JSONL writer thread.");
                    self.core.lock_queue().gone = true;
                }
            }
            self.tasks.push(actix_rt::spawn(checkpoint_loop(
                Arc::clone(&self.core),
                Arc::clone(file),
            )));
        }
    }
}

/// An actor dropped without `Terminate` (its system stopped) still ends the writer thread once the
/// queue is written, so the thread does not keep the store open.
impl Drop for ProcessorActor {
    fn drop(&mut self) {
        self.core.close();
    }
}

impl Handler<Terminate> for ProcessorActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Terminate, _: &mut Context<Self>) -> Self::Result {
        self.core.close();
        let tasks = std::mem::take(&mut self.tasks);
        let writer = self.writer_done.take();
        Box::pin(
            async move {
                if let Some(writer) = writer {
                    let _ = writer.await;
                }
                for task in tasks {
                    let _ = task.await;
                }
            }
            .into_actor(self)
            .map(|(), _, ctx| ctx.stop()),
        )
    }
}

/// The processor takes the mail a cycle hands over.
impl Handover for Processor {
    async fn hand_over(&self, channel: ChannelId, items: Vec<MailItem>) -> Result<Acks, String> {
        self.core.process(channel, items).await
    }
}

impl Processor {
    /// Delivers `items` of `channel` and answers per message, each `Ok` only once the sink
    /// accepted it durably and the ledger recorded it; an `Err` means no answer (the JSONL writer
    /// stopped): nothing is acknowledged.
    pub async fn process(&self, channel: ChannelId, items: Vec<MailItem>) -> Result<Acks, String> {
        self.core.process(channel, items).await
    }
}

impl Core {
    fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// No new batch from now on; the writer finishes what is queued and ends.
    fn close(&self) {
        {
            // Under the queue's lock, so the writer cannot miss it between its check and its wait.
            let _queue = self.lock_queue();
            self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
            self.work.notify_all();
        }
        self.room.close();
        self.closing.notify_one();
    }

    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn process(&self, channel: ChannelId, items: Vec<MailItem>) -> Result<Acks, String> {
        let now = Utc::now();
        let records: Vec<SinkRecord> = items
            .into_iter()
            .map(|item| SinkRecord::from_mail_owned(item, now))
            .collect();
        let n = u32::try_from(records.len())
            .unwrap_or(u32::MAX)
            .clamp(1, self.capacity);
        // Back-pressure: wait for room before queueing.
        let Ok(_room) = Arc::clone(&self.room).acquire_many_owned(n).await else {
            return Ok(fail_all(
                &records,
                &unavailable("the processor is shutting down".to_owned()),
            ));
        };
        let acks = match &self.backend {
            SinkBackend::Jsonl(_) => {
                let (done, wait) = oneshot::channel();
                {
                    let mut queue = self.lock_queue();
                    if queue.gone {
                        return Ok(fail_all(
                            &records,
                            &unavailable("the JSONL writer stopped".to_owned()),
                        ));
                    }
                    queue.jobs.push(Job {
                        channel,
                        records,
                        done,
                    });
                }
                self.work.notify_one();
                // The writer answers every job it takes; no answer means it died with the batch.
                wait.await
                    .map_err(|_| "the JSONL writer stopped without answering".to_owned())?
            }
            SinkBackend::Webhook(webhook, concurrency) => {
                let (done, fresh): (Vec<SinkRecord>, Vec<SinkRecord>) = records
                    .into_iter()
                    .partition(|record| already_delivered(&self.ledger, channel, record));
                let results = webhook.deliver_many(&fresh, *concurrency).await;
                let delivered: Vec<(&str, Option<&str>)> = fresh
                    .iter()
                    .zip(&results)
                    .filter(|(_, result)| result.is_ok())
                    .map(|(r, _)| (r.message_id.as_str(), r.internet_message_id.as_deref()))
                    .collect();
                let recorded = self
                    .ledger
                    .record_delivered_mail(channel, &delivered, Utc::now());
                let mut acks: Acks = fresh
                    .into_iter()
                    .map(|r| r.message_id)
                    .zip(results)
                    .collect();
                acks.extend(done.into_iter().map(|r| (r.message_id, Ok(()))));
                acks_after_recording(acks, recorded)
            }
            SinkBackend::Postgres => {
                let ledger = self.ledger.clone();
                let mails: Result<Vec<(String, String)>, serde_json::Error> = records
                    .iter()
                    .map(|r| Ok((r.message_id.clone(), serde_json::to_string(r)?)))
                    .collect();
                match mails {
                    Err(err) => fail_all(
                        &records,
                        &unavailable(format!("a mail could not be encoded: {err}")),
                    ),
                    Ok(mails) => {
                        let imids: Vec<(String, String)> = records
                            .iter()
                            .filter_map(|r| {
                                Some((r.message_id.clone(), r.internet_message_id.clone()?))
                            })
                            .collect();
                        let written = actix_web::rt::task::spawn_blocking(move || {
                            ledger.deliver_into_table_with_ids(channel, &mails, &imids, Utc::now())
                        })
                        .await;
                        match written {
                            Ok(Ok(_)) => records
                                .into_iter()
                                .map(|r| (r.message_id, Ok(())))
                                .collect(),
                            Ok(Err(err)) => fail_all(&records, &table_refused(&err)),
                            Err(err) => fail_all(
                                &records,
                                &unavailable(format!("the table sink task failed: {err}")),
                            ),
                        }
                    }
                }
            }
        };
        let accepted = acks.iter().filter(|(_, r)| r.is_ok()).count() as u64;
        metrics::counter!("inboxd_messages_delivered_total").increment(accepted);
        metrics::counter!("inboxd_sink_failures_total").increment(acks.len() as u64 - accepted);
        Ok(acks)
    }
}

fn unavailable(reason: impl Into<String>) -> SinkError {
    SinkError::Unavailable {
        reason: reason.into(),
        disk_full: false,
    }
}

/// The table sink's refusal: the store's error, with the policy of its kind (a full disk or a
/// store outage is the sink's fault: back off; a lost lease stops here, the new owner delivers).
fn table_refused(err: &StoreError) -> SinkError {
    SinkError::Unavailable {
        reason: format!("the PostgreSQL table sink could not take the mail: {err}"),
        disk_full: err.is_disk_full(),
    }
}

fn fail_all(records: &[SinkRecord], err: &SinkError) -> Acks {
    records
        .iter()
        .map(|r| (r.message_id.clone(), Err(err.clone())))
        .collect()
}

/// Whether the ledger already holds this message as delivered (or read). A ledger that cannot be
/// read says no: the message is delivered (again) rather than lost.
fn already_delivered(ledger: &Ledger, channel: ChannelId, record: &SinkRecord) -> bool {
    matches!(ledger.is_delivered(channel, &record.message_id), Ok(true))
}

/// The acknowledgements to send once the sink accepted the mail and the ledger was asked to record
/// it: if the ledger could not, nothing is acknowledged (the mail stays unread and is delivered
/// again, with the same idempotency key), because a message marked read that the ledger does not
/// know as delivered could be lost to a later failure.
fn acks_after_recording(acks: Acks, recorded: Result<usize, StoreError>) -> Acks {
    match recorded {
        Ok(_) => acks,
        Err(err) => {
            tracing::error!(error = %err, "Could not record delivered messages in the ledger; they stay unread and are delivered again.");
            let refused = unavailable(format!(
                "the ledger could not record the delivery, so the mail stays unread: {err}"
            ));
            acks.into_iter()
                .map(|(id, _)| (id, Err(refused.clone())))
                .collect()
        }
    }
}

/// The `jsonl-writer` thread: takes every queued batch at once, writes the group, answers each
/// batch; at `Terminate` it finishes what is queued and ends.
fn writer_loop(core: &Core) {
    let SinkBackend::Jsonl(file) = &core.backend else {
        return;
    };
    loop {
        let jobs = {
            let mut queue = core.lock_queue();
            loop {
                if !queue.jobs.is_empty() {
                    break std::mem::take(&mut queue.jobs);
                }
                if core.is_closed() {
                    queue.gone = true;
                    return;
                }
                queue = core
                    .work
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        write_group(core, file, jobs);
    }
}

/// Writes one group of batches: one append and `fsync` for all of them, then one ledger batch
/// recording them all as delivered, then the answer to each batch (all `Ok`, or all the error).
fn write_group(core: &Core, file: &Mutex<JsonlSink>, jobs: Vec<Job>) {
    let written = append_and_record(core, file, &jobs);
    if let Err(err) = &written {
        tracing::warn!(error = %err, "The JSONL sink refused a batch; the mail stays unread and is retried.");
    }
    for job in jobs {
        let acks: Acks = match &written {
            Ok(()) => job
                .records
                .into_iter()
                .map(|r| (r.message_id, Ok(())))
                .collect(),
            Err(err) => fail_all(&job.records, err),
        };
        let _ = job.done.send(acks);
    }
}

fn append_and_record(core: &Core, file: &Mutex<JsonlSink>, jobs: &[Job]) -> Result<(), SinkError> {
    let ledger = &core.ledger;
    // The one writer of the file is also the one writer of "delivered": a message the ledger
    // already knows as delivered (a cycle that raced a restart of its channel, or the same
    // message in two batches) is acknowledged without a second line. One read per message; its
    // answer is what the ledger write below starts from. A ledger that cannot be read says "not
    // delivered": the message is written (again) rather than lost.
    let total: usize = jobs.iter().map(|job| job.records.len()).sum();
    let mut seen: HashSet<(ChannelId, &str)> = HashSet::with_capacity(total);
    let mut fresh: Vec<(ChannelId, &SinkRecord, Option<crate::store::LedgerEntry>)> =
        Vec::with_capacity(total);
    for job in jobs {
        for record in &job.records {
            if !seen.insert((job.channel, record.message_id.as_str())) {
                continue;
            }
            match ledger.known(job.channel, &record.message_id) {
                Ok(Known::Delivered) => {}
                Ok(Known::Fresh(entry)) => fresh.push((job.channel, record, entry)),
                Err(_) => fresh.push((job.channel, record, None)),
            }
        }
    }
    let mut sink = file
        .lock()
        .map_err(|_| unavailable("the JSONL writer panicked".to_owned()))?;
    sink.append_all(fresh.iter().map(|(_, record, _)| *record))?;
    // The ledger learns of the lines right after they are durable, before any ack: all of them
    // in one batch.
    let mails: Vec<KnownMail<'_>> = fresh
        .iter()
        .map(|(channel, record, known)| KnownMail {
            channel: *channel,
            message_id: &record.message_id,
            internet_message_id: record.internet_message_id.as_deref(),
            known: known.as_ref(),
        })
        .collect();
    ledger
        .record_delivered_known(&mails, Utc::now())
        .map_err(|err| unavailable(format!("the ledger could not be written: {err}")))
}

/// Moves the JSONL checkpoint forward: the offset seen before a store flush is safe once it completes.
async fn checkpoint_loop(core: Arc<Core>, file: Arc<Mutex<JsonlSink>>) {
    let store = core.ledger.store().clone();
    let mut recorded = None;
    loop {
        if core.is_closed() {
            return;
        }
        tokio::select! {
            _ = actix_rt::time::sleep(CHECKPOINT_EVERY) => {}
            _ = core.closing.notified() => {}
        }
        let Ok(offset) = file.lock().map(|sink| sink.offset()) else {
            return;
        };
        if recorded == Some(offset) {
            continue;
        }
        if store.flush_async().await.is_err() {
            continue;
        }
        if store_checkpoint(&store, offset).is_ok() {
            recorded = Some(offset);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::domain::Mailbox;
    use crate::domain::secret::MasterKey;
    use crate::store::{Store, StoreOptions};

    fn mail(channel: ChannelId, id: &str) -> MailItem {
        MailItem {
            channel_id: channel,
            mailbox: Mailbox::parse("support@contoso.com").unwrap(),
            message_id: id.to_owned(),
            internet_message_id: Some(format!("<{id}.{channel}@contoso.com>")),
            kind: "#microsoft.graph.message".to_owned(),
            received_at: Some(Utc::now()),
            from: None,
            to: Vec::new(),
            cc: Vec::new(),
            subject: format!("mail {id}"),
            body_content_type: "text".to_owned(),
            body: "hello".to_owned(),
            conversation_id: None,
            has_attachments: false,
            attachments: Vec::new(),
        }
    }

    #[actix_rt::test]
    async fn batches_written_together_are_recorded_delivered_once_and_each_answered() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &dir.path().join("store"),
            MasterKey::generate(),
            StoreOptions::default(),
        )
        .unwrap();
        let ledger = Ledger::new(store);
        let path = dir.path().join("mail.jsonl");
        let (sink, _) = JsonlSink::open(&path, 0).unwrap();
        let actor = ProcessorActor::new(
            ledger.clone(),
            SinkBackend::Jsonl(Arc::new(Mutex::new(sink))),
            100,
        );
        let processor = actor.handle();
        let addr = actor.start();
        let (a, b) = (ChannelId::generate(), ChannelId::generate());
        // Delivered before: acknowledged without a second line.
        ledger.record_delivered(a, &["old"], Utc::now()).unwrap();
        let (first, second) = tokio::join!(
            processor.process(a, vec![mail(a, "m1"), mail(a, "old"), mail(a, "m1")]),
            processor.process(b, vec![mail(b, "m1"), mail(b, "m2")]),
        );
        let (first, second) = (first.unwrap(), second.unwrap());
        let ids = |acks: &Acks| acks.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&first), vec!["m1", "old", "m1"]);
        assert_eq!(ids(&second), vec!["m1", "m2"]);
        assert!(first.iter().chain(&second).all(|(_, ack)| ack.is_ok()));
        for (channel, id) in [(a, "m1"), (b, "m1"), (b, "m2")] {
            assert!(ledger.is_delivered(channel, id).unwrap(), "{channel} {id}");
        }
        // One line per message the ledger did not know: a's m1 once, b's two.
        let lines = std::fs::read_to_string(&path).unwrap();
        assert_eq!(lines.lines().count(), 3, "{lines}");
        // Each delivered mail is known by its Message-ID too.
        let sorted = ledger
            .sort_known(
                b,
                vec![("imap:1:1", format!("<m2.{b}@contoso.com>"))],
                |m| m.0,
                |m| Some(m.1.as_str()),
            )
            .unwrap();
        assert_eq!(sorted.to_mark, vec!["imap:1:1".to_owned()]);

        // After Terminate the writer has ended: a batch is refused at once, nothing hangs.
        addr.send(Terminate).await.unwrap();
        let after = processor.process(a, vec![mail(a, "m3")]).await.unwrap();
        assert!(after[0].1.as_ref().is_err_and(|e| !e.is_message_fault()));
        assert!(!ledger.is_delivered(a, "m3").unwrap());
    }

    #[test]
    fn mail_whose_delivery_the_ledger_could_not_record_is_not_acknowledged() {
        let acks: Acks = vec![("a".to_owned(), Ok(())), ("b".to_owned(), Ok(()))];
        let failed = acks_after_recording(
            acks.clone(),
            Err(StoreError::Io {
                source: std::io::Error::other("No space left on device"),
            }),
        );
        assert_eq!(failed.len(), 2);
        for (_, ack) in &failed {
            let err = ack.as_ref().unwrap_err();
            assert!(
                !err.is_message_fault(),
                "an outage, not the message's fault"
            );
        }
        let fine = acks_after_recording(acks, Ok(2));
        assert!(fine.iter().all(|(_, ack)| ack.is_ok()));
    }
}
