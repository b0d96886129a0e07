//! Where processed mail goes: the record written to the sink, the sink errors, and the two sinks.
//!
//! [`SinkRecord`] is the wire shape, the same JSON object for both sinks. [`JsonlSink`] appends records
//! to one file, one object per line, with a group commit (`sync_data`) per batch and crash recovery on
//! open; [`WebhookSink`] POSTs each record, signed with HMAC-SHA256, with retries. Both answer with a
//! [`SinkError`] that tells the processor whose fault a failure is: the sink's (back off, the message's
//! failure count stays) or the message's (counts toward quarantine).

mod jsonl;
mod webhook;

pub use jsonl::{JsonlSink, RecoveredLine, Recovery};
pub use webhook::{SIGNATURE_HEADER, WebhookSink, sign, verify_signature};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Address, Attachment, MailItem};

/// A sender or recipient as the sink shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkAddress {
    /// The display name, possibly empty.
    pub name: String,
    /// The e-mail address.
    pub address: String,
}

impl From<&Address> for SinkAddress {
    fn from(address: &Address) -> Self {
        SinkAddress {
            name: address.name.clone(),
            address: address.address.clone(),
        }
    }
}

/// An attachment as the sink shows it: metadata always, content when it was small enough.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkAttachment {
    /// Graph's attachment id.
    pub id: String,
    /// The file name.
    pub name: String,
    /// The MIME type.
    pub content_type: String,
    /// The size in bytes as Graph reports it.
    pub size_bytes: u64,
    /// Whether it is shown inline in the body.
    pub is_inline: bool,
    /// The content in base64, or null when it is not included.
    pub content_base64: Option<String>,
    /// Why the content is null, e.g. `larger than 3145728 bytes`; absent when the content is included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_omitted: Option<String>,
}

impl From<Address> for SinkAddress {
    fn from(address: Address) -> Self {
        SinkAddress {
            name: address.name,
            address: address.address,
        }
    }
}

impl SinkAttachment {
    fn from_attachment(attachment: &Attachment, max_bytes: Option<u64>) -> Self {
        Self::from_owned(attachment.clone(), max_bytes)
    }

    fn from_owned(attachment: Attachment, max_bytes: Option<u64>) -> Self {
        let content_omitted = match (&attachment.content_base64, max_bytes) {
            (Some(_), _) => None,
            (None, Some(limit)) if attachment.size_bytes > limit => {
                Some(format!("larger than {limit} bytes"))
            }
            (None, Some(_)) => Some("not a file attachment".to_owned()),
            (None, None) => Some(
                "larger than the configured attachment limit, or not a file attachment".to_owned(),
            ),
        };
        SinkAttachment {
            id: attachment.id,
            name: attachment.name,
            content_type: attachment.content_type,
            size_bytes: attachment.size_bytes,
            is_inline: attachment.is_inline,
            content_base64: attachment.content_base64,
            content_omitted,
        }
    }
}

/// One processed mail as the sink receives it: a line of the JSONL file, or a webhook body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkRecord {
    /// The channel it came from (a UUID).
    pub channel_id: String,
    /// The mailbox it was read from.
    pub mailbox: String,
    /// Graph's immutable message id (case-sensitive).
    pub message_id: String,
    /// The RFC 5322 Message-ID header.
    pub internet_message_id: Option<String>,
    /// When the mailbox received it (RFC 3339).
    pub received_at: Option<DateTime<Utc>>,
    /// The sender.
    pub from: Option<SinkAddress>,
    /// Direct recipients.
    pub to: Vec<SinkAddress>,
    /// Copied recipients.
    pub cc: Vec<SinkAddress>,
    /// The subject.
    pub subject: String,
    /// `text` or `html`.
    pub body_content_type: String,
    /// The body.
    pub body: String,
    /// Whether Graph says it has attachments.
    pub has_attachments: bool,
    /// The attachments.
    pub attachments: Vec<SinkAttachment>,
    /// Graph's `@odata.type` (`#microsoft.graph.message`, `#microsoft.graph.eventMessage`, …).
    pub kind: String,
    /// The conversation (thread) id.
    pub conversation_id: Option<String>,
    /// When inboxd handed it to the sink (RFC 3339).
    pub ingested_at: DateTime<Utc>,
}

