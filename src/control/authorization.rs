//! The authorization service: [`Control::authorize`] makes a channel's sign-in link (PKCE, a random
//! single-use `state` stored with its verifier), [`Control::complete_authorization`] takes
//! Microsoft's redirect back (the `state`, then the `code` or the `error`), redeems the code at the
//! channel's tenant, stores the token set durably and tells the supervisor. Both answer typed
//! outcomes; the callback page and the admin API only render them.

use chrono::{DateTime, Utc};

use crate::actors::messages::{AuthorizationCompleted, SignInFailed};
use crate::catalogue::{self, Classification};
use crate::control::{Control, Error};
use crate::domain::ChannelId;
use crate::ingest::apps::AppLookupError;
use crate::oauth::{AppCredentials, aadsts_codes, description_field, description_head};
use crate::store::{ErrorSource, LastError, PendingAuthorization, PendingLookup, TokenSet};

/// The operator-facing text for a missing or empty code.
pub const EMPTY_CODE_MESSAGE: &str =
    "Authorization code should not be empty or null for generating the access token";

/// A sign-in link for a channel.
#[derive(Debug, Clone)]
pub struct AuthorizationLink {
    /// Where the administrator signs in and consents.
    pub url: String,
    /// When the link stops working.
    pub expires_at: DateTime<Utc>,
}

/// What Microsoft's redirect back carried. Its `Debug` leaves out the code and the `state`
/// (each redeems, once, a grant).
#[derive(Default)]
pub struct Redirect {
    /// The `state` inboxd made.
    pub state: Option<String>,
    /// The authorization code.
    pub code: Option<String>,
    /// An OAuth `error` instead of a code.
    pub error: Option<String>,
    /// Microsoft's `error_description`.
    pub error_description: Option<String>,
    /// Microsoft's trace id, when sent apart.
    pub trace_id: Option<String>,
    /// Microsoft's correlation id, when sent apart.
    pub correlation_id: Option<String>,
}

impl std::fmt::Debug for Redirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "[redacted]");
        f.debug_struct("Redirect")
            .field("state", &redacted(&self.state))
            .field("code", &redacted(&self.code))
            .field("error", &self.error)
            .field("error_description", &self.error_description)
            .field("trace_id", &self.trace_id)
            .field("correlation_id", &self.correlation_id)
            .finish()
    }
}

/// A completed authorization.
#[derive(Debug)]
pub struct Authorized {
    /// The channel, which now polls.
    pub channel: ChannelId,
    /// Its mailbox.
    pub mailbox: String,
}

/// Why an authorization did not complete; nothing changed. Richer than [`Error`]: the callback
/// page shows Microsoft's code, ids and the remedy of each case.
#[derive(Debug)]
pub enum Failure {
    /// The `state` is missing, unknown, expired or used: the link cannot be used.
    Link {
        /// inboxd's catalogue code.
        code: &'static str,
        /// What is wrong with the link.
        what: String,
    },
    /// The store could not be read or written.
    Store {
        /// What failed.
        detail: String,
        /// The channel, when known.
        channel: Option<ChannelId>,
    },
    /// The channel was removed after the authorization started.
    ChannelGone,
    /// Microsoft answered with an `error` (the admin declined, a policy refused, …).
    Microsoft {
        /// The channel.
        channel: ChannelId,
        /// The classified code.
        code: String,
        /// Microsoft's description (or the error).
        detail: String,
        /// What to do.
        remedy: &'static str,
        /// Microsoft's trace id.
        trace_id: Option<String>,
        /// Microsoft's correlation id.
        correlation_id: Option<String>,
        /// Whether Microsoft refused the code at redemption (rather than at sign-in).
        at_redemption: bool,
    },
    /// The redirect carried no code.
    EmptyCode {
        /// The channel.
        channel: ChannelId,
        /// What to do.
        remedy: &'static str,
    },
    /// Microsoft sent no refresh token (no `offline_access`).
    NoRefreshToken {
        /// The channel.
        channel: ChannelId,
    },
}

