//! From what Microsoft (or inboxd itself) said to a [`Classification`]: the catalogue entry that
//! applies, with the code seen. Unknown codes fall back to an entry for their HTTP status.

use std::borrow::Cow;
use std::fmt;

use super::table::*;
use super::*;
use crate::domain::ChannelStatus;

/// What inboxd concluded about one error: the catalogue entry that applies and the code seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    entry: &'static Entry,
    code: Cow<'static, str>,
    known: bool,
}

impl Classification {
    fn known(entry: &'static Entry) -> Self {
        Classification {
            entry,
            code: Cow::Borrowed(entry.code),
            known: true,
        }
    }

    fn fallback(entry: &'static Entry, code: String) -> Self {
        Classification {
            entry,
            code: Cow::Owned(code),
            known: false,
        }
    }

    /// The classification of a catalogue code (inboxd's own, e.g. [`codes::SECRET_EXPIRED`]).
    pub fn of(code: &str) -> Option<Self> {
        lookup(code).map(Classification::known)
    }

    /// The code to show: the most specific one seen (`AADSTS50173`, or `AADSTS12345` when unknown).
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The catalogue entry whose policy applies (a fallback entry when the code is unknown).
    pub fn entry(&self) -> &'static Entry {
        self.entry
    }

    /// Whether the code itself is in the catalogue (false when a fallback entry applies).
    pub fn is_known(&self) -> bool {
        self.known
    }

    /// The status the channel takes.
    pub fn status(&self) -> ChannelStatus {
        self.entry.status
    }

    /// What inboxd does on its own.
    pub fn retry(&self) -> Retry {
        self.entry.retry
    }

    /// Whether inboxd tries again on its own in any form.
    pub fn is_retriable(&self) -> bool {
        self.entry.retry != Retry::No
    }

    /// Whether someone must run the authorization again.
    pub fn needs_reauthorization(&self) -> bool {
        self.entry.status == ChannelStatus::NeedsReauthorization
    }

    /// Whether this is only a warning (the channel keeps working).
    pub fn is_warning(&self) -> bool {
        self.entry.severity == Severity::Warning
    }

    /// What the operator should do.
    pub fn remedy(&self) -> &'static str {
        self.entry.remedy
    }

    /// The readable name of the entry.
    pub fn name(&self) -> &'static str {
        self.entry.name
    }

    /// What the error means, in one sentence.
    pub fn meaning(&self) -> &'static str {
        self.entry.meaning
    }

    /// Who reported the error.
    pub fn source(&self) -> Source {
        self.entry.source
    }
}

impl fmt::Display for Classification {
    /// `AADSTS53003 (BlockedByConditionalAccess): A Conditional Access policy …`, for logs and messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code, self.entry.name, self.entry.meaning
        )
    }
}

/// Every number that follows `AADSTS` in `text`, in order of appearance.
pub(super) fn aadsts_numbers(text: &str) -> Vec<u32> {
    const PREFIX: &str = "AADSTS";
    let mut numbers = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(PREFIX) {
        rest = &rest[at + PREFIX.len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if let Ok(number) = rest[..digits].parse::<u32>() {
            numbers.push(number);
        }
        rest = &rest[digits..];
    }
    numbers
}

/// Classifies an identity-platform error (an `error=` redirect or a `/token` error response).
///
/// Order: a known number in `error_codes` (the last known one wins; Microsoft puts the most
/// specific last), then a known `AADSTSnnnn` in `error_description`, then HTTP 429 / 5xx, then the
/// `error` value; anything else is `blocked` with a remedy pointing at Microsoft's description.
pub fn classify_identity_error(
    error: &str,
    error_codes: &[u32],
    error_description: Option<&str>,
    http_status: Option<u16>,
) -> Classification {
    if let Some(entry) = error_codes.iter().rev().find_map(|n| lookup_aadsts(*n)) {
        return Classification::known(entry);
    }
    let described = error_description.map(aadsts_numbers).unwrap_or_default();
    if let Some(entry) = described.iter().rev().find_map(|n| lookup_aadsts(*n)) {
        return Classification::known(entry);
    }
    // The most specific unknown number, to show the operator.
    let unknown_number = error_codes.last().or(described.last()).copied();
    let error = error.trim();
    let by_error = if error.is_empty() {
        None
    } else {
        lookup_in(Source::IdentityPlatform, error).filter(|e| e.aadsts_number().is_none())
    };
    let transient_status = match http_status {
        Some(429) => Some(fallback(TOKEN_HTTP_429)),
        Some(500..=599) => Some(fallback(TOKEN_HTTP_5XX)),
        _ => None,
    };
    let entry = match (by_error, transient_status) {
        // A clear error value wins over the status, unless it is one we do not know.
        (Some(entry), _) => entry,
        (None, Some(entry)) => entry,
        (None, None) => fallback(UNKNOWN_IDENTITY),
    };
    match unknown_number {
        Some(number) => Classification::fallback(entry, format!("AADSTS{number}")),
        None if by_error.is_some() => Classification::known(entry),
        None if !error.is_empty() => Classification::fallback(entry, error.to_owned()),
        None => Classification::fallback(entry, entry.code.to_owned()),
    }
}

/// Classifies a Graph error from its HTTP status and the `error.code` of its body (may be empty).
pub fn classify_graph_error(http_status: u16, code: &str) -> Classification {
    let code = code.trim();
    if !code.is_empty()
        && let Some(entry) = lookup_in(Source::Graph, code)
    {
        return Classification::known(entry);
    }
    let entry = fallback(match http_status {
        400 => GRAPH_HTTP_400,
        401 => GRAPH_HTTP_401,
        403 => GRAPH_HTTP_403,
        404 => GRAPH_HTTP_404,
        410 => "resyncRequired",
        429 => GRAPH_HTTP_429,
        500..=599 => GRAPH_HTTP_5XX,
        _ => GRAPH_HTTP_OTHER,
    });
    let shown = if code.is_empty() {
        format!("HTTP {http_status}")
    } else {
        code.to_owned()
    };
    Classification::fallback(entry, shown)
}