impl SinkRecord {
    /// The record of a mail. Attachments without content say why in `content_omitted`; with no
    /// attachment limit known, the reason is generic (see [`SinkRecord::from_mail_with_limit`]).
    pub fn from_mail(mail: &MailItem, ingested_at: DateTime<Utc>) -> Self {
        Self::build(mail, ingested_at, None)
    }

    /// The record of a mail whose attachment content was kept up to `max_attachment_bytes`: an
    /// attachment without content says `larger than N bytes` when that is why.
    pub fn from_mail_with_limit(
        mail: &MailItem,
        ingested_at: DateTime<Utc>,
        max_attachment_bytes: u64,
    ) -> Self {
        Self::build(mail, ingested_at, Some(max_attachment_bytes))
    }

    /// [`from_mail`](Self::from_mail) taking the mail: its body, addresses and attachments move
    /// into the record instead of being copied (the processor's path).
    pub fn from_mail_owned(mail: MailItem, ingested_at: DateTime<Utc>) -> Self {
        SinkRecord {
            channel_id: mail.channel_id.to_string(),
            mailbox: mail.mailbox.as_str().to_owned(),
            message_id: mail.message_id,
            internet_message_id: mail.internet_message_id,
            received_at: mail.received_at,
            from: mail.from.map(SinkAddress::from),
            to: mail.to.into_iter().map(SinkAddress::from).collect(),
            cc: mail.cc.into_iter().map(SinkAddress::from).collect(),
            subject: mail.subject,
            body_content_type: mail.body_content_type,
            body: mail.body,
            has_attachments: mail.has_attachments,
            attachments: mail
                .attachments
                .into_iter()
                .map(|a| SinkAttachment::from_owned(a, None))
                .collect(),
            kind: mail.kind,
            conversation_id: mail.conversation_id,
            ingested_at,
        }
    }

    fn build(mail: &MailItem, ingested_at: DateTime<Utc>, max_bytes: Option<u64>) -> Self {
        SinkRecord {
            channel_id: mail.channel_id.to_string(),
            mailbox: mail.mailbox.as_str().to_owned(),
            message_id: mail.message_id.clone(),
            internet_message_id: mail.internet_message_id.clone(),
            received_at: mail.received_at,
            from: mail.from.as_ref().map(SinkAddress::from),
            to: mail.to.iter().map(SinkAddress::from).collect(),
            cc: mail.cc.iter().map(SinkAddress::from).collect(),
            subject: mail.subject.clone(),
            body_content_type: mail.body_content_type.clone(),
            body: mail.body.clone(),
            has_attachments: mail.has_attachments,
            attachments: mail
                .attachments
                .iter()
                .map(|a| SinkAttachment::from_attachment(a, max_bytes))
                .collect(),
            kind: mail.kind.clone(),
            conversation_id: mail.conversation_id.clone(),
            ingested_at,
        }
    }

    /// The idempotency key `{channel_id}:{message_id}`: the same on every delivery of this message.
    pub fn key(&self) -> String {
        format!("{}:{}", self.channel_id, self.message_id)
    }
}

/// Why a sink did not accept a record, and whose fault that is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The sink cannot take anything right now (disk full, read-only, directory gone, receiver down
    /// after all attempts). Not the message's fault: the channel backs off and the message's failure
    /// count is not increased.
    #[error("the sink is unavailable: {reason}")]
    Unavailable {
        /// What happened and what to do about it.
        reason: String,
        /// Whether it is the disk (or the file-size limit) that is full.
        disk_full: bool,
    },
    /// The webhook receiver refused this message (a 4xx other than 408 and 429). Counts toward the
    /// message's quarantine.
    #[error("the webhook receiver rejected the message with HTTP {status}: {reason}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The start of the receiver's answer and what to do.
        reason: String,
    },
    /// The record could not be encoded as JSON. Counts toward the message's quarantine.
    #[error("message {key} could not be encoded as JSON ({reason}); it will be quarantined")]
    Encode {
        /// The idempotency key of the message.
        key: String,
        /// The encoder's error.
        reason: String,
    },
}

impl SinkError {
    /// Whether the failure is this message's (it counts toward quarantine) rather than the sink's.
    pub fn is_message_fault(&self) -> bool {
        matches!(self, SinkError::Rejected { .. } | SinkError::Encode { .. })
    }

