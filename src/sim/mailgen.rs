//! Realistic generated mail for `/_sim/mailboxes/{addr}/messages {"count":N}`: senders, recipients,
//! subjects, HTML and text bodies, attachments, conversation and internet message ids, and meeting
//! requests when asked.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use rand::seq::SliceRandom;

use super::state::{Address, Attachment, Meeting, Message};

const FIRST: &[&str] = &[
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Margaret", "Linus", "Frances", "Donald",
    "Radia", "Dennis",
];
const LAST: &[&str] = &[
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Hamilton", "Torvalds",
    "Allen", "Knuth", "Perlman", "Ritchie",
];
const DOMAINS: &[&str] = &[
    "contoso.com",
    "fabrikam.com",
    "northwind.example",
    "adatum.example",
    "tailspin.example",
];
const SUBJECTS: &[&str] = &[
    "Order #{n} has not arrived",
    "Question about invoice {n}",
    "Re: Support ticket {n}",
    "Password reset does not work",
    "Refund request for order {n}",
    "Fwd: Contract renewal {n}",
    "Urgent: outage in region {n}",
    "Feedback on the new release",
    "Meeting notes {n}",
    "Ünïcødé subject ✓ {n}",
];
const PARAGRAPHS: &[&str] = &[
    "Hello team, I ordered last week and the parcel still has not arrived. Could you check the status?",
    "Please find the requested documents attached. Let me know if anything is missing.",
    "We noticed an unexpected charge on our account and would like a detailed breakdown.",
    "Thanks for the quick answer yesterday; the workaround helped, but the issue came back this morning.",
    "Could you confirm the renewal terms before Friday? Legal needs to sign off.",
    "The dashboard shows errors since the last update. Screenshots are attached.",
];

fn person(rng: &mut impl Rng) -> Address {
    let first = FIRST.choose(rng).copied().unwrap_or("Ada");
    let last = LAST.choose(rng).copied().unwrap_or("Lovelace");
    let domain = DOMAINS.choose(rng).copied().unwrap_or("contoso.com");
    Address {
        name: format!("{first} {last}"),
        address: format!("{}.{}@{domain}", first.to_lowercase(), last.to_lowercase()),
    }
}

/// Options for generated mail.
#[derive(Debug, Clone, Copy)]
pub struct GenOptions {
    pub meeting_requests: bool,
    pub attachments: bool,
    pub unread: bool,
}

/// Generates one realistic message for `mailbox`. `seq` and the version are filled by the caller.
pub fn generate(
    mailbox: &str,
    index: u64,
    now: DateTime<Utc>,
    folder: &str,
    opts: GenOptions,
) -> Message {
    let mut rng = rand::thread_rng();
    let from = person(&mut rng);
    let mut to = vec![Address {
        name: mailbox.split('@').next().unwrap_or(mailbox).to_owned(),
        address: mailbox.to_owned(),
    }];
    if rng.gen_bool(0.3) {
        to.push(person(&mut rng));
    }
    let cc: Vec<Address> = (0..rng.gen_range(0..3)).map(|_| person(&mut rng)).collect();
    let n = rng.gen_range(1000..99999).to_string();
    let meeting = opts.meeting_requests && index % 5 == 4;
    let subject = if meeting {
        format!("Invitation: Review call {n}")
    } else {
        SUBJECTS
            .choose(&mut rng)
            .copied()
            .unwrap_or("Hello")
            .replace("{n}", &n)
    };
    let paras: Vec<&str> = (0..rng.gen_range(1..4))
        .filter_map(|_| PARAGRAPHS.choose(&mut rng).copied())
        .collect();
    let body_text = format!(
        "{}\r\n\r\nBest regards,\r\n{}",
        paras.join("\r\n\r\n"),
        from.name
    );
    let body_html = format!(
        "<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\"></head><body><div>{}</div><p>Best regards,<br>{}</p></body></html>",
        paras
            .iter()
            .map(|p| format!("<p>{p}</p>"))
            .collect::<String>(),
        from.name
    );
    let attachments = if opts.attachments && !meeting && index.is_multiple_of(3) {
        let size = rng.gen_range(64..2048);
        let bytes: Vec<u8> = (0..size).map(|_| rng.r#gen::<u8>()).collect();
        vec![Attachment {
            name: format!("document-{n}.pdf"),
            content_type: "application/pdf".into(),
            size: size as u64,
            content_bytes: STANDARD.encode(&bytes),
            is_inline: false,
        }]
    } else {
        Vec::new()
    };
    let received = now - Duration::seconds(rng.gen_range(0..5));
    let domain = from
        .address
        .split('@')
        .nth(1)
        .unwrap_or("contoso.com")
        .to_owned();
    Message {
        seq: 0,
        folder: folder.to_owned(),
        subject,
        from,
        to,
        cc,
        body_html,
        body_text,
        attachments,
        internet_message_id: format!("<{}@{domain}>", uuid::Uuid::new_v4().simple()),
        conversation_id: format!("AAQkAGI2{}", uuid::Uuid::new_v4().simple()),
        received,
        last_modified: received,
        is_read: !opts.unread,
        uid: 0,
        importance: if index.is_multiple_of(7) {
            "high".into()
        } else {
            "normal".into()
        },
        bcc: Vec::new(),
        categories: Vec::new(),
        flag: None,
        inference_classification: "focused".into(),
        is_delivery_receipt_requested: false,
        is_read_receipt_requested: false,
        left: Vec::new(),
        meeting: meeting.then(|| Meeting {
            start: now + Duration::days(1),
            end: now + Duration::days(1) + Duration::minutes(30),
            location: "Conference Room 4".into(),
        }),
        changed_version: 0,
        created_version: 0,
        deleted: false,
    }
}

/// Graph's `bodyPreview`: the first 255 characters of the body as text, line breaks kept (only
/// leading whitespace goes).
pub fn preview(text: &str) -> String {
    text.trim_start().chars().take(255).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preview_keeps_line_breaks_and_stops_at_255_characters() {
        assert_eq!(preview("  Hi,\r\n\r\nthanks."), "Hi,\r\n\r\nthanks.");
        let long = "é".repeat(300);
        assert_eq!(preview(&long).chars().count(), 255);
    }
}
