//! Graph v1.0 mail: list, paging, filters, delta, get, PATCH, preferences, auth errors.

use inboxd::sim::client::Delivery;
use inboxd::sim::{SimOptions, spawn};
use serde_json::{Value, json};

use crate::support::*;

async fn json_of(r: reqwest::Response) -> Value {
    assert_eq!(r.status(), 200, "status");
    r.json().await.unwrap()
}

#[tokio::test]
async fn list_has_odata_shape_default_top_and_opaque_offset_paging() {
    let e = env().await;
    e.deliver(25).await;
    let (at, _) = e.tokens().await;
    let r = e.get(&at, &e.inbox_path().await).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("request-id"));
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let v: Value = r.json().await.unwrap();
    assert!(
        v["@odata.context"]
            .as_str()
            .unwrap()
            .contains("$metadata#users('adele@contoso.example')/mailFolders('inbox')/messages")
    );
    assert_eq!(
        v["value"].as_array().unwrap().len(),
        10,
        "default $top is 10"
    );
    let m = &v["value"][0];
    assert!(m["@odata.etag"].as_str().unwrap().starts_with("W/\""));
    for k in [
        "id",
        "subject",
        "receivedDateTime",
        "from",
        "toRecipients",
        "ccRecipients",
        "body",
        "internetMessageId",
        "conversationId",
        "isRead",
        "hasAttachments",
    ] {
        assert!(m.get(k).is_some(), "missing {k}");
    }
    let rdt = m["receivedDateTime"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(rdt).is_ok() && rdt.ends_with('Z'));
    let next = v["@odata.nextLink"].as_str().unwrap();
    assert!(
        next.starts_with(&format!("{}/v1.0/users/", e.url)) && next.contains("$skip=10"),
        "{next}"
    );
    // Follow every page.
    let mut ids: Vec<String> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    let mut link = Some(next.to_owned());
    while let Some(l) = link {
        let v = json_of(e.http.get(&l).bearer_auth(&at).send().await.unwrap()).await;
        ids.extend(
            v["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_owned()),
        );
        link = v["@odata.nextLink"].as_str().map(str::to_owned);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 25);
}

