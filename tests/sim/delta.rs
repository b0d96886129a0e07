//! The folder delta query as the daemon uses it: `$select`, `Prefer: odata.maxpagesize` and
//! `IdType="ImmutableId"`, a `receivedDateTime` filter carried by the links, `@removed` for mail
//! deleted or moved out, a message read by the client coming back as an update, and expiry.

use inboxd::sim::client::Delivery;
use serde_json::{Value, json};

use crate::support::*;

fn delta_path() -> String {
    format!("/users/{UPN}/mailFolders/inbox/messages/delta")
}

/// Follows a round to its deltaLink; returns (every item, the deltaLink, each page's headers).
async fn round(
    e: &Env,
    at: &str,
    first: String,
    prefer: &str,
) -> (Vec<Value>, String, Vec<reqwest::header::HeaderMap>) {
    let mut url = first;
    let mut items = Vec::new();
    let mut headers = Vec::new();
    loop {
        let mut rq = e.http.get(&url).bearer_auth(at);
        if !prefer.is_empty() {
            rq = rq.header("Prefer", prefer);
        }
        let r = rq.send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        headers.push(r.headers().clone());
        let v: Value = r.json().await.unwrap();
        items.extend(v["value"].as_array().unwrap().iter().cloned());
        match (
            v["@odata.nextLink"].as_str(),
            v["@odata.deltaLink"].as_str(),
        ) {
            (Some(n), None) => url = n.to_owned(),
            (None, Some(d)) => return (items, d.to_owned(), headers),
            other => panic!("a page has exactly one of nextLink and deltaLink: {other:?}"),
        }
    }
}

