//! A raw RFC 5322 message (what `BODY.PEEK[]` returns) mapped by `mail-parser` into the same
//! [`MailItem`] a Graph message becomes: from, to, cc, subject, the text or HTML body, the
//! attachments (content up to the configured limit, base64 like Graph's), the Internet Message-ID
//! (in angle brackets, as Graph writes `internetMessageId`) and the received time.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use mail_parser::{MessageParser, MimeHeaders as _};

use crate::domain::{Address, Attachment, ChannelId, MailItem, Mailbox};

/// What the mapping needs besides the raw message.
#[derive(Debug, Clone, Copy)]
pub struct MimeOptions {
    /// Write the HTML body (converted from text when the mail has none) instead of plain text.
    pub html: bool,
    /// Attachment content above this size is left out.
    pub max_attachment_bytes: u64,
}

/// The Internet Message-ID as Graph writes it: `<id@host>`, surrounding blanks dropped.
pub fn bracketed_message_id(id: &str) -> Option<String> {
    let id = id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    (!id.is_empty()).then(|| format!("<{id}>"))
}

fn addresses(list: Option<&mail_parser::Address<'_>>) -> Vec<Address> {
    list.map(|list| {
        list.iter()
            .filter_map(|a| {
                Some(Address {
                    name: a.name().unwrap_or_default().to_owned(),
                    address: a.address()?.to_owned(),
                })
            })
            .collect()
    })
    .unwrap_or_default()
}

