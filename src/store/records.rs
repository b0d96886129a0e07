//! The records the store keeps, as the rest of inboxd sees them: domain types, no serde.
//!
//! The persisted shapes live in `persisted.rs`; conversions between the two are written by hand so
//! that the on-disk format can evolve (it is versioned) without touching these types.

use chrono::{DateTime, Utc};

use crate::domain::secret::{AccessToken, ClientSecret, PkceVerifier, RefreshToken};
use crate::domain::{ChannelId, ChannelStatus, ClientId, Folder, Mailbox, TenantId};

/// One channel: a mailbox inboxd listens to, with its app registration and its current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRecord {
    /// The id inboxd gave the channel.
    pub id: ChannelId,
    /// A display name (may be empty).
    pub name: String,
    /// The Azure directory of the app and the mailbox.
    pub tenant_id: TenantId,
    /// The app registration's application (client) id.
    pub client_id: ClientId,
    /// The app registration's client secret value (encrypted at rest).
    pub client_secret: ClientSecret,
    /// When the client secret expires, if the operator said.
    pub client_secret_expires_at: Option<DateTime<Utc>>,
    /// The mailbox listened to.
    pub mailbox: Mailbox,
    /// The folder listened to.
    pub folder: Folder,
    /// Whether the operator has the channel switched on.
    pub enabled: bool,
    /// What to ingest the first time the channel polls.
    pub first_import: FirstImport,
    /// How the channel finds new mail; `None` follows `polling.mode`.
    pub poll_mode: Option<crate::domain::PollMode>,
    /// How the channel reaches its mailbox (Graph or IMAP).
    pub transport: crate::domain::Transport,
    /// When the channel was added.
    pub created_at: DateTime<Utc>,
    /// When the record last changed.
    pub updated_at: DateTime<Utc>,
    /// When the channel was first authorized.
    pub activated_at: Option<DateTime<Utc>>,
    /// Where the channel stands.
    pub status: ChannelStatus,
    /// The last error, for every non-active status.
    pub last_error: Option<LastError>,
    /// When the channel last polled.
    pub last_poll_at: Option<DateTime<Utc>>,
    /// When a poll last succeeded.
    pub last_success_at: Option<DateTime<Utc>>,
}

/// What a channel ingests on its first poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FirstImport {
    /// Every unread message in the folder.
    AllUnread,
    /// Only mail that arrives after the channel was authorized.
    OnlyNew,
    /// Unread messages received in the last N days.
    LastDays(u32),
}

/// Where an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorSource {
    /// Microsoft's identity platform (token endpoint, authorization).
    IdentityPlatform,
    /// Microsoft Graph.
    Graph,
    /// An IMAP server (the IMAP transport).
    Imap,
    /// The sink (JSONL file or webhook).
    Sink,
    /// The store.
    Store,
    /// inboxd itself.
    Inboxd,
}

impl ErrorSource {
    /// Every source.
    pub const ALL: [ErrorSource; 6] = [
        ErrorSource::IdentityPlatform,
        ErrorSource::Graph,
        ErrorSource::Imap,
        ErrorSource::Sink,
        ErrorSource::Store,
        ErrorSource::Inboxd,
    ];

    /// The snake_case name used in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorSource::IdentityPlatform => "identity_platform",
            ErrorSource::Graph => "graph",
            ErrorSource::Imap => "imap",
            ErrorSource::Sink => "sink",
            ErrorSource::Store => "store",
            ErrorSource::Inboxd => "inboxd",
        }
    }

    /// The source named `name`, as [`as_str`](Self::as_str) writes it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// The last error a channel met, with what an operator should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    /// Where it came from.
    pub source: ErrorSource,
    /// Microsoft's code (`AADSTS53003`, `ApplicationThrottled`) or inboxd's own.
    pub code: String,
    /// What happened.
    pub message: String,
    /// What to do.
    pub remedy: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Microsoft's trace id, if given.
    pub trace_id: Option<String>,
    /// Microsoft's correlation id, if given.
    pub correlation_id: Option<String>,
}

