//! Mail folders addressed by id and by well-known name: the folder resource, and its id in
//! `parentFolderId`, list, get and delta paths.

use inboxd::sim::client::Delivery;
use serde_json::Value;

use crate::support::*;

async fn ok_json(r: reqwest::Response) -> Value {
    assert_eq!(r.status(), 200, "status");
    r.json().await.unwrap()
}

/// "Get mailFolder" (Graph v1.0 `mailfolder-get`): `GET /users/{id}/mailFolders/{id}` answers the
/// `mailFolder` resource: `id`, `displayName`, `parentFolderId`, `childFolderCount`,
/// `unreadItemCount` and `totalItemCount`. "List messages" takes `inbox` as a well-known folder name
/// in place of the id.
#[tokio::test]
async fn a_well_known_folder_name_in_any_case_gets_the_folder_with_its_own_id() {
    let e = env().await;
    e.deliver(3).await;
    let (at, _) = e.tokens().await;
    let v = ok_json(e.get(&at, &format!("/users/{UPN}/mailFolders/Inbox")).await).await;
    let id = v["id"].as_str().unwrap().to_owned();
    assert_ne!(
        id.to_ascii_lowercase(),
        "inbox",
        "a folder id, not its name"
    );
    assert_eq!(v["displayName"], "Inbox");
    assert_eq!(v["totalItemCount"], 3);
    assert_eq!(v["unreadItemCount"], 3);
    assert_eq!(v["childFolderCount"], 0);
    assert!(v["parentFolderId"].is_string());
    assert!(
        v["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("/mailFolders/$entity")
    );
    // Every spelling names the same folder; the id gets it too.
    for path in [
        format!("/users/{UPN}/mailFolders/INBOX"),
        format!("/users/{UPN}/mailfolders('inbox')"),
        format!("/users/{UPN}/mailFolders/{id}"),
        "/me/mailFolders/inbox".to_owned(),
    ] {
        let w = ok_json(e.get(&at, &path).await).await;
        assert_eq!(w["id"], id.as_str(), "{path}");
    }
    // Ids are case-sensitive: a lower-cased id is no folder.
    let r = e
        .get(
            &at,
            &format!("/users/{UPN}/mailFolders/{}", id.to_ascii_lowercase()),
        )
        .await;
    graph_error(r, 404, "ErrorItemNotFound").await;
    // Other well-known folders exist even while empty.
    for name in [
        "archive",
        "SentItems",
        "deleteditems",
        "drafts",
        "JunkEmail",
    ] {
        let w = ok_json(
            e.get(&at, &format!("/users/{UPN}/mailFolders/{name}"))
                .await,
        )
        .await;
        assert_eq!(w["totalItemCount"], 0, "{name}");
        assert_ne!(w["id"], id.as_str());
    }
}

/// "message resource type": `parentFolderId` is "the unique identifier for the message's parent
/// mailFolder"; "List messages", "Get message" and "message: delta" take `/mailFolders/{id}/…`.
#[tokio::test]
async fn messages_carry_their_folder_id_and_the_id_serves_list_get_and_delta() {
    let e = env().await;
    e.deliver(2).await;
    let custom = e
        .ctl
        .deliver(
            UPN,
            &Delivery {
                folder: Some("Projects".into()),
                ..Delivery::generated(1)
            },
        )
        .await
        .unwrap()
        .ids;
    let (at, _) = e.tokens().await;
    let inbox = ok_json(e.get(&at, &format!("/users/{UPN}/mailFolders/inbox")).await).await;
    let inbox_id = inbox["id"].as_str().unwrap();
    let by_id = ok_json(
        e.get(
            &at,
            &format!("/users/{UPN}/mailFolders/{inbox_id}/messages"),
        )
        .await,
    )
    .await;
    let items = by_id["value"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|m| m["parentFolderId"] == inbox_id));
    let msg = items[0]["id"].as_str().unwrap();
    let got = ok_json(
        e.get(
            &at,
            &format!("/users/{UPN}/mailFolders/{inbox_id}/messages/{msg}"),
        )
        .await,
    )
    .await;
    assert_eq!(got["id"], msg);
    let delta = ok_json(
        e.get(
            &at,
            &format!("/users/{UPN}/mailFolders/{inbox_id}/messages/delta"),
        )
        .await,
    )
    .await;
    assert_eq!(delta["value"].as_array().unwrap().len(), 2);
    // A folder that is not well-known is reached by the id its messages carry, not by its name.
    let m = ok_json(
        e.get(&at, &format!("/users/{UPN}/messages/{}", custom[0]))
            .await,
    )
    .await;
    let projects = m["parentFolderId"].as_str().unwrap();
    assert_ne!(projects, inbox_id);
    let list = ok_json(
        e.get(
            &at,
            &format!("/users/{UPN}/mailFolders/{projects}/messages"),
        )
        .await,
    )
    .await;
    assert_eq!(list["value"][0]["id"], custom[0].as_str());
    let r = e
        .get(&at, &format!("/users/{UPN}/mailFolders/projects/messages"))
        .await;
    graph_error(r, 404, "ErrorItemNotFound").await;
    // A message asked for under another folder is not found there.
    let r = e
        .get(
            &at,
            &format!("/users/{UPN}/mailFolders/{projects}/messages/{msg}"),
        )
        .await;
    graph_error(r, 404, "ErrorItemNotFound").await;
}
