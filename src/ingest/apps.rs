//! The apps channels sign in with, as the mail path needs them: each token request reads its app's
//! credential from the store (so a rotation, made on this node or another, counts from the next
//! request on), and the credentials' expiry dates are kept in memory for the channels' schedule
//! checks (only apps with a date take room: at a million apps without one, the map is empty).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use parking_lot::RwLock;

use crate::catalogue::codes;
use crate::domain::CredentialKind;
use crate::oauth::OAuthError;
use crate::store::{AppKey, AppRecord, AppSummary, ChannelRecord, Store, StoreError};

/// The apps' credentials: read from the store per token request, expiries held in memory.
pub struct AppDirectory {
    store: Store,
    /// `tenant/client` → the credential's kind and expiry, for apps whose credential has one.
    expiries: RwLock<HashMap<String, (CredentialKind, DateTime<Utc>)>>,
}

/// Why a channel's app credential could not be had.
#[derive(Debug)]
pub enum AppLookupError {
    /// The store failed.
    Store(StoreError),
    /// The credential cannot be used (no app record): an identity failure with inboxd's own code.
    Credential(OAuthError),
}

impl AppDirectory {
    /// An empty directory over `store`; [`reload`](Self::reload) fills it.
    pub fn new(store: Store) -> Self {
        AppDirectory {
            store,
            expiries: RwLock::new(HashMap::new()),
        }
    }

    /// Reads every app's expiry from the store (nothing is decrypted): at start, and in cluster mode
    /// with every reconcile, so a rotation on another node reaches this one's checks.
    pub fn reload(&self) -> Result<(), StoreError> {
        let map: HashMap<_, _> = self
            .store
            .list_app_expiries()?
            .into_iter()
            .map(|(key, kind, at)| (key.id(), (kind, at)))
            .collect();
        *self.expiries.write() = map;
        Ok(())
    }

    /// Takes note of an app just written.
    pub fn note(&self, app: &AppSummary) {
        let id = app.key().id();
        let mut map = self.expiries.write();
        match app.expires_at {
            Some(at) => {
                map.insert(id, (app.kind, at));
            }
            None => {
                map.remove(&id);
            }
        }
    }

    /// Reads `record`'s app again (a notice from another node may follow a rotation there).
    pub fn refresh(&self, record: &ChannelRecord) {
        match self.store.get_app(&record.app_key()) {
            Ok(Some(app)) => self.note(&app.summary()),
            Ok(None) => self.forget(&record.app_key()),
            Err(err) => {
                tracing::warn!(channel = %record.id, error = %err, "Could not read the channel's app.");
            }
        }
    }

    /// Forgets an app just removed.
    pub fn forget(&self, key: &AppKey) {
        self.expiries.write().remove(&key.id());
    }

    /// The kind and expiry of the credential of `record`'s app, if it has a date.
    pub fn expiry(&self, record: &ChannelRecord) -> Option<(CredentialKind, DateTime<Utc>)> {
        let map = self.expiries.read();
        if map.is_empty() {
            return None;
        }
        map.get(&format!(
            "{}/{}",
            record.tenant_id.as_str(),
            record.client_id.as_str()
        ))
        .copied()
    }

    /// The apps whose credential expires before `before` (expired ones included), soonest first:
    /// `(tenant/client, kind, expiry)`. From memory, no store read.
    pub fn expiring_before(
        &self,
        before: DateTime<Utc>,
    ) -> Vec<(String, CredentialKind, DateTime<Utc>)> {
        let mut out: Vec<_> = self
            .expiries
            .read()
            .iter()
            .filter(|(_, (_, at))| *at < before)
            .map(|(id, (kind, at))| (id.clone(), *kind, *at))
            .collect();
        out.sort_by_key(|(id, _, at)| (*at, id.clone()));
        out
    }

    /// The app of `record` with its credential, read from the store now.
    pub fn credential(&self, record: &ChannelRecord) -> Result<AppRecord, AppLookupError> {
        match self.store.get_app(&record.app_key()) {
            Ok(Some(app)) => Ok(app),
            Ok(None) => Err(AppLookupError::Credential(OAuthError::Credential {
                code: codes::APP_MISSING,
                message: format!(
                    "No app is recorded for tenant {} and client id {}: inboxd has no secret or certificate to sign in with.",
                    record.tenant_id, record.client_id
                ),
            })),
            Err(err) => Err(AppLookupError::Store(err)),
        }
    }
}
