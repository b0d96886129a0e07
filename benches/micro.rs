//! Criterion micro-benches of the daemon's hot paths: decoding a Graph page of 50 messages, one
//! ledger write, one limiter check, one authorize URL, the start's read of 10,000 channel records.
//! `cargo bench --bench micro`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use inboxd::domain::secret::MasterKey;
use inboxd::domain::{ChannelId, ClientId, HttpUrl, Mailbox, TenantId};
use inboxd::graph::model::MessagePage;
use inboxd::oauth::OAuthClient;
use inboxd::rate_limit::{Limits, MailboxKey, RateLimiters};
use inboxd::store::{LedgerEntry, LedgerState, Store, StoreOptions};
use serde_json::json;

/// A page of 50 messages shaped like Graph's (and the simulator's) answer.
fn page_of_50() -> Vec<u8> {
    let value: Vec<_> = (0..50)
        .map(|i| {
            json!({
                "@odata.etag": format!("W/\"CQAAABYAAAB{i}\""),
                "id": format!("AAMkAGI2TG93AAA{i:040}="),
                "internetMessageId": format!("<msg-{i}@contoso.example>"),
                "subject": format!("Quarterly report {i}: numbers, charts and a question"),
                "from": {"emailAddress": {"name": "Adele Vance", "address": "adele@contoso.example"}},
                "toRecipients": [{"emailAddress": {"name": "Support", "address": "support@contoso.example"}}],
                "ccRecipients": [],
                "receivedDateTime": "2026-11-26T04:00:00Z",
                "body": {"contentType": "text", "content": "Hello,\n\nPlease find the figures below. ".repeat(20)},
                "hasAttachments": i % 5 == 0,
                "isRead": false,
                "conversationId": format!("AAQkAGI2TG93conv{i}"),
            })
        })
        .collect();
    serde_json::to_vec(&json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('support%40contoso.example')/mailFolders('inbox')/messages",
        "value": value,
        "@odata.nextLink": "https://graph.microsoft.com/v1.0/users/support@contoso.example/mailFolders/inbox/messages?$skiptoken=abc",
    }))
    .unwrap()
}

fn decode_page(c: &mut Criterion) {
    let bytes = page_of_50();
    c.bench_function("graph: decode a page of 50 messages", |b| {
        b.iter(|| {
            let page: MessagePage = serde_json::from_slice(black_box(&bytes)).unwrap();
            black_box(page.value.len())
        })
    });
}

fn ledger_write(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &dir.path().join("store"),
        MasterKey::generate(),
        StoreOptions::default(),
    )
    .unwrap();
    let channel = ChannelId::generate();
    let now = Utc::now();
    let entry = LedgerEntry {
        state: LedgerState::Delivered,
        failures: 0,
        last_error: None,
        received_at: Some(now),
        first_seen_at: now,
        updated_at: now,
    };
    let mut i = 0u64;
    c.bench_function("store: one ledger write", |b| {
        b.iter(|| {
            i += 1;
            store
                .ledger_put(
                    channel,
                    &format!("AAMkAGI2TG93AAA{i:020}="),
                    black_box(&entry),
                )
                .unwrap();
        })
    });
}

fn limiter_check(c: &mut Criterion) {
    let limiters = RateLimiters::new(Limits {
        mailbox_requests_per_10_min: u32::MAX / 2,
        app_requests_per_sec: u32::MAX / 2,
        ..Limits::default()
    });
    let keys: Vec<(MailboxKey, Arc<str>)> = (0..1000)
        .map(|i| {
            let app = format!("00000000-0000-0000-0000-{i:012}");
            (
                MailboxKey::new(&app, &format!("user{i}@contoso.example")),
                Arc::from(app),
            )
        })
        .collect();
    let mut i = 0usize;
    c.bench_function("rate limit: check_graph over 1,000 mailboxes", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            let (key, app) = &keys[i];
            black_box(limiters.check_graph(key, app)).ok();
        })
    });
}

fn authorize_url(c: &mut Criterion) {
    let login = HttpUrl::parse("https://login.microsoftonline.com").unwrap();
    let client = OAuthClient::new(
        reqwest::Client::new(),
        &login,
        "https://graph.microsoft.com",
        "https://inboxd.example/oauth/callback",
        Duration::from_secs(30),
    );
    let tenant = TenantId::parse("72f988bf-86f1-41af-91ab-2d7cd011db47").unwrap();
    let app = ClientId::parse("11111111-2222-3333-4444-555555555555").unwrap();
    let mailbox = Mailbox::parse("support@contoso.example").unwrap();
    c.bench_function("oauth: one authorize URL", |b| {
        b.iter(|| black_box(client.authorize(&tenant, &app, &mailbox).unwrap()))
    });
}

/// The daemon's start reads every channel record: 10,000 records written as a polled channel's
/// (last poll and success set), read back with one decoding thread.
fn channel_listing(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), MasterKey::generate(), StoreOptions::default()).unwrap();
    for i in 0..10_000u32 {
        let mut record = inboxd_testkit::seed::authorized_channel(
            ChannelId::generate(),
            &format!("bench {i}"),
            &format!("tenant-{i}.example"),
            &format!("00000000-0000-0000-0000-{i:012}"),
            &format!("user{i}@tenant-{i}.example"),
        )
        .unwrap();
        record.last_poll_at = Some(Utc::now());
        record.last_success_at = Some(Utc::now());
        store.put_channel(&record).unwrap();
    }
    c.bench_function("store: read 10,000 channel records at start", |b| {
        b.iter(|| black_box(store.load_channels(1).unwrap().0.len()))
    });
}

criterion_group! {
    name = micro;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = decode_page, ledger_write, limiter_check, authorize_url, channel_listing
}
criterion_main!(micro);
