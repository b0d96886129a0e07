//! A channel's guarantees outlive its actor: operators replace actors all day (an edit, disable +
//! enable, "Poll now" on a halted channel, a re-authorization), and none of it may break a promise
//! to Microsoft (at most 4 requests in flight per mailbox, no request before a `Retry-After`) or
//! to the mail (each message delivered and marked read once).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use inboxd::sim::client::Delivery;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Mailbox, World, until, world, world_with};

/// Requests the simulator saw before the `Retry-After` it had handed out, as a readable list.
async fn early_requests(world: &World) -> (usize, String) {
    let counters = world.sim_client.counters(None).await.unwrap();
    let list = counters
        .early_requests
        .iter()
        .map(|e| format!("{} {} early by {} ms", e.key, e.endpoint, e.early_by_ms))
        .collect::<Vec<_>>()
        .join("\n");
    (counters.early_count, list)
}

/// Renames the channel (a PATCH that replaces its actor).
async fn rename(world: &World, id: &str, name: &str) -> u16 {
    let (status, body) = world
        .daemon
        .api(
            Method::PATCH,
            &format!("/api/channels/{id}"),
            Some(json!({ "name": name })),
        )
        .await
        .unwrap();
    assert!(
        status == 200 || status == 503,
        "PATCH answered {status}: {body}"
    );
    status
}

/// Waits until every message of `mailbox` is read, then checks the sink holds each once.
async fn all_read(world: &World, mailbox: &str, expected: usize, timeout: Duration) {
    until(
        timeout,
        &format!("{expected} messages read in {mailbox}"),
        || async {
            let state = world.sim_client.mailbox_state(mailbox).await.unwrap();
            state.total == expected && state.unread == 0
        },
    )
    .await;
}

#[actix_rt::test]
async fn a_patch_storm_during_slow_throttled_cycles_keeps_every_mailbox_within_its_limits() {
    let world = world(1, &[]).await;
    const PER_MAILBOX: usize = 40;
    let mut channels: Vec<(String, Mailbox)> = Vec::new();
    for name in ["storm-a", "storm-b", "storm-c"] {
        channels.push(
            world
                .active_channel(&format!("{name}@{name}.example"))
                .await,
        );
    }
    // Slow cycles (every Graph call takes 250 ms), and Microsoft throttling each mailbox now and
    // then with a 1.5 s Retry-After, while the operator edits each channel 15 times a second.
    for (_, mailbox) in &channels {
        world
            .fault(
                json!({"kind": "latency", "ms": 250, "mailbox": mailbox.upn, "duration_ms": 6000}),
            )
            .await;
        world
            .sim_client
            .deliver(&mailbox.upn, &Delivery::generated(PER_MAILBOX / 2))
            .await
            .unwrap();
    }
    let storm_until = Instant::now() + Duration::from_secs(5);
    let mut round = 0;
    while Instant::now() < storm_until {
        round += 1;
        for (id, mailbox) in &channels {
            rename(&world, id, &format!("{}-{round}", mailbox.upn)).await;
            if round % 10 == 0 {
                world
                    .fault(json!({"kind": "throttle", "retry_after": 1.5, "count": 1,
                        "mailbox": mailbox.upn, "endpoints": ["list_messages", "delta"]}))
                    .await;
            }
            if round == 20 {
                world
                    .sim_client
                    .deliver(&mailbox.upn, &Delivery::generated(PER_MAILBOX / 2))
                    .await
                    .unwrap();
            }
        }
        actix_rt::time::sleep(Duration::from_millis(60)).await;
    }
    for (_, mailbox) in &channels {
        all_read(&world, &mailbox.upn, PER_MAILBOX, Duration::from_secs(30)).await;
    }
    let counters = world.sim_client.counters(None).await.unwrap();
    for (_, mailbox) in &channels {
        let key = format!("{}|{}", mailbox.client_id, mailbox.upn);
        let peak = counters.peak_concurrency.get(&key).copied().unwrap_or(0);
        assert!(
            peak <= 4,
            "{peak} requests in flight at once to {}",
            mailbox.upn
        );
        let marked = world.requests(&mailbox.upn, "batch_item").await;
        assert_eq!(
            marked, PER_MAILBOX as u64,
            "{marked} mark-read items for {PER_MAILBOX} messages in {}",
            mailbox.upn
        );
    }
    let (early, list) = early_requests(&world).await;
    assert_eq!(early, 0, "requests before their Retry-After:\n{list}");
    // Each message is in the sink exactly once.
    let lines = world.daemon.sink_lines().unwrap();
    let mut seen = HashSet::new();
    for line in &lines {
        let key = format!("{}:{}", line["channel_id"], line["message_id"]);
        assert!(seen.insert(key.clone()), "{key} delivered twice");
    }
    assert_eq!(lines.len(), 3 * PER_MAILBOX);
}

