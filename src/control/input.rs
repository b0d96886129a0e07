//! What an operator asks for, field by field as typed (from the admin API's JSON or the status
//! page's forms), and its validation into a channel record: [`NewChannel`] and [`ChannelPatch`].
//! The first wrong field is reported as [`Error::Invalid`] with a code naming it and a message
//! saying how to write it. The client secret and certificate are never printed (`Debug` redacts
//! them). A credential given with a channel belongs to the channel's app ([`CredentialInput`]).

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};

use crate::control::Error;
use crate::domain::secret::ClientSecret;
use crate::domain::{
    AppCredential, ChannelId, ChannelStatus, ClientCertificate, ClientId, Folder, Mailbox, TenantId,
};
use crate::store::{ChannelRecord, FirstImport};

/// A channel to add, as the operator typed it.
#[derive(Default)]
pub struct NewChannel {
    /// Directory (tenant) id.
    pub tenant_id: String,
    /// Application (client) id.
    pub client_id: String,
    /// The client secret's value; empty when the app is already known to inboxd (or a certificate
    /// is given).
    pub client_secret: String,
    /// The app's certificate and private key (PEM), instead of a secret.
    pub client_certificate: Option<String>,
    /// The mailbox address.
    pub mailbox: String,
    /// The folder (default inbox).
    pub folder: Option<String>,
    /// A display name (default: the mailbox).
    pub name: Option<String>,
    /// Enabled (default true).
    pub enabled: Option<bool>,
    /// The secret's expiry: `YYYY-MM-DD` or RFC 3339.
    pub client_secret_expires_at: Option<String>,
    /// `all`, `new` or `last_days:N` (default: the daemon's `polling.first_import`).
    pub first_import: Option<String>,
    /// `delta` or `unread` (default: the daemon's `polling.mode`).
    pub poll_mode: Option<String>,
    /// `graph` or `imap` (default graph).
    pub transport: Option<String>,
}

impl fmt::Debug for NewChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewChannel")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field(
                "client_certificate",
                &self.client_certificate.as_ref().map(|_| "[redacted]"),
            )
            .field("mailbox", &self.mailbox)
            .field("folder", &self.folder)
            .field("name", &self.name)
            .field("enabled", &self.enabled)
            .field("client_secret_expires_at", &self.client_secret_expires_at)
            .field("first_import", &self.first_import)
            .field("poll_mode", &self.poll_mode)
            .field("transport", &self.transport)
            .finish()
    }
}

/// An app credential as typed: a secret's value (with its expiry) or a certificate's PEM.
#[derive(Default, Clone)]
pub struct CredentialInput {
    /// The client secret's value.
    pub client_secret: Option<String>,
    /// The certificate and its private key, PEM.
    pub client_certificate: Option<String>,
    /// The secret's expiry: `YYYY-MM-DD` or RFC 3339 (a certificate's is read from it).
    pub client_secret_expires_at: Option<String>,
}

impl fmt::Debug for CredentialInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialInput")
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "client_certificate",
                &self.client_certificate.as_ref().map(|_| "[redacted]"),
            )
            .field("client_secret_expires_at", &self.client_secret_expires_at)
            .finish()
    }
}

impl CredentialInput {
    /// Whether nothing was given.
    pub fn is_empty(&self) -> bool {
        self.client_secret
            .as_deref()
            .is_none_or(|s| s.trim().is_empty())
            && self
                .client_certificate
                .as_deref()
                .is_none_or(|s| s.trim().is_empty())
    }

