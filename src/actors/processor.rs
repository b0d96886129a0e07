//! `ProcessorActor`: hands mail to the sink and acknowledges each message only after the sink
//! accepted it durably, recording it as delivered in the ledger first.
//!
//! It is bounded: a batch waits for room (`queue_capacity` messages in flight) before it is queued,
//! so a slow sink slows the channels down instead of growing a queue without limit. The JSONL sink
//! commits in groups: every batch that arrives while one `fsync` runs is written by the next one.
//! A background task moves the JSONL checkpoint forward once the ledger entries before it are
//! durable, so a restart rescans only the tail of the file.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use tokio::sync::{Notify, Semaphore, oneshot};

use crate::actors::messages::{ProcessBatch, Terminate};
use crate::domain::ChannelId;
use crate::sink::{JsonlSink, SinkError, SinkRecord, WebhookSink};
use crate::store::{LedgerEntry, LedgerState, Store};

/// The meta key under which the JSONL checkpoint offset is stored.
pub const JSONL_CHECKPOINT_KEY: &str = "jsonl_checkpoint";

/// How often the JSONL checkpoint moves forward.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

type Acks = Vec<(String, Result<(), SinkError>)>;

/// The sink behind the processor.
pub enum SinkBackend {
    /// A JSONL file, written from a blocking thread.
    Jsonl(Arc<Mutex<JsonlSink>>),
    /// A webhook receiver, with this many deliveries at once.
    Webhook(Arc<WebhookSink>, usize),
}

struct Job {
    records: Vec<SinkRecord>,
    done: oneshot::Sender<Acks>,
}

/// The state the actor's futures share.
struct Core {
    store: Store,
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
    pub fn new(store: Store, backend: SinkBackend, queue_capacity: usize) -> Self {
        let capacity = u32::try_from(queue_capacity.clamp(1, 1_000_000)).unwrap_or(10_000);
        ProcessorActor {
            core: Arc::new(Core {
                store,
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
                    .partition(|record| already_delivered(&self.store, record));
                let results = webhook.deliver_many(&fresh, *concurrency).await;
                let mut acks: Acks = fresh
                    .iter()
                    .map(|r| r.message_id.clone())
                    .zip(results)
                    .collect();
                acks.extend(done.into_iter().map(|r| (r.message_id, Ok(()))));
                let delivered: Vec<&str> = acks
                    .iter()
                    .filter(|(_, r)| r.is_ok())
                    .map(|(id, _)| id.as_str())
                    .collect();
                if let Err(err) = record_delivered(&self.store, batch.channel_id, &delivered) {
                    tracing::error!(error = %err, "Could not record delivered messages in the ledger.");
                }
                acks
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

fn fail_all(records: &[SinkRecord], err: &SinkError) -> Acks {
    records
        .iter()
        .map(|r| (r.message_id.clone(), Err(err.clone())))
        .collect()
}

/// Whether the ledger already holds this message as delivered (or read).
fn already_delivered(store: &Store, record: &SinkRecord) -> bool {
    let Ok(channel) = ChannelId::parse(&record.channel_id) else {
        return false;
    };
    matches!(
        store.ledger_get(channel, &record.message_id),
        Ok(Some(entry)) if matches!(entry.state, LedgerState::Delivered | LedgerState::MarkedRead)
    )
}

/// Records messages of one channel as delivered.
fn record_delivered(
    store: &Store,
    channel: ChannelId,
    message_ids: &[&str],
) -> Result<(), crate::store::StoreError> {
    if message_ids.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    let entries: Vec<(String, LedgerEntry)> = message_ids
        .iter()
        .map(|id| {
            (
                (*id).to_owned(),
                LedgerEntry {
                    state: LedgerState::Delivered,
                    failures: 0,
                    last_error: None,
                    received_at: None,
                    first_seen_at: now,
                    updated_at: now,
                },
            )
        })
        .collect();
    store.ledger_put_many(channel, &entries)
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
            let store = core.store.clone();
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
                        seen.insert(record.key()) && !already_delivered(&store, record)
                    })
                    .collect();
                sink.append(&fresh)?;
                // The ledger learns of the lines right after they are durable, before any ack.
                let mut by_channel: HashMap<&str, Vec<&str>> = HashMap::new();
                for record in &fresh {
                    by_channel
                        .entry(record.channel_id.as_str())
                        .or_default()
                        .push(record.message_id.as_str());
                }
                for (channel, ids) in by_channel {
                    if let Ok(channel) = ChannelId::parse(channel) {
                        record_delivered(&store, channel, &ids).map_err(|err| {
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
    let store = core.store.clone();
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
        if store
            .put_meta(JSONL_CHECKPOINT_KEY, &offset.to_be_bytes())
            .is_ok()
        {
            recorded = Some(offset);
        }
    }
}

/// The checkpoint stored by a previous run (0 when none).
pub fn stored_checkpoint(store: &Store) -> u64 {
    store
        .get_meta(JSONL_CHECKPOINT_KEY)
        .ok()
        .flatten()
        .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}
