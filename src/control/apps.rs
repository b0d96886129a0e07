//! Apps as operators manage them: list, show, add, rotate the credential, remove. An app is the
//! (tenant, client id) of an app registration with its one credential, a client secret or a
//! certificate; every channel of the app signs in with it, so a rotation is one call for all of
//! them: the new credential is stored (flushed) first, active channels use it with their next
//! token request, and channels blocked by the old one try again at once.
//!
//! A new channel finds its app or creates it ([`Control::app_for_new_channel`]): the channel API
//! that took a secret per channel keeps working.

use chrono::Utc;

use crate::actors::messages::AppCredentialChanged;
use crate::control::input::CredentialInput;
use crate::control::{Control, Error};
use crate::domain::{AppCredential, ClientId, TenantId};
use crate::store::{AppKey, AppRecord, AppSummary};

/// An app as listings show it: its summary (no secret part) and how many channels use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppView {
    /// The app without its credential's secret part.
    pub summary: AppSummary,
    /// How many channels sign in with it.
    pub channels: usize,
}

impl AppView {
    /// The app's id (`tenant/client`).
    pub fn id(&self) -> String {
        self.summary.key().id()
    }
}

/// A new app, as typed.
#[derive(Debug, Default, Clone)]
pub struct NewApp {
    /// Directory (tenant) id.
    pub tenant_id: String,
    /// Application (client) id.
    pub client_id: String,
    /// A display name.
    pub name: Option<String>,
    /// Its credential.
    pub credential: CredentialInput,
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    /// The app with its new credential.
    pub app: AppView,
    /// How many blocked channels of the app try again at once.
    pub retried: usize,
}

fn store_error(err: crate::store::StoreError) -> Error {
    Error::Unavailable(format!("the store refused: {err}"))
}

/// Parses an app id (`tenant/client`) or its two path parts.
pub fn parse_app_id(tenant: &str, client: &str) -> Result<AppKey, Error> {
    Ok(AppKey::new(
        TenantId::parse(tenant).map_err(|e| Error::invalid_field("tenant_id", e))?,
        ClientId::parse(client).map_err(|e| Error::invalid_field("client_id", e))?,
    ))
}

impl Control {
    fn channels_of(&self, key: &AppKey) -> usize {
        let (tenant, client) = (key.tenant_id.as_str(), key.client_id.as_str());
        self.board
            .count_where(|row| row.tenant_id.as_str() == tenant && row.client_id.as_str() == client)
    }

    fn view_of(&self, summary: AppSummary) -> AppView {
        let channels = self.channels_of(&summary.key());
        AppView { summary, channels }
    }

    fn no_app(key: &AppKey) -> Error {
        Error::NotFound(format!(
            "no app {} is recorded: `inboxd app list` shows the apps; a channel's first use of an app records it",
            key.id()
        ))
    }

    /// Every app with its channel count, sorted by id.
    pub fn list_apps(&self) -> Result<Vec<AppView>, Error> {
        let apps = self.ingest.store.list_apps().map_err(store_error)?;
        let mut counts = std::collections::HashMap::<(TenantId, ClientId), usize>::new();
        self.board.visit(|row| {
            *counts
                .entry((row.tenant_id.clone(), row.client_id.clone()))
                .or_default() += 1;
        });
        Ok(apps
            .into_iter()
            .map(|summary| {
                let channels = counts
                    .get(&(summary.tenant_id.clone(), summary.client_id.clone()))
                    .copied()
                    .unwrap_or(0);
                AppView { summary, channels }
            })
            .collect())
    }

    /// The apps whose credential has expired or expires within `days`, soonest first (from
    /// memory): `(app id, kind, expiry)`.
    pub fn expiring_apps(
        &self,
        days: i64,
    ) -> Vec<(String, crate::domain::CredentialKind, chrono::DateTime<Utc>)> {
        self.ingest
            .apps
            .expiring_before(Utc::now() + chrono::Duration::days(days))
    }

    /// One app.
    pub fn app(&self, key: &AppKey) -> Result<AppView, Error> {
        let app = self.ingest.store.get_app(key).map_err(store_error)?;
        app.map(|app| self.view_of(app.summary()))
            .ok_or_else(|| Self::no_app(key))
    }

    fn save_app(&self, app: &AppRecord) -> Result<(), Error> {
        self.ingest.store.put_app(app).map_err(store_error)?;
        self.ingest.apps.note(&app.summary());
        Ok(())
    }

