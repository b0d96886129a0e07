use std::collections::HashMap;
use std::time::{Duration, Instant};

use inboxd::sim::client::Delivery;
use serde_json::{Value, json};

use crate::helpers::{until, world_with};

/// Every kind of misbehaviour at once, each on its own mailbox, while mail flows. Afterwards every
/// message is in the sink exactly once and marked read, nobody acted, and no `Retry-After` was undercut.
#[actix_rt::test]
async fn every_message_survives_faults_exactly_once() {
    // Short tokens: every cycle refreshes, so the token-endpoint outage is met too.
    let options = inboxd::sim::SimOptions {
        access_token_lifetime_secs: 60,
        ..Default::default()
    };
    let world = world_with(
        options,
        1,
        &[("INBOXD_POLLING__REQUEST_TIMEOUT_SECS", "1".to_owned())],
    )
    .await;
    let faults: Vec<(&str, Value)> = vec![
        (
            "five",
            json!({"kind": "status", "status": 503, "retry_after": 0.5}),
        ),
        ("slow", json!({"kind": "latency", "ms": 1500})),
        ("reset", json!({"kind": "reset"})),
        ("garbled", json!({"kind": "malformed"})),
        ("storm", json!({"kind": "throttle", "retry_after": 1.2})),
        (
            "storm-bare",
            json!({"kind": "throttle", "retry_after": null}),
        ),
        (
            "tokens-down",
            json!({"kind": "down", "endpoints": ["token"]}),
        ),
        ("calm", Value::Null),
    ];
    let mut channels = Vec::new();
    for (name, _) in &faults {
        channels.push(
            world
                .active_channel(&format!("{name}@{name}.example"))
                .await,
        );
    }
    let mut sent = 0;
    for (_, mailbox) in &channels {
        sent += world
            .sim_client
            .deliver(&mailbox.upn, &Delivery::generated(15))
            .await
            .unwrap()
            .count;
    }
    for ((_, spec), (_, mailbox)) in faults.iter().zip(&channels) {
        if spec.is_null() {
            continue;
        }
        let mut spec = spec.clone();
        spec["duration_ms"] = json!(3000);
        if spec["endpoints"] == json!(["token"]) {
            spec["tenant"] = json!(mailbox.tenant);
        } else {
            spec["mailbox"] = json!(mailbox.upn);
        }
        world.fault(spec).await;
    }
    actix_rt::time::sleep(Duration::from_millis(1000)).await;
    for (_, mailbox) in &channels {
        sent += world
            .sim_client
            .deliver(&mailbox.upn, &Delivery::generated(10))
            .await
            .unwrap()
            .count;
    }
    // While it lasts, the statuses say so.
    let mut seen_backing_off = false;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        for (id, _) in &channels {
            seen_backing_off |= world.daemon.channel(id).await.unwrap()["status"] == "backing_off";
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        seen_backing_off,
        "no channel showed backing_off during the faults"
    );

    // Recovery without an operator.
    until(Duration::from_secs(40), "every message read", || async {
        let mut unread = 0;
        for (_, mailbox) in &channels {
            unread += world
                .sim_client
                .mailbox_state(&mailbox.upn)
                .await
                .unwrap()
                .unread;
        }
        unread == 0
    })
    .await;
    for (id, _) in &channels {
        world
            .wait_status(id, "active", Duration::from_secs(10))
            .await;
    }

    let lines = world.daemon.sink_lines().unwrap();
    let mut count: HashMap<String, usize> = HashMap::new();
    for line in &lines {
        *count
            .entry(line["message_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert!(
        count.values().all(|n| *n == 1),
        "a message was written twice"
    );
    assert_eq!(count.len(), sent, "messages missing from the sink");
    let counters = world.sim_client.counters(None).await.unwrap();
    assert_eq!(
        counters.early_count, 0,
        "Retry-After undercut: {:?}",
        counters.early_requests
    );
    for (key, peak) in &counters.peak_concurrency {
        assert!(*peak <= 4, "{key}: {peak} in flight");
    }
}

/// Conditional Access asks for more than the access token carries (a claims challenge on Graph):
/// a refresh cannot meet it, so the channel asks for a new sign-in at once, and the last error
/// carries Graph's request-id and inboxd's client-request-id for Microsoft support.
#[actix_rt::test]
async fn a_claims_challenge_asks_for_a_new_sign_in_with_the_request_ids() {
    let world = crate::helpers::world(60, &[]).await;
    let (id, mailbox) = world.active_channel("claims@claims.example").await;
    let refreshes = world.total_requests("token").await;
    world
        .fault(json!({"kind": "insufficient_claims", "mailbox": mailbox.upn}))
        .await;
    world.poll_now(&id).await;
    let channel = world
        .wait_status(&id, "needs_reauthorization", Duration::from_secs(15))
        .await;
    let error = &channel["last_error"];
    assert_eq!(error["code"], "insufficient_claims", "{channel:#}");
    assert!(error["trace_id"].is_string(), "no request-id: {channel:#}");
    assert!(
        error["correlation_id"].is_string(),
        "no client-request-id: {channel:#}"
    );
    assert!(
        error["remedy"]
            .as_str()
            .unwrap_or_default()
            .contains("sign in"),
        "{channel:#}"
    );
    // No refresh was tried: it cannot meet a claims challenge.
    assert_eq!(world.total_requests("token").await, refreshes);
}

/// Conditional Access starts asking for MFA on refresh (`interaction_required`, AADSTS50076) while
/// the access token is still valid: mail keeps flowing, and the channel shows the sign-in it needs
/// as a warning before the token runs out.
#[actix_rt::test]
async fn a_refresh_that_needs_interaction_warns_while_the_access_token_still_works() {
    let options = inboxd::sim::SimOptions {
        access_token_lifetime_secs: 900,
        ..Default::default()
    };
    let world = crate::helpers::world_with(
        options,
        1,
        &[
            ("INBOXD_RETRY__TOKEN_REFRESH_MARGIN_SECS", "1800".to_owned()),
            ("INBOXD_RETRY__TOKEN_REFRESH_JITTER_SECS", "0".to_owned()),
        ],
    )
    .await;
    let (id, mailbox) = world.active_channel("mfa@mfa.example").await;
    world
        .fault(json!({"kind": "interaction_required", "endpoints": ["token"], "tenant": mailbox.tenant}))
        .await;
    world
        .sim_client
        .deliver(&mailbox.upn, &inboxd::sim::client::Delivery::generated(3))
        .await
        .unwrap();
    let channel = world
        .daemon
        .wait_channel(&id, Duration::from_secs(15), |c| {
            c["warning"]["code"] == "AADSTS50076" && c["messages_today"] == 3
        })
        .await
        .unwrap();
    assert_eq!(channel["status"], "active", "{channel:#}");
    assert!(
        channel["warning"]["remedy"]
            .as_str()
            .unwrap_or_default()
            .contains("sign in"),
        "{channel:#}"
    );
}