/// Maps the raw message `raw` (IMAP UID `message_id` of the channel) into a mail item; `None` when
/// it is not a message at all (the caller quarantines it). `received_at` is the server's
/// INTERNALDATE; the Date header stands in when the server gave none.
pub fn to_mail_item(
    raw: &[u8],
    channel_id: ChannelId,
    mailbox: &Mailbox,
    message_id: String,
    received_at: Option<DateTime<Utc>>,
    options: MimeOptions,
) -> Option<MailItem> {
    let parsed = MessageParser::default().parse(raw)?;
    if parsed.headers().is_empty() {
        return None;
    }
    let (body_content_type, body) = if options.html {
        ("html", parsed.body_html(0).map(|b| b.into_owned()))
    } else {
        ("text", parsed.body_text(0).map(|b| b.into_owned()))
    };
    let attachments: Vec<Attachment> = parsed
        .attachments()
        .enumerate()
        .map(|(index, part)| {
            let contents = part.contents();
            let size_bytes = contents.len() as u64;
            let content_type = part
                .content_type()
                .map(|ct| match ct.subtype() {
                    Some(sub) => format!("{}/{}", ct.ctype(), sub),
                    None => ct.ctype().to_owned(),
                })
                .unwrap_or_else(|| "application/octet-stream".to_owned());
            Attachment {
                id: format!("part-{}", index + 1),
                name: part.attachment_name().unwrap_or_default().to_owned(),
                content_type,
                size_bytes,
                is_inline: part.content_disposition().is_some_and(|d| d.is_inline())
                    || (part.content_id().is_some()
                        && !part
                            .content_disposition()
                            .is_some_and(|d| d.is_attachment())),
                content_base64: (size_bytes <= options.max_attachment_bytes)
                    .then(|| base64::engine::general_purpose::STANDARD.encode(contents)),
            }
        })
        .collect();
    let received_at = received_at.or_else(|| {
        parsed
            .date()
            .and_then(|d| DateTime::<Utc>::from_timestamp(d.to_timestamp(), 0))
    });
    Some(MailItem {
        channel_id,
        mailbox: mailbox.clone(),
        message_id,
        internet_message_id: parsed.message_id().and_then(bracketed_message_id),
        kind: "#microsoft.graph.message".to_owned(),
        received_at,
        from: addresses(parsed.from()).into_iter().next(),
        to: addresses(parsed.to()),
        cc: addresses(parsed.cc()),
        subject: parsed.subject().unwrap_or_default().to_owned(),
        body_content_type: body_content_type.to_owned(),
        body: body.unwrap_or_default(),
        conversation_id: None,
        has_attachments: !attachments.is_empty(),
        attachments,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const MULTIPART: &str = "From: \"Ada Lovelace\" <ada@contoso.com>\r\n\
To: support@contoso.com, \"Bob\" <bob@contoso.com>\r\n\
Cc: carol@fabrikam.com\r\n\
Subject: =?UTF-8?Q?Invoice_=E2=82=AC12?=\r\n\
Date: Tue, 01 Dec 2026 08:15:00 +0100\r\n\
Message-ID: <invoice-12@contoso.com>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: multipart/alternative; boundary=\"b2\"\r\n\
\r\n\
--b2\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Please find the invoice attached.\r\n\
--b2\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<p>Please find the <b>invoice</b> attached.</p>\r\n\
--b2--\r\n\
--b1\r\n\
Content-Type: application/pdf; name=\"invoice.pdf\"\r\n\
Content-Disposition: attachment; filename=\"invoice.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQK\r\n\
--b1--\r\n";

    fn item(raw: &str, options: MimeOptions) -> MailItem {
        to_mail_item(
            raw.as_bytes(),
            ChannelId::generate(),
            &Mailbox::parse("support@contoso.com").unwrap(),
            "imap:7:42".to_owned(),
            None,
            options,
        )
        .unwrap()
    }

    #[test]
    fn a_multipart_mail_maps_to_the_graph_shaped_record() {
        let mail = item(
            MULTIPART,
            MimeOptions {
                html: false,
                max_attachment_bytes: 1 << 20,
            },
        );
        assert_eq!(mail.message_id, "imap:7:42");
        assert_eq!(
            mail.internet_message_id.as_deref(),
            Some("<invoice-12@contoso.com>")
        );
        let from = mail.from.unwrap();
        assert_eq!(
            (from.name.as_str(), from.address.as_str()),
            ("Ada Lovelace", "ada@contoso.com")
        );
        let to: Vec<_> = mail.to.iter().map(|a| a.address.as_str()).collect();
        assert_eq!(to, ["support@contoso.com", "bob@contoso.com"]);
        assert_eq!(mail.cc[0].address, "carol@fabrikam.com");
        assert_eq!(mail.subject, "Invoice €12");
        assert_eq!(mail.body_content_type, "text");
        assert_eq!(mail.body.trim(), "Please find the invoice attached.");
        assert_eq!(
            mail.received_at.unwrap().to_rfc3339(),
            "2026-12-01T07:15:00+00:00"
        );
        assert!(mail.has_attachments);
        let pdf = &mail.attachments[0];
        assert_eq!(pdf.name, "invoice.pdf");
        assert_eq!(pdf.content_type, "application/pdf");
        assert_eq!(pdf.size_bytes, 9);
        assert_eq!(pdf.content_base64.as_deref(), Some("JVBERi0xLjQK"));
        assert!(!pdf.is_inline);
    }

    #[test]
    fn the_html_body_is_chosen_when_configured_and_big_attachments_lose_their_content() {
        let mail = item(
            MULTIPART,
            MimeOptions {
                html: true,
                max_attachment_bytes: 4,
            },
        );
        assert_eq!(mail.body_content_type, "html");
        assert!(mail.body.contains("<b>invoice</b>"));
        assert_eq!(mail.attachments[0].size_bytes, 9);
        assert_eq!(mail.attachments[0].content_base64, None);
    }

    #[test]
    fn a_plain_mail_without_message_id_or_recipients_still_maps() {
        let raw = "From: ops@contoso.com\r\nSubject: ping\r\n\r\nhello\r\n";
        let mail = item(
            raw,
            MimeOptions {
                html: false,
                max_attachment_bytes: 1,
            },
        );
        assert_eq!(mail.internet_message_id, None);
        assert!(mail.to.is_empty() && mail.attachments.is_empty());
        assert_eq!(mail.body.trim(), "hello");
        assert_eq!(
            bracketed_message_id("  abc@host "),
            Some("<abc@host>".into())
        );
        assert_eq!(bracketed_message_id("<>"), None);
    }
}