#[tokio::test]
async fn changing_messages_between_pages_shifts_the_result_set() {
    let e = env().await;
    e.deliver(25).await;
    let (at, _) = e.tokens().await;
    let path = format!("{}?$filter=isRead%20eq%20false", e.inbox_path().await);
    let v = json_of(e.get(&at, &path).await).await;
    for m in v["value"].as_array().unwrap() {
        let id = m["id"].as_str().unwrap();
        let r = e
            .http
            .patch(e.graph(&format!("/users/{UPN}/messages/{id}")))
            .bearer_auth(&at)
            .json(&json!({"isRead": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let next = v["@odata.nextLink"].as_str().unwrap();
    let v = json_of(e.http.get(next).bearer_auth(&at).send().await.unwrap()).await;
    // $skip=10 over the 15 still unread: only 5 come back, 10 are skipped, as with Graph.
    assert_eq!(v["value"].as_array().unwrap().len(), 5);
    assert!(v.get("@odata.nextLink").is_none());
}

#[tokio::test]
async fn top_limits_select_and_folder_spellings() {
    let e = env().await;
    e.deliver(3).await;
    let (at, _) = e.tokens().await;
    let inbox = e.inbox_path().await;
    let r = e.get(&at, &format!("{inbox}?$top=1001")).await;
    graph_error(r, 400, "ErrorInvalidArgument").await;
    let v = json_of(e.get(&at, &format!("{inbox}?$top=1000")).await).await;
    assert_eq!(v["value"].as_array().unwrap().len(), 3);
    let v = json_of(
        e.get(&at, &format!("{inbox}?$select=subject,isRead&$top=2"))
            .await,
    )
    .await;
    let keys: Vec<&String> = v["value"][0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["@odata.etag", "id", "isRead", "subject"]);
    assert!(
        v["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("messages(subject,isRead)")
    );
    assert!(
        v["@odata.nextLink"]
            .as_str()
            .unwrap()
            .contains("$select=subject%2CisRead")
    );
    graph_error(
        e.get(&at, &format!("{inbox}?$select=nope")).await,
        400,
        "RequestBroker--ParseUri",
    )
    .await;
    for p in [
        format!("/users/{UPN}/mailfolders/inbox/messages"),
        format!("/users/{UPN}/mailFolders/Inbox/messages"),
        format!("/users/{UPN}/mailfolders('Inbox')/messages"),
        format!("/users/{UPN}/messages"),
        "/me/mailFolders/inbox/messages".to_owned(),
    ] {
        let v = json_of(e.get(&at, &p).await).await;
        assert_eq!(v["value"].as_array().unwrap().len(), 3, "{p}");
    }
    graph_error(
        e.get(
            &at,
            &format!("/users/{UPN}/mailFolders/nosuchfolder/messages"),
        )
        .await,
        404,
        "ErrorItemNotFound",
    )
    .await;
}

#[tokio::test]
async fn filter_orderby_and_the_inefficient_filter_rule() {
    let e = env().await;
    let ids = e.deliver(6).await;
    let (at, _) = e.tokens().await;
    e.ctl
        .update_message(UPN, &ids[0], &json!({"is_read": true}))
        .await
        .unwrap();
    e.ctl
        .update_message(UPN, &ids[1], &json!({"is_read": true}))
        .await
        .unwrap();
    let inbox = e.inbox_path().await;
    let v = json_of(
        e.get(&at, &format!("{inbox}?$filter=isRead eq false"))
            .await,
    )
    .await;
    assert_eq!(v["value"].as_array().unwrap().len(), 4);
    assert!(
        v["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["isRead"] == false)
    );
    let v = json_of(e.get(&at, &format!("{inbox}?$filter=receivedDateTime ge 1900-01-01T00:00:00Z and isRead eq false&$orderby=receivedDateTime asc")).await).await;
    let got: Vec<&str> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["receivedDateTime"].as_str().unwrap())
        .collect();
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(got, sorted);
    assert_eq!(got.len(), 4);
    let v = json_of(
        e.get(
            &at,
            &format!("{inbox}?$filter=receivedDateTime gt 2999-01-01T00:00:00Z"),
        )
        .await,
    )
    .await;
    assert_eq!(v["value"].as_array().unwrap().len(), 0);
    let v = json_of(
        e.get(&at, &format!("{inbox}?$orderby=receivedDateTime desc"))
            .await,
    )
    .await;
    let got: Vec<&str> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["receivedDateTime"].as_str().unwrap())
        .collect();
    let mut sorted = got.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(got, sorted);
    let r = e
        .get(
            &at,
            &format!("{inbox}?$filter=isRead eq false&$orderby=receivedDateTime"),
        )
        .await;
    let v = graph_error(r, 400, "InefficientFilter").await;
    assert_eq!(
        v["error"]["message"],
        "The restriction or sort order is too complex for this operation."
    );
    graph_error(
        e.get(&at, &format!("{inbox}?$filter=isRead eq maybe"))
            .await,
        400,
        "BadRequest",
    )
    .await;
}

#[tokio::test]
async fn get_patch_immutable_ids_and_body_type_preferences() {
    let e = env().await;
    let delivered = e.ctl.deliver(UPN, &Delivery::generated(2)).await.unwrap();
    let (at, _) = e.tokens().await;
    let id = &delivered.ids[0];
    let imm = &delivered.immutable_ids[0];
    assert_ne!(id, imm);
    let r = e.get(&at, &format!("/users/{UPN}/messages/{id}")).await;
    assert!(r.headers().get("preference-applied").is_none());
    let v = json_of(r).await;
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["body"]["contentType"], "html");
    let r = e
        .http
        .get(e.graph(&format!("/users/{UPN}/messages/{imm}")))
        .bearer_auth(&at)
        .header("Prefer", "IdType=\"ImmutableId\"")
        .header("Prefer", "outlook.body-content-type=\"text\"")
        .send()
        .await
        .unwrap();
    let applied = r.headers()["preference-applied"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        applied.contains("outlook.body-content-type=\"text\"")
            && applied.contains("IdType=\"ImmutableId\""),
        "{applied}"
    );
    let v = json_of(r).await;
    assert_eq!(
        v["id"],
        imm.as_str(),
        "immutable form asked for, immutable form returned"
    );
    assert_eq!(v["body"]["contentType"], "text");
    // Immutable ids are stable: the same on every read.
    let r = e
        .http
        .get(e.graph(&format!("/users/{UPN}/messages/{id}")))
        .bearer_auth(&at)
        .header("Prefer", "IdType=\"ImmutableId\"")
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r).await["id"], imm.as_str());
    // PATCH with the immutable id: 200 with the message.
    let r = e
        .http
        .patch(e.graph(&format!("/users/{UPN}/messages/{imm}")))
        .bearer_auth(&at)
        .json(&json!({"isRead": true}))
        .send()
        .await
        .unwrap();
    let v = json_of(r).await;
    assert_eq!(v["isRead"], true);
    assert!(v.get("subject").is_some());
    let state = e.ctl.mailbox_state(UPN).await.unwrap();
    assert_eq!((state.total, state.read, state.unread), (2, 1, 1));
    assert!(state.messages.iter().any(|m| m.id == *id && m.is_read));
    // Errors.
    graph_error(
        e.get(&at, &format!("/users/{UPN}/messages/AAMkNOPE")).await,
        400,
        "ErrorInvalidIdMalformed",
    )
    .await;
    e.ctl.delete_message(UPN, &delivered.ids[1]).await.unwrap();
    graph_error(
        e.get(&at, &format!("/users/{UPN}/messages/{}", delivered.ids[1]))
            .await,
        404,
        "ErrorItemNotFound",
    )
    .await;
    let r = e
        .http
        .patch(e.graph(&format!("/users/{UPN}/messages/{id}")))
        .bearer_auth(&at)
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    graph_error(r, 400, "BadRequest").await;
    let r = e
        .http
        .delete(e.graph(&format!("/users/{UPN}/messages/{id}")))
        .bearer_auth(&at)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = e
        .http
        .patch(e.graph(&format!("/users/{UPN}/messages/{id}")))
        .bearer_auth(&at)
        .header("content-type", "application/json")
        .body(vec![b' '; 5 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    graph_error(e.get(&at, "/users/x@y/calendars").await, 400, "BadRequest").await;
}

#[tokio::test]
async fn explicit_messages_attachments_and_meeting_requests() {
    let e = env().await;
    let d = e
        .ctl
        .deliver(
            UPN,
            &Delivery {
                messages: vec![json!({
                    "subject": "Invoice 42",
                    "from": {"name": "Ada", "address": "ada@contoso.com"},
                    "to": ["adele@contoso.example"],
                    "cc": [{"name": "Bob", "address": "bob@fabrikam.com"}],
                    "body_html": "<p>Hi</p>",
                    "body_text": "Hi",
                    "internet_message_id": "<abc@contoso.com>",
                    "attachments": [{"name": "a.txt", "contentType": "text/plain", "contentBytes": "aGVsbG8="}],
                })],
                count: 5,
                meeting_requests: true,
                ..Delivery::default()
            },
        )
        .await
        .unwrap();
    let (at, _) = e.tokens().await;
    let id = &d.ids[0];
    let v = json_of(
        e.get(
            &at,
            &format!("/users/{UPN}/messages/{id}?$expand=attachments"),
        )
        .await,
    )
    .await;
    assert_eq!(v["subject"], "Invoice 42");
    assert_eq!(v["from"]["emailAddress"]["address"], "ada@contoso.com");
    assert_eq!(v["ccRecipients"][0]["emailAddress"]["name"], "Bob");
    assert_eq!(v["internetMessageId"], "<abc@contoso.com>");
    assert_eq!(v["hasAttachments"], true);
    assert_eq!(
        v["attachments"][0]["@odata.type"],
        "#microsoft.graph.fileAttachment"
    );
    assert_eq!(v["attachments"][0]["contentBytes"], "aGVsbG8=");
    assert_eq!(v["attachments"][0]["size"], 6);
    let v = json_of(
        e.get(&at, &format!("/users/{UPN}/messages/{id}/attachments"))
            .await,
    )
    .await;
    assert_eq!(v["value"][0]["name"], "a.txt");
    let v = json_of(
        e.get(&at, &format!("{}?$top=50", e.inbox_path().await))
            .await,
    )
    .await;
    let events: Vec<&Value> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["@odata.type"] == "#microsoft.graph.eventMessage")
        .collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["meetingMessageType"], "meetingRequest");
}

#[tokio::test]
async fn access_token_checks_give_401_and_403() {
    let e = env().await;
    let (at, _) = e.tokens().await;
    let inbox = e.inbox_path().await;
    let r = e.http.get(e.graph(&inbox)).send().await.unwrap();
    let v = graph_error(r, 401, "InvalidAuthenticationToken").await;
    assert_eq!(v["error"]["message"], "Access token is empty.");
    graph_error(
        e.get("garbage", &inbox).await,
        401,
        "InvalidAuthenticationToken",
    )
    .await;
    // A token from another simulator instance is foreign.
    let other = env().await;
    let (foreign, _) = other.tokens().await;
    graph_error(
        e.get(&foreign, &inbox).await,
        401,
        "InvalidAuthenticationToken",
    )
    .await;
    // client-request-id is echoed.
    let r = e
        .http
        .get(e.graph(&inbox))
        .bearer_auth("x")
        .header("client-request-id", "11111111-1111-1111-1111-111111111111")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["client-request-id"],
        "11111111-1111-1111-1111-111111111111"
    );
    let v = graph_error(r, 401, "InvalidAuthenticationToken").await;
    assert_eq!(
        v["error"]["innerError"]["client-request-id"],
        "11111111-1111-1111-1111-111111111111"
    );
    // Another mailbox the user has no access to: 403; after a grant: 200.
    e.ctl
        .register_mailbox("shared@contoso.example")
        .await
        .unwrap();
    let shared = "/users/shared@contoso.example/mailFolders/inbox/messages";
    let v = graph_error(e.get(&at, shared).await, 403, "ErrorAccessDenied").await;
    assert_eq!(
        v["error"]["message"],
        "Access is denied. Check credentials and try again."
    );
    e.ctl
        .grant_mailbox(UPN, "shared@contoso.example")
        .await
        .unwrap();
    assert_eq!(e.get(&at, shared).await.status(), 200);
    graph_error(
        e.get(&at, "/users/ghost@contoso.example/messages").await,
        404,
        "ErrorInvalidUser",
    )
    .await;
    // Expired access token.
    e.ctl.advance_clock(3600.0).await.unwrap();
    let v = graph_error(e.get(&at, &inbox).await, 401, "InvalidAuthenticationToken").await;
    assert_eq!(
        v["error"]["message"],
        "Lifetime validation failed, the token is expired."
    );
}

