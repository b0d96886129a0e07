//! The admin API's JSON shapes (the boundary types): requests converted by hand into the control
//! layer's input ([`NewChannel`], [`ChannelPatch`]), board rows into responses. Validation is the
//! control layer's; these types only carry what was sent.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::control::{ChannelPatch, LastError, NewChannel};
use crate::status::ChannelView;

/// `POST /api/channels`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "tenant_id": "contoso.onmicrosoft.com",
    "client_id": "0a1b2c3d-4e5f-4061-8273-9485a6b7c8d9",
    "client_secret": "Abc8Q~the-secret-value",
    "mailbox": "support@contoso.com",
    "client_secret_expires_at": "2027-03-31",
}))]
pub struct ChannelIn {
    /// Directory (tenant) id: a GUID or a verified domain (not `common`, `organizations` or
    /// `consumers`).
    pub tenant_id: String,
    /// Application (client) id: a GUID.
    #[schema(format = "uuid")]
    pub client_id: String,
    /// The app's client secret value. Needed the first time an app (tenant, client id) is used,
    /// unless `client_certificate` is given; leave it out for an app inboxd already has. A value
    /// that differs from the recorded app's is refused (409): rotate the app instead.
    #[serde(default)]
    pub client_secret: String,
    /// The app's certificate and its unencrypted private key, PEM, instead of a secret.
    #[serde(default)]
    pub client_certificate: Option<String>,
    /// The mailbox address.
    #[schema(format = Email)]
    pub mailbox: String,
    /// The folder (default inbox).
    #[serde(default)]
    pub folder: Option<String>,
    /// A display name (default: the mailbox).
    #[serde(default)]
    pub name: Option<String>,
    /// Enabled (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// The secret's expiry: `YYYY-MM-DD` or RFC 3339.
    #[serde(default)]
    pub client_secret_expires_at: Option<String>,
    /// `all`, `new` or `last_days:N` (default from `polling.first_import`).
    #[serde(default)]
    #[schema(example = "last_days:30")]
    pub first_import: Option<String>,
    /// `delta` or `unread` (default from `polling.mode`).
    #[serde(default)]
    #[schema(value_type = Option<PollModeName>)]
    pub poll_mode: Option<String>,
    /// `graph` or `imap` (default graph).
    #[serde(default)]
    #[schema(value_type = Option<TransportName>)]
    pub transport: Option<String>,
}

/// `PATCH /api/channels/{id}`: every field optional; `client_secret_expires_at: null` clears it.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"client_secret": "Xyz8Q~the-new-secret-value", "client_secret_expires_at": "2028-03-31"}))]
pub struct ChannelPatchIn {
    /// New tenant (needs a new authorization).
    pub tenant_id: Option<String>,
    /// New app (needs a new authorization): a GUID.
    #[schema(format = "uuid")]
    pub client_id: Option<String>,
    /// New secret value for the channel's app: every channel of the app uses it (no new
    /// authorization needed).
    pub client_secret: Option<String>,
    /// New certificate (PEM, with its private key) for the channel's app, instead of a secret.
    pub client_certificate: Option<String>,
    /// New mailbox (needs a new authorization).
    #[schema(format = Email)]
    pub mailbox: Option<String>,
    /// New folder.
    pub folder: Option<String>,
    /// New name.
    pub name: Option<String>,
    /// On or off.
    pub enabled: Option<bool>,
    /// New expiry; `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    pub client_secret_expires_at: Option<Option<String>>,
    /// New first-import policy.
    pub first_import: Option<String>,
    /// New poll mode; `null` returns to `polling.mode`.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<PollModeName>)]
    pub poll_mode: Option<Option<String>>,
    /// New transport (`graph` or `imap`); the stored grant is kept when the app is consented for
    /// the other resource, otherwise the channel asks for a new sign-in.
    #[serde(default)]
    #[schema(value_type = Option<TransportName>)]
    pub transport: Option<String>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(
    de: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(de).map(Some)
}

/// A channel as the API shows it: never the secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelOut {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Tenant.
    pub tenant_id: String,
    /// App.
    pub client_id: String,
    /// Mailbox.
    pub mailbox: String,
    /// Folder.
    pub folder: String,
    /// The channel's own poll mode (`delta` or `unread`), or null when it follows `polling.mode`.
    #[schema(value_type = Option<PollModeName>)]
    pub poll_mode: Option<String>,
    /// How the channel reaches its mailbox: `graph` or `imap`.
    #[schema(value_type = TransportName)]
    pub transport: String,
    /// Enabled.
    pub enabled: bool,
    /// Status.
    #[schema(value_type = StatusName)]
    pub status: String,
    /// Last error with remedy.
    pub last_error: Option<LastErrorOut>,
    /// A problem that does not stop the channel yet (a refresh the identity platform refuses
    /// while the access token still works), with its remedy; null when none.
    pub warning: Option<LastErrorOut>,
    /// Last poll.
    pub last_poll_at: Option<DateTime<Utc>>,
    /// Last successful poll.
    pub last_success_at: Option<DateTime<Utc>>,
    /// Next poll.
    pub next_poll_at: Option<DateTime<Utc>>,
    /// The channel's app (`tenant/client`): `GET /api/apps/{tenant}/{client}`.
    pub app_id: String,
    /// The app's credential: `secret` or `certificate` (null when no expiry is known).
    pub credential_kind: Option<String>,
    /// When the app's credential expires (a secret's as given, a certificate's notAfter).
    pub client_secret_expires_at: Option<DateTime<Utc>>,
    /// Whole days until the app's credential expires.
    pub client_secret_days_left: Option<i64>,
    /// A warning when the secret expires within 30 days.
    pub secret_warning: Option<String>,
    /// Failed cycles in a row: how often a self-healing channel (backing off) has tried so far;
    /// 0 once a cycle succeeds.
    pub attempts: u32,
    /// Messages delivered today (UTC).
    pub messages_today: u64,
    /// Messages set aside after failing `retry.max_delivery_attempts` times: kept unread, listed
    /// by `GET /api/channels/{id}/quarantine`, released by its replay.
    pub quarantined: u32,
    /// Added at.
    pub created_at: DateTime<Utc>,
    /// The redirect URI to register in Azure.
    pub redirect_uri: String,
    /// Cluster mode: the node that runs the channel (null on a single node, or while no node holds
    /// its shard).
    pub node: Option<String>,
}

