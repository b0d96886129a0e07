//! Small pieces the views share: relative times, status and secret-expiry cells, the CSRF field
//! and one-button forms.

use chrono::{DateTime, Utc};
use maud::{Markup, html};

use crate::domain::ChannelStatus;
use crate::http::session::CsrfToken;
use crate::status::ChannelView;

/// "in 5 s", "3 min ago": the same wording as the page's script.
pub fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (at - now).num_seconds();
    let abs = secs.unsigned_abs();
    if abs < 2 {
        return "now".to_owned();
    }
    let amount = if abs < 120 {
        format!("{abs} s")
    } else if abs < 7200 {
        format!("{} min", abs / 60)
    } else if abs < 172_800 {
        format!("{} h", abs / 3600)
    } else {
        format!("{} days", abs / 86_400)
    };
    if secs > 0 {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// A time the script keeps relative, or `never` when there is none.
pub fn time(at: Option<DateTime<Utc>>, now: DateTime<Utc>, never: &str) -> Markup {
    html! {
        @match at {
            Some(at) => {
                @let iso = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                time datetime=(iso) title=(iso) data-rel { (relative(at, now)) }
            }
            None => span.muted { (never) },
        }
    }
}

/// How long the app's credential (secret or certificate) has left, coloured when it is short.
pub fn secret(view: &ChannelView, now: DateTime<Utc>) -> Markup {
    const RENEW: &str =
        "make a new credential and rotate the app (`inboxd app rotate`, or Update secret)";
    html! {
        @match view.secret_days_left(now) {
            None => span.muted { "not set" },
            Some(days) if days < 0 => span.bad title=(RENEW) { "expired " (-days) " days ago" },
            Some(days) if days < 14 => span.bad title=(RENEW) { (days) " days left" },
            Some(days) if days < 30 => span.warn { (days) " days left" },
            Some(days) => { (days) " days left" },
        }
    }
}

/// Messages delivered today.
pub fn messages_today(view: &ChannelView, now: DateTime<Utc>) -> u64 {
    if view.messages_day == Some(now.date_naive()) {
        view.messages_today
    } else {
        0
    }
}

/// A channel status, coloured.
pub fn status(status: ChannelStatus) -> Markup {
    html! {
        span class={ "status status-" (status.as_str()) } { (status.as_str()) }
    }
}

/// The hidden field that carries the session's CSRF token.
pub fn csrf_field(csrf: &CsrfToken) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf.expose()); }
}

/// A form that is one button.
pub fn button_form(action: &str, csrf: &CsrfToken, label: &str, class: &str) -> Markup {
    html! {
        form method="post" action=(action) class="inline" {
            (csrf_field(csrf))
            button type="submit" class=(class) { (label) }
        }
    }
}

/// What a status means when there is no error to show.
pub fn status_hint(status: ChannelStatus) -> &'static str {
    match status {
        ChannelStatus::Disabled => "Disabled by an operator: enable it to poll again.",
        ChannelStatus::AwaitingAuthorization => {
            "Waiting for an administrator to sign in: use Authorize, and register the redirect URI in Azure first."
        }
        ChannelStatus::Active => "Polling normally.",
        ChannelStatus::BackingOff => {
            "Failing for a reason that should pass (throttling, an outage): inboxd retries on its own."
        }
        ChannelStatus::NeedsReauthorization => {
            "Its grant is no longer valid: use Update auth info."
        }
        ChannelStatus::Blocked => {
            "Microsoft refuses it for a reason an administrator must fix: see the remedy, then Update auth info."
        }
    }
}

/// `text`, cut to `max` characters with an ellipsis.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max).collect();
    out.push('…');
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_naturally() {
        let now = Utc::now();
        assert_eq!(relative(now, now), "now");
        assert_eq!(
            relative(now + chrono::Duration::seconds(30), now),
            "in 30 s"
        );
        assert_eq!(
            relative(now - chrono::Duration::minutes(5), now),
            "5 min ago"
        );
        assert_eq!(relative(now - chrono::Duration::hours(5), now), "5 h ago");
        assert_eq!(
            relative(now + chrono::Duration::days(20), now),
            "in 20 days"
        );
    }

    #[test]
    fn truncation_keeps_short_text() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("abcdef", 3), "abc…");
    }
}