    /// Validates the credential: exactly one of a secret and a certificate; `None` when neither
    /// was given. A certificate must hold its private key, match it, and not have expired.
    pub fn parse(self) -> Result<Option<AppCredential>, Error> {
        let secret = self.client_secret.filter(|s| !s.trim().is_empty());
        let certificate = self.client_certificate.filter(|s| !s.trim().is_empty());
        match (secret, certificate) {
            (Some(_), Some(_)) => Err(Error::invalid(
                "ambiguous_credential",
                "client_secret and client_certificate: give one of them, not both (an app signs in with one credential; Microsoft recommends the certificate)",
            )),
            (Some(secret), None) => {
                let secret = ClientSecret::new(secret.trim())
                    .map_err(|e| Error::invalid_field("client_secret", e))?;
                let expires_at = self
                    .client_secret_expires_at
                    .as_deref()
                    .filter(|raw| !raw.trim().is_empty())
                    .map(|raw| parse_expiry("client_secret_expires_at", raw))
                    .transpose()?;
                Ok(Some(AppCredential::Secret { secret, expires_at }))
            }
            (None, Some(pem)) => {
                let cert = ClientCertificate::from_pem(&pem).map_err(|e| {
                    Error::invalid(
                        "invalid_client_certificate",
                        format!("client_certificate: {e}"),
                    )
                })?;
                if cert.not_after() <= Utc::now() {
                    return Err(Error::invalid(
                        "invalid_client_certificate",
                        format!(
                            "client_certificate: {}",
                            crate::domain::CredentialError::Expired(cert.not_after())
                        ),
                    ));
                }
                Ok(Some(AppCredential::Certificate(Box::new(cert))))
            }
            (None, None) => Ok(None),
        }
    }
}

/// A change to a channel: every field optional.
#[derive(Default)]
pub struct ChannelPatch {
    /// New tenant (needs a new authorization).
    pub tenant_id: Option<String>,
    /// New app (needs a new authorization).
    pub client_id: Option<String>,
    /// New secret value for the channel's app (every channel of the app uses it; no new
    /// authorization needed).
    pub client_secret: Option<String>,
    /// New certificate (PEM) for the channel's app, instead of a secret.
    pub client_certificate: Option<String>,
    /// New mailbox (needs a new authorization).
    pub mailbox: Option<String>,
    /// New folder.
    pub folder: Option<String>,
    /// New name.
    pub name: Option<String>,
    /// On or off.
    pub enabled: Option<bool>,
    /// New expiry; `Some(None)` clears it.
    pub client_secret_expires_at: Option<Option<String>>,
    /// New first-import policy.
    pub first_import: Option<String>,
    /// New poll mode; `Some(None)` returns to the daemon's `polling.mode`.
    pub poll_mode: Option<Option<String>>,
    /// New transport: `graph` or `imap`.
    pub transport: Option<String>,
}

impl fmt::Debug for ChannelPatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelPatch")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "client_certificate",
                &self.client_certificate.as_ref().map(|_| "[redacted]"),
            )
            .field("mailbox", &self.mailbox)
            .field("folder", &self.folder)
            .field("name", &self.name)
            .field("enabled", &self.enabled)
            .field("client_secret_expires_at", &self.client_secret_expires_at)
            .field("first_import", &self.first_import)
            .field("poll_mode", &self.poll_mode)
            .field("transport", &self.transport)
            .finish()
    }
}

/// Parses a poll mode: `delta` or `unread`.
pub fn parse_poll_mode(raw: &str) -> Result<crate::domain::PollMode, Error> {
    crate::domain::PollMode::parse(raw.trim()).ok_or_else(|| {
        Error::invalid(
            "invalid_poll_mode",
            format!(
                "poll_mode: {raw:?} is not a mode: use delta (the folder's changes, so mail read before the poll is still ingested) or unread"
            ),
        )
    })
}

/// Parses a transport: `graph` or `imap`.
pub fn parse_transport(raw: &str) -> Result<crate::domain::Transport, Error> {
    crate::domain::Transport::parse(raw.trim()).ok_or_else(|| {
        Error::invalid(
            "invalid_transport",
            format!(
                "transport: {raw:?} is not a transport: use graph (Microsoft Graph, the default) or imap (IMAP with OAuth2, for tenants that block Graph)"
            ),
        )
    })
}