/// `last_error`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LastErrorOut {
    /// `identity_platform`, `graph`, `sink`, `store` or `inboxd`.
    #[schema(example = "identity_platform")]
    pub source: String,
    /// E.g. `AADSTS53003`.
    #[schema(example = "AADSTS53003")]
    pub code: String,
    /// Microsoft's (or inboxd's) message.
    pub message: String,
    /// What to do.
    pub remedy: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Microsoft's trace id.
    pub trace_id: Option<String>,
    /// Microsoft's correlation id.
    pub correlation_id: Option<String>,
}

/// A channel's status as the API writes it (`ChannelStatus::as_str`): the enum of `status` in the
/// OpenAPI document only; a test holds it to every [`crate::domain::ChannelStatus`].
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum StatusName {
    /// Authorized and polling on schedule.
    Active,
    /// Throttled or a transient failure; inboxd retries by itself.
    BackingOff,
    /// Added but never authorized: an admin must open the authorization link.
    AwaitingAuthorization,
    /// The grant expired or was revoked, or consent is missing: authorize again.
    NeedsReauthorization,
    /// An admin outside inboxd must act (Conditional Access, a wrong or expired secret).
    Blocked,
    /// Switched off by the operator.
    Disabled,
}

/// A poll mode as the API writes and reads it: the enum of `poll_mode` in the OpenAPI document.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum PollModeName {
    /// The folder's delta query (mail opened in Outlook first is still ingested).
    Delta,
    /// Unread mail only.
    Unread,
}

/// A transport as the API writes and reads it: the enum of `transport` in the OpenAPI document.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum TransportName {
    /// Microsoft Graph.
    Graph,
    /// IMAP with OAuth2 (SASL XOAUTH2) over TLS.
    Imap,
}

/// `GET /api/channels`: one page of the channels that match, sorted by name then id.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelListOut {
    /// The channels of this page.
    pub channels: Vec<ChannelOut>,
    /// How many channels match in all.
    pub total: usize,
    /// How many matching channels were skipped.
    pub offset: usize,
    /// At most this many on a page (the asked limit, clamped to 1..=1000).
    pub limit: usize,
}

/// `POST /api/channels/{id}/authorize`: the link an admin (or the mailbox's user) opens once.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthorizationOut {
    /// The Microsoft sign-in link, single use.
    #[schema(
        example = "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize?client_id=…"
    )]
    pub authorization_url: String,
    /// The redirect URI the app registration must list.
    #[schema(example = "https://inboxd.example.com/oauth/callback")]
    pub redirect_uri: String,
    /// The link stops working after this.
    pub expires_at: DateTime<Utc>,
}