#[tokio::test]
async fn delta_rounds_with_skip_and_delta_tokens_removed_items_and_expiry() {
    let e = env().await;
    let ids = e.deliver(7).await;
    let (at, _) = e.tokens().await;
    let delta = format!("/users/{UPN}/mailFolders/inbox/messages/delta?$select=subject,isRead");
    let page = |url: String| {
        let http = e.http.clone();
        let at = at.clone();
        async move {
            json_of(
                http.get(url)
                    .bearer_auth(at)
                    .header("Prefer", "odata.maxpagesize=3")
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    // Round 1: 3 + 3 + 1, nextLinks carry $skiptoken, the last page a $deltatoken.
    let mut seen = Vec::new();
    let mut url = e.graph(&delta);
    let delta_link = loop {
        let v = page(url).await;
        seen.extend(
            v["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_owned()),
        );
        if let Some(n) = v["@odata.nextLink"].as_str() {
            assert!(n.contains("$skiptoken="));
            url = n.to_owned();
        } else {
            let d = v["@odata.deltaLink"].as_str().unwrap().to_owned();
            assert!(d.contains("$deltatoken="));
            break d;
        }
    };
    assert_eq!(seen.len(), 7);
    // Nothing changed: an empty round.
    let v = page(delta_link.clone()).await;
    assert_eq!(v["value"].as_array().unwrap().len(), 0);
    let delta_link = v["@odata.deltaLink"].as_str().unwrap().to_owned();
    // Changes: one new, one read (through Graph), one deleted.
    let new = e.deliver(1).await;
    let r = e
        .http
        .patch(e.graph(&format!("/users/{UPN}/messages/{}", ids[0])))
        .bearer_auth(&at)
        .json(&json!({"isRead": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    e.ctl.delete_message(UPN, &ids[1]).await.unwrap();
    let v = page(delta_link.clone()).await;
    let items = v["value"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{v}");
    let removed: Vec<&Value> = items
        .iter()
        .filter(|m| m.get("@removed").is_some())
        .collect();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0]["id"], ids[1].as_str());
    assert_eq!(removed[0]["@removed"]["reason"], "deleted");
    assert!(items.iter().any(|m| m["id"] == new[0].as_str()));
    assert!(
        items
            .iter()
            .any(|m| m["id"] == ids[0].as_str() && m["isRead"] == true)
    );
    // Expired and garbled tokens: 410 syncStateNotFound.
    e.ctl.expire_delta(UPN).await.unwrap();
    let r = e
        .http
        .get(&delta_link)
        .bearer_auth(&at)
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("location"));
    graph_error(r, 410, "syncStateNotFound").await;
    let r = e
        .get(
            &at,
            &format!("/users/{UPN}/mailFolders/inbox/messages/delta?$deltatoken=garbage"),
        )
        .await;
    graph_error(r, 410, "syncStateNotFound").await;
    // Delta refuses an isRead filter.
    let r = e
        .get(
            &at,
            &format!("/users/{UPN}/mailFolders/inbox/messages/delta?$filter=isRead eq false"),
        )
        .await;
    graph_error(r, 400, "BadRequest").await;
}

#[tokio::test]
async fn the_simulator_serves_https_with_given_files() {
    let dir = tempfile::tempdir().unwrap();
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let sim = spawn(SimOptions {
        tls: Some(inboxd::sim::TlsFiles {
            cert_pem: cert.clone(),
            key_pem: key.clone(),
        }),
        ..SimOptions::default()
    })
    .unwrap();
    assert!(sim.url().starts_with("https://127.0.0.1:"));
    let ca = reqwest::Certificate::from_pem(ck.cert.pem().as_bytes()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let r = http
        .get(format!(
            "{}/common/v2.0/.well-known/openid-configuration",
            sim.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    sim.stop();
    std::fs::write(&key, "not a key").unwrap();
    assert!(
        spawn(SimOptions {
            tls: Some(inboxd::sim::TlsFiles {
                cert_pem: cert,
                key_pem: key
            }),
            ..SimOptions::default()
        })
        .is_err()
    );
}

#[tokio::test]
async fn delta_change_type_and_list_count() {
    let e = env().await;
    let ids = e.deliver(3).await;
    let (at, _) = e.tokens().await;
    let v = json_of(
        e.get(&at, &format!("{}?$count=true&$top=1", e.inbox_path().await))
            .await,
    )
    .await;
    assert_eq!(v["@odata.count"], 3);
    let first = json_of(
        e.get(
            &at,
            &format!("/users/{UPN}/mailFolders/inbox/messages/delta?changeType=created"),
        )
        .await,
    )
    .await;
    assert_eq!(first["value"].as_array().unwrap().len(), 3);
    let link = first["@odata.deltaLink"].as_str().unwrap().to_owned();
    e.ctl
        .update_message(UPN, &ids[0], &json!({"is_read": true}))
        .await
        .unwrap();
    let new = e.deliver(1).await;
    let v = json_of(e.http.get(&link).bearer_auth(&at).send().await.unwrap()).await;
    let got: Vec<&str> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        [new[0].as_str()],
        "only creations in a changeType=created round"
    );
    graph_error(
        e.get(
            &at,
            &format!("/users/{UPN}/mailFolders/inbox/messages/delta?changeType=moved"),
        )
        .await,
        400,
        "BadRequest",
    )
    .await;
}
