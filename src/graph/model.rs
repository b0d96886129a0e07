//! Graph's JSON as it comes over the wire, decoded leniently and converted to domain types by hand.
//!
//! Only this module knows Graph's field names. Unknown fields are ignored; missing optional fields
//! are `None`, so a meeting request or a message without a body does not fail a whole page.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Address, Attachment, ChannelId, MailItem, Mailbox};

/// One page of a message list.
#[derive(Debug, Deserialize)]
pub struct MessagePage {
    /// The messages on this page.
    #[serde(default)]
    pub value: Vec<WireMessage>,
    /// The next page, to be followed as-is; absent on the last page.
    #[serde(rename = "@odata.nextLink")]
    pub next_link: Option<String>,
}

/// A page of a list or a delta round, item by item: a page whose envelope decodes is never lost to
/// one item that does not (the item is reported with its decode error instead). Items are kept as
/// their JSON text and decoded once each, straight into [`WireMessage`] (no `serde_json::Value`
/// tree in between: that tree cost more than the decode itself on a page of 50 messages).
#[derive(Debug, Deserialize)]
pub struct RawPage {
    /// The items, still undecoded.
    #[serde(default)]
    pub value: Vec<Box<serde_json::value::RawValue>>,
    /// The next page of this list or round, to be followed as-is.
    #[serde(rename = "@odata.nextLink")]
    pub next_link: Option<String>,
    /// The end of a delta round: where the next round starts.
    #[serde(rename = "@odata.deltaLink")]
    pub delta_link: Option<String>,
}

/// A page, decoded item by item.
#[derive(Debug, Default)]
pub struct Page {
    /// The messages that decoded.
    pub messages: Vec<WireMessage>,
    /// Ids of `@removed` entries (a delta round's deletions and moves out of the folder).
    pub removed: Vec<String>,
    /// Items that did not decode: their id (when it could be read) and the error.
    pub malformed: Vec<(String, String)>,
    /// The next page of this list or round.
    pub next_link: Option<String>,
    /// The end of a delta round.
    pub delta_link: Option<String>,
}

impl From<RawPage> for Page {
    fn from(raw: RawPage) -> Self {
        let mut page = Page {
            next_link: raw.next_link,
            delta_link: raw.delta_link,
            ..Page::default()
        };
        for item in raw.value {
            match serde_json::from_str::<WireMessage>(item.get()) {
                Ok(message) if message.removed.is_some() => page.removed.push(message.id),
                Ok(message) => page.messages.push(message),
                Err(err) => {
                    // Only the id and `@removed` are needed to tell a removal from a bad item.
                    let probe = serde_json::from_str::<ItemProbe>(item.get()).unwrap_or_default();
                    if probe.removed.is_some() {
                        page.removed.extend(probe.id);
                    } else {
                        page.malformed.push((
                            probe.id.unwrap_or_default(),
                            format!("Graph sent a message inboxd cannot read: {err}"),
                        ));
                    }
                }
            }
        }
        page
    }
}

/// What is read of an item that does not decode as a message.
#[derive(Debug, Default, Deserialize)]
struct ItemProbe {
    #[serde(default, deserialize_with = "lenient_string")]
    id: Option<String>,
    #[serde(rename = "@removed")]
    removed: Option<serde::de::IgnoredAny>,
}

/// A string, or nothing when the value is of another type.
fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(value.as_str().map(str::to_owned))
}

/// A message (or an `eventMessage`, or another item type) as Graph sends it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireMessage {
    /// Graph's id (immutable when asked with `Prefer: IdType="ImmutableId"`).
    pub id: String,
    /// Present on a delta round's removals (deleted, or moved out of the folder).
    #[serde(rename = "@removed", default)]
    pub removed: Option<serde::de::IgnoredAny>,
    /// The item type, e.g. `#microsoft.graph.eventMessage`.
    #[serde(rename = "@odata.type")]
    pub odata_type: Option<String>,
    /// The Message-ID header.
    pub internet_message_id: Option<String>,
    /// The subject.
    pub subject: Option<String>,
    /// The sender.
    pub from: Option<WireRecipient>,
    /// Direct recipients.
    #[serde(default)]
    pub to_recipients: Option<Vec<WireRecipient>>,
    /// Copied recipients.
    #[serde(default)]
    pub cc_recipients: Option<Vec<WireRecipient>>,
    /// When the mailbox received it (ISO 8601, UTC).
    pub received_date_time: Option<DateTime<Utc>>,
    /// The body, in the content type asked for with `Prefer: outlook.body-content-type`.
    pub body: Option<WireBody>,
    /// Whether it has attachments.
    pub has_attachments: Option<bool>,
    /// Whether it was read.
    pub is_read: Option<bool>,
    /// The conversation id.
    pub conversation_id: Option<String>,
}

/// A recipient wrapper, `{"emailAddress": {"name", "address"}}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireRecipient {
    /// The address.
    pub email_address: Option<WireEmailAddress>,
}