/// `POST /api/channels/{id}/poll`: the poll was queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct PollOut {
    /// The channel's id.
    pub polling: String,
    /// When the poll happens: now, or when Microsoft's `Retry-After` for the mailbox has passed
    /// (RFC 3339, milliseconds, UTC).
    #[schema(format = DateTime)]
    pub poll_at: String,
}

/// `POST /api/channels/{id}/backfill`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackfillIn {
    /// Mail received at or after this is looked at again: `YYYY-MM-DD` (midnight UTC) or an
    /// RFC 3339 time.
    #[schema(example = "2026-11-01")]
    pub since: String,
}

/// `POST /api/channels/{id}/backfill`: the backfill was queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackfillOut {
    /// The channel's id.
    pub backfill: String,
    /// Mail received at or after this is looked at (RFC 3339, seconds, UTC).
    #[schema(format = DateTime)]
    pub since: String,
    /// When it starts (RFC 3339, milliseconds, UTC).
    #[schema(format = DateTime)]
    pub start_at: String,
}

/// `GET /api/channels/{id}/quarantine`: the channel's quarantined messages (at most 10,000).
#[derive(Debug, Serialize, ToSchema)]
pub struct QuarantineOut {
    /// The channel's id.
    pub channel_id: String,
    /// The quarantined messages.
    pub messages: Vec<QuarantinedOut>,
}

/// A message the sink refused too often: kept aside until a replay.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuarantinedOut {
    /// Graph's message id.
    pub message_id: String,
    /// Failed deliveries.
    pub failures: u32,
    /// The last delivery error.
    pub last_error: Option<String>,
    /// When it was first seen.
    pub first_seen_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// `POST /api/channels/{id}/quarantine/replay`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayOut {
    /// How many quarantined messages were released for delivery again.
    pub released: usize,
}

/// Every error of the admin API: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "not_found", "message": "no channel has the id 6a8e…; list them with GET /api/channels"}}))]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The `error` of an [`ErrorBody`].
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code: `unauthorized`, `too_many_attempts`, `not_found`,
    /// `conflict`, `unavailable`, `internal`, `body_too_large`, or for a 400 the field's own code
    /// (`invalid_mailbox`, `invalid_json`, `invalid_query`, …).
    #[schema(example = "invalid_mailbox")]
    pub code: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ErrorBody {
    /// The body for `code` and `message`.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message: message.into(),
            },
        }
    }
}

impl From<&LastError> for LastErrorOut {
    fn from(e: &LastError) -> Self {
        LastErrorOut {
            source: e.source.as_str().to_owned(),
            code: e.code.clone(),
            message: e.message.clone(),
            remedy: e.remedy.clone(),
            at: e.at,
            trace_id: e.trace_id.clone(),
            correlation_id: e.correlation_id.clone(),
        }
    }
}

impl ChannelOut {
    /// The API view of a board row.
    pub fn from_view(view: &ChannelView, redirect_uri: &str, quarantined: u32) -> Self {
        let now = Utc::now();
        let days_left = view.secret_days_left(now);
        let kind = view.credential_expiry.map(|(kind, _)| kind);
        let what = match kind {
            Some(crate::control::CredentialKind::Certificate) => "certificate",
            _ => "client secret",
        };
        let app_id = format!("{}/{}", view.tenant_id, view.client_id);
        let secret_warning = days_left.and_then(|days| match days {
            d if d < 0 => Some(format!(
                "the app's {what} has expired: make a new one and run `inboxd app rotate {app_id}`"
            )),
            d if d < 30 => Some(format!(
                "the app's {what} expires in {d} days: make a new one and run `inboxd app rotate {app_id}`"
            )),
            _ => None,
        });
        let today = now.date_naive();
        ChannelOut {
            id: view.id.to_string(),
            name: view.name.to_string(),
            tenant_id: view.tenant_id.to_string(),
            client_id: view.client_id.to_string(),
            mailbox: view.mailbox.to_string(),
            folder: view.folder.to_string(),
            enabled: view.enabled,
            status: view.status.to_string(),
            poll_mode: view.poll_mode.map(|m| m.as_str().to_owned()),
            transport: view.transport.as_str().to_owned(),
            last_error: view.last_error.as_deref().map(LastErrorOut::from),
            warning: view.warning.as_deref().map(LastErrorOut::from),
            last_poll_at: view.last_poll_at,
            last_success_at: view.last_success_at,
            next_poll_at: view.next_poll_at,
            credential_kind: kind.map(|k| k.as_str().to_owned()),
            client_secret_expires_at: view.credential_expires_at(),
            app_id,
            client_secret_days_left: days_left,
            secret_warning,
            messages_today: if view.messages_day == Some(today) {
                view.messages_today
            } else {
                0
            },
            quarantined,
            attempts: view.attempts,
            created_at: view.created_at,
            redirect_uri: redirect_uri.to_owned(),
            node: view.node.clone(),
        }
    }
}

