//! A mail as inboxd hands it from a channel to the processor and its sink.

use chrono::{DateTime, Utc};

use crate::domain::{ChannelId, Mailbox};

/// One address of a sender or recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The display name, possibly empty.
    pub name: String,
    /// The e-mail address.
    pub address: String,
}

/// One attachment: metadata always, content when it is small enough.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Graph's attachment id.
    pub id: String,
    /// The file name.
    pub name: String,
    /// The MIME type.
    pub content_type: String,
    /// The size in bytes as Graph reports it.
    pub size_bytes: u64,
    /// Whether it is shown inline in the body (an embedded image).
    pub is_inline: bool,
    /// The content, base64 as Graph sends it, or `None` when it was larger than the configured limit
    /// (or is not a file attachment).
    pub content_base64: Option<String>,
}

/// A new mail read from a channel's folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailItem {
    /// The channel it came from.
    pub channel_id: ChannelId,
    /// The mailbox it was read from.
    pub mailbox: Mailbox,
    /// Graph's (immutable) message id; case-sensitive.
    pub message_id: String,
    /// The RFC 5322 Message-ID header.
    pub internet_message_id: Option<String>,
    /// Graph's `@odata.type` (`#microsoft.graph.message`, `#microsoft.graph.eventMessage`, …).
    pub kind: String,
    /// When the mailbox received it.
    pub received_at: Option<DateTime<Utc>>,
    /// The sender.
    pub from: Option<Address>,
    /// Direct recipients.
    pub to: Vec<Address>,
    /// Copied recipients.
    pub cc: Vec<Address>,
    /// The subject.
    pub subject: String,
    /// `text` or `html`.
    pub body_content_type: String,
    /// The body.
    pub body: String,
    /// The conversation (thread) id.
    pub conversation_id: Option<String>,
    /// Whether Graph says it has attachments.
    pub has_attachments: bool,
    /// The attachments, when it has any.
    pub attachments: Vec<Attachment>,
}