    /// Records a new app with its credential; an app that exists is refused (rotate it instead).
    pub fn add_app(&self, input: NewApp) -> Result<AppView, Error> {
        let key = parse_app_id(&input.tenant_id, &input.client_id)?;
        let Some(credential) = input.credential.parse()? else {
            return Err(Error::invalid(
                "missing_credential",
                "client_secret or client_certificate: an app needs its credential (the secret's Value, or the certificate with its private key as PEM)",
            ));
        };
        if self
            .ingest
            .store
            .get_app(&key)
            .map_err(store_error)?
            .is_some()
        {
            return Err(Error::AppConflict {
                app: key.id(),
                message: format!(
                    "app {} is already recorded: replace its credential with `inboxd app rotate {}` (PUT /api/apps/{}/credential)",
                    key.id(),
                    key.id(),
                    key.id()
                ),
            });
        }
        let now = Utc::now();
        let app = AppRecord {
            tenant_id: key.tenant_id.clone(),
            client_id: key.client_id.clone(),
            name: input.name.map(|n| n.trim().to_owned()).unwrap_or_default(),
            credential,
            created_at: now,
            updated_at: now,
            rotated_at: None,
        };
        self.save_app(&app)?;
        tracing::info!(app = %key.id(), kind = app.credential.kind().as_str(), "App recorded.");
        Ok(self.view_of(app.summary()))
    }

    /// Replaces an app's credential (or, given only an expiry, notes the secret's new expiry):
    /// durable before it answers, used by every channel of the app from its next token request
    /// on; the app's channels blocked by a credential error try again at once.
    pub async fn rotate_app(&self, key: &AppKey, input: CredentialInput) -> Result<Rotated, Error> {
        let Some(mut app) = self.ingest.store.get_app(key).map_err(store_error)? else {
            return Err(Self::no_app(key));
        };
        let expiry_only = input.is_empty();
        let raw_expiry = input.client_secret_expires_at.clone();
        if expiry_only {
            let AppCredential::Secret { expires_at, .. } = &mut app.credential else {
                return Err(Error::invalid(
                    "missing_credential",
                    "client_secret_expires_at: a certificate's expiry is its own (notAfter); to change it, rotate to a new certificate with client_certificate",
                ));
            };
            *expires_at = match raw_expiry.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(raw) => Some(crate::control::input::parse_expiry(
                    "client_secret_expires_at",
                    raw,
                )?),
            };
        } else if let Some(credential) = input.parse()? {
            app.credential = credential;
            app.rotated_at = Some(Utc::now());
        }
        app.updated_at = Utc::now();
        self.save_app(&app)?;
        let retried = self
            .supervisor
            .send(AppCredentialChanged { app: key.clone() })
            .await??;
        tracing::info!(app = %key.id(), kind = app.credential.kind().as_str(), retried, "App credential rotated.");
        Ok(Rotated {
            app: self.view_of(app.summary()),
            retried,
        })
    }

    /// Removes an app no channel uses.
    pub fn remove_app(&self, key: &AppKey) -> Result<(), Error> {
        let used = self.channels_of(key);
        if used > 0 {
            return Err(Error::AppConflict {
                app: key.id(),
                message: format!(
                    "app {} is used by {used} channel(s): remove them first (`inboxd channel list` shows them), or keep the app",
                    key.id()
                ),
            });
        }
        if !self.ingest.store.delete_app(key).map_err(store_error)? {
            return Err(Self::no_app(key));
        }
        self.ingest.apps.forget(key);
        tracing::info!(app = %key.id(), "App removed.");
        Ok(())
    }

    /// The app a new channel signs in with: the recorded one (a credential given with the channel
    /// must be the same: a different one is refused rather than silently rotating every channel
    /// of the app), or a new app with the given credential, stored before the channel.
    pub(crate) fn app_for_new_channel(
        &self,
        key: &AppKey,
        credential: Option<AppCredential>,
    ) -> Result<(), Error> {
        let existing = self.ingest.store.get_app(key).map_err(store_error)?;
        match (existing, credential) {
            (Some(app), Some(given)) if !app.credential.same_as(&given) => {
                Err(Error::AppConflict {
                    app: key.id(),
                    message: format!(
                        "app {} is recorded with another {}: leave client_secret and client_certificate out to use it, or replace it for all its channels with `inboxd app rotate {}`",
                        key.id(),
                        app.credential.kind().as_str(),
                        key.id()
                    ),
                })
            }
            (Some(_), _) => Ok(()),
            (None, Some(credential)) => {
                let now = Utc::now();
                self.save_app(&AppRecord {
                    tenant_id: key.tenant_id.clone(),
                    client_id: key.client_id.clone(),
                    name: String::new(),
                    credential,
                    created_at: now,
                    updated_at: now,
                    rotated_at: None,
                })
            }
            (None, None) => Err(Error::invalid(
                "missing_credential",
                format!(
                    "client_secret: app {} is not recorded yet: give its client secret's Value (or client_certificate), or record the app first with `inboxd app add`",
                    key.id()
                ),
            )),
        }
    }
}