impl From<ChannelIn> for NewChannel {
    fn from(body: ChannelIn) -> Self {
        NewChannel {
            tenant_id: body.tenant_id,
            client_id: body.client_id,
            client_secret: body.client_secret,
            client_certificate: body.client_certificate,
            mailbox: body.mailbox,
            folder: body.folder,
            name: body.name,
            enabled: body.enabled,
            client_secret_expires_at: body.client_secret_expires_at,
            first_import: body.first_import,
            poll_mode: body.poll_mode,
            transport: body.transport,
        }
    }
}

impl From<ChannelPatchIn> for ChannelPatch {
    fn from(body: ChannelPatchIn) -> Self {
        ChannelPatch {
            tenant_id: body.tenant_id,
            client_id: body.client_id,
            client_secret: body.client_secret,
            client_certificate: body.client_certificate,
            mailbox: body.mailbox,
            folder: body.folder,
            name: body.name,
            enabled: body.enabled,
            client_secret_expires_at: body.client_secret_expires_at,
            first_import: body.first_import,
            poll_mode: body.poll_mode,
            transport: body.transport,
        }
    }
}

/// `POST /api/apps`: an app registration and its one credential (a secret or a certificate).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "tenant_id": "contoso.onmicrosoft.com",
    "client_id": "0a1b2c3d-4e5f-4061-8273-9485a6b7c8d9",
    "name": "Contoso support",
    "client_secret": "Abc8Q~the-secret-value",
    "client_secret_expires_at": "2027-03-31",
}))]
pub struct AppIn {
    /// Directory (tenant) id: a GUID or a verified domain.
    pub tenant_id: String,
    /// Application (client) id: a GUID.
    #[schema(format = "uuid")]
    pub client_id: String,
    /// A display name.
    #[serde(default)]
    pub name: Option<String>,
    /// The client secret's Value (or give `client_certificate`).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// The certificate with its unencrypted private key, PEM.
    #[serde(default)]
    pub client_certificate: Option<String>,
    /// The secret's expiry: `YYYY-MM-DD` or RFC 3339.
    #[serde(default)]
    pub client_secret_expires_at: Option<String>,
}

/// `PUT /api/apps/{tenant}/{client}/credential`: the app's new credential, used by every channel
/// of the app from its next token request on. Only `client_secret_expires_at` notes a new expiry
/// of the current secret (`""` clears it).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"client_secret": "Xyz8Q~the-new-secret-value", "client_secret_expires_at": "2028-03-31"}))]
pub struct CredentialIn {
    /// The new client secret's Value.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// The new certificate with its unencrypted private key, PEM.
    #[serde(default)]
    pub client_certificate: Option<String>,
    /// The secret's expiry: `YYYY-MM-DD` or RFC 3339.
    #[serde(default)]
    pub client_secret_expires_at: Option<String>,
}

impl From<CredentialIn> for crate::control::CredentialInput {
    fn from(body: CredentialIn) -> Self {
        crate::control::CredentialInput {
            client_secret: body.client_secret,
            client_certificate: body.client_certificate,
            client_secret_expires_at: body.client_secret_expires_at,
        }
    }
}

impl From<AppIn> for crate::control::NewApp {
    fn from(body: AppIn) -> Self {
        crate::control::NewApp {
            tenant_id: body.tenant_id,
            client_id: body.client_id,
            name: body.name,
            credential: crate::control::CredentialInput {
                client_secret: body.client_secret,
                client_certificate: body.client_certificate,
                client_secret_expires_at: body.client_secret_expires_at,
            },
        }
    }
}

