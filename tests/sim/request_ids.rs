//! Request correlation and batch URLs: `client-request-id` from a header or the query, echoed back;
//! `request-id` on every Graph answer; `$batch` item URLs with or without a leading `/`.

use serde_json::{Value, json};

use crate::support::*;

/// "Use the Microsoft Graph API" (`use-the-api`) and "Microsoft Graph error responses": a client
/// may send its own `client-request-id`, which comes back in the response's `client-request-id`
/// header (and in an error's `innerError`); every response carries Graph's `request-id`. The query
/// string takes `client-request-id` too.
#[tokio::test]
async fn client_request_id_is_echoed_from_header_or_query_and_request_id_is_always_there() {
    let e = env().await;
    e.deliver(1).await;
    let (at, _) = e.tokens().await;
    let inbox = e.inbox_path().await;
    let r = e
        .http
        .get(e.graph(&inbox))
        .bearer_auth(&at)
        .header("client-request-id", "11111111-2222-3333-4444-555555555555")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["client-request-id"],
        "11111111-2222-3333-4444-555555555555"
    );
    assert!(!r.headers()["request-id"].is_empty());
    let r = e
        .get(
            &at,
            &format!("{inbox}?client-request-id=aaaaaaaa-0000-0000-0000-000000000001"),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["client-request-id"],
        "aaaaaaaa-0000-0000-0000-000000000001"
    );
    // Errors echo it in the header and in innerError.
    let r = e
        .get(
            "garbage",
            &format!("{inbox}?client-request-id=aaaaaaaa-0000-0000-0000-000000000002"),
        )
        .await;
    assert_eq!(
        r.headers()["client-request-id"],
        "aaaaaaaa-0000-0000-0000-000000000002"
    );
    let v = graph_error(r, 401, "InvalidAuthenticationToken").await;
    assert_eq!(
        v["error"]["innerError"]["client-request-id"],
        "aaaaaaaa-0000-0000-0000-000000000002"
    );
    // A malformed answer (an injected fault) still carries the ids; so do a 404 and a 405.
    e.ctl
        .add_fault_json(&json!({"kind": "malformed", "mailbox": UPN, "count": 1}))
        .await
        .unwrap();
    let r = e.get(&at, &inbox).await;
    assert!(r.headers().contains_key("request-id"));
    assert!(r.headers().contains_key("client-request-id"));
    let r = e.get(&at, "/users/nobody@contoso.example/messages").await;
    assert!(r.headers().contains_key("request-id"));
    let r = e
        .http
        .delete(e.graph(&inbox))
        .bearer_auth(&at)
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("request-id"));
}

/// "Combine multiple HTTP requests using JSON batching": each `url` is relative to the version;
/// Graph takes it with a leading `/` (`/me/messages`) and without (`users/…/messages`). An absolute
/// URL or one that repeats the version is refused per item.
#[tokio::test]
async fn batch_item_urls_are_relative_with_or_without_a_leading_slash() {
    let e = env().await;
    let ids = e.deliver(1).await;
    let (at, _) = e.tokens().await;
    let r = e
        .http
        .post(e.graph("/$batch"))
        .bearer_auth(&at)
        .json(&json!({"requests": [
            {"id": "1", "method": "GET", "url": format!("/users/{UPN}/messages/{}", ids[0])},
            {"id": "2", "method": "GET", "url": format!("users/{UPN}/messages/{}", ids[0])},
            {"id": "3", "method": "GET", "url": "me/mailFolders/inbox/messages?$top=1&client-request-id=q-1"},
            {"id": "4", "method": "GET", "url": format!("v1.0/users/{UPN}/messages")},
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let by_id = |id: &str| {
        v["responses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id("1")["status"], 200);
    assert_eq!(by_id("2")["status"], 200);
    assert_eq!(by_id("2")["body"]["id"], ids[0].as_str());
    assert_eq!(by_id("3")["status"], 200);
    assert_eq!(by_id("3")["body"]["value"].as_array().unwrap().len(), 1);
    assert_eq!(by_id("4")["status"], 400);
}