    /// Whether the sink's disk (or file-size limit) is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(
            self,
            SinkError::Unavailable {
                disk_full: true,
                ..
            }
        )
    }

    /// An unavailable sink that is not a full disk.
    pub(crate) fn unavailable(reason: impl Into<String>) -> Self {
        SinkError::Unavailable {
            reason: reason.into(),
            disk_full: false,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::domain::{ChannelId, Mailbox};

    pub(crate) fn mail() -> MailItem {
        MailItem {
            channel_id: ChannelId::parse("6f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f").unwrap(),
            mailbox: Mailbox::parse("support@contoso.com").unwrap(),
            message_id: "AAMkAGI2=".to_owned(),
            internet_message_id: Some("<a@contoso.com>".to_owned()),
            kind: "#microsoft.graph.message".to_owned(),
            received_at: Some(Utc::now()),
            from: Some(Address {
                name: "Ann".to_owned(),
                address: "ann@fabrikam.com".to_owned(),
            }),
            to: vec![Address {
                name: String::new(),
                address: "support@contoso.com".to_owned(),
            }],
            cc: Vec::new(),
            subject: "Hello".to_owned(),
            body_content_type: "html".to_owned(),
            body: "<p>Hi</p>".to_owned(),
            conversation_id: Some("conv".to_owned()),
            has_attachments: true,
            attachments: vec![
                Attachment {
                    id: "att1".to_owned(),
                    name: "small.txt".to_owned(),
                    content_type: "text/plain".to_owned(),
                    size_bytes: 3,
                    is_inline: false,
                    content_base64: Some("aGk=".to_owned()),
                },
                Attachment {
                    id: "att2".to_owned(),
                    name: "big.bin".to_owned(),
                    content_type: "application/octet-stream".to_owned(),
                    size_bytes: 10_000,
                    is_inline: false,
                    content_base64: None,
                },
            ],
        }
    }

    #[test]
    fn a_record_carries_the_mail_and_its_key() {
        let mail = mail();
        let at = Utc::now();
        let record = SinkRecord::from_mail_with_limit(&mail, at, 4096);
        assert_eq!(
            record.key(),
            "6f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f:AAMkAGI2="
        );
        assert_eq!(record.mailbox, "support@contoso.com");
        assert_eq!(record.kind, "#microsoft.graph.message");
        assert_eq!(record.ingested_at, at);
        assert_eq!(record.attachments[0].content_omitted, None);
        assert_eq!(
            record.attachments[1].content_omitted.as_deref(),
            Some("larger than 4096 bytes")
        );

        let json: serde_json::Value = serde_json::to_value(&record).unwrap();
        assert_eq!(json["from"]["address"], "ann@fabrikam.com");
        assert!(json["attachments"][0].get("content_omitted").is_none());
        assert_eq!(
            json["attachments"][1]["content_base64"],
            serde_json::Value::Null
        );
        assert_eq!(
            json["attachments"][1]["content_omitted"],
            "larger than 4096 bytes"
        );
        // RFC 3339 timestamps.
        let ingested = json["ingested_at"].as_str().unwrap();
        assert!(DateTime::parse_from_rfc3339(ingested).is_ok(), "{ingested}");

        let mut no_sender = mail.clone();
        no_sender.from = None;
        let json = serde_json::to_value(SinkRecord::from_mail(&no_sender, at)).unwrap();
        assert_eq!(json["from"], serde_json::Value::Null);
        assert!(
            json["attachments"][1]["content_omitted"]
                .as_str()
                .unwrap()
                .contains("limit")
        );
    }

    #[test]
    fn a_record_of_an_owned_mail_is_the_record_of_the_mail() {
        let mail = mail();
        let at = Utc::now();
        assert_eq!(
            SinkRecord::from_mail_owned(mail.clone(), at),
            SinkRecord::from_mail(&mail, at)
        );
    }

    #[test]
    fn only_rejections_and_encoding_failures_are_the_message_fault() {
        assert!(
            SinkError::Rejected {
                status: 422,
                reason: String::new()
            }
            .is_message_fault()
        );
        let full = SinkError::Unavailable {
            reason: "full".to_owned(),
            disk_full: true,
        };
        assert!(!full.is_message_fault());
        assert!(full.is_disk_full());
        assert!(!SinkError::unavailable("down").is_disk_full());
        assert!(!SinkError::unavailable("down").is_message_fault());
    }
}
