//! `ProcessorActor`: hands mail to the sink and acknowledges each message only after the sink
//! accepted it durably, recording it as delivered in the ledger first.
//!
//! It is bounded: a batch waits for room (`queue_capacity` messages in flight) before it is queued,
//! so a slow sink slows the channels down instead of growing a queue without limit. The JSONL sink
//! commits in groups: every batch that arrives while one `fsync` runs is written by the next one.
//! A background task moves the JSONL checkpoint forward once the ledger entries before it are
//! durable, so a restart rescans only the tail of the file.
//!
//! It is the one writer of "delivered" in the ledger, and acknowledges nothing whose delivery the
//! ledger could not record: the mail then stays unread and is delivered again (the JSONL sink
//! skips what the ledger knows; the webhook's receiver drops repeats by their idempotency key).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use tokio::sync::{Notify, Semaphore, oneshot};

use crate::actors::messages::{ProcessBatch, Terminate};
use crate::domain::ChannelId;
use crate::ingest::Ledger;
use crate::ingest::recovery::store_checkpoint;
use crate::sink::{JsonlSink, SinkError, SinkRecord, WebhookSink};
use crate::store::StoreError;

/// How often the JSONL checkpoint moves forward.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

use crate::ingest::cycle::Acks;

/// The sink behind the processor.
pub enum SinkBackend {
    /// A JSONL file, written from a blocking thread.
    Jsonl(Arc<Mutex<JsonlSink>>),
    /// A webhook receiver, with this many deliveries at once.
    Webhook(Arc<WebhookSink>, usize),
    /// The PostgreSQL table sink (cluster mode): each mail goes into the `mail` table in the same
    /// transaction as its ledger entry, exactly once across nodes.
    Postgres,
}

struct Job {
    records: Vec<SinkRecord>,
    done: oneshot::Sender<Acks>,
}

/// The state the actor's futures share.
struct Core {
    ledger: Ledger,
    backend: SinkBackend,
    room: Arc<Semaphore>,
    capacity: u32,
    queue: Mutex<Vec<Job>>,
    work: Notify,
    /// Set by `Terminate`: the background tasks finish what is queued and end.
    closed: std::sync::atomic::AtomicBool,
    /// Wakes the checkpoint task at shutdown.
    closing: Notify,
}

/// The shared processor.
pub struct ProcessorActor {
    core: Arc<Core>,
    /// The JSONL writer and checkpoint tasks, awaited at `Terminate` so the store is released.
    tasks: Vec<actix_rt::task::JoinHandle<()>>,
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
                queue: Mutex::new(Vec::new()),
                work: Notify::new(),
                closed: std::sync::atomic::AtomicBool::new(false),
                closing: Notify::new(),
            }),
            tasks: Vec::new(),
        }
    }
}

impl Actor for ProcessorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
        if let SinkBackend::Jsonl(file) = &self.core.backend {
            self.tasks
                .push(actix_rt::spawn(flush_loop(Arc::clone(&self.core))));
            self.tasks.push(actix_rt::spawn(checkpoint_loop(
                Arc::clone(&self.core),
                Arc::clone(file),
            )));
        }
    }
}

impl Handler<ProcessBatch> for ProcessorActor {
    type Result = ResponseFuture<Acks>;

    fn handle(&mut self, batch: ProcessBatch, _: &mut Context<Self>) -> Self::Result {
        let core = Arc::clone(&self.core);
        Box::pin(async move { core.process(batch).await })
    }
}

impl Handler<Terminate> for ProcessorActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Terminate, _: &mut Context<Self>) -> Self::Result {
        self.core
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.core.room.close();
        self.core.work.notify_one();
        self.core.closing.notify_one();
        let tasks = std::mem::take(&mut self.tasks);
        Box::pin(
            async move {
                for task in tasks {
                    let _ = task.await;
                }
            }
            .into_actor(self)
            .map(|(), _, ctx| ctx.stop()),
        )
    }
}