/// An address.
#[derive(Debug, Deserialize)]
pub struct WireEmailAddress {
    /// The display name.
    pub name: Option<String>,
    /// The address.
    pub address: Option<String>,
}

/// A body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireBody {
    /// `text` or `html`.
    pub content_type: Option<String>,
    /// The content.
    pub content: Option<String>,
}

/// A list of attachments.
#[derive(Debug, Deserialize)]
pub struct AttachmentPage {
    /// The attachments.
    #[serde(default)]
    pub value: Vec<WireAttachment>,
}

/// An attachment; `contentBytes` only for file attachments.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireAttachment {
    /// The id.
    pub id: String,
    /// The type, e.g. `#microsoft.graph.fileAttachment`.
    #[serde(rename = "@odata.type")]
    pub odata_type: Option<String>,
    /// The name.
    pub name: Option<String>,
    /// The MIME type.
    pub content_type: Option<String>,
    /// The size in bytes.
    pub size: Option<u64>,
    /// Whether it is inline.
    pub is_inline: Option<bool>,
    /// Base64 content.
    pub content_bytes: Option<String>,
}

/// A `$batch` response.
#[derive(Debug, Deserialize)]
pub struct BatchResponse {
    /// One response per request, in any order.
    #[serde(default)]
    pub responses: Vec<BatchItemResponse>,
}

/// A `$batch` request, serialized straight from these types (no `serde_json::Value` per item).
#[derive(Debug, Serialize)]
pub struct BatchRequest {
    /// At most 20 requests.
    pub requests: Vec<BatchRequestItem>,
}

/// One request of a `$batch`.
#[derive(Debug, Serialize)]
pub struct BatchRequestItem {
    /// Its id in the batch (the response items carry it).
    pub id: String,
    /// The HTTP method.
    pub method: &'static str,
    /// The URL, relative to the version (`/users/{mailbox}/messages/{id}`).
    pub url: String,
    /// Its headers.
    pub headers: BatchRequestHeaders,
    /// Its JSON body.
    pub body: MarkReadBody,
}

/// The headers of a mark-read request in a `$batch`.
#[derive(Debug, Serialize)]
pub struct BatchRequestHeaders {
    /// `application/json`.
    #[serde(rename = "Content-Type")]
    pub content_type: &'static str,
    /// `IdType="ImmutableId"`.
    #[serde(rename = "Prefer")]
    pub prefer: &'static str,
}

/// `{"isRead": true}`.
#[derive(Debug, Serialize)]
pub struct MarkReadBody {
    /// Whether the message is read.
    #[serde(rename = "isRead")]
    pub is_read: bool,
}

/// One item of a `$batch` response.
#[derive(Debug, Deserialize)]
pub struct BatchItemResponse {
    /// The request's id.
    pub id: String,
    /// Its HTTP status.
    pub status: u16,
    /// Its headers (e.g. `Retry-After` on a 429 item); names in any case.
    #[serde(default)]
    pub headers: Option<serde_json::Map<String, serde_json::Value>>,
    /// Its body, undecoded: only a failed item's is read (as an error body).
    #[serde(default)]
    pub body: Option<Box<serde_json::value::RawValue>>,
}

/// Graph's error body, `{"error": {"code", "message", "innerError": {…}}}`.
#[derive(Debug, Default, Deserialize)]
pub struct ErrorBody {
    /// The error.
    #[serde(default)]
    pub error: ErrorDetail,
}

/// The error object; `innerError` is read case-insensitively by [`ErrorDetail::request_id`].
#[derive(Debug, Default, Deserialize)]
pub struct ErrorDetail {
    /// The code to branch on (`ApplicationThrottled`, `InvalidAuthenticationToken`, …); may be empty.
    #[serde(default)]
    pub code: String,
    /// Human text; never branched on.
    #[serde(default)]
    pub message: String,
    /// The rest, including `innerError`/`innererror`.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

impl ErrorDetail {
    /// The `request-id` from the inner error, whatever the case of its key.
    pub fn request_id(&self) -> Option<String> {
        let inner = self
            .rest
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case("innererror"))?
            .1;
        inner
            .get("request-id")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    }
}

fn address(wire: &WireRecipient) -> Option<Address> {
    let email = wire.email_address.as_ref()?;
    Some(Address {
        name: email.name.clone().unwrap_or_default(),
        address: email.address.clone().unwrap_or_default(),
    })
}

fn addresses(wire: &Option<Vec<WireRecipient>>) -> Vec<Address> {
    wire.as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(address)
        .collect()
}

impl WireMessage {
    /// Converts to the domain's mail item (attachments are added separately).
    pub fn into_mail(self, channel_id: ChannelId, mailbox: &Mailbox) -> MailItem {
        let (body_content_type, body) = match self.body {
            Some(body) => (
                body.content_type
                    .unwrap_or_else(|| "html".to_owned())
                    .to_ascii_lowercase(),
                body.content.unwrap_or_default(),
            ),
            None => ("text".to_owned(), String::new()),
        };
        MailItem {
            channel_id,
            mailbox: mailbox.clone(),
            message_id: self.id,
            internet_message_id: self.internet_message_id,
            kind: self
                .odata_type
                .unwrap_or_else(|| "#microsoft.graph.message".to_owned()),
            received_at: self.received_date_time,
            from: self.from.as_ref().and_then(address),
            to: addresses(&self.to_recipients),
            cc: addresses(&self.cc_recipients),
            subject: self.subject.unwrap_or_default(),
            body_content_type,
            body,
            conversation_id: self.conversation_id,
            has_attachments: self.has_attachments.unwrap_or(false),
            attachments: Vec::new(),
        }
    }
}