/// An app as the API shows it: never the secret or the private key.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppOut {
    /// `tenant/client`.
    pub id: String,
    /// Tenant.
    pub tenant_id: String,
    /// Application (client) id.
    pub client_id: String,
    /// Display name.
    pub name: String,
    /// `secret` or `certificate`.
    #[schema(example = "secret")]
    pub credential_kind: String,
    /// When the credential expires (a secret's as given, a certificate's notAfter).
    pub expires_at: Option<DateTime<Utc>>,
    /// Whole days until then.
    pub days_left: Option<i64>,
    /// A warning when the credential has expired or expires within 30 days, with what to do.
    pub warning: Option<String>,
    /// A certificate's SHA-1 thumbprint (hex), as the Azure portal lists it.
    pub thumbprint: Option<String>,
    /// A certificate's subject.
    pub subject: Option<String>,
    /// How many channels sign in with the app.
    pub channels: usize,
    /// Recorded at.
    pub created_at: DateTime<Utc>,
    /// Changed at.
    pub updated_at: DateTime<Utc>,
    /// When the credential was last replaced.
    pub rotated_at: Option<DateTime<Utc>>,
}

impl From<&crate::control::AppView> for AppOut {
    fn from(view: &crate::control::AppView) -> Self {
        let s = &view.summary;
        let id = view.id();
        let days_left = s.expires_at.map(|at| (at - Utc::now()).num_days());
        let what = s.kind.as_str();
        let warning = days_left.and_then(|days| match days {
            d if d < 0 => Some(format!(
                "the {what} has expired: make a new one and run `inboxd app rotate {id}`"
            )),
            d if d < 30 => Some(format!(
                "the {what} expires in {d} days: make a new one and run `inboxd app rotate {id}`"
            )),
            _ => None,
        });
        AppOut {
            tenant_id: s.tenant_id.to_string(),
            client_id: s.client_id.to_string(),
            name: s.name.clone(),
            credential_kind: what.to_owned(),
            expires_at: s.expires_at,
            days_left,
            warning,
            thumbprint: s.thumbprint.clone(),
            subject: s.subject.clone(),
            channels: view.channels,
            created_at: s.created_at,
            updated_at: s.updated_at,
            rotated_at: s.rotated_at,
            id,
        }
    }
}

/// What `PUT /api/apps/{tenant}/{client}/credential` did.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedOut {
    /// The app with its new credential.
    pub app: AppOut,
    /// How many of its channels, blocked by a credential error, try again now.
    pub retried: usize,
}

/// The request bodies carry a client secret: their `Debug` names the type only.
impl fmt::Debug for ChannelIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChannelIn { .. }")
    }
}

impl fmt::Debug for ChannelPatchIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChannelPatchIn { .. }")
    }
}

/// `GET /api/channels/{id}/events`: the channel's recent events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsOut {
    /// The channel's id.
    pub channel_id: String,
    /// Its events, newest first (at most `processor.event_history`).
    pub events: Vec<EventOut>,
}

/// One thing that happened to a channel.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventOut {
    /// When.
    pub at: DateTime<Utc>,
    /// `channel.status_changed`, `channel.sign_in_failed` or `channel.authorized`.
    pub kind: String,
    /// The channel's status after it.
    pub status: String,
    /// The status before it (status changes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_status: Option<String>,
    /// The error's code, when it is about an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// What happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
    /// Microsoft's trace id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Microsoft's correlation id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

impl From<crate::control::ChannelEvent> for EventOut {
    fn from(e: crate::control::ChannelEvent) -> Self {
        EventOut {
            at: e.at,
            kind: e.kind,
            status: e.status,
            previous_status: e.previous_status,
            code: e.code,
            message: e.message,
            remedy: e.remedy,
            trace_id: e.trace_id,
            correlation_id: e.correlation_id,
        }
    }
}

/// Body of `POST /api/channels/{id}/invitations` (optional: an empty body takes the default).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteIn {
    /// Hours the link stays valid: 1 up to `server.sign_in_link_ttl_hours` (default: that).
    #[schema(minimum = 1, example = 72)]
    pub valid_hours: Option<u32>,
}

/// `POST /api/channels/{id}/invitations`: a sign-in link to send to the mailbox's owner.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationOut {
    /// The invitation's id (the SHA-256 of its token, 64 hex digits): what revokes it.
    pub id: String,
    /// The channel.
    pub channel_id: String,
    /// The link: shown once (only its hash is kept).
    pub url: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// Who must open it.
    pub who_signs_in: String,
}

impl fmt::Debug for AppIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppIn { .. }")
    }
}

impl fmt::Debug for CredentialIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CredentialIn { .. }")
    }
}
