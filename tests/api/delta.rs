//! Delta sync: mail a person reads before the poll is still delivered; the rounds survive an
//! expired sync state, deletions, updates of delivered mail, inboxd's own mark-read and restarts
//! between a round's pages, delivering each message exactly once.

use std::collections::HashMap;
use std::time::Duration;

use inboxd::domain::secret::MasterKey;
use inboxd::sim::client::{Delivery, SimClient};
use inboxd_testkit::TestDaemon;
use serde_json::{Value, json};

use crate::helpers::{REDIRECT, World, until, world};

/// How many sink lines each message has, by message id.
fn copies(lines: &[Value]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for line in lines {
        *seen
            .entry(line["message_id"].as_str().unwrap_or_default().to_owned())
            .or_insert(0) += 1;
    }
    seen
}

/// Delivers `subjects` as unread mail; answers the simulator's ids of the new messages.
async fn deliver(world: &World, upn: &str, subjects: &[&str]) -> Vec<String> {
    let before: Vec<String> = world
        .sim_client
        .mailbox_state(upn)
        .await
        .unwrap()
        .messages
        .into_iter()
        .map(|m| m.id)
        .collect();
    let messages = subjects.iter().map(|s| json!({ "subject": s })).collect();
    world
        .sim_client
        .deliver(
            upn,
            &Delivery {
                messages,
                unread: true,
                ..Delivery::default()
            },
        )
        .await
        .unwrap();
    world
        .sim_client
        .mailbox_state(upn)
        .await
        .unwrap()
        .messages
        .into_iter()
        .map(|m| m.id)
        .filter(|id| !before.contains(id))
        .collect()
}

/// Delivers three messages and lets a person read the second before the next poll; answers what
/// reached the sink, by subject.
async fn read_before_the_poll(mode: &str) -> Vec<String> {
    let world = world(3600, &[("INBOXD_POLLING__MODE", mode.to_owned())]).await;
    let (id, mailbox) = world.active_channel(&format!("{mode}@read.example")).await;
    world
        .daemon
        .wait_channel(&id, Duration::from_secs(15), |c| {
            c["last_success_at"].is_string()
        })
        .await
        .unwrap();
    let ids = deliver(
        &world,
        &mailbox.upn,
        &["first", "read by a person", "third"],
    )
    .await;
    world
        .sim_client
        .update_message(&mailbox.upn, &ids[1], &json!({"is_read": true}))
        .await
        .unwrap();
    world.poll_now(&id).await;
    until(Duration::from_secs(15), "the unread mail read", || async {
        world
            .sim_client
            .mailbox_state(&mailbox.upn)
            .await
            .unwrap()
            .unread
            == 0
    })
    .await;
    // One more poll: nothing new may appear.
    world.poll_now(&id).await;
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let lines = world.daemon.sink_lines().unwrap();
    assert!(
        copies(&lines).values().all(|n| *n == 1),
        "a message was delivered twice"
    );
    let mut subjects: Vec<String> = lines
        .iter()
        .map(|l| l["subject"].as_str().unwrap_or_default().to_owned())
        .collect();
    subjects.sort();
    subjects
}

#[actix_rt::test]
async fn mail_a_person_reads_before_the_poll_is_delivered_in_delta_mode() {
    assert_eq!(
        read_before_the_poll("delta").await,
        vec!["first", "read by a person", "third"]
    );
}

#[actix_rt::test]
async fn in_unread_mode_mail_read_before_the_poll_is_not_ingested_as_documented() {
    assert_eq!(read_before_the_poll("unread").await, vec!["first", "third"]);
}

#[actix_rt::test]
async fn expiry_removals_updates_and_our_own_mark_read_deliver_each_message_once() {
    let world = world(1, &[("INBOXD_POLLING__PAGE_SIZE", "4".to_owned())]).await;
    let (id, mailbox) = world.active_channel("rounds@rounds.example").await;
    let upn = mailbox.upn.as_str();
    let first = deliver(
        &world,
        upn,
        &["a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9"],
    )
    .await;
    until(Duration::from_secs(10), "nine delivered", || async {
        world.daemon.sink_lines().unwrap().len() == 9
    })
    .await;
    // A person marks a delivered message unread again, another is deleted, the sync state
    // expires, and new mail arrives: only the new mail is delivered.
    world
        .sim_client
        .update_message(upn, &first[0], &json!({"is_read": false}))
        .await
        .unwrap();
    world
        .sim_client
        .delete_message(upn, &first[1])
        .await
        .unwrap();
    world.sim_client.expire_delta(upn).await.unwrap();
    deliver(&world, upn, &["b1", "b2", "b3", "b4", "b5"]).await;
    until(Duration::from_secs(10), "fourteen delivered", || async {
        world.daemon.sink_lines().unwrap().len() >= 14
    })
    .await;
    world.poll_now(&id).await;
    actix_rt::time::sleep(Duration::from_secs(2)).await;
    let lines = world.daemon.sink_lines().unwrap();
    assert_eq!(lines.len(), 14, "{lines:#?}");
    assert!(copies(&lines).values().all(|n| *n == 1));
    let counters = world.sim_client.counters(Some(upn)).await.unwrap();
    assert!(counters.requests.get("delta").copied().unwrap_or(0) > 0);
    assert_eq!(
        counters.requests.get("list_messages").copied().unwrap_or(0),
        0
    );
    let channel = world.daemon.channel(&id).await.unwrap();
    assert_eq!(channel["status"], "active", "{channel:#}");
    assert!(channel["warning"].is_null(), "{channel:#}");
    // The message the person marked unread again is left as they want it.
    let state = world.sim_client.mailbox_state(upn).await.unwrap();
    assert_eq!(state.unread, 1);
}

