//! The supervisor on its own: the mailbox digest, starting and restarting actors, batched start.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::*;
use crate::actors::processor::{ProcessorActor, SinkBackend};
use crate::domain::secret::MasterKey;
use crate::domain::{ClientId, Folder, HttpUrl, Mailbox, PollMode, TenantId, Transport};
use crate::status::StatusBoard;
use crate::store::{FirstImport, Store};

#[test]
fn the_mailbox_digest_tells_mailboxes_apart_and_ignores_case() {
    let tenant = "6f1c2a3b-4d5e-4f60-8a71-92b3c4d5e6f7";
    let app = "0a1b2c3d-4e5f-4061-8273-9485a6b7c8d9";
    let one = MailboxIdentity::new(tenant, app, "Box@Contoso.com", "Inbox");
    assert_eq!(
        one,
        MailboxIdentity::new(&tenant.to_uppercase(), app, "box@contoso.com", "INBOX")
    );
    assert_ne!(
        one,
        MailboxIdentity::new(tenant, app, "box@contoso.com", "Archive")
    );
    assert_ne!(
        one,
        MailboxIdentity::new(tenant, app, "box2@contoso.com", "Inbox")
    );
    // Where one part ends and the next begins counts.
    assert_ne!(
        MailboxIdentity::new("ab", "c", "d", "e"),
        MailboxIdentity::new("a", "bc", "d", "e")
    );
    // Longer than the lower-casing buffer.
    let long = "x".repeat(150);
    assert_eq!(
        MailboxIdentity::new(tenant, app, &format!("{long}@A.com"), "inbox"),
        MailboxIdentity::new(tenant, app, &format!("{long}@a.COM"), "inbox")
    );
    assert_ne!(
        MailboxIdentity::new(tenant, app, &format!("{long}@a.com"), "inbox"),
        MailboxIdentity::new(tenant, app, &format!("{long}@b.com"), "inbox")
    );
    let distinct: std::collections::HashSet<MailboxIdentity> = (0..100_000)
        .map(|i| MailboxIdentity::new(tenant, app, &format!("box{i}@contoso.com"), "inbox"))
        .collect();
    assert_eq!(distinct.len(), 100_000);
}

#[test]
fn batches_hand_out_every_item_once_on_its_lane() {
    let mut batches = Batches::new(3, 4);
    let mut handed: Vec<(usize, Vec<usize>)> = Vec::new();
    // Lane 0 gets most (full batches), lane 2 a few (a partial one), lane 1 none.
    for item in 0..50usize {
        let lane = if item.is_multiple_of(5) { 2 } else { 0 };
        if let Some(full) = batches.push(lane, item) {
            handed.push((lane, full));
        }
    }
    // Out of range: handed out alone, not lost.
    if let Some(alone) = batches.push(7, 50) {
        handed.push((7, alone));
    }
    handed.extend(batches.finish());
    let mut seen: Vec<usize> = Vec::new();
    for (lane, batch) in &handed {
        assert!(!batch.is_empty() && batch.len() <= 4, "{batch:?}");
        for item in batch {
            let want = match *item {
                50 => 7,
                i if i.is_multiple_of(5) => 2,
                _ => 0,
            };
            assert_eq!(*lane, want, "item {item}");
        }
        // Each lane's items keep their order.
        assert!(batch.windows(2).all(|w| w[0] < w[1]));
        seen.extend(batch);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..=50).collect::<Vec<_>>());
    assert!(handed.iter().all(|(lane, _)| *lane != 1));
}

fn record(i: usize) -> ChannelRecord {
    let now = Utc::now();
    ChannelRecord {
        id: ChannelId::generate(),
        name: format!("box {i}").into(),
        tenant_id: TenantId::parse("6f1c2a3b-4d5e-4f60-8a71-92b3c4d5e6f7").unwrap(),
        client_id: ClientId::parse("0a1b2c3d-4e5f-4061-8273-9485a6b7c8d9").unwrap(),
        mailbox: Mailbox::parse(&format!("box{i}@contoso.com")).unwrap(),
        folder: Folder::inbox(),
        // Every fifth is disabled: it gets a row but no actor.
        enabled: !i.is_multiple_of(5),
        first_import: FirstImport::AllUnread,
        poll_mode: None,
        transport: Transport::Graph,
        created_at: now,
        updated_at: now,
        activated_at: Some(now),
        status: if i.is_multiple_of(5) {
            ChannelStatus::Disabled
        } else {
            ChannelStatus::Active
        },
        last_error: None,
        last_poll_at: None,
        last_success_at: None,
    }
}

#[actix_rt::test]
async fn the_batched_start_starts_every_enabled_channel_exactly_once() {
    let store = Store::in_memory(MasterKey::generate()).unwrap();
    // Nothing listens there: no channel has tokens, and none polls within the test anyway.
    let url = HttpUrl::parse("http://127.0.0.1:9").unwrap();
    let ingest = Arc::new(crate::ingest::test_support::context(
        store.clone(),
        &url,
        PollMode::Delta,
    ));
    let processor_actor =
        ProcessorActor::new(crate::ingest::Ledger::new(store), SinkBackend::Postgres, 16);
    let processor = processor_actor.handle();
    let _processor_addr = processor_actor.start();
    let deps = Arc::new(Deps {
        ingest: Arc::clone(&ingest),
        processor,
        board: Arc::new(StatusBoard::default()),
        coordination: None,
    });
    // More than two full batches on each of two arbiters, and a partial one.
    let count = 2 * 2 * START_BATCH + 777;
    let records: Vec<ChannelRecord> = (0..count).map(record).collect();
    let enabled: Vec<ChannelId> = records.iter().filter(|r| r.enabled).map(|r| r.id).collect();
    let arbiters: Vec<Arbiter> = (0..2).map(|_| Arbiter::new()).collect();
    let handles = arbiters.iter().map(Arbiter::handle).collect();
    let arrivals = records.into_iter().map(Arrival::of).collect();
    let supervisor = ChannelSupervisor::new(Arc::clone(&deps), handles, arrivals).start();
    let live = || ingest.stats.live_channels.load(Ordering::Relaxed);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while live() < enabled.len() && std::time::Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    // Give a duplicate start the time to show.
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(live(), enabled.len(), "one actor per enabled channel");
    assert_eq!(deps.board.ids().len(), count, "a row per channel");
    for id in &enabled {
        // Claimed once: the first incarnation is the current one.
        assert!(ingest.runtimes.get(*id).is_current(1), "{id}");
    }
    supervisor.send(StopAll).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while live() > 0 && std::time::Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(live(), 0, "every actor stopped");
    for arbiter in arbiters {
        arbiter.stop();
        let _ = arbiter.join();
    }
}