impl Failure {
    /// The channel a failure belongs to and the error to show on it, when it names one.
    fn on_channel(&self) -> Option<(ChannelId, LastError)> {
        let now = Utc::now();
        match self {
            Failure::Microsoft {
                channel,
                code,
                detail,
                remedy,
                trace_id,
                correlation_id,
                ..
            } => Some((
                *channel,
                LastError {
                    source: ErrorSource::IdentityPlatform,
                    code: code.clone(),
                    message: format!("The sign-in failed: {detail}"),
                    remedy: (*remedy).to_owned(),
                    at: now,
                    trace_id: trace_id.clone(),
                    correlation_id: correlation_id.clone(),
                },
            )),
            Failure::EmptyCode { channel, remedy } => Some((
                *channel,
                LastError {
                    source: ErrorSource::IdentityPlatform,
                    code: catalogue::codes::EMPTY_AUTHORIZATION_CODE.to_owned(),
                    message: "The sign-in came back without an authorization code.".to_owned(),
                    remedy: (*remedy).to_owned(),
                    at: now,
                    trace_id: None,
                    correlation_id: None,
                },
            )),
            Failure::NoRefreshToken { channel } => Some((
                *channel,
                LastError {
                    source: ErrorSource::IdentityPlatform,
                    code: "no_refresh_token".to_owned(),
                    message: "Microsoft sent no refresh token: without offline_access, inboxd could read the mailbox for one hour only.".to_owned(),
                    remedy: "In the Azure portal, add the delegated permission offline_access to the app, then \"Update auth info\".".to_owned(),
                    at: now,
                    trace_id: None,
                    correlation_id: None,
                },
            )),
            _ => None,
        }
    }
}

const RESTART: &str = "Start the authorization again: \"Update auth info\" on the status page, or `inboxd channel authorize ID`.";

fn link(code: &'static str, what: impl Into<String>) -> Failure {
    tracing::warn!(code, "OAuth callback refused.");
    Failure::Link {
        code,
        what: what.into(),
    }
}

impl Control {
    /// Starts an authorization (or a re-authorization: "update auth info") of channel `id`;
    /// answers the sign-in link.
    pub async fn authorize(&self, id: ChannelId) -> Result<AuthorizationLink, Error> {
        let record = self.record(id)?;
        let start = self
            .ingest
            .oauth()
            .authorize_for(
                record.transport,
                &record.tenant_id,
                &record.client_id,
                &record.mailbox,
            )
            .map_err(|e| Error::Internal(e.to_string()))?;
        let now = Utc::now();
        let pending = PendingAuthorization {
            channel_id: id,
            verifier: start.verifier,
            redirect_uri: self.settings.redirect_uri.clone(),
            created_at: now,
            expires_at: now + self.settings.authorization_ttl,
        };
        let store = &self.ingest.store;
        store
            .put_pending(&start.state, &pending)
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        store
            .flush_async()
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        tracing::info!(channel = %id, "Authorization started.");
        Ok(AuthorizationLink {
            url: start.url,
            expires_at: pending.expires_at,
        })
    }

    /// Completes an authorization from Microsoft's redirect back. A failure that names its channel
    /// (the user declined, a policy refused, the code could not be redeemed) is also recorded on the
    /// channel and reported as a `channel.sign_in_failed` event: whoever sent the link learns why.
    pub async fn complete_authorization(&self, redirect: &Redirect) -> Result<Authorized, Failure> {
        let result = self.complete(redirect).await;
        if let Err(failure) = &result
            && let Some((id, error)) = failure.on_channel()
        {
            let _ = self.supervisor.send(SignInFailed { id, error }).await;
        }
        result
    }

