//! The status of a channel, as operators see it.

use std::fmt;
use std::str::FromStr;

/// Where a channel stands. Every status except `Active` and `Disabled` carries a last error elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChannelStatus {
    /// The operator switched the channel off; nothing is polled.
    Disabled,
    /// Added but never authorized: an admin must open the authorization link.
    AwaitingAuthorization,
    /// Authorized and polling on schedule.
    Active,
    /// Throttled or a transient failure; inboxd retries on its own at the next try time.
    BackingOff,
    /// The grant expired or was revoked, or consent is missing: someone must authorize again.
    NeedsReauthorization,
    /// An admin outside inboxd must act (Conditional Access, a wrong or expired secret, unknown app).
    Blocked,
}

impl ChannelStatus {
    /// Every status, in display order.
    pub const ALL: [ChannelStatus; 6] = [
        ChannelStatus::Active,
        ChannelStatus::BackingOff,
        ChannelStatus::AwaitingAuthorization,
        ChannelStatus::NeedsReauthorization,
        ChannelStatus::Blocked,
        ChannelStatus::Disabled,
    ];

    /// The snake_case name used in the API, metrics and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelStatus::Disabled => "disabled",
            ChannelStatus::AwaitingAuthorization => "awaiting_authorization",
            ChannelStatus::Active => "active",
            ChannelStatus::BackingOff => "backing_off",
            ChannelStatus::NeedsReauthorization => "needs_reauthorization",
            ChannelStatus::Blocked => "blocked",
        }
    }
}

impl fmt::Display for ChannelStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChannelStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ChannelStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = ChannelStatus::ALL.iter().map(|st| st.as_str()).collect();
                format!(
                    "unknown channel status {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// How a channel finds new mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PollMode {
    /// The folder's delta query: every change since the last round, read or not, so mail someone
    /// reads in Outlook before the poll is still ingested.
    Delta,
    /// Only mail still unread at the poll (`$filter=isRead eq false`).
    Unread,
}

impl PollMode {
    /// The name used in the configuration, the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            PollMode::Delta => "delta",
            PollMode::Unread => "unread",
        }
    }

    /// The mode named `name`, as [`as_str`](Self::as_str) writes it.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "delta" => Some(PollMode::Delta),
            "unread" => Some(PollMode::Unread),
            _ => None,
        }
    }
}

impl fmt::Display for PollMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a channel reaches its mailbox: Microsoft Graph or IMAP with OAuth2 (SASL XOAUTH2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    /// Microsoft Graph (the default).
    #[default]
    Graph,
    /// IMAP over TLS with SASL XOAUTH2, for tenants that block Graph for third-party apps.
    Imap,
}

impl Transport {
    /// Every transport.
    pub const ALL: [Transport; 2] = [Transport::Graph, Transport::Imap];

    /// The name used in the API, the CLI and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Graph => "graph",
            Transport::Imap => "imap",
        }
    }

    /// The transport named `name`, as [`as_str`](Self::as_str) writes it.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