/// Parses a date (`YYYY-MM-DD`, end of that day UTC) or an RFC 3339 time.
pub fn parse_expiry(field: &'static str, raw: &str) -> Result<DateTime<Utc>, Error> {
    let raw = raw.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(raw) {
        return Ok(at.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .and_then(|day| day.and_hms_opt(23, 59, 59))
        .map(|at| at.and_utc())
        .ok_or_else(|| {
            Error::invalid("invalid_date", format!("{field}: {raw:?} is not a date: write YYYY-MM-DD (e.g. 2027-03-31) or an RFC 3339 time"))
        })
}

/// Parses `all`, `new` or `last_days:N`.
pub fn parse_first_import(raw: &str) -> Result<FirstImport, Error> {
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
                Error::invalid("invalid_first_import", format!("first_import: {raw:?} is not a policy: use all, new or last_days:N (N from 1 to 3650)"))
            }),
    }
}

/// Parses a channel id (of a path, a form).
pub fn parse_channel_id(raw: &str) -> Result<ChannelId, Error> {
    ChannelId::parse(raw).map_err(|e| Error::invalid_field("id", e))
}

impl NewChannel {
    /// Validates every field into a new record and the app credential given with it (if any);
    /// the first invalid field is reported.
    pub(crate) fn into_record(
        self,
        default_first_import: FirstImport,
    ) -> Result<(ChannelRecord, Option<AppCredential>), Error> {
        let tenant_id =
            TenantId::parse(&self.tenant_id).map_err(|e| Error::invalid_field("tenant_id", e))?;
        let client_id =
            ClientId::parse(&self.client_id).map_err(|e| Error::invalid_field("client_id", e))?;
        let credential = CredentialInput {
            client_secret: Some(self.client_secret),
            client_certificate: self.client_certificate,
            client_secret_expires_at: self.client_secret_expires_at,
        }
        .parse()?;
        let mailbox =
            Mailbox::parse(&self.mailbox).map_err(|e| Error::invalid_field("mailbox", e))?;
        let folder = match self.folder.as_deref() {
            Some(raw) => Folder::parse(raw).map_err(|e| Error::invalid_field("folder", e))?,
            None => Folder::inbox(),
        };
        let name = self
            .name
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| mailbox.to_string());
        if name.chars().count() > 200 {
            return Err(Error::invalid(
                "invalid_name",
                "name: at most 200 characters",
            ));
        }
        let first_import = self
            .first_import
            .as_deref()
            .map(parse_first_import)
            .transpose()?
            .unwrap_or(default_first_import);
        let poll_mode = self.poll_mode.as_deref().map(parse_poll_mode).transpose()?;
        let transport = self
            .transport
            .as_deref()
            .map(parse_transport)
            .transpose()?
            .unwrap_or_default();
        let now = Utc::now();
        let record = ChannelRecord {
            id: ChannelId::generate(),
            name: name.into(),
            tenant_id,
            client_id,
            mailbox,
            folder,
            enabled: self.enabled.unwrap_or(true),
            first_import,
            poll_mode,
            transport,
            created_at: now,
            updated_at: now,
            activated_at: None,
            status: ChannelStatus::AwaitingAuthorization,
            last_error: None,
            last_poll_at: None,
            last_success_at: None,
        };
        Ok((record, credential))
    }
}

impl ChannelPatch {
    /// The credential part of the patch, which belongs to the channel's app; `None` when the patch
    /// changes no credential.
    pub(crate) fn take_credential(&mut self) -> Option<CredentialInput> {
        let given = CredentialInput {
            client_secret: self.client_secret.take(),
            client_certificate: self.client_certificate.take(),
            client_secret_expires_at: None,
        };
        let expiry = self.client_secret_expires_at.take();
        if given.is_empty() && expiry.is_none() {
            return None;
        }
        Some(CredentialInput {
            client_secret_expires_at: expiry.flatten(),
            ..given
        })
    }

