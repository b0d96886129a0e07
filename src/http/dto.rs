//! The admin API's JSON shapes (the boundary types), converted by hand from and to domain records.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::secret::ClientSecret;
use crate::domain::{ChannelId, ClientId, Folder, Mailbox, TenantId};
use crate::http::error::{ApiError, invalid};
use crate::status::ChannelView;
use crate::store::{ChannelRecord, FirstImport, LastError};

/// `POST /api/channels`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelIn {
    /// Directory (tenant) id.
    pub tenant_id: String,
    /// Application (client) id.
    pub client_id: String,
    /// The secret value.
    pub client_secret: String,
    /// The mailbox address.
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
    pub first_import: Option<String>,
}

/// `PATCH /api/channels/{id}`: every field optional; `client_secret_expires_at: null` clears it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelPatch {
    /// New tenant (needs a new authorization).
    pub tenant_id: Option<String>,
    /// New app (needs a new authorization).
    pub client_id: Option<String>,
    /// New secret value (no new authorization needed).
    pub client_secret: Option<String>,
    /// New mailbox (needs a new authorization).
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
}

fn double_option<'de, D: serde::Deserializer<'de>>(
    de: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(de).map(Some)
}

/// A channel as the API shows it: never the secret.
#[derive(Debug, Serialize)]
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
    /// Enabled.
    pub enabled: bool,
    /// Status.
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
    /// Secret expiry.
    pub client_secret_expires_at: Option<DateTime<Utc>>,
    /// Whole days until the secret expires.
    pub client_secret_days_left: Option<i64>,
    /// A warning when the secret expires within 30 days.
    pub secret_warning: Option<String>,
    /// Messages delivered today (UTC).
    pub messages_today: u64,
    /// Added at.
    pub created_at: DateTime<Utc>,
    /// The redirect URI to register in Azure.
    pub redirect_uri: String,
}

/// `last_error`.
#[derive(Debug, Serialize)]
pub struct LastErrorOut {
    /// `identity_platform`, `graph`, `sink`, `store` or `inboxd`.
    pub source: String,
    /// E.g. `AADSTS53003`.
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
    pub fn from_view(view: &ChannelView, redirect_uri: &str) -> Self {
        let now = Utc::now();
        let days_left = view.secret_days_left(now);
        let secret_warning = days_left.and_then(|days| match days {
            d if d < 0 => Some(
                "the client secret has expired: make a new one and update the channel".to_owned(),
            ),
            d if d < 30 => Some(format!(
                "the client secret expires in {d} days: make a new one and update the channel"
            )),
            _ => None,
        });
        let today = now.date_naive();
        ChannelOut {
            id: view.id.to_string(),
            name: view.name.clone(),
            tenant_id: view.tenant_id.clone(),
            client_id: view.client_id.clone(),
            mailbox: view.mailbox.clone(),
            folder: view.folder.clone(),
            enabled: view.enabled,
            status: view.status.to_string(),
            last_error: view.last_error.as_ref().map(LastErrorOut::from),
            warning: view.warning.as_ref().map(LastErrorOut::from),
            last_poll_at: view.last_poll_at,
            last_success_at: view.last_success_at,
            next_poll_at: view.next_poll_at,
            client_secret_expires_at: view.client_secret_expires_at,
            client_secret_days_left: days_left,
            secret_warning,
            messages_today: if view.messages_day == Some(today) {
                view.messages_today
            } else {
                0
            },
            created_at: view.created_at,
            redirect_uri: redirect_uri.to_owned(),
        }
    }
}