/// A channel's tokens (encrypted at rest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSet {
    /// The current access token.
    pub access_token: AccessToken,
    /// When it expires.
    pub access_expires_at: DateTime<Utc>,
    /// The newest refresh token.
    pub refresh_token: RefreshToken,
    /// The scopes granted.
    pub scope: String,
    /// When the set was obtained.
    pub obtained_at: DateTime<Utc>,
}

/// Where a channel's delta sync stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cursor {
    /// The `@odata.deltaLink` of the last complete round, if any.
    pub delta_link: Option<String>,
    /// The receive time of the newest message seen.
    pub last_received_at: Option<DateTime<Utc>>,
    /// The IMAP transport's position, if the channel polled over IMAP.
    pub imap: Option<ImapCursor>,
}

/// Where an IMAP channel stands in its folder: the folder's UIDVALIDITY and the highest UID below
/// which every message is settled (delivered, marked `\Seen`, or quarantined). Never ahead of the
/// ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImapCursor {
    /// The folder's UIDVALIDITY the UIDs belong to.
    pub uid_validity: u32,
    /// Every message with a UID up to this one is settled.
    pub settled_uid: u32,
}

/// Where one message stands in the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LedgerState {
    /// Seen in the mailbox, not yet handed to the sink.
    Discovered,
    /// Handed to the sink, not yet acknowledged.
    Delivering,
    /// The sink accepted it; not yet marked read.
    Delivered,
    /// Marked read in the mailbox: done.
    MarkedRead,
    /// Failed too often; set aside for an operator.
    Quarantined,
}

impl LedgerState {
    /// Every state, in pipeline order.
    pub const ALL: [LedgerState; 5] = [
        LedgerState::Discovered,
        LedgerState::Delivering,
        LedgerState::Delivered,
        LedgerState::MarkedRead,
        LedgerState::Quarantined,
    ];

    /// The snake_case name used in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerState::Discovered => "discovered",
            LedgerState::Delivering => "delivering",
            LedgerState::Delivered => "delivered",
            LedgerState::MarkedRead => "marked_read",
            LedgerState::Quarantined => "quarantined",
        }
    }

    /// The state named `name`, as [`as_str`](Self::as_str) writes it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// What the store knows about one message of one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Where it stands.
    pub state: LedgerState,
    /// How many times processing failed.
    pub failures: u32,
    /// The last failure, for the quarantine view.
    pub last_error: Option<String>,
    /// When Graph says it was received.
    pub received_at: Option<DateTime<Utc>>,
    /// When inboxd first saw it.
    pub first_seen_at: DateTime<Utc>,
    /// When the entry last changed.
    pub updated_at: DateTime<Utc>,
}

/// An authorization in progress: what the OAuth callback needs to finish it.
#[derive(Debug, PartialEq, Eq)]
pub struct PendingAuthorization {
    /// The channel being authorized.
    pub channel_id: ChannelId,
    /// The PKCE verifier (encrypted at rest).
    pub verifier: PkceVerifier,
    /// The redirect URI sent with the authorization request.
    pub redirect_uri: String,
    /// When the authorization link was made.
    pub created_at: DateTime<Utc>,
    /// When the `state` stops being accepted.
    pub expires_at: DateTime<Utc>,
}

/// The outcome of taking a pending authorization by its `state`.
#[derive(Debug, PartialEq, Eq)]
pub enum PendingLookup {
    /// The state was pending and is now used up.
    Found(PendingAuthorization),
    /// The state existed but expired; it is removed.
    Expired,
    /// The state was already taken (a replayed callback).
    AlreadyUsed,
    /// No such state (forged, or pruned long ago).
    Unknown,
}

/// The part of a channel its actor changes as it runs: written without touching the configuration,
/// so a status update can never undo an operator's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelState {
    /// The status.
    pub status: ChannelStatus,
    /// The last error, or `None` when active.
    pub last_error: Option<LastError>,
    /// When it last polled (`None` keeps the stored value).
    pub last_poll_at: Option<DateTime<Utc>>,
    /// When it last polled successfully (`None` keeps the stored value).
    pub last_success_at: Option<DateTime<Utc>>,
}
