//! The `/_sim/` control API: bulk provisioning, counters, validation.

use inboxd::sim::client::{BulkRequest, bulk_credentials};
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn bulk_provisions_deterministic_credentials_and_refresh_tokens() {
    let e = env().await;
    let mut req = BulkRequest::new(50, "bench");
    req.issue_refresh_tokens = true;
    let b = e.ctl.bulk(&req).await.unwrap();
    assert_eq!(b.entries.len(), 50);
    let x = &b.entries[7];
    let (t, c, s, m) = bulk_credentials("bench", 7);
    assert_eq!(
        (
            x.tenant_id.as_str(),
            x.client_id.as_str(),
            x.client_secret.as_str(),
            x.mailbox.as_str()
        ),
        (t.as_str(), c.as_str(), s.as_str(), m.as_str())
    );
    assert_eq!(x.mailbox, "user7@bench7.example");
    assert!(
        uuid::Uuid::parse_str(&x.tenant_id).is_ok() && uuid::Uuid::parse_str(&x.client_id).is_ok()
    );
    // The minted refresh token works at the token endpoint and the access token on Graph.
    let r = e
        .http
        .post(format!("{}/{}/oauth2/v2.0/token", e.url, x.tenant_id))
        .form(&[
            ("client_id", x.client_id.as_str()),
            ("client_secret", x.client_secret.as_str()),
            ("grant_type", "refresh_token"),
            ("refresh_token", x.refresh_token.as_deref().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let at = v["access_token"].as_str().unwrap();
    let r = e
        .get(
            at,
            &format!("/users/{}/mailFolders/inbox/messages", x.mailbox),
        )
        .await;
    assert_eq!(r.status(), 200);
    // Again with the same prefix: the same credentials.
    let again = e.ctl.bulk(&BulkRequest::new(8, "bench")).await.unwrap();
    assert_eq!(again.entries[7].client_id, x.client_id);
    assert!(again.entries[7].refresh_token.is_none());
}

#[tokio::test]
async fn bulk_provisioning_of_a_hundred_thousand_is_fast() {
    let e = env().await;
    let t = std::time::Instant::now();
    let mut req = BulkRequest::new(100_000, "load");
    req.return_entries = false;
    req.issue_refresh_tokens = true;
    let b = e.ctl.bulk(&req).await.unwrap();
    assert_eq!(b.count, 100_000);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(60),
        "{:?}",
        t.elapsed()
    );
    let (_, _, _, m) = bulk_credentials("load", 99_999);
    assert_eq!(e.ctl.mailbox_state(&m).await.unwrap().total, 0);
}

#[tokio::test]
async fn counters_per_endpoint_and_mailbox_and_reset() {
    let e = env().await;
    let ids = e.deliver(2).await;
    let (at, _) = e.tokens().await;
    e.get(&at, &e.inbox_path().await).await;
    e.get(&at, &format!("/users/{UPN}/messages/{}", ids[0]))
        .await;
    e.http
        .patch(e.graph(&format!("/users/{UPN}/messages/{}", ids[0])))
        .bearer_auth(&at)
        .json(&json!({"isRead": true}))
        .send()
        .await
        .unwrap();
    e.get(
        &at,
        &format!("/users/{UPN}/mailFolders/inbox/messages/delta"),
    )
    .await;
    let c = e.ctl.counters(None).await.unwrap();
    assert_eq!(c.requests["authorize"], 1);
    assert_eq!(c.requests["token"], 1);
    assert_eq!(c.requests["list_messages"], 1);
    assert_eq!(c.requests["get_message"], 1);
    assert_eq!(c.requests["patch_message"], 1);
    assert_eq!(c.requests["delta"], 1);
    let c = e.ctl.counters(Some(UPN)).await.unwrap();
    assert_eq!(c.requests["list_messages"], 1);
    assert_eq!(c.requests["token"], 0);
    assert_eq!(c.peak_concurrency_by_mailbox[UPN], 1);
    let c = e.ctl.counters(Some("other@contoso.example")).await.unwrap();
    assert_eq!(c.requests["list_messages"], 0);
    e.ctl.reset_counters().await.unwrap();
    let c = e.ctl.counters(None).await.unwrap();
    assert!(c.requests.values().all(|n| *n == 0));
}

#[tokio::test]
async fn control_api_validates_its_input() {
    let e = env().await;
    let post = |path: &str, body: &'static str| {
        e.http
            .post(format!("{}/_sim{path}", e.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_eq!(post("/tenants", "{bad").await.unwrap().status(), 400);
    assert_eq!(
        post("/tenants", r#"{"tenant_id":"not-a-guid"}"#)
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        post(
            "/apps",
            r#"{"tenant_id":"00000000-0000-0000-0000-00000000dead"}"#
        )
        .await
        .unwrap()
        .status(),
        404
    );
    assert_eq!(
        post(
            "/users",
            &*Box::leak(
                format!(r#"{{"tenant_id":"{}","upn":"nobody"}}"#, e.tenant).into_boxed_str()
            )
        )
        .await
        .unwrap()
        .status(),
        400
    );
    assert_eq!(
        post(
            "/mailboxes/ghost@nowhere.example/messages",
            r#"{"count":1}"#
        )
        .await
        .unwrap()
        .status(),
        404
    );
    assert!(e.ctl.mailbox_state("ghost@nowhere.example").await.is_err());
    let r = e
        .http
        .get(format!("{}/_sim/bulk", e.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