impl Core {
    fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn process(&self, batch: ProcessBatch) -> Acks {
        let now = Utc::now();
        let records: Vec<SinkRecord> = batch
            .items
            .iter()
            .map(|item| SinkRecord::from_mail(item, now))
            .collect();
        let n = u32::try_from(records.len())
            .unwrap_or(u32::MAX)
            .clamp(1, self.capacity);
        // Back-pressure: wait for room before queueing.
        let Ok(_room) = Arc::clone(&self.room).acquire_many_owned(n).await else {
            return fail_all(
                &records,
                &unavailable("the processor is shutting down".to_owned()),
            );
        };
        let acks = match &self.backend {
            SinkBackend::Jsonl(_) => {
                let (done, wait) = oneshot::channel();
                if let Ok(mut queue) = self.queue.lock() {
                    queue.push(Job {
                        records: records.clone(),
                        done,
                    });
                }
                self.work.notify_one();
                match wait.await {
                    Ok(acks) => acks,
                    Err(_) => fail_all(
                        &records,
                        &unavailable("the JSONL writer stopped".to_owned()),
                    ),
                }
            }
            SinkBackend::Webhook(webhook, concurrency) => {
                let (done, fresh): (Vec<SinkRecord>, Vec<SinkRecord>) = records
                    .iter()
                    .cloned()
                    .partition(|record| already_delivered(&self.ledger, record));
                let results = webhook.deliver_many(&fresh, *concurrency).await;
                let mut acks: Acks = fresh
                    .iter()
                    .map(|r| r.message_id.clone())
                    .zip(results)
                    .collect();
                acks.extend(done.into_iter().map(|r| (r.message_id, Ok(()))));
                let delivered: Vec<(&str, Option<&str>)> = acks
                    .iter()
                    .filter(|(_, r)| r.is_ok())
                    .map(|(id, _)| (id.as_str(), internet_message_id(&records, id)))
                    .collect();
                let recorded =
                    self.ledger
                        .record_delivered_mail(batch.channel_id, &delivered, Utc::now());
                acks_after_recording(acks, recorded)
            }
            SinkBackend::Postgres => {
                let ledger = self.ledger.clone();
                let channel = batch.channel_id;
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
                                .iter()
                                .map(|r| (r.message_id.clone(), Ok(())))
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
        acks
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

/// The Internet Message-ID of the record of `message_id` among `records`, if it has one.
fn internet_message_id<'a>(records: &'a [SinkRecord], message_id: &str) -> Option<&'a str> {
    records
        .iter()
        .find(|r| r.message_id == message_id)
        .and_then(|r| r.internet_message_id.as_deref())
}

/// Whether the ledger already holds this message as delivered (or read). A ledger that cannot be
/// read says no: the message is delivered (again) rather than lost.
fn already_delivered(ledger: &Ledger, record: &SinkRecord) -> bool {
    ChannelId::parse(&record.channel_id)
        .ok()
        .is_some_and(|channel| matches!(ledger.is_delivered(channel, &record.message_id), Ok(true)))
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

/// Writes queued batches to the JSONL file, a group per `fsync`, and answers each batch.
async fn flush_loop(core: Arc<Core>) {
    let SinkBackend::Jsonl(file) = &core.backend else {
        return;
    };
    loop {
        if core.is_closed() && core.queue.lock().map(|q| q.is_empty()).unwrap_or(true) {
            return;
        }
        core.work.notified().await;
        loop {
            let jobs: Vec<Job> = match core.queue.lock() {
                Ok(mut queue) => std::mem::take(&mut *queue),
                Err(_) => Vec::new(),
            };
            if jobs.is_empty() {
                break;
            }
            let records: Vec<SinkRecord> = jobs
                .iter()
                .flat_map(|job| job.records.iter().cloned())
                .collect();
            let file = Arc::clone(file);
            let ledger = core.ledger.clone();
            let written = actix_web::rt::task::spawn_blocking(move || -> Result<(), SinkError> {
                let mut sink = file
                    .lock()
                    .map_err(|_| unavailable("the JSONL writer panicked".to_owned()))?;
                // The one writer of the file is also the one writer of "delivered": a message the
                // ledger already knows as delivered (a cycle that raced a restart of its channel,
                // or the same message in two batches) is acknowledged without a second line.
                let mut seen = std::collections::HashSet::new();
                let fresh: Vec<SinkRecord> = records
                    .into_iter()
                    .filter(|record| {
                        seen.insert(record.key()) && !already_delivered(&ledger, record)
                    })
                    .collect();
                sink.append(&fresh)?;
                // The ledger learns of the lines right after they are durable, before any ack.
                let mut by_channel: HashMap<&str, Vec<(&str, Option<&str>)>> = HashMap::new();
                for record in &fresh {
                    by_channel
                        .entry(record.channel_id.as_str())
                        .or_default()
                        .push((
                            record.message_id.as_str(),
                            record.internet_message_id.as_deref(),
                        ));
                }
                let now = Utc::now();
                for (channel, ids) in by_channel {
                    if let Ok(channel) = ChannelId::parse(channel) {
                        ledger
                            .record_delivered_mail(channel, &ids, now)
                            .map_err(|err| {
                                unavailable(format!("the ledger could not be written: {err}"))
                            })?;
                    }
                }
                Ok(())
            })
            .await
            .unwrap_or_else(|err| Err(unavailable(format!("the JSONL writer failed: {err}"))));
            for job in jobs {
                let acks = match &written {
                    Ok(()) => job
                        .records
                        .iter()
                        .map(|r| (r.message_id.clone(), Ok(())))
                        .collect(),
                    Err(err) => fail_all(&job.records, err),
                };
                let _ = job.done.send(acks);
            }
            if let Err(err) = &written {
                tracing::warn!(error = %err, "The JSONL sink refused a batch; the mail stays unread and is retried.");
            }
        }
    }
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
