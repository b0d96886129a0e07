//! Outlook throttling per (app, mailbox): concurrency and request budget; early requests.

use inboxd::sim::SimOptions;
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn more_than_four_concurrent_requests_get_application_throttled() {
    let e = env().await;
    e.deliver(1).await;
    let (at, _) = e.tokens().await;
    e.ctl
        .add_fault_json(&json!({"kind": "latency", "ms": 1500, "mailbox": UPN}))
        .await
        .unwrap();
    let inbox = e.inbox_path().await;
    let futs = (0..6).map(|_| e.get(&at, &inbox));
    let results = futures_util::future::join_all(futs).await;
    let mut ok = 0;
    let mut throttled = Vec::new();
    for r in results {
        match r.status().as_u16() {
            200 => ok += 1,
            429 => throttled.push(r),
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!(ok, 4);
    assert_eq!(throttled.len(), 2);
    let r = throttled.pop().unwrap();
    assert_eq!(r.headers()["retry-after"], "1");
    let v = graph_error(r, 429, "ApplicationThrottled").await;
    assert_eq!(
        v["error"]["message"],
        "Application is over its MailboxConcurrency limit."
    );
    let c = e.ctl.counters(Some(UPN)).await.unwrap();
    // Four in flight plus the arrival that was turned away.
    assert_eq!(c.peak_concurrency_by_mailbox[UPN], 5);
    assert_eq!(c.peak_concurrency[&format!("{}|{UPN}", e.app.client_id)], 5);
    assert_eq!(c.requests["list_messages"], 6);
}

#[tokio::test]
async fn request_budget_per_app_and_mailbox_and_early_requests() {
    let e = env_with(SimOptions {
        mailbox_requests_per_10_min: 3,
        ..SimOptions::default()
    })
    .await;
    let (at, _) = e.tokens().await;
    let inbox = e.inbox_path().await;
    for _ in 0..3 {
        assert_eq!(e.get(&at, &inbox).await.status(), 200);
    }
    let r = e.get(&at, &inbox).await;
    let ra: f64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(ra > 500.0 && ra <= 600.0, "{ra}");
    graph_error(r, 429, "ApplicationThrottled").await;
    // Retrying before Retry-After passed is recorded as early.
    assert_eq!(e.get(&at, &inbox).await.status(), 429);
    let c = e.ctl.counters(None).await.unwrap();
    assert_eq!(c.early_count, 1);
    assert_eq!(
        c.early_requests[0].key,
        format!("{}|{UPN}", e.app.client_id)
    );
    assert!(c.early_requests[0].early_by_ms > 0);
    // Another app on the same mailbox has its own budget.
    let app2 = e
        .ctl
        .register_app(&inboxd::sim::client::AppRegistration {
            tenant_id: e.tenant.clone(),
            redirect_uris: vec![REGISTERED_REDIRECT.into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let t2 = e.ctl.mint_tokens(UPN, &app2.client_id, None).await.unwrap();
    assert_eq!(e.get(&t2.access_token, &inbox).await.status(), 200);
    // The window ends after 10 minutes.
    e.ctl.advance_clock(601.0).await.unwrap();
    e.ctl.reset_counters().await.unwrap();
    let (at, _) = e.tokens().await;
    assert_eq!(e.get(&at, &inbox).await.status(), 200);
    let c = e.ctl.counters(None).await.unwrap();
    assert_eq!(c.early_count, 0);
    assert_eq!(c.requests["list_messages"], 1);
}

#[tokio::test]
async fn throttling_one_mailbox_does_not_touch_another() {
    let e = env_with(SimOptions {
        mailbox_requests_per_10_min: 1,
        ..SimOptions::default()
    })
    .await;
    e.ctl
        .register_user(&e.tenant, "bob@contoso.example", &[])
        .await
        .unwrap();
    e.ctl
        .grant_mailbox(UPN, "bob@contoso.example")
        .await
        .unwrap();
    let (at, _) = e.tokens().await;
    assert_eq!(e.get(&at, &e.inbox_path().await).await.status(), 200);
    assert_eq!(e.get(&at, &e.inbox_path().await).await.status(), 429);
    let r = e
        .get(&at, "/users/bob@contoso.example/mailFolders/inbox/messages")
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["value"].is_array());
}
