//! Injected Graph faults: 429 storms, 5xx, latency, resets, malformed JSON; scoping and expiry.

use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn throttle_storms_with_fractional_or_no_retry_after() {
    let e = env().await;
    let (at, _) = e.tokens().await;
    let inbox = e.inbox_path().await;
    e.ctl
        .add_fault_json(
            &json!({"kind": "throttle", "retry_after": 30.5, "mailbox": UPN, "count": 2}),
        )
        .await
        .unwrap();
    for _ in 0..2 {
        let r = e.get(&at, &inbox).await;
        assert_eq!(r.headers()["retry-after"], "30.5");
        let v = graph_error(r, 429, "TooManyRequests").await;
        assert_eq!(v["error"]["innerError"]["status"], "429");
    }
    assert_eq!(e.get(&at, &inbox).await.status(), 200);
    // Both retries came before the 30.5 s passed.
    assert_eq!(e.ctl.counters(Some(UPN)).await.unwrap().early_count, 2);
    e.ctl
        .add_fault_json(
            &json!({"kind": "throttle", "retry_after": null, "mailbox": UPN, "count": 1}),
        )
        .await
        .unwrap();
    let r = e.get(&at, &inbox).await;
    assert!(r.headers().get("retry-after").is_none());
    graph_error(r, 429, "TooManyRequests").await;
}

#[tokio::test]
async fn server_errors_latency_resets_and_malformed_bodies() {
    let e = env().await;
    let (at, _) = e.tokens().await;
    let inbox = e.inbox_path().await;
    for status in [500u16, 503, 504] {
        e.ctl.add_fault_json(&json!({"kind": "status", "status": status, "retry_after": 3, "mailbox": UPN, "count": 1})).await.unwrap();
        let r = e.get(&at, &inbox).await;
        assert_eq!(r.status().as_u16(), status);
        assert_eq!(r.headers()["retry-after"], "3");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"]["code"].is_string());
    }
    e.ctl
        .add_fault_json(&json!({"kind": "latency", "ms": 300, "mailbox": UPN, "count": 1}))
        .await
        .unwrap();
    let t = std::time::Instant::now();
    assert_eq!(e.get(&at, &inbox).await.status(), 200);
    assert!(t.elapsed() >= std::time::Duration::from_millis(300));
    e.ctl
        .add_fault_json(&json!({"kind": "reset", "mailbox": UPN, "count": 1}))
        .await
        .unwrap();
    let r = e.get(&at, &inbox).await;
    assert!(r.bytes().await.is_err());
    e.ctl
        .add_fault_json(&json!({"kind": "malformed", "mailbox": UPN, "count": 1}))
        .await
        .unwrap();
    let r = e.get(&at, &inbox).await;
    assert_eq!(r.status(), 200);
    assert!(r.json::<Value>().await.is_err());
    assert_eq!(e.get(&at, &inbox).await.status(), 200);
}

#[tokio::test]
async fn faults_are_scoped_listed_and_removed() {
    let e = env().await;
    e.ctl
        .register_user(&e.tenant, "bob@contoso.example", &[])
        .await
        .unwrap();
    e.ctl
        .grant_mailbox(UPN, "bob@contoso.example")
        .await
        .unwrap();
    let (at, _) = e.tokens().await;
    let inbox = e.inbox_path().await;
    let id = e.ctl.add_fault_json(&json!({"kind": "status", "status": 503, "mailbox": "bob@contoso.example", "endpoints": ["list_messages"]})).await.unwrap()["id"].as_u64().unwrap();
    assert_eq!(e.get(&at, &inbox).await.status(), 200);
    assert_eq!(
        e.get(&at, "/users/bob@contoso.example/mailFolders/inbox/messages")
            .await
            .status(),
        503
    );
    let faults = e.ctl.add_fault_json(&json!({"kind": "latency", "ms": 1, "client_id": "00000000-0000-0000-0000-000000000000"})).await.unwrap();
    assert!(faults["id"].is_u64());
    let list: Value = e
        .http
        .get(format!("{}/_sim/faults", e.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["faults"].as_array().unwrap().len(), 2);
    assert_eq!(list["faults"][0]["hits"], 1);
    e.ctl.remove_fault(id).await.unwrap();
    assert_eq!(
        e.get(&at, "/users/bob@contoso.example/mailFolders/inbox/messages")
            .await
            .status(),
        200
    );
    // Duration-limited faults end.
    e.ctl
        .add_fault_json(
            &json!({"kind": "status", "status": 500, "tenant": e.tenant, "duration_ms": 1000}),
        )
        .await
        .unwrap();
    assert_eq!(e.get(&at, &inbox).await.status(), 500);
    e.ctl.advance_clock(1.5).await.unwrap();
    assert_eq!(e.get(&at, &inbox).await.status(), 200);
    e.ctl
        .add_fault_json(&json!({"kind": "status", "status": 500}))
        .await
        .unwrap();
    e.ctl.clear_faults().await.unwrap();
    assert_eq!(e.get(&at, &inbox).await.status(), 200);
    // A bad fault spec is a 400.
    assert!(
        e.ctl
            .add_fault_json(&json!({"kind": "earthquake"}))
            .await
            .is_err()
    );
}
