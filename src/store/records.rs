//! The records the store keeps, as the rest of inboxd sees them: domain types, no serde.
//!
//! The persisted shapes live in `persisted.rs`; conversions between the two are written by hand so
//! that the on-disk format can evolve (it is versioned) without touching these types.

use chrono::{DateTime, Utc};

use crate::domain::secret::{AccessToken, PkceVerifier, RefreshToken};
use crate::domain::{
    AppCredential, ChannelId, ChannelStatus, ClientId, CredentialKind, Folder, Mailbox, TenantId,
};

/// An app registration inboxd signs in with: (tenant, client id) and its one credential, shared by
/// every channel of that tenant and app. Rotating the credential here rotates it for all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRecord {
    /// The Azure directory the app signs in at.
    pub tenant_id: TenantId,
    /// The app registration's application (client) id.
    pub client_id: ClientId,
    /// A display name (may be empty).
    pub name: String,
    /// The client secret or certificate (sealed at rest).
    pub credential: AppCredential,
    /// When the app was first recorded.
    pub created_at: DateTime<Utc>,
    /// When the record last changed.
    pub updated_at: DateTime<Utc>,
    /// When the credential was last replaced, if ever.
    pub rotated_at: Option<DateTime<Utc>>,
}

/// An app's identity: the tenant it signs in at and its client id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppKey {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The client id.
    pub client_id: ClientId,
}

impl AppKey {
    /// The key of `tenant` and `client`.
    pub fn new(tenant_id: TenantId, client_id: ClientId) -> Self {
        AppKey {
            tenant_id,
            client_id,
        }
    }

    /// The app's id in the API, the CLI and the store: `tenant/client` (lower case).
    pub fn id(&self) -> String {
        format!("{}/{}", self.tenant_id.as_str(), self.client_id.as_str())
    }

    /// Parses an id written by [`id`](Self::id) (`tenant/client`; `tenant:client` also accepted,
    /// as it needs no escaping in a URL path).
    pub fn parse(id: &str) -> Result<Self, crate::domain::DomainError> {
        let (tenant, client) = id
            .split_once('/')
            .or_else(|| id.split_once(':'))
            .ok_or_else(|| crate::domain::DomainError::InvalidAppId(id.to_owned()))?;
        Ok(AppKey {
            tenant_id: TenantId::parse(tenant)?,
            client_id: ClientId::parse(client)?,
        })
    }
}

impl AppRecord {
    /// The app's key.
    pub fn key(&self) -> AppKey {
        AppKey::new(self.tenant_id.clone(), self.client_id.clone())
    }

    /// What may be shown of it: everything but the credential's secret part.
    pub fn summary(&self) -> AppSummary {
        let (thumbprint, subject) = match &self.credential {
            AppCredential::Certificate(cert) => {
                (Some(cert.thumbprint()), Some(cert.subject().to_owned()))
            }
            AppCredential::Secret { .. } => (None, None),
        };
        AppSummary {
            tenant_id: self.tenant_id.clone(),
            client_id: self.client_id.clone(),
            name: self.name.clone(),
            kind: self.credential.kind(),
            expires_at: self.credential.expires_at(),
            thumbprint,
            subject,
            created_at: self.created_at,
            updated_at: self.updated_at,
            rotated_at: self.rotated_at,
        }
    }
}

/// An app without its credential's secret part: what listings and the status page show, read from
/// the store without decrypting anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSummary {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The client id.
    pub client_id: ClientId,
    /// A display name (may be empty).
    pub name: String,
    /// A secret or a certificate.
    pub kind: CredentialKind,
    /// When the credential expires, if known (a certificate's always is).
    pub expires_at: Option<DateTime<Utc>>,
    /// A certificate's SHA-1 thumbprint (hex, as the Azure portal lists it).
    pub thumbprint: Option<String>,
    /// A certificate's subject.
    pub subject: Option<String>,
    /// When the app was first recorded.
    pub created_at: DateTime<Utc>,
    /// When the record last changed.
    pub updated_at: DateTime<Utc>,
    /// When the credential was last replaced, if ever.
    pub rotated_at: Option<DateTime<Utc>>,
}

impl AppSummary {
    /// The app's key.
    pub fn key(&self) -> AppKey {
        AppKey::new(self.tenant_id.clone(), self.client_id.clone())
    }
}

impl ChannelRecord {
    /// The key of the app the channel signs in with.
    pub fn app_key(&self) -> AppKey {
        AppKey::new(self.tenant_id.clone(), self.client_id.clone())
    }
}

/// One channel: a mailbox inboxd listens to, with its app registration and its current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRecord {
    /// The id inboxd gave the channel.
    pub id: ChannelId,
    /// A display name (may be empty); shared with the channel's status row.
    pub name: std::sync::Arc<str>,
    /// The Azure directory of the app and the mailbox.
    pub tenant_id: TenantId,
    /// The app registration's application (client) id; with the tenant, the key of the app
    /// ([`AppRecord`]) whose credential the channel signs in with.
    pub client_id: ClientId,
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
    /// The last error, for every non-active status. Boxed: most channels have none, and a record
    /// is held for every running channel (~150 bytes less each).
    pub last_error: Option<Box<LastError>>,
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