#[actix_rt::test]
async fn a_restart_between_a_rounds_pages_goes_on_from_the_page_it_reached() {
    let sim = inboxd::sim::spawn(inboxd::sim::SimOptions::default()).unwrap();
    let sim_client = SimClient::new(sim.url());
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate();
    // One page of 5 per cycle, and every delta page takes 300 ms: a round of 20 spans cycles.
    let extra = [
        ("INBOXD_POLLING__PAGE_SIZE", "5".to_owned()),
        ("INBOXD_POLLING__MAX_MESSAGES_PER_POLL", "5".to_owned()),
    ];
    let daemon = TestDaemon::start_with_key(dir.path(), &sim.url(), 3600, &extra, key.clone())
        .await
        .unwrap();
    let upn = "restart@restart.example";
    let provisioned = sim_client.provision(upn, &[REDIRECT]).await.unwrap();
    let id = daemon
        .add_channel(
            &provisioned.tenant_id,
            &provisioned.app.client_id,
            &provisioned.app.client_secret,
            upn,
        )
        .await
        .unwrap();
    assert_eq!(daemon.authorize(&id).await.unwrap().0, 200);
    daemon
        .wait_channel(&id, Duration::from_secs(15), |c| c["status"] == "active")
        .await
        .unwrap();
    sim_client
        .deliver(upn, &Delivery::generated(20))
        .await
        .unwrap();
    sim_client
        .add_fault_json(
            &json!({"kind": "latency", "ms": 300, "mailbox": upn, "endpoints": ["delta"]}),
        )
        .await
        .unwrap();
    let (status, _) = daemon
        .api(
            reqwest::Method::POST,
            &format!("/api/channels/{id}/poll"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 202);
    until(
        Duration::from_secs(10),
        "the first pages delivered",
        || async {
            let n = daemon.sink_lines().unwrap().len();
            (5..20).contains(&n)
        },
    )
    .await;
    daemon.stop().await.unwrap();
    let stopped_with = std::fs::read_to_string(dir.path().join("mail.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert!(stopped_with < 20, "the round ended before the restart");
    sim_client.clear_faults().await.unwrap();
    // sled may hold its lock a moment after the stop.
    let mut attempts = 0;
    let daemon = loop {
        attempts += 1;
        match TestDaemon::start_with_key(dir.path(), &sim.url(), 3600, &extra, key.clone()).await {
            Ok(daemon) => break daemon,
            Err(err) if attempts < 50 && format!("{err:#}").contains("lock") => {
                actix_rt::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("{err:#}"),
        }
    };
    daemon
        .api(
            reqwest::Method::POST,
            &format!("/api/channels/{id}/poll"),
            None,
        )
        .await
        .unwrap();
    until(
        Duration::from_secs(15),
        "all twenty delivered and read",
        || async { sim_client.mailbox_state(upn).await.unwrap().unread == 0 },
    )
    .await;
    let lines = daemon.sink_lines().unwrap();
    assert_eq!(lines.len(), 20);
    assert!(
        copies(&lines).values().all(|n| *n == 1),
        "a message was delivered twice"
    );
    daemon.stop().await.unwrap();
}

/// A channel was off for a week while mail arrived, and people read part of it in Outlook. Unread
/// mode picks up only the unread mail; a backfill from the start of the outage delivers exactly
/// the rest, and nothing older, and nothing twice.
#[actix_rt::test]
async fn a_backfill_after_a_week_long_outage_delivers_exactly_what_was_never_delivered() {
    let world = world(1, &[("INBOXD_POLLING__MODE", "unread".to_owned())]).await;
    let (id, mailbox) = world.active_channel("outage@outage.example").await;
    let upn = mailbox.upn.as_str();
    let days_ago = |d: i64| (chrono::Utc::now() - chrono::Duration::days(d)).to_rfc3339();
    let mail = |subject: &str, days: i64, read: bool| json!({"subject": subject, "received_date_time": days_ago(days), "is_read": read});
    world
        .sim_client
        .deliver(
            upn,
            &Delivery {
                messages: vec![mail("before the outage", 9, false)],
                ..Delivery::default()
            },
        )
        .await
        .unwrap();
    until(
        Duration::from_secs(15),
        "the first mail delivered",
        || async { world.daemon.sink_lines().unwrap().len() == 1 },
    )
    .await;
    // The outage: the channel is off for a week.
    let (status, _) = world
        .daemon
        .api(
            reqwest::Method::POST,
            &format!("/api/channels/{id}/disable"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    world
        .sim_client
        .deliver(
            upn,
            &Delivery {
                messages: vec![
                    mail("old and read, not ours", 10, true),
                    mail("day 7, read by a person", 7, true),
                    mail("day 5, unread", 5, false),
                    mail("day 3, read by a person", 3, true),
                    mail("day 1, unread", 1, false),
                ],
                ..Delivery::default()
            },
        )
        .await
        .unwrap();
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
        Duration::from_secs(15),
        "the unread outage mail delivered",
        || async { world.daemon.sink_lines().unwrap().len() == 3 },
    )
    .await;
    // A bad date is refused and changes nothing.
    let (status, answer) = world
        .daemon
        .api(
            reqwest::Method::POST,
            &format!("/api/channels/{id}/backfill"),
            Some(json!({"since": "last week"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_date", "{answer}");
    let since = (chrono::Utc::now() - chrono::Duration::days(8))
        .format("%Y-%m-%d")
        .to_string();
    let (status, answer) = world
        .daemon
        .api(
            reqwest::Method::POST,
            &format!("/api/channels/{id}/backfill"),
            Some(json!({ "since": since })),
        )
        .await
        .unwrap();
    assert_eq!(status, 202, "{answer}");
    until(
        Duration::from_secs(15),
        "the read outage mail delivered",
        || async { world.daemon.sink_lines().unwrap().len() >= 5 },
    )
    .await;
    world.poll_now(&id).await;
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    let lines = world.daemon.sink_lines().unwrap();
    let mut subjects: Vec<&str> = lines
        .iter()
        .map(|l| l["subject"].as_str().unwrap_or_default())
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        vec![
            "before the outage",
            "day 1, unread",
            "day 3, read by a person",
            "day 5, unread",
            "day 7, read by a person",
        ]
    );
}

/// A folder where Graph refuses the delta query: the channel polls unread mail instead, says so
/// with a warning, and delivers.
#[actix_rt::test]
async fn a_folder_that_refuses_delta_falls_back_to_unread_mail_with_a_warning() {
    let world = world(1, &[]).await;
    let mailbox = world.mailbox("refuses@refuses.example").await;
    world
        .fault(
            json!({"kind": "status", "status": 400, "code": "ErrorInvalidRequest",
            "mailbox": mailbox.upn, "endpoints": ["delta"]}),
        )
        .await;
    let id = world.add(&mailbox).await;
    let (status, page) = world.daemon.authorize(&id).await.unwrap();
    assert_eq!(status, 200, "{page}");
    deliver(&world, &mailbox.upn, &["one", "two"]).await;
    until(Duration::from_secs(15), "the mail delivered", || async {
        world.daemon.sink_lines().unwrap().len() == 2
    })
    .await;
    // The lines are in the sink before the cycle ends and reports its warning: wait for it.
    let channel = world
        .daemon
        .wait_channel(&id, Duration::from_secs(5), |c| {
            c["warning"]["code"] == "DeltaUnavailable"
        })
        .await
        .unwrap();
    assert_eq!(channel["status"], "active", "{channel:#}");
    assert!(world.requests(&mailbox.upn, "list_messages").await > 0);
}

/// A channel may override `polling.mode`; a wrong mode is refused and changes nothing.
#[actix_rt::test]
async fn a_channel_overrides_the_poll_mode_and_a_wrong_one_is_refused() {
    let world = world(1, &[]).await;
    let (id, mailbox) = world.active_channel("mode@mode.example").await;
    let path = format!("/api/channels/{id}");
    let (status, answer) = world
        .daemon
        .api(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"poll_mode": "sometimes"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_poll_mode", "{answer}");
    assert!(world.daemon.channel(&id).await.unwrap()["poll_mode"].is_null());
    let (status, answer) = world
        .daemon
        .api(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"poll_mode": "unread"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["poll_mode"], "unread");
    let lists = world.requests(&mailbox.upn, "list_messages").await;
    world.poll_now(&id).await;
    until(Duration::from_secs(15), "an unread-mode poll", || async {
        world.requests(&mailbox.upn, "list_messages").await > lists
    })
    .await;
    let (status, answer) = world
        .daemon
        .api(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"poll_mode": null})),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(answer["poll_mode"].is_null(), "{answer}");
}
