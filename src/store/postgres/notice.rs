//! The text encoding of [`Notice`]s on the one `NOTIFY` channel `inboxd`: `channel <id>`,
//! `poll <id>`, `backfill <id> <RFC 3339 time>`, `replay <id>`, `resync`. Both ends (the engine's writes, the
//! coordination's `notify` and `listen`) use these two functions only.

use chrono::{DateTime, Utc};

use crate::domain::ChannelId;
use crate::store::cluster::Notice;

/// The `NOTIFY` channel every notice travels on.
pub(crate) const CHANNEL: &str = "inboxd";

/// The `NOTIFY` channel the mail sink announces new rows on (payload: the channel id).
pub(crate) const MAIL_CHANNEL: &str = "inboxd_mail";

/// A notice as its payload text.
pub(crate) fn encode(notice: &Notice) -> String {
    match notice {
        Notice::ChannelChanged(id) => format!("channel {id}"),
        Notice::PollNow(id) => format!("poll {id}"),
        Notice::Backfill(id, from) => format!("backfill {id} {}", from.to_rfc3339()),
        Notice::ReplayQuarantine(id) => format!("replay {id}"),
        Notice::Resync => "resync".to_owned(),
    }
}

/// The payload of a channel record's write, from its key (the id's 16 bytes).
pub(crate) fn channel_changed(key: &[u8]) -> Option<String> {
    let bytes: [u8; 16] = key.try_into().ok()?;
    Some(encode(&Notice::ChannelChanged(ChannelId::from_bytes(
        bytes,
    ))))
}

/// A payload as a notice; `None` for text this build does not know (a newer node's notice).
pub(crate) fn decode(payload: &str) -> Option<Notice> {
    let mut words = payload.split(' ');
    let kind = words.next()?;
    let notice = match kind {
        "resync" => Notice::Resync,
        "channel" => Notice::ChannelChanged(ChannelId::parse(words.next()?).ok()?),
        "poll" => Notice::PollNow(ChannelId::parse(words.next()?).ok()?),
        "replay" => Notice::ReplayQuarantine(ChannelId::parse(words.next()?).ok()?),
        "backfill" => {
            let id = ChannelId::parse(words.next()?).ok()?;
            let from = DateTime::parse_from_rfc3339(words.next()?).ok()?;
            Notice::Backfill(id, from.with_timezone(&Utc))
        }
        _ => return None,
    };
    words.next().is_none().then_some(notice)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn every_notice_round_trips_and_garbage_is_ignored() {
        let id = ChannelId::generate();
        let at = DateTime::parse_from_rfc3339("2024-05-01T10:20:30.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        for notice in [
            Notice::ChannelChanged(id),
            Notice::PollNow(id),
            Notice::Backfill(id, at),
            Notice::ReplayQuarantine(id),
            Notice::Resync,
        ] {
            assert_eq!(decode(&encode(&notice)), Some(notice.clone()), "{notice:?}");
        }
        assert_eq!(
            channel_changed(id.as_bytes()).and_then(|p| decode(&p)),
            Some(Notice::ChannelChanged(id))
        );
        for garbage in [
            "",
            "channel",
            "channel nope",
            "poll x y",
            "what 1",
            "resync now",
        ] {
            assert_eq!(decode(garbage), None, "{garbage:?}");
        }
    }
}
