use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use inboxd::actors::messages::FailChannel;
use inboxd::domain::secret::MasterKey;
use inboxd::domain::{ChannelId, ChannelStatus};
use serde_json::json;

use crate::helpers::{until, world};

#[actix_rt::test]
async fn removing_a_channel_stops_every_request_for_its_mailbox() {
    let world = world(1, &[]).await;
    let (id, mailbox) = world.active_channel("gone@contoso.example").await;
    until(Duration::from_secs(5), "two polls", || async {
        world.polls(&mailbox.upn).await >= 2
    })
    .await;

    let (status, _) = world
        .daemon
        .api(
            reqwest::Method::DELETE,
            &format!("/api/channels/{id}"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 204);
    let after_remove = world.polls(&mailbox.upn).await;
    actix_rt::time::sleep(Duration::from_millis(2500)).await;

    assert_eq!(
        world.polls(&mailbox.upn).await,
        after_remove,
        "requests after removal"
    );
    let (status, _) = world
        .daemon
        .api(reqwest::Method::GET, &format!("/api/channels/{id}"), None)
        .await
        .unwrap();
    assert_eq!(status, 404);
}

#[actix_rt::test]
async fn disabling_stops_requests_and_enabling_polls_again_at_once() {
    let world = world(1, &[]).await;
    let (id, mailbox) = world.active_channel("pause@contoso.example").await;
    until(Duration::from_secs(5), "a poll", || async {
        world.polls(&mailbox.upn).await >= 1
    })
    .await;

    let (status, channel) = world
        .daemon
        .api(
            reqwest::Method::POST,
            &format!("/api/channels/{id}/disable"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(channel["status"], "disabled");
    let disabled = world.polls(&mailbox.upn).await;
    actix_rt::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(world.polls(&mailbox.upn).await, disabled);

    let enabled_at = Instant::now();
    let (status, _) = world
        .daemon
        .api(
            reqwest::Method::POST,
            &format!("/api/channels/{id}/enable"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    until(
        Duration::from_secs(1),
        "a poll within a second of enabling",
        || async { world.polls(&mailbox.upn).await > disabled },
    )
    .await;
    assert!(enabled_at.elapsed() < Duration::from_secs(1));
    world
        .wait_status(&id, "active", Duration::from_secs(3))
        .await;
}

#[actix_rt::test]
async fn a_429_storm_is_obeyed_and_does_not_delay_other_mailboxes() {
    let world = world(1, &[]).await;
    let mut stormy = Vec::new();
    let mut calm = Vec::new();
    for i in 0..6 {
        let (id, mailbox) = world
            .active_channel(&format!("m{i}@storm{i}.example"))
            .await;
        if i < 3 {
            stormy.push((id, mailbox))
        } else {
            calm.push((id, mailbox))
        }
    }
    for (_, mailbox) in &stormy {
        world
            .sim_client
            .deliver(&mailbox.upn, &inboxd::sim::client::Delivery::generated(30))
            .await
            .unwrap();
        world.fault(json!({"kind": "throttle", "retry_after": 1.5, "mailbox": mailbox.upn, "duration_ms": 4000})).await;
    }
    let calm_before: Vec<u64> =
        futures_util::future::join_all(calm.iter().map(|(_, m)| world.polls(&m.upn))).await;

    actix_rt::time::sleep(Duration::from_millis(4000)).await;

    // The calm mailboxes kept their one-second schedule (at least 3 polls in 4 s).
    for ((_, mailbox), before) in calm.iter().zip(calm_before) {
        let after = world.polls(&mailbox.upn).await;
        assert!(
            after >= before + 3,
            "{} polled {} times in 4 s",
            mailbox.upn,
            after - before
        );
    }
    // The stormy ones showed it, and recover on their own once it passes.
    for (id, _) in &stormy {
        let channel = world.daemon.channel(id).await.unwrap();
        assert!(
            matches!(
                channel["status"].as_str(),
                Some("backing_off") | Some("active")
            ),
            "{channel}"
        );
    }
    for (id, mailbox) in &stormy {
        world
            .wait_status(id, "active", Duration::from_secs(10))
            .await;
        until(
            Duration::from_secs(10),
            "the stormy mailbox drained",
            || async {
                world
                    .sim_client
                    .mailbox_state(&mailbox.upn)
                    .await
                    .unwrap()
                    .unread
                    == 0
            },
        )
        .await;
    }
    let counters = world.sim_client.counters(None).await.unwrap();
    assert_eq!(
        counters.early_count, 0,
        "requests sent before their Retry-After: {:?}",
        counters.early_requests
    );
    for (key, peak) in &counters.peak_concurrency {
        assert!(*peak <= 4, "{key} had {peak} requests in flight");
    }
}

#[actix_rt::test]
async fn a_failed_channel_actor_is_restarted_and_carries_on_from_the_store() {
    let world = world(1, &[]).await;
    let (id, mailbox) = world.active_channel("fragile@contoso.example").await;
    let app = world.daemon.app().unwrap();
    let shared = app.ingest();

    let failed = app
        .supervisor()
        .send(FailChannel(ChannelId::parse(&id).unwrap()))
        .await
        .unwrap();
    assert!(failed);

    until(Duration::from_secs(5), "a restart", || async {
        shared.stats.restarts.load(Ordering::Relaxed) >= 1
    })
    .await;
    let before = world.polls(&mailbox.upn).await;
    world
        .sim_client
        .deliver(&mailbox.upn, &inboxd::sim::client::Delivery::generated(2))
        .await
        .unwrap();
    until(
        Duration::from_secs(5),
        "polls after the restart",
        || async { world.polls(&mailbox.upn).await > before + 1 },
    )
    .await;
    until(Duration::from_secs(5), "mail after the restart", || async {
        world.daemon.sink_lines().unwrap().len() == 2
    })
    .await;
    let health = world
        .daemon
        .http
        .get(format!("{}/healthz", world.daemon.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(world.daemon.channel(&id).await.unwrap()["status"], "active");
}

#[actix_rt::test]
async fn ten_thousand_channels_all_poll_on_schedule() {
    const CHANNELS: usize = 10_000;
    const INTERVAL_SECS: u64 = 20;
    let sim = inboxd::sim::spawn(inboxd::sim::SimOptions {
        workers: 2,
        ..Default::default()
    })
    .unwrap();
    let sim_client = inboxd::sim::client::SimClient::new(sim.url());
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate();
    inboxd_testkit::seed_channels(
        &sim_client,
        &dir.path().join("store"),
        &key,
        CHANNELS,
        "scale",
    )
    .await
    .unwrap();
    // Enough requests in flight to keep up, few enough not to queue past the simulator's timeouts.
    let extra = [("INBOXD_LIMITS__GLOBAL_CONCURRENCY", "64".to_owned())];
    let started = Instant::now();
    let daemon = inboxd_testkit::TestDaemon::start_with_key(
        dir.path(),
        &sim.url(),
        INTERVAL_SECS,
        &extra,
        key,
    )
    .await
    .unwrap();
    let shared = daemon.app().unwrap().ingest();
    let board = daemon.app().unwrap().board();
    until(
        Duration::from_secs(10),
        "every channel scheduled",
        || async { shared.stats.live_channels.load(Ordering::Relaxed) == CHANNELS },
    )
    .await;
    let scheduled_in = started.elapsed();

    // Every channel's first poll falls inside one interval (its phase); give one interval and a margin.
    let deadline = Instant::now() + Duration::from_secs(INTERVAL_SECS + 15);
    loop {
        let (waiting, _) = board.page(|row| row.last_success_at.is_none(), 0, 0);
        if waiting == 0 {
            break;
        }
        if Instant::now() > deadline {
            let (_, mut sample) = board.page(|row| row.last_success_at.is_none(), 0, 3);
            sample.extend(
                board
                    .page(|row| row.status == ChannelStatus::Blocked, 0, 2)
                    .1,
            );
            panic!(
                "{waiting} channels never polled successfully; {} polls, {} refreshes; statuses {:?}; e.g. {:?}",
                shared.stats.polls.load(Ordering::Relaxed),
                shared.stats.refreshes.load(Ordering::Relaxed),
                board.counts(),
                sample
                    .iter()
                    .map(|row| (
                        row.status,
                        row.last_error
                            .as_ref()
                            .map(|e| (e.code.clone(), e.message.clone()))
                    ))
                    .collect::<Vec<_>>()
            );
        }
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    }

    let polls = shared.stats.polls.load(Ordering::Relaxed);
    let max_late = Duration::from_micros(shared.stats.lateness_micros_max.load(Ordering::Relaxed));
    assert!(polls >= CHANNELS as u64, "{polls} polls");
    assert!(
        max_late < Duration::from_secs(5),
        "a poll started {max_late:?} late"
    );
    let (active, _) = board.page(|row| row.status == ChannelStatus::Active, 0, 0);
    assert_eq!(active, CHANNELS);
    eprintln!(
        "10,000 channels: scheduled in {scheduled_in:?}, {polls} polls, max lateness {max_late:?}"
    );
    drop(shared);
    daemon.stop().await.unwrap();
}

#[actix_rt::test]
async fn poll_now_polls_at_once() {
    let world = world(60, &[]).await;
    let (id, mailbox) = world.active_channel("now@contoso.example").await;
    until(Duration::from_secs(3), "the first poll", || async {
        world.polls(&mailbox.upn).await == 1
    })
    .await;
    for expected in 2..=4 {
        world.poll_now(&id).await;
        until(Duration::from_secs(2), "a poll after Poll now", || async {
            world.polls(&mailbox.upn).await >= expected
        })
        .await;
    }
}
