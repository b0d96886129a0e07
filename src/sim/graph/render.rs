//! Graph's JSON for messages and attachments: every `microsoft.graph.message` property (or the
//! `$select`ed ones), event messages, etags, folder ids, `@odata.context` URLs.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::utf8_percent_encode;
use serde_json::{Map, Value, json};

use super::folders::folder_id;
use super::odata::QUERY_VALUE;
use crate::sim::mailgen::preview;
use crate::sim::state::{Address, Attachment, Mailbox, Message, message_id};
use crate::sim::util;

/// Options controlling how messages are serialised.
pub struct View<'a> {
    pub select: Option<Vec<String>>,
    pub immutable: bool,
    pub text_body: bool,
    pub expand_attachments: bool,
    pub always_type: bool,
    pub mailbox: &'a Mailbox,
}

fn recipients(list: &[Address]) -> Value {
    Value::Array(
        list.iter()
            .map(|a| json!({"emailAddress": {"name": a.name, "address": a.address}}))
            .collect(),
    )
}

fn etag_inner(m: &Message) -> String {
    let mut raw = Vec::with_capacity(24);
    raw.extend_from_slice(b"\x09\x00\x00\x00\x16\x00\x00\x00");
    raw.extend_from_slice(&m.seq.to_be_bytes());
    raw.extend_from_slice(&m.changed_version.to_be_bytes());
    STANDARD.encode(raw)
}

pub fn attachment_json(m: &Message, i: usize, a: &Attachment, v: &View<'_>) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.fileAttachment",
        "@odata.mediaContentType": a.content_type,
        "id": format!("{}AAABEgAQ{}", message_id(v.mailbox.tag, m.seq, v.immutable), i),
        "lastModifiedDateTime": util::graph_datetime(m.received),
        "name": a.name,
        "contentType": a.content_type,
        "size": a.size,
        "isInline": a.is_inline,
        "contentId": Value::Null,
        "contentLocation": Value::Null,
        "contentBytes": a.content_bytes,
    })
}

pub fn message_json(m: &Message, v: &View<'_>) -> Value {
    let id = message_id(v.mailbox.tag, m.seq, v.immutable);
    let received = util::graph_datetime(m.received);
    let body = if v.text_body {
        json!({"contentType": "text", "content": m.body_text})
    } else {
        json!({"contentType": "html", "content": m.body_html})
    };
    let from = json!({"emailAddress": {"name": m.from.name, "address": m.from.address}});
    let mut all = Map::new();
    let mut put = |k: &str, val: Value| {
        all.insert(k.to_owned(), val);
    };
    put("id", Value::String(id.clone()));
    put("createdDateTime", received.clone().into());
    put(
        "lastModifiedDateTime",
        util::graph_datetime(m.last_modified).into(),
    );
    put("changeKey", etag_inner(m).into());
    put("categories", json!(m.categories));
    put("receivedDateTime", received.clone().into());
    put("sentDateTime", received.clone().into());
    put("hasAttachments", (!m.attachments.is_empty()).into());
    put("internetMessageId", m.internet_message_id.clone().into());
    put("subject", m.subject.clone().into());
    put("bodyPreview", preview(&m.body_text).into());
    put("importance", m.importance.clone().into());
    put("parentFolderId", folder_id(v.mailbox, &m.folder).into());
    put("conversationId", m.conversation_id.clone().into());
    put(
        "conversationIndex",
        STANDARD.encode(m.seq.to_be_bytes()).into(),
    );
    put(
        "isDeliveryReceiptRequested",
        m.is_delivery_receipt_requested.into(),
    );
    put("isReadReceiptRequested", m.is_read_receipt_requested.into());
    put("isRead", m.is_read.into());
    put("isDraft", false.into());
    put(
        "webLink",
        format!(
            "https://outlook.office365.com/owa/?ItemID={}&exvsurl=1&viewmodel=ReadMessageItem",
            utf8_percent_encode(&id, QUERY_VALUE)
        )
        .into(),
    );
    put(
        "inferenceClassification",
        m.inference_classification.clone().into(),
    );
    put("body", body.clone());
    put("sender", from.clone());
    put("from", from);
    put("toRecipients", recipients(&m.to));
    put("ccRecipients", recipients(&m.cc));
    put("bccRecipients", recipients(&m.bcc));
    put("replyTo", json!([]));
    put(
        "flag",
        m.flag
            .clone()
            .unwrap_or_else(|| json!({"flagStatus": "notFlagged"})),
    );
    if let Some(mt) = &m.meeting {
        put("meetingMessageType", "meetingRequest".into());
        put(
            "startDateTime",
            json!({"dateTime": util::ticks_datetime(mt.start), "timeZone": "UTC"}),
        );
        put(
            "endDateTime",
            json!({"dateTime": util::ticks_datetime(mt.end), "timeZone": "UTC"}),
        );
        put(
            "location",
            json!({"displayName": mt.location, "locationType": "default", "uniqueIdType": "unknown"}),
        );
        put("type", "singleInstance".into());
        put("isOutOfDate", false.into());
        put("isAllDay", false.into());
        put("isDelegated", false.into());
    }
    if v.expand_attachments {
        put(
            "attachments",
            Value::Array(
                m.attachments
                    .iter()
                    .enumerate()
                    .map(|(i, a)| attachment_json(m, i, a, v))
                    .collect(),
            ),
        );
    }
    let mut out = Map::new();
    if m.meeting.is_some() {
        out.insert("@odata.type".into(), "#microsoft.graph.eventMessage".into());
    } else if v.always_type {
        out.insert("@odata.type".into(), "#microsoft.graph.message".into());
    }
    out.insert(
        "@odata.etag".into(),
        format!("W/\"{}\"", etag_inner(m)).into(),
    );
    match &v.select {
        None => out.extend(all),
        Some(sel) => {
            out.insert("id".into(), id.into());
            // Graph leaves `uniqueBody` out unless it is `$select`ed.
            all.insert("uniqueBody".into(), body);
            for s in sel {
                if let Some(val) = all.get(s) {
                    out.insert(s.clone(), val.clone());
                }
            }
            if v.expand_attachments
                && let Some(a) = all.get("attachments")
            {
                out.insert("attachments".into(), a.clone());
            }
        }
    }
    Value::Object(out)
}

pub fn context_url(
    origin: &str,
    mailbox: &str,
    folder: Option<&str>,
    select: &Option<Vec<String>>,
) -> String {
    let sel = select
        .as_ref()
        .map(|s| format!("({})", s.join(",")))
        .unwrap_or_default();
    match folder {
        Some(f) => {
            format!("{origin}/v1.0/$metadata#users('{mailbox}')/mailFolders('{f}')/messages{sel}")
        }
        None => format!("{origin}/v1.0/$metadata#users('{mailbox}')/messages{sel}"),
    }
}
