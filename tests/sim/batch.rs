//! `POST /v1.0/$batch`.

use inboxd::sim::SimOptions;
use serde_json::{Value, json};

use crate::support::*;

fn patch_item(id: &str, msg: &str) -> Value {
    json!({"id": id, "method": "PATCH", "url": format!("/users/{UPN}/messages/{msg}"), "headers": {"Content-Type": "application/json"}, "body": {"isRead": true}})
}

async fn batch(e: &Env, at: &str, body: &Value) -> reqwest::Response {
    e.http
        .post(e.graph("/$batch"))
        .bearer_auth(at)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn by_id<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["responses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap()
}

#[tokio::test]
async fn batch_runs_items_and_answers_out_of_order() {
    let e = env().await;
    let ids = e.deliver(3).await;
    let (at, _) = e.tokens().await;
    let reqs: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, m)| patch_item(&(i + 1).to_string(), m))
        .collect();
    let r = batch(&e, &at, &json!({"requests": reqs})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let order: Vec<&str> = v["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(order.len(), 3);
    assert_ne!(order, ["1", "2", "3"], "responses are not in request order");
    for i in ["1", "2", "3"] {
        let item = by_id(&v, i);
        assert_eq!(item["status"], 200);
        assert_eq!(item["body"]["isRead"], true);
        assert!(
            item["headers"]["Content-Type"]
                .as_str()
                .unwrap()
                .starts_with("application/json")
        );
    }
    assert_eq!(e.ctl.mailbox_state(UPN).await.unwrap().unread, 0);
    // A GET item and an item error.
    let r = batch(&e, &at, &json!({"requests": [
        {"id": "a", "method": "GET", "url": format!("/users/{UPN}/mailFolders/inbox/messages?$top=2")},
        {"id": "b", "method": "GET", "url": format!("/users/{UPN}/messages/AAMkNOPE")},
        {"id": "c", "method": "GET", "url": "/users/somebody@else.example/messages"},
    ]}))
    .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(by_id(&v, "a")["status"], 200);
    assert_eq!(by_id(&v, "a")["body"]["value"].as_array().unwrap().len(), 2);
    assert_eq!(by_id(&v, "b")["status"], 400);
    assert_eq!(
        by_id(&v, "b")["body"]["error"]["code"],
        "ErrorInvalidIdMalformed"
    );
    assert_eq!(by_id(&v, "c")["status"], 404);
}

#[tokio::test]
async fn batch_validation() {
    let e = env().await;
    let ids = e.deliver(1).await;
    let (at, _) = e.tokens().await;
    let many: Vec<Value> = (0..21)
        .map(|i| patch_item(&i.to_string(), &ids[0]))
        .collect();
    graph_error(
        batch(&e, &at, &json!({"requests": many})).await,
        400,
        "BadRequest",
    )
    .await;
    let twenty: Vec<Value> = (0..20)
        .map(|i| patch_item(&i.to_string(), &ids[0]))
        .collect();
    assert_eq!(
        batch(&e, &at, &json!({"requests": twenty})).await.status(),
        200
    );
    let dup = json!({"requests": [patch_item("x", &ids[0]), patch_item("X", &ids[0])]});
    graph_error(batch(&e, &at, &dup).await, 400, "BadRequest").await;
    let r = e
        .http
        .post(e.graph("/$batch"))
        .bearer_auth(&at)
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    graph_error(r, 400, "BadRequest").await;
    let r = e
        .http
        .get(e.graph("/$batch"))
        .bearer_auth(&at)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    graph_error(
        e.http
            .post(e.graph("/$batch"))
            .json(&json!({"requests": []}))
            .send()
            .await
            .unwrap(),
        401,
        "InvalidAuthenticationToken",
    )
    .await;
    // Item-level: versioned url, body without Content-Type.
    let v: Value = batch(&e, &at, &json!({"requests": [
        {"id": "1", "method": "GET", "url": format!("/v1.0/users/{UPN}/messages")},
        {"id": "2", "method": "PATCH", "url": format!("/users/{UPN}/messages/{}", ids[0]), "body": {"isRead": true}},
    ]}))
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(by_id(&v, "1")["status"], 400);
    assert_eq!(by_id(&v, "2")["status"], 400);
}

#[tokio::test]
async fn dependents_of_a_failed_request_get_424() {
    let e = env().await;
    let ids = e.deliver(2).await;
    let (at, _) = e.tokens().await;
    let mut second = patch_item("2", &ids[0]);
    second["dependsOn"] = json!(["1"]);
    let mut third = patch_item("3", &ids[1]);
    third["dependsOn"] = json!(["2"]);
    let v: Value = batch(&e, &at, &json!({"requests": [
        {"id": "1", "method": "GET", "url": format!("/users/{UPN}/messages/AAMkAGI2TG93AAAbad")},
        second, third,
    ]}))
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(by_id(&v, "1")["status"], 400);
    assert_eq!(by_id(&v, "2")["status"], 424);
    assert_eq!(by_id(&v, "3")["status"], 424);
    assert_eq!(e.ctl.mailbox_state(UPN).await.unwrap().unread, 2);
    let mut ok2 = patch_item("2", &ids[0]);
    ok2["dependsOn"] = json!(["1"]);
    let v: Value = batch(
        &e,
        &at,
        &json!({"requests": [patch_item("1", &ids[1]), ok2]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(by_id(&v, "2")["status"], 200);
    let bad_ref = json!({"requests": [{"id": "1", "method": "GET", "url": "/me/messages", "dependsOn": ["9"]}]});
    graph_error(batch(&e, &at, &bad_ref).await, 400, "BadRequest").await;
}

#[tokio::test]
async fn throttled_items_carry_retry_after_in_their_headers() {
    let e = env().await;
    let ids = e.deliver(3).await;
    let (at, _) = e.tokens().await;
    e.ctl.add_fault_json(&json!({"kind": "throttle", "retry_after": 2.5, "endpoints": ["batch_item"], "mailbox": UPN, "count": 1})).await.unwrap();
    let reqs: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, m)| patch_item(&i.to_string(), m))
        .collect();
    let v: Value = batch(&e, &at, &json!({"requests": reqs}))
        .await
        .json()
        .await
        .unwrap();
    let throttled: Vec<&Value> = v["responses"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == 429)
        .collect();
    assert_eq!(throttled.len(), 1);
    assert_eq!(throttled[0]["headers"]["Retry-After"], "2.5");
    assert_eq!(throttled[0]["body"]["error"]["code"], "TooManyRequests");
    assert_eq!(e.ctl.mailbox_state(UPN).await.unwrap().unread, 1);
    // The items that ran beside the throttled one left with it: the client could not have waited.
    let c = e.ctl.counters(None).await.unwrap();
    assert_eq!(c.early_count, 0, "{:?}", c.early_requests);
    // A request sent after the answer, inside the Retry-After, is early.
    let inbox = e.inbox_path().await;
    assert_eq!(e.get(&at, &inbox).await.status(), 200);
    let c = e.ctl.counters(None).await.unwrap();
    assert_eq!(c.early_count, 1, "{:?}", c.early_requests);
    assert_eq!(c.early_requests[0].endpoint, "list_messages");
}

#[tokio::test]
async fn batch_items_count_against_mailbox_concurrency() {
    let e = env_with(SimOptions {
        mailbox_concurrency: 2,
        ..SimOptions::default()
    })
    .await;
    e.deliver(1).await;
    let (at, _) = e.tokens().await;
    e.ctl
        .add_fault_json(
            &json!({"kind": "latency", "ms": 200, "mailbox": UPN, "endpoints": ["list_messages"]}),
        )
        .await
        .unwrap();
    let reqs: Vec<Value> = (0..4).map(|i| json!({"id": i.to_string(), "method": "GET", "url": format!("/users/{UPN}/mailFolders/inbox/messages")})).collect();
    let v: Value = batch(&e, &at, &json!({"requests": reqs}))
        .await
        .json()
        .await
        .unwrap();
    let statuses: Vec<u64> = v["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2,
        "{statuses:?}"
    );
    let t = v["responses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == 429)
        .unwrap();
    assert_eq!(t["body"]["error"]["code"], "ApplicationThrottled");
    assert_eq!(
        t["body"]["error"]["message"],
        "Application is over its MailboxConcurrency limit."
    );
    assert!(t["headers"]["Retry-After"].is_string());
    let c = e.ctl.counters(Some(UPN)).await.unwrap();
    // Two in flight plus the arrival that was turned away.
    assert_eq!(c.peak_concurrency_by_mailbox[UPN], 3);
    assert_eq!(c.requests["batch_item"], 4);
}

#[tokio::test]
async fn a_fault_on_the_batch_itself_answers_as_on_any_graph_request() {
    let e = env().await;
    let ids = e.deliver(1).await;
    let (at, _) = e.tokens().await;
    let body = json!({"requests": [patch_item("1", &ids[0])]});
    e.ctl
        .add_fault_json(
            &json!({"kind": "throttle", "retry_after": 2.5, "endpoints": ["batch"], "count": 1}),
        )
        .await
        .unwrap();
    let r = batch(&e, &at, &body).await;
    assert_eq!(r.headers()["retry-after"], "2.5");
    let v = graph_error(r, 429, "TooManyRequests").await;
    assert_eq!(v["error"]["innerError"]["status"], "429");
    e.ctl
        .add_fault_json(
            &json!({"kind": "status", "status": 503, "endpoints": ["batch"], "count": 1}),
        )
        .await
        .unwrap();
    graph_error(batch(&e, &at, &body).await, 503, "serviceNotAvailable").await;
    e.ctl
        .add_fault_json(
            &json!({"kind": "status", "status": 500, "endpoints": ["batch"], "count": 1}),
        )
        .await
        .unwrap();
    graph_error(batch(&e, &at, &body).await, 500, "generalException").await;
    assert_eq!(
        batch(&e, &at, &body).await.status(),
        200,
        "the faults are used up"
    );
}
