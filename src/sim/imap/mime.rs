//! A simulator message as RFC 5322 bytes (what IMAP's `BODY[]` serves), built with `mail-builder`:
//! From, To, Cc, Subject, Date (the received time), Message-ID (the message's internetMessageId),
//! Importance, and a MIME body: `multipart/alternative` (text/plain, text/html), inside
//! `multipart/mixed` with the attachments (base64) when there are any.
//!
//! The boundaries are derived from the message's sequence number, so the bytes (and
//! `RFC822.SIZE`) are the same on every fetch as long as the message does not change.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address as MimeAddress;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;

use crate::sim::state::{Address, Attachment, Message};

fn address(a: &Address) -> MimeAddress<'static> {
    if a.name.is_empty() {
        MimeAddress::from(a.address.clone())
    } else {
        MimeAddress::from((a.name.clone(), a.address.clone()))
    }
}

fn list(addresses: &[Address]) -> MimeAddress<'static> {
    MimeAddress::new_list(addresses.iter().map(address).collect())
}

fn attachment(a: &Attachment) -> MimePart<'static> {
    // Graph's contentBytes is base64; anything else is served as the text it is.
    let bytes = STANDARD
        .decode(a.content_bytes.trim())
        .unwrap_or_else(|_| a.content_bytes.clone().into_bytes());
    let disposition = ContentType::new(if a.is_inline { "inline" } else { "attachment" })
        .attribute("filename", a.name.clone());
    MimePart::new(ContentType::new(a.content_type.clone()), bytes)
        .header("Content-Disposition", disposition)
}

/// The message's RFC 5322 bytes.
pub fn render(m: &Message) -> Vec<u8> {
    let alternative = MimePart::new(
        ContentType::new("multipart/alternative")
            .attribute("boundary", format!("sim_alt_{:016x}", m.seq)),
        vec![
            MimePart::new(ContentType::new("text/plain"), m.body_text.clone()),
            MimePart::new(ContentType::new("text/html"), m.body_html.clone()),
        ],
    );
    let body = if m.attachments.is_empty() {
        alternative
    } else {
        let mut parts = vec![alternative];
        parts.extend(m.attachments.iter().map(attachment));
        MimePart::new(
            ContentType::new("multipart/mixed")
                .attribute("boundary", format!("sim_mixed_{:016x}", m.seq)),
            parts,
        )
    };
    let mut builder = MessageBuilder::new()
        .from(address(&m.from))
        .subject(m.subject.clone())
        .date(m.received.timestamp())
        .message_id(
            m.internet_message_id
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned(),
        );
    if !m.to.is_empty() {
        builder = builder.to(list(&m.to));
    }
    if !m.cc.is_empty() {
        builder = builder.cc(list(&m.cc));
    }
    if !m.importance.eq_ignore_ascii_case("normal") && !m.importance.is_empty() {
        builder = builder.header("Importance", Raw::new(m.importance.clone()));
    }
    builder.body(body).write_to_vec().unwrap_or_default()
}

/// The header part of `raw` (up to and including the blank line) and the rest.
pub fn split(raw: &[u8]) -> (&[u8], &[u8]) {
    match raw.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => raw.split_at(i + 4),
        None => (raw, &[]),
    }
}

/// The header lines of `header` (a header block, folded lines joined with their continuation)
/// whose field name is (`not` = false) or is not (`not` = true) in `names`, and the closing CRLF.
pub fn header_fields(header: &[u8], names: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut keep = false;
    for line in header.split_inclusive(|b| *b == b'\n') {
        if line == b"\r\n" {
            break;
        }
        if !line.starts_with(b" ") && !line.starts_with(b"\t") {
            let name = line.split(|b| *b == b':').next().unwrap_or_default();
            let name = String::from_utf8_lossy(name);
            let listed = names.iter().any(|n| n.eq_ignore_ascii_case(name.trim()));
            keep = listed != not;
        }
        if keep {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}