/// "message: delta" (Graph v1.0 `message-delta`) and "Get incremental changes to messages in a
/// folder": `$select` picks the properties (the `id` always comes); the page size is asked for with
/// `Prefer: odata.maxpagesize={x}` and the answer says it applied it in `Preference-Applied`;
/// `Prefer: IdType="ImmutableId"` ("Obtain immutable identifiers for Outlook resources") makes every
/// id immutable.
#[tokio::test]
async fn delta_honours_select_max_page_size_and_immutable_ids() {
    let e = env().await;
    let delivered = e.ctl.deliver(UPN, &Delivery::generated(5)).await.unwrap();
    let (at, _) = e.tokens().await;
    let prefer = "odata.maxpagesize=2, IdType=\"ImmutableId\"";
    let (items, _, headers) = round(
        &e,
        &at,
        e.graph(&format!("{}?$select=subject,isRead", delta_path())),
        prefer,
    )
    .await;
    assert_eq!(headers.len(), 3, "5 messages in pages of 2");
    for h in &headers {
        let applied = h["preference-applied"].to_str().unwrap();
        assert!(applied.contains("odata.maxpagesize=2"), "{applied}");
        assert!(applied.contains("IdType=\"ImmutableId\""), "{applied}");
    }
    let mut ids: Vec<&str> = items.iter().map(|m| m["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    let mut want: Vec<&str> = delivered.immutable_ids.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(ids, want);
    for m in &items {
        let keys: Vec<&str> = m
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .filter(|k| !k.starts_with('@'))
            .collect();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, ["id", "isRead", "subject"], "only what was selected");
    }
}

/// "Get incremental changes to messages in a folder": delta takes `$filter` only as
/// `receivedDateTime ge|gt {value}`, on the first request; the nextLink and deltaLink carry it, so
/// later rounds keep filtering without it being sent again. Other filters are refused.
#[tokio::test]
async fn a_received_date_filter_is_given_once_and_carried_by_the_links() {
    let e = env().await;
    let old =
        |subject: &str| json!({"subject": subject, "received_date_time": "2020-01-01T00:00:00Z"});
    e.ctl
        .deliver(
            UPN,
            &Delivery {
                messages: vec![old("old one")],
                ..Delivery::generated(2)
            },
        )
        .await
        .unwrap();
    let (at, _) = e.tokens().await;
    let first = e.graph(&format!(
        "{}?$filter=receivedDateTime ge 2024-01-01T00:00:00Z",
        delta_path()
    ));
    let (items, link, _) = round(&e, &at, first, "").await;
    assert_eq!(items.len(), 2, "the old message is filtered out");
    assert!(!link.contains("filter"), "the link is opaque: {link}");
    e.ctl
        .deliver(
            UPN,
            &Delivery {
                messages: vec![old("old two")],
                ..Delivery::generated(1)
            },
        )
        .await
        .unwrap();
    let (items, _, _) = round(&e, &at, link, "").await;
    assert_eq!(items.len(), 1, "the deltaLink still filters: {items:?}");
    assert_ne!(items[0]["subject"], "old two");
    let r = e
        .get(&at, &format!("{}?$filter=isRead eq false", delta_path()))
        .await;
    graph_error(r, 400, "BadRequest").await;
}

/// "Get incremental changes to messages in a folder" and "Update message": marking a message read
/// (`PATCH {"isRead": true}`, 200 with the message) makes it an *updated* item of the next round:
/// the same id, the same `createdDateTime`, a later `lastModifiedDateTime`; a `changeType=created`
/// sync does not see it, a `changeType=updated` one does.
#[tokio::test]
async fn a_message_read_by_the_client_comes_back_as_an_update_not_as_new_mail() {
    let e = env().await;
    let ids = e.deliver(3).await;
    let (at, _) = e.tokens().await;
    let (all, link, _) = round(&e, &at, e.graph(&delta_path()), "").await;
    let (_, created_link, _) = round(
        &e,
        &at,
        e.graph(&format!("{}?changeType=created", delta_path())),
        "",
    )
    .await;
    let (_, updated_link, _) = round(
        &e,
        &at,
        e.graph(&format!("{}?changeType=updated", delta_path())),
        "",
    )
    .await;
    let before = all.iter().find(|m| m["id"] == ids[0].as_str()).unwrap();
    e.ctl.advance_clock(5.0).await.unwrap();
    let r = e
        .http
        .patch(e.graph(&format!("/users/{UPN}/messages/{}", ids[0])))
        .bearer_auth(&at)
        .json(&json!({"isRead": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (items, _, _) = round(&e, &at, link, "").await;
    assert_eq!(items.len(), 1, "{items:?}");
    let after = &items[0];
    assert_eq!(after["id"], ids[0].as_str());
    assert_eq!(after["isRead"], true);
    assert!(after.get("@removed").is_none());
    assert_eq!(after["createdDateTime"], before["createdDateTime"]);
    assert!(
        after["lastModifiedDateTime"].as_str().unwrap()
            > before["lastModifiedDateTime"].as_str().unwrap()
    );
    assert_ne!(after["changeKey"], before["changeKey"]);
    let (created, _, _) = round(&e, &at, created_link, "").await;
    assert!(created.is_empty(), "not new mail: {created:?}");
    let (updated, _, _) = round(&e, &at, updated_link, "").await;
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0]["id"], ids[0].as_str());
}

/// "Get incremental changes to messages in a folder": an item gone from the folder comes as
/// `{"@odata.type": "#microsoft.graph.message", "id": …, "@removed": {"reason": "deleted"}}` (the
/// delta overview names the reasons `changed` and `deleted`); a sync state that is no longer valid
/// answers 410 with `syncStateNotFound`, and the client starts over.
#[tokio::test]
async fn mail_moved_out_of_the_folder_is_removed_and_an_expired_token_is_gone() {
    let e = env().await;
    let ids = e.deliver(2).await;
    let (at, _) = e.tokens().await;
    let (_, link, _) = round(&e, &at, e.graph(&delta_path()), "").await;
    e.ctl
        .update_message(UPN, &ids[0], &json!({"folder": "archive"}))
        .await
        .unwrap();
    let (items, link, _) = round(&e, &at, link, "").await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["id"], ids[0].as_str());
    assert_eq!(items[0]["@odata.type"], "#microsoft.graph.message");
    assert_eq!(items[0]["@removed"]["reason"], "deleted");
    // The archive's own delta has it.
    let (archived, _, _) = round(
        &e,
        &at,
        e.graph(&format!("/users/{UPN}/mailFolders/archive/messages/delta")),
        "",
    )
    .await;
    assert_eq!(archived.len(), 1);
    assert!(archived[0].get("@removed").is_none());
    e.ctl.expire_delta(UPN).await.unwrap();
    let r = e.http.get(&link).bearer_auth(&at).send().await.unwrap();
    assert!(r.headers().contains_key("location"));
    graph_error(r, 410, "syncStateNotFound").await;
    // A fresh round works again.
    let (items, _, _) = round(&e, &at, e.graph(&delta_path()), "").await;
    assert_eq!(items.len(), 1);
}