#[actix_rt::test]
async fn nothing_reaches_a_throttled_mailbox_before_its_retry_after_whatever_the_operator_does() {
    let world = world(1, &[]).await;
    let (id, mailbox) = world.active_channel("held@held.example").await;
    world
        .sim_client
        .deliver(&mailbox.upn, &Delivery::generated(3))
        .await
        .unwrap();
    all_read(&world, &mailbox.upn, 3, Duration::from_secs(10)).await;
    // Microsoft says: not for 20 seconds.
    world
        .fault(json!({"kind": "throttle", "retry_after": 20, "count": 1,
            "mailbox": mailbox.upn, "endpoints": ["list_messages", "delta"]}))
        .await;
    let throttled_at = Instant::now();
    world
        .wait_status(&id, "backing_off", Duration::from_secs(10))
        .await;
    world
        .sim_client
        .deliver(&mailbox.upn, &Delivery::generated(2))
        .await
        .unwrap();
    // "Poll now" answers when the poll will happen: after the Retry-After, not now.
    let (status, answer) = world
        .daemon
        .api(Method::POST, &format!("/api/channels/{id}/poll"), None)
        .await
        .unwrap();
    assert_eq!(status, 202, "{answer}");
    let poll_at: chrono::DateTime<chrono::Utc> =
        answer["poll_at"].as_str().unwrap().parse().unwrap();
    let ahead = poll_at - chrono::Utc::now();
    assert!(
        ahead > chrono::Duration::seconds(15),
        "Poll now promised a poll {ahead} from now, inside a 20 s Retry-After"
    );
    // Disable + enable, an edit, and a second channel on the same (app, mailbox): all during it.
    for enabled in [false, true] {
        let path = format!(
            "/api/channels/{id}/{}",
            if enabled { "enable" } else { "disable" }
        );
        let (status, body) = world.daemon.api(Method::POST, &path, None).await.unwrap();
        assert_eq!(status, 200, "{path}: {body}");
    }
    rename(&world, &id, "renamed while throttled").await;
    let (status, second) = world
        .daemon
        .api(
            Method::POST,
            "/api/channels",
            Some(
                json!({"tenant_id": mailbox.tenant, "client_id": mailbox.client_id,
                "client_secret": mailbox.secret, "mailbox": mailbox.upn, "folder": "archive"}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{second}");
    let second = second["id"].as_str().unwrap().to_owned();
    let (status, page) = world.daemon.authorize(&second).await.unwrap();
    assert_eq!(status, 200, "{page}");
    world.poll_now(&second).await;
    actix_rt::time::sleep(Duration::from_secs(2)).await;
    let (early, list) = early_requests(&world).await;
    assert_eq!(early, 0, "requests before their Retry-After:\n{list}");
    // After it, mail flows again on its own.
    all_read(&world, &mailbox.upn, 5, Duration::from_secs(30)).await;
    assert!(throttled_at.elapsed() >= Duration::from_secs(19));
    let (early, list) = early_requests(&world).await;
    assert_eq!(early, 0, "requests before their Retry-After:\n{list}");
}

#[actix_rt::test]
async fn mail_flows_while_the_token_endpoint_is_down_and_the_access_token_still_works() {
    // Every cycle wants a refresh (the margin is longer than the 15-minute token), and the token
    // endpoint is down: polling goes on with the valid token.
    let options = inboxd::sim::SimOptions {
        access_token_lifetime_secs: 900,
        ..Default::default()
    };
    let world = world_with(
        options,
        1,
        &[
            ("INBOXD_RETRY__TOKEN_REFRESH_MARGIN_SECS", "1800".to_owned()),
            ("INBOXD_RETRY__TOKEN_REFRESH_JITTER_SECS", "0".to_owned()),
        ],
    )
    .await;
    let (id, mailbox) = world.active_channel("down@down.example").await;
    world
        .fault(json!({"kind": "down", "endpoints": ["token"], "tenant": mailbox.tenant, "duration_ms": 12000}))
        .await;
    world
        .sim_client
        .deliver(&mailbox.upn, &Delivery::generated(5))
        .await
        .unwrap();
    world.poll_now(&id).await;
    all_read(&world, &mailbox.upn, 5, Duration::from_secs(8)).await;
    assert_eq!(world.daemon.sink_lines().unwrap().len(), 5);
    let channel = world.daemon.channel(&id).await.unwrap();
    assert_eq!(channel["status"], "active", "{channel:#}");
    assert!(
        channel["warning"].is_object(),
        "the refresh failure is not shown as a warning: {channel:#}"
    );
    // Once the identity platform is back, the next refresh clears the warning.
    world
        .daemon
        .wait_channel(&id, Duration::from_secs(30), |c| c["warning"].is_null())
        .await
        .unwrap();
}

#[actix_rt::test]
async fn a_second_channel_of_the_same_mailbox_is_refused_naming_the_first() {
    let world = world(60, &[]).await;
    let mailbox = world.mailbox("twice@twice.example").await;
    let first = world.add(&mailbox).await;
    let body = json!({"tenant_id": mailbox.tenant, "client_id": mailbox.client_id,
        "client_secret": mailbox.secret, "mailbox": mailbox.upn.to_uppercase()});
    let (status, answer) = world
        .daemon
        .api(Method::POST, "/api/channels", Some(body))
        .await
        .unwrap();
    assert_eq!(status, 409, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&first), "{message}");
    let (_, list) = world
        .daemon
        .api(Method::GET, "/api/channels", None)
        .await
        .unwrap();
    let count = list["channels"].as_array().map_or(0, Vec::len);
    assert_eq!(count, 1, "{list}");
    // Another folder of the same mailbox is another channel.
    let other = json!({"tenant_id": mailbox.tenant, "client_id": mailbox.client_id,
        "client_secret": mailbox.secret, "mailbox": mailbox.upn, "folder": "archive"});
    let (status, answer) = world
        .daemon
        .api(Method::POST, "/api/channels", Some(other))
        .await
        .unwrap();
    assert_eq!(status, 201, "{answer}");
}

/// Restarted while a cycle waits on a slow identity platform: the operator renames the channel
/// during a frozen refresh. Each refresh token is used once, so a provider that revokes the grant
/// on reuse keeps the channel active.
#[actix_rt::test]
async fn an_actor_replaced_during_a_frozen_refresh_never_reuses_a_refresh_token() {
    // Every cycle refreshes (the margin is longer than the 15-minute token), and the identity
    // platform revokes the whole grant if a rotated-out refresh token is ever presented again.
    let options = inboxd::sim::SimOptions {
        access_token_lifetime_secs: 900,
        revoke_on_refresh_token_reuse: true,
        ..Default::default()
    };
    let world = world_with(
        options,
        1,
        &[
            ("INBOXD_RETRY__TOKEN_REFRESH_MARGIN_SECS", "1800".to_owned()),
            ("INBOXD_RETRY__TOKEN_REFRESH_JITTER_SECS", "0".to_owned()),
        ],
    )
    .await;
    let (id, mailbox) = world.active_channel("frozen@frozen.example").await;
    let refreshes_before = world.total_requests("token").await;
    // The identity platform hangs for 2 s on every token request for a while.
    world
        .fault(json!({"kind": "latency", "ms": 2000, "endpoints": ["token"], "tenant": mailbox.tenant, "duration_ms": 12000}))
        .await;
    world.poll_now(&id).await;
    // While that refresh hangs, the operator edits the channel three times.
    for round in 0..3 {
        actix_rt::time::sleep(Duration::from_millis(400)).await;
        rename(&world, &id, &format!("frozen {round}")).await;
    }
    world
        .sim_client
        .deliver(&mailbox.upn, &Delivery::generated(4))
        .await
        .unwrap();
    all_read(&world, &mailbox.upn, 4, Duration::from_secs(30)).await;
    assert!(world.total_requests("token").await > refreshes_before);
    let counters = world.sim_client.counters(None).await.unwrap();
    assert_eq!(
        counters.refresh_token_reuse, 0,
        "a rotated-out refresh token was used again"
    );
    let channel = world.daemon.channel(&id).await.unwrap();
    assert_eq!(channel["status"], "active", "{channel:#}");
    let lines = world.daemon.sink_lines().unwrap();
    let ids: HashMap<String, usize> = lines.iter().fold(HashMap::new(), |mut m, l: &Value| {
        *m.entry(l["message_id"].to_string()).or_default() += 1;
        m
    });
    assert!(
        ids.values().all(|n| *n == 1),
        "a message was delivered twice"
    );
}