    /// Applies the channel part of the patch to a record (take the credential part first with
    /// [`take_credential`](Self::take_credential)); answers whether a new authorization is needed.
    pub(crate) fn apply(self, record: &mut ChannelRecord) -> Result<bool, Error> {
        let mut reauthorize = false;
        if let Some(raw) = self.tenant_id {
            let tenant = TenantId::parse(&raw).map_err(|e| Error::invalid_field("tenant_id", e))?;
            reauthorize |= tenant != record.tenant_id;
            record.tenant_id = tenant;
        }
        if let Some(raw) = self.client_id {
            let client = ClientId::parse(&raw).map_err(|e| Error::invalid_field("client_id", e))?;
            reauthorize |= client != record.client_id;
            record.client_id = client;
        }
        if let Some(raw) = self.mailbox {
            let mailbox = Mailbox::parse(&raw).map_err(|e| Error::invalid_field("mailbox", e))?;
            reauthorize |= mailbox != record.mailbox;
            record.mailbox = mailbox;
        }
        if let Some(raw) = self.folder {
            record.folder = Folder::parse(&raw).map_err(|e| Error::invalid_field("folder", e))?;
        }
        if let Some(name) = self.name {
            let name = name.trim().to_owned();
            if name.is_empty() || name.chars().count() > 200 {
                return Err(Error::invalid("invalid_name", "name: 1 to 200 characters"));
            }
            record.name = name.into();
        }
        if let Some(raw) = self.first_import {
            record.first_import = parse_first_import(&raw)?;
        }
        if let Some(mode) = self.poll_mode {
            record.poll_mode = mode.as_deref().map(parse_poll_mode).transpose()?;
        }
        if let Some(raw) = self.transport {
            // The stored grant is kept: the next cycle asks for a token of the new transport's
            // resource with the same refresh token (or, without consent, asks for a new sign-in).
            record.transport = parse_transport(&raw)?;
        }
        if let Some(enabled) = self.enabled {
            record.enabled = enabled;
        }
        Ok(reauthorize)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_client_secret() {
        let input = NewChannel {
            client_secret: "s3cr3t-value".to_owned(),
            ..NewChannel::default()
        };
        assert!(!format!("{input:?}").contains("s3cr3t"));
        let patch = ChannelPatch {
            client_secret: Some("s3cr3t-value".to_owned()),
            ..ChannelPatch::default()
        };
        assert!(!format!("{patch:?}").contains("s3cr3t"));
    }

    #[test]
    fn the_first_wrong_field_is_named_with_a_stable_code() {
        let input = NewChannel {
            tenant_id: "6f1c2a3b-4d5e-4f60-8a71-92b3c4d5e6f7".to_owned(),
            client_id: "0a1b2c3d-4e5f-4061-8273-9485a6b7c8d9".to_owned(),
            client_secret: "value".to_owned(),
            mailbox: "not-an-address".to_owned(),
            ..NewChannel::default()
        };
        let err = input.into_record(FirstImport::OnlyNew).unwrap_err();
        assert!(matches!(
            err,
            Error::Invalid {
                code: "invalid_mailbox",
                ..
            }
        ));
        assert!(err.to_string().starts_with("mailbox: "));
        assert!(matches!(
            parse_first_import("last_days:0"),
            Err(Error::Invalid {
                code: "invalid_first_import",
                ..
            })
        ));
        assert!(matches!(
            parse_expiry("client_secret_expires_at", "soon"),
            Err(Error::Invalid {
                code: "invalid_date",
                ..
            })
        ));
        assert!(matches!(
            parse_transport("pop3"),
            Err(Error::Invalid {
                code: "invalid_transport",
                ..
            })
        ));
        assert_eq!(
            parse_transport(" imap ").unwrap(),
            crate::domain::Transport::Imap
        );
        assert_eq!(
            parse_expiry("x", "2027-03-31").unwrap().to_rfc3339(),
            "2027-03-31T23:59:59+00:00"
        );
    }
}