/// Parses a date (`YYYY-MM-DD`, end of that day UTC) or an RFC 3339 time.
pub fn parse_expiry(field: &'static str, raw: &str) -> Result<DateTime<Utc>, ApiError> {
    let raw = raw.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(raw) {
        return Ok(at.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .and_then(|day| day.and_hms_opt(23, 59, 59))
        .map(|at| at.and_utc())
        .ok_or_else(|| {
            ApiError::bad("invalid_date", format!("{field}: {raw:?} is not a date: write YYYY-MM-DD (e.g. 2027-03-31) or an RFC 3339 time"))
        })
}

/// Parses `all`, `new` or `last_days:N`.
pub fn parse_first_import(raw: &str) -> Result<FirstImport, ApiError> {
    let raw = raw.trim();
    match raw {
        "all" => Ok(FirstImport::AllUnread),
        "new" => Ok(FirstImport::OnlyNew),
        _ => raw
            .strip_prefix("last_days:")
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| (1..=3650).contains(n))
            .map(FirstImport::LastDays)
            .ok_or_else(|| {
                ApiError::bad("invalid_first_import", format!("first_import: {raw:?} is not a policy: use all, new or last_days:N (N from 1 to 3650)"))
            }),
    }
}

/// The policy as the API writes it.
pub fn first_import_name(policy: FirstImport) -> String {
    match policy {
        FirstImport::AllUnread => "all".to_owned(),
        FirstImport::OnlyNew => "new".to_owned(),
        FirstImport::LastDays(n) => format!("last_days:{n}"),
    }
}

impl ChannelIn {
    /// Validates every field into a new record; the first invalid field is reported.
    pub fn into_record(self, default_first_import: FirstImport) -> Result<ChannelRecord, ApiError> {
        let tenant_id = TenantId::parse(&self.tenant_id).map_err(|e| invalid("tenant_id", e))?;
        let client_id = ClientId::parse(&self.client_id).map_err(|e| invalid("client_id", e))?;
        let client_secret = ClientSecret::new(self.client_secret.trim())
            .map_err(|e| invalid("client_secret", e))?;
        let mailbox = Mailbox::parse(&self.mailbox).map_err(|e| invalid("mailbox", e))?;
        let folder = match self.folder.as_deref() {
            Some(raw) => Folder::parse(raw).map_err(|e| invalid("folder", e))?,
            None => Folder::inbox(),
        };
        let name = self
            .name
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| mailbox.to_string());
        if name.chars().count() > 200 {
            return Err(ApiError::bad(
                "invalid_name",
                "name: at most 200 characters",
            ));
        }
        let client_secret_expires_at = self
            .client_secret_expires_at
            .as_deref()
            .map(|raw| parse_expiry("client_secret_expires_at", raw))
            .transpose()?;
        let first_import = self
            .first_import
            .as_deref()
            .map(parse_first_import)
            .transpose()?
            .unwrap_or(default_first_import);
        let now = Utc::now();
        Ok(ChannelRecord {
            id: ChannelId::generate(),
            name,
            tenant_id,
            client_id,
            client_secret,
            client_secret_expires_at,
            mailbox,
            folder,
            enabled: self.enabled.unwrap_or(true),
            first_import,
            created_at: now,
            updated_at: now,
            activated_at: None,
            status: crate::domain::ChannelStatus::AwaitingAuthorization,
            last_error: None,
            last_poll_at: None,
            last_success_at: None,
        })
    }
}

impl ChannelPatch {
    /// Applies the patch to a record; answers whether a new authorization is needed.
    pub fn apply(self, record: &mut ChannelRecord) -> Result<bool, ApiError> {
        let mut reauthorize = false;
        if let Some(raw) = self.tenant_id {
            let tenant = TenantId::parse(&raw).map_err(|e| invalid("tenant_id", e))?;
            reauthorize |= tenant != record.tenant_id;
            record.tenant_id = tenant;
        }
        if let Some(raw) = self.client_id {
            let client = ClientId::parse(&raw).map_err(|e| invalid("client_id", e))?;
            reauthorize |= client != record.client_id;
            record.client_id = client;
        }
        if let Some(raw) = self.mailbox {
            let mailbox = Mailbox::parse(&raw).map_err(|e| invalid("mailbox", e))?;
            reauthorize |= mailbox != record.mailbox;
            record.mailbox = mailbox;
        }
        if let Some(raw) = self.client_secret {
            record.client_secret =
                ClientSecret::new(raw.trim()).map_err(|e| invalid("client_secret", e))?;
        }
        if let Some(raw) = self.folder {
            record.folder = Folder::parse(&raw).map_err(|e| invalid("folder", e))?;
        }
        if let Some(name) = self.name {
            let name = name.trim().to_owned();
            if name.is_empty() || name.chars().count() > 200 {
                return Err(ApiError::bad("invalid_name", "name: 1 to 200 characters"));
            }
            record.name = name;
        }
        if let Some(expiry) = self.client_secret_expires_at {
            record.client_secret_expires_at = expiry
                .as_deref()
                .map(|raw| parse_expiry("client_secret_expires_at", raw))
                .transpose()?;
        }
        if let Some(raw) = self.first_import {
            record.first_import = parse_first_import(&raw)?;
        }
        if let Some(enabled) = self.enabled {
            record.enabled = enabled;
        }
        Ok(reauthorize)
    }
}
