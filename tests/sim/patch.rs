//! A message as a client changes and reads it: PATCH of every writable property with refusals for
//! the others, `bodyPreview` with its line breaks, `uniqueBody` only on request.

use inboxd::sim::client::Delivery;
use serde_json::{Value, json};

use crate::support::*;

async fn patch(e: &Env, at: &str, id: &str, body: Value) -> reqwest::Response {
    e.http
        .patch(e.graph(&format!("/users/{UPN}/messages/{id}")))
        .bearer_auth(at)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// "Update message" (Graph v1.0 `message-update`): the body holds only the properties to change;
/// writable are categories, flag (a `followupFlag`), importance (`Low`, `Normal`, `High`),
/// inferenceClassification (`focused`, `other`), isRead, isDeliveryReceiptRequested,
/// isReadReceiptRequested and the to/cc/bcc recipients; the answer is `200 OK` with the updated
/// message. Properties the table does not list stay untouched.
#[tokio::test]
async fn patch_applies_every_writable_property_and_moves_last_modified() {
    let e = env().await;
    let ids = e.deliver(1).await;
    let (at, _) = e.tokens().await;
    let before: Value = e
        .get(&at, &format!("/users/{UPN}/messages/{}", ids[0]))
        .await
        .json()
        .await
        .unwrap();
    e.ctl.advance_clock(3.0).await.unwrap();
    let flag = json!({
        "flagStatus": "flagged",
        "dueDateTime": {"dateTime": "2030-01-02T09:00:00.0000000", "timeZone": "UTC"},
    });
    let r = patch(
        &e,
        &at,
        &ids[0],
        json!({
            "isRead": true,
            "categories": ["Blue category", "Processed"],
            "flag": flag,
            "importance": "High",
            "inferenceClassification": "other",
            "isReadReceiptRequested": true,
            "isDeliveryReceiptRequested": true,
            "bccRecipients": [{"emailAddress": {"name": "Audit", "address": "audit@contoso.example"}}],
        }),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], ids[0].as_str());
    assert_eq!(v["isRead"], true);
    assert_eq!(v["categories"], json!(["Blue category", "Processed"]));
    assert_eq!(v["flag"], flag);
    assert_eq!(v["importance"], "high");
    assert_eq!(v["inferenceClassification"], "other");
    assert_eq!(v["isReadReceiptRequested"], true);
    assert_eq!(v["isDeliveryReceiptRequested"], true);
    assert_eq!(
        v["bccRecipients"][0]["emailAddress"]["address"],
        "audit@contoso.example"
    );
    assert_eq!(v["subject"], before["subject"]);
    assert_eq!(v["receivedDateTime"], before["receivedDateTime"]);
    assert!(
        v["lastModifiedDateTime"].as_str().unwrap()
            > before["lastModifiedDateTime"].as_str().unwrap()
    );
    assert_ne!(v["@odata.etag"], before["@odata.etag"]);
    // A later GET sees the same.
    let again: Value = e
        .get(&at, &format!("/users/{UPN}/messages/{}", ids[0]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["categories"], v["categories"]);
    assert_eq!(again["flag"], flag);
    assert_eq!(again["lastModifiedDateTime"], v["lastModifiedDateTime"]);
}

/// "Update message": body, internetMessageId, replyTo and subject are "updatable only if isDraft =
/// true", and `from` must be the mailbox's own; the simulator's mail is received mail, so they are
/// refused (400 `ErrorInvalidPropertySet`, as Outlook answers). A read-only property (one the table
/// does not list) and an unknown one are refused too, and nothing of a refused PATCH is applied.
#[tokio::test]
async fn patch_refuses_draft_only_read_only_unknown_and_ill_typed_properties() {
    let e = env().await;
    let ids = e.deliver(1).await;
    let (at, _) = e.tokens().await;
    for (body, code) in [
        (
            json!({"isRead": true, "subject": "new"}),
            "ErrorInvalidPropertySet",
        ),
        (
            json!({"body": {"contentType": "text", "content": "x"}}),
            "ErrorInvalidPropertySet",
        ),
        (
            json!({"receivedDateTime": "2020-01-01T00:00:00Z"}),
            "ErrorInvalidPropertySet",
        ),
        (json!({"hasAttachments": true}), "ErrorInvalidPropertySet"),
        (json!({"notAProperty": 1}), "RequestBodyRead"),
        (json!({"isRead": "yes"}), "ErrorInvalidProperty"),
        (json!({"importance": "urgent"}), "ErrorInvalidProperty"),
        (
            json!({"flag": {"flagStatus": "maybe"}}),
            "ErrorInvalidProperty",
        ),
    ] {
        let r = patch(&e, &at, &ids[0], body.clone()).await;
        graph_error(r, 400, code).await;
    }
    let state = e.ctl.mailbox_state(UPN).await.unwrap();
    assert!(
        !state.messages[0].is_read,
        "a refused PATCH changes nothing"
    );
}

/// "message resource type": `bodyPreview` is "the first 255 characters of the message body, in
/// text format" (its line breaks included); `uniqueBody` comes only when `$select` asks for it.
#[tokio::test]
async fn body_preview_keeps_line_breaks_and_unique_body_needs_select() {
    let e = env().await;
    let text = format!(
        "Hello team,\r\n\r\nThe parcel is late.\r\n{}",
        "x".repeat(400)
    );
    let ids = e
        .ctl
        .deliver(
            UPN,
            &Delivery {
                messages: vec![json!({"subject": "late", "body_text": text})],
                ..Delivery::default()
            },
        )
        .await
        .unwrap()
        .ids;
    let (at, _) = e.tokens().await;
    let v: Value = e
        .get(&at, &format!("/users/{UPN}/messages/{}", ids[0]))
        .await
        .json()
        .await
        .unwrap();
    let preview = v["bodyPreview"].as_str().unwrap();
    assert!(
        preview.starts_with("Hello team,\r\n\r\nThe parcel is late.\r\nxxx"),
        "{preview:?}"
    );
    assert_eq!(preview.chars().count(), 255);
    assert!(v.get("uniqueBody").is_none(), "not without $select");
    let v: Value = e
        .get(
            &at,
            &format!(
                "/users/{UPN}/messages/{}?$select=uniqueBody,bodyPreview",
                ids[0]
            ),
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(v["uniqueBody"]["content"].is_string());
    let list: Value = e
        .get(&at, &e.inbox_path().await)
        .await
        .json()
        .await
        .unwrap();
    assert!(list["value"][0].get("uniqueBody").is_none());
}
