//! Channel events: what happened to a channel (its status changed, a sign-in failed or succeeded),
//! told three ways: a log line (target `inboxd::events`), the channel's short history in the store
//! (`GET /api/channels/{id}/events`, the status page), and, when `events.webhook_url` is set, a
//! POST to the consuming product, signed like the mail webhook (`X-Inboxd-Signature`, HMAC-SHA256
//! of the body under the webhook secret), so it can tell its customer.
//!
//! Emitting never waits: the store write runs on a blocking thread and the webhook has a queue of
//! its own, drained by one task that retries each event a few times with backoff and then drops it
//! with a warning (the history keeps it). An event holds no secret.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::domain::ChannelId;
use crate::domain::secret::WebhookSecret;
use crate::sink::{SIGNATURE_HEADER, sign};
use crate::store::{ChannelEvent, Store};

/// How many events the webhook queue holds before it drops new ones.
const QUEUE: usize = 4096;
/// Attempts per event at the webhook.
const ATTEMPTS: u32 = 5;

/// What the event webhook receives: the event, with its channel and an id for de-duplication.
#[derive(Debug, Clone, Serialize)]
pub struct EventOut {
    /// Unique per event: a receiver that sees it twice (a retry) keeps one.
    pub id: String,
    /// The channel.
    pub channel_id: String,
    /// The channel's mailbox.
    pub mailbox: String,
    /// The event.
    #[serde(flatten)]
    pub event: ChannelEvent,
}

/// The event webhook's settings.
#[derive(Clone)]
pub struct EventWebhook {
    /// Where events are POSTed.
    pub url: String,
    /// Signs each body (the mail webhook's secret), if configured.
    pub secret: Option<WebhookSecret>,
    /// Each attempt's timeout.
    pub timeout: Duration,
}

/// The emitter every part of inboxd reports channel events to.
pub struct Events {
    store: Store,
    keep: usize,
    queue: Option<tokio::sync::mpsc::Sender<EventOut>>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("keep", &self.keep)
            .field("webhook", &self.queue.is_some())
            .finish_non_exhaustive()
    }
}

impl Events {
    /// Events kept in `store`, the newest `keep` per channel; no webhook.
    pub fn new(store: Store, keep: usize) -> Self {
        Events {
            store,
            keep: keep.max(1),
            queue: None,
        }
    }

    /// Also POSTs every event to `webhook` (starts the delivery task: call inside a runtime).
    pub fn with_webhook(mut self, client: reqwest::Client, webhook: EventWebhook) -> Self {
        let (queue, pending) = tokio::sync::mpsc::channel(QUEUE);
        actix_rt::spawn(deliver_all(client, webhook, pending));
        self.queue = Some(queue);
        self
    }

    /// Reports an event of `channel` (mailbox `mailbox`).
    pub fn emit(&self, channel: ChannelId, mailbox: &str, event: ChannelEvent) {
        tracing::info!(target: "inboxd::events", channel = %channel, mailbox, kind = %event.kind,
            status = %event.status, previous_status = event.previous_status.as_deref().unwrap_or(""),
            code = event.code.as_deref().unwrap_or(""), "Channel event.");
        metrics::counter!("inboxd_channel_events_total", "kind" => event.kind.clone()).increment(1);
        let store = self.store.clone();
        let keep = self.keep;
        let stored = event.clone();
        let write = move || {
            if let Err(err) = store.push_event(channel, &stored, keep) {
                tracing::warn!(channel = %channel, error = %err, "Could not record a channel event in its history.");
            }
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            drop(tokio::task::spawn_blocking(write));
        } else {
            write();
        }
        if let Some(queue) = &self.queue {
            let out = EventOut {
                id: uuid::Uuid::new_v4().to_string(),
                channel_id: channel.to_string(),
                mailbox: mailbox.to_owned(),
                event,
            };
            if queue.try_send(out).is_err() {
                tracing::warn!(channel = %channel, "The event webhook's queue is full (the receiver is down or slow): this event is kept in the channel's history only.");
            }
        }
    }

    /// The newest `limit` events of a channel, newest first.
    pub fn history(
        &self,
        channel: ChannelId,
        limit: usize,
    ) -> Result<Vec<ChannelEvent>, crate::store::StoreError> {
        self.store.list_events(channel, limit)
    }
}

/// Drains the queue: one event at a time, in order, each retried with backoff.
async fn deliver_all(
    client: reqwest::Client,
    webhook: EventWebhook,
    mut pending: tokio::sync::mpsc::Receiver<EventOut>,
) {
    let webhook = Arc::new(webhook);
    while let Some(event) = pending.recv().await {
        let body = match serde_json::to_vec(&event) {
            Ok(body) => body,
            Err(err) => {
                tracing::warn!(error = %err, "An event could not be encoded for the webhook.");
                continue;
            }
        };
        let mut delay = Duration::from_millis(500);
        for attempt in 1..=ATTEMPTS {
            match post(&client, &webhook, &event.id, &body).await {
                Ok(()) => break,
                Err(why) if attempt == ATTEMPTS => {
                    tracing::warn!(channel = %event.channel_id, kind = %event.event.kind, attempts = ATTEMPTS, why = %why,
                        "The event webhook did not take an event; it is kept in the channel's history only.");
                }
                Err(_) => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

async fn post(
    client: &reqwest::Client,
    webhook: &EventWebhook,
    id: &str,
    body: &[u8],
) -> Result<(), String> {
    let mut request = client
        .post(&webhook.url)
        .timeout(webhook.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("Idempotency-Key", id)
        .body(body.to_vec());
    if let Some(signature) = webhook.secret.as_ref().and_then(|s| sign(s, body)) {
        request = request.header(SIGNATURE_HEADER, signature);
    }
    match request.send().await {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!("HTTP {}", response.status().as_u16())),
        Err(err) => Err(if err.is_timeout() {
            "timeout".to_owned()
        } else {
            "connection failed".to_owned()
        }),
    }
}

/// An event about a status change from `previous` to `status`, with the error that caused it.
pub fn status_changed(
    previous: crate::domain::ChannelStatus,
    status: crate::domain::ChannelStatus,
    error: Option<&crate::store::LastError>,
) -> ChannelEvent {
    ChannelEvent {
        at: chrono::Utc::now(),
        kind: "channel.status_changed".to_owned(),
        status: status.as_str().to_owned(),
        previous_status: Some(previous.as_str().to_owned()),
        code: error.map(|e| e.code.clone()),
        message: error.map(|e| e.message.clone()),
        remedy: error.map(|e| e.remedy.clone()),
        trace_id: error.and_then(|e| e.trace_id.clone()),
        correlation_id: error.and_then(|e| e.correlation_id.clone()),
    }
}

/// An event of `kind` (e.g. `channel.sign_in_failed`, `channel.authorized`) at `status`.
pub fn about(
    kind: &str,
    status: crate::domain::ChannelStatus,
    error: Option<&crate::store::LastError>,
) -> ChannelEvent {
    ChannelEvent {
        kind: kind.to_owned(),
        previous_status: None,
        ..status_changed(status, status, error)
    }
}