    async fn complete(&self, redirect: &Redirect) -> Result<Authorized, Failure> {
        let Some(oauth_state) = redirect
            .state
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= 512)
        else {
            return Err(link(
                catalogue::codes::STATE_UNKNOWN,
                "The link carries no state: it was not started by inboxd.",
            ));
        };
        let pending = match self.ingest.store.take_pending(oauth_state, Utc::now()) {
            Ok(PendingLookup::Found(pending)) => pending,
            Ok(PendingLookup::Unknown) => {
                return Err(link(
                    catalogue::codes::STATE_UNKNOWN,
                    "inboxd did not start this authorization (or its link was altered).",
                ));
            }
            Ok(PendingLookup::Expired) => {
                return Err(link(
                    catalogue::codes::STATE_EXPIRED,
                    format!(
                        "This authorization link is older than {} minutes.",
                        self.settings.authorization_ttl.num_minutes()
                    ),
                ));
            }
            Ok(PendingLookup::AlreadyUsed) => {
                return Err(link(
                    catalogue::codes::STATE_REUSED,
                    "This authorization link was already used.",
                ));
            }
            Err(err) => {
                tracing::error!(error = %err, "Could not read a pending authorization.");
                return Err(Failure::Store {
                    detail: err.to_string(),
                    channel: None,
                });
            }
        };
        let channel = pending.channel_id;
        if let Some(error) = redirect.error.as_deref().filter(|e| !e.is_empty()) {
            return Err(refused_at_sign_in(channel, error, redirect));
        }
        let code = redirect.code.as_deref().map(str::trim).unwrap_or_default();
        if code.is_empty() {
            tracing::warn!(channel = %channel, "OAuth callback without a code.");
            let remedy = Classification::of(catalogue::codes::EMPTY_AUTHORIZATION_CODE)
                .map(|c| c.remedy())
                .unwrap_or(RESTART);
            return Err(Failure::EmptyCode { channel, remedy });
        }
        let record = match self.ingest.store.get_channel(channel) {
            Ok(Some(record)) => record,
            Ok(None) => return Err(Failure::ChannelGone),
            Err(err) => {
                return Err(Failure::Store {
                    detail: err.to_string(),
                    channel: Some(channel),
                });
            }
        };
        let redeemed = match self.ingest.apps.credential(&record) {
            Ok(app) => {
                let credentials = AppCredentials {
                    tenant: &record.tenant_id,
                    client_id: &record.client_id,
                    credential: &app.credential,
                };
                self.ingest
                    .oauth()
                    .redeem_code(credentials, code, &pending.verifier)
                    .await
            }
            Err(AppLookupError::Credential(err)) => Err(err),
            Err(AppLookupError::Store(err)) => {
                return Err(Failure::Store {
                    detail: err.to_string(),
                    channel: Some(channel),
                });
            }
        };
        let grant = match redeemed {
            Ok(grant) => grant,
            Err(err) => {
                let class = err.classify();
                let (trace_id, correlation_id) = err.ids();
                tracing::warn!(channel = %channel, code = %class.code(), "Redeeming the authorization code failed.");
                return Err(Failure::Microsoft {
                    channel,
                    code: class.code().to_string(),
                    detail: err.message(),
                    remedy: class.remedy(),
                    trace_id,
                    correlation_id,
                    at_redemption: true,
                });
            }
        };
        let Some(refresh_token) = grant.refresh_token else {
            return Err(Failure::NoRefreshToken { channel });
        };
        let now = Utc::now();
        let tokens = TokenSet {
            access_token: grant.access_token,
            access_expires_at: now
                + chrono::Duration::from_std(grant.expires_in).unwrap_or_default(),
            refresh_token,
            scope: grant.scope,
            obtained_at: now,
        };
        let store = self.ingest.store.clone();
        let stored =
            actix_web::rt::task::spawn_blocking(move || store.put_granted_tokens(channel, &tokens))
                .await;
        if !matches!(stored, Ok(Ok(()))) {
            return Err(Failure::Store {
                detail: "inboxd could not store the tokens: the disk may be full or read-only."
                    .to_owned(),
                channel: Some(channel),
            });
        }
        if let Err(err) = self
            .supervisor
            .send(AuthorizationCompleted { id: channel })
            .await
        {
            tracing::error!(error = %err, "The supervisor did not take the authorization.");
        }
        Ok(Authorized {
            channel,
            mailbox: record.mailbox.to_string(),
        })
    }
}

fn refused_at_sign_in(channel: ChannelId, error: &str, redirect: &Redirect) -> Failure {
    let raw = redirect.error_description.as_deref().unwrap_or("");
    let codes = aadsts_codes(raw);
    let class = catalogue::classify_identity_error(error, &codes, Some(raw), None);
    let trace_id = redirect
        .trace_id
        .clone()
        .or_else(|| description_field(raw, "Trace ID:"));
    let correlation_id = redirect
        .correlation_id
        .clone()
        .or_else(|| description_field(raw, "Correlation ID:"));
    let description = description_head(raw);
    tracing::warn!(channel = %channel, code = %class.code(), error, "Authorization failed at Microsoft.");
    Failure::Microsoft {
        channel,
        code: class.code().to_string(),
        detail: if description.is_empty() {
            error.to_owned()
        } else {
            description
        },
        remedy: class.remedy(),
        trace_id,
        correlation_id,
        at_redemption: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redirect_never_prints_its_code_or_state() {
        let redirect = Redirect {
            state: Some("state-value-123".to_owned()),
            code: Some("code-value-456".to_owned()),
            ..Redirect::default()
        };
        let printed = format!("{redirect:?}");
        assert!(!printed.contains("state-value") && !printed.contains("code-value"));
    }
}