impl WireAttachment {
    /// Converts to the domain's attachment, keeping the content only up to `max_bytes`.
    pub fn into_attachment(self, max_bytes: u64) -> Attachment {
        let size_bytes = self.size.unwrap_or(0);
        let content_base64 = self.content_bytes.filter(|content| {
            // Base64 is 4/3 of the content; trust the decoded length, not the reported size alone.
            size_bytes <= max_bytes && (content.len() as u64) / 4 * 3 <= max_bytes + 3
        });
        Attachment {
            id: self.id,
            name: self.name.unwrap_or_default(),
            content_type: self
                .content_type
                .unwrap_or_else(|| "application/octet-stream".to_owned()),
            size_bytes,
            is_inline: self.is_inline.unwrap_or(false),
            content_base64,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_page_with_a_message_and_a_meeting_request_decodes() {
        let json = r##"{
          "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('a')/messages",
          "value": [
            {"@odata.type": "#microsoft.graph.message", "@odata.etag": "W/\"x\"", "id": "AAMk1",
             "internetMessageId": "<1@contoso.com>", "subject": "Hello", "isRead": false,
             "receivedDateTime": "2024-05-01T10:00:00Z", "hasAttachments": true,
             "from": {"emailAddress": {"name": "Ann", "address": "ann@contoso.com"}},
             "toRecipients": [{"emailAddress": {"address": "support@contoso.com"}}],
             "ccRecipients": [], "body": {"contentType": "Text", "content": "hi"}},
            {"@odata.type": "#microsoft.graph.eventMessage", "id": "AAMk2", "meetingMessageType": "meetingRequest"}
          ],
          "@odata.nextLink": "https://graph.microsoft.com/v1.0/users/a/messages?$skip=10"
        }"##;
        let page: MessagePage = serde_json::from_str(json).unwrap();
        assert_eq!(page.value.len(), 2);
        assert!(page.next_link.is_some());
        let mailbox = Mailbox::parse("support@contoso.com").unwrap();
        let mut items = page
            .value
            .into_iter()
            .map(|m| m.into_mail(ChannelId::generate(), &mailbox));
        let first = items.next().unwrap();
        assert_eq!(first.body_content_type, "text");
        assert_eq!(
            first.from.map(|a| a.address),
            Some("ann@contoso.com".to_owned())
        );
        let second = items.next().unwrap();
        assert_eq!(second.kind, "#microsoft.graph.eventMessage");
        assert_eq!(second.subject, "");
    }

    #[test]
    fn one_malformed_item_does_not_sink_its_page() {
        let json = r##"{
          "value": [
            {"id": "good", "subject": "fine", "isRead": false},
            {"id": "bad", "receivedDateTime": "not a date"},
            {"id": "gone", "@removed": {"reason": "deleted"}},
            {"subject": "no id at all", "receivedDateTime": 7}
          ],
          "@odata.deltaLink": "https://graph.microsoft.com/v1.0/users/a/mailFolders/inbox/messages/delta?$deltatoken=x"
        }"##;
        let page = Page::from(serde_json::from_str::<RawPage>(json).unwrap());
        assert_eq!(page.messages.len(), 1);
        assert_eq!(page.messages[0].id, "good");
        assert_eq!(page.removed, vec!["gone".to_owned()]);
        assert_eq!(page.malformed.len(), 2);
        assert_eq!(page.malformed[0].0, "bad");
        assert!(page.malformed[0].1.contains("cannot read"));
        assert!(page.delta_link.is_some() && page.next_link.is_none());
    }

    #[test]
    fn the_inner_error_is_found_whatever_its_case() {
        for key in ["innerError", "innererror"] {
            let json = format!(
                r#"{{"error":{{"code":"TooManyRequests","message":"m","{key}":{{"request-id":"r1"}}}}}}"#
            );
            let body: ErrorBody = serde_json::from_str(&json).unwrap();
            assert_eq!(body.error.code, "TooManyRequests");
            assert_eq!(body.error.request_id().as_deref(), Some("r1"));
        }
    }

    #[test]
    fn large_attachments_lose_their_content() {
        let wire = |size: u64| WireAttachment {
            id: "1".into(),
            odata_type: None,
            name: Some("a.bin".into()),
            content_type: None,
            size: Some(size),
            is_inline: None,
            content_bytes: Some("AAAA".into()),
        };
        assert!(wire(3).into_attachment(10).content_base64.is_some());
        assert!(wire(11).into_attachment(10).content_base64.is_none());
    }
}
