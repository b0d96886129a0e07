//! Sign-in invitations: a link an admin sends to the mailbox's owner (the user who must sign in,
//! or a user with Full Access to the mailbox), valid for `server.sign_in_link_ttl_hours`, working
//! once, revocable. Opening it starts a fresh authorization (its own state and PKCE verifier,
//! valid for the usual ten minutes) and sends the browser on to Microsoft's sign-in.
//!
//! The link carries 256 random bits; the store keeps only their SHA-256, which is also the id the
//! API revokes it by.

use base64::Engine as _;
use chrono::{DateTime, Utc};

use crate::control::{AuthorizationLink, Control, Error};
use crate::domain::ChannelId;
use crate::store::{Invitation, InvitationLookup};

/// The path a sign-in invitation's link opens (followed by the token).
pub const INVITATION_PATH: &str = "/sign-in/";

/// A new invitation, as the admin gets it (the URL is shown once: only its hash is stored).
#[derive(Debug, Clone)]
pub struct NewInvitation {
    /// The id (to revoke it).
    pub id: String,
    /// The link to send.
    pub url: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// Why an invitation link does not work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvitationRefused {
    /// No such link (mistyped, or from another inboxd).
    Unknown,
    /// Past its time.
    Expired,
    /// Opened before: a link works once.
    Used,
    /// Revoked by an admin.
    Revoked,
    /// inboxd could not start the sign-in now.
    Unavailable(String),
}

impl Control {
    /// Makes a sign-in invitation for channel `id`, valid for `valid_for` (at most the configured
    /// time; the configured time when `None`).
    pub async fn invite(
        &self,
        id: ChannelId,
        valid_for: Option<chrono::Duration>,
    ) -> Result<NewInvitation, Error> {
        self.record(id)?;
        let limit = self.settings.invitation_ttl;
        let valid_for = valid_for.unwrap_or(limit);
        if valid_for <= chrono::Duration::zero() || valid_for > limit {
            return Err(Error::Invalid {
                code: "invalid_validity",
                message: format!(
                    "an invitation is valid for 1 to {} hours (server.sign_in_link_ttl_hours)",
                    limit.num_hours()
                ),
            });
        }
        let token =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let now = Utc::now();
        let invitation = Invitation {
            channel_id: id.to_string(),
            created_at: now,
            expires_at: now + valid_for,
            used_at: None,
            revoked_at: None,
        };
        let store = self.ingest.store.clone();
        let stored_token = token.clone();
        let stored = invitation.clone();
        let invitation_id = actix_web::rt::task::spawn_blocking(move || {
            store.put_invitation(&stored_token, &stored)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(|e| Error::Unavailable(e.to_string()))?;
        self.ingest
            .store
            .flush_async()
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        tracing::info!(channel = %id, invitation = %invitation_id, expires_at = %invitation.expires_at, "Sign-in invitation made.");
        Ok(NewInvitation {
            id: invitation_id,
            url: format!(
                "{}{INVITATION_PATH}{token}",
                self.settings.public_url.trim_end_matches('/')
            ),
            expires_at: invitation.expires_at,
        })
    }

    /// Revokes invitation `id`.
    pub async fn revoke_invitation(&self, id: &str) -> Result<(), Error> {
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::NotFound(format!(
                "no invitation has the id {id:?}: ids are the 64 hex digits the invitation was made with"
            )));
        }
        let store = self.ingest.store.clone();
        let wanted = id.to_ascii_lowercase();
        let revoked = actix_web::rt::task::spawn_blocking(move || {
            store.revoke_invitation(&wanted, Utc::now())
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(|e| Error::Unavailable(e.to_string()))?;
        if revoked {
            tracing::info!(invitation = %id, "Sign-in invitation revoked.");
            Ok(())
        } else {
            Err(Error::NotFound(format!(
                "no usable invitation has the id {id}: it does not exist, was used or was revoked already"
            )))
        }
    }

    /// Opens an invitation's link: takes it (once) and starts the channel's sign-in.
    pub async fn open_invitation(
        &self,
        token: &str,
    ) -> Result<AuthorizationLink, InvitationRefused> {
        if token.is_empty() || token.len() > 128 {
            return Err(InvitationRefused::Unknown);
        }
        let store = self.ingest.store.clone();
        let token = token.to_owned();
        let taken =
            actix_web::rt::task::spawn_blocking(move || store.take_invitation(&token, Utc::now()))
                .await
                .map_err(|e| InvitationRefused::Unavailable(e.to_string()))?
                .map_err(|e| InvitationRefused::Unavailable(e.to_string()))?;
        let channel = match taken {
            InvitationLookup::Taken(channel) => channel,
            InvitationLookup::Unknown => return Err(InvitationRefused::Unknown),
            InvitationLookup::Expired => return Err(InvitationRefused::Expired),
            InvitationLookup::AlreadyUsed => return Err(InvitationRefused::Used),
            InvitationLookup::Revoked => return Err(InvitationRefused::Revoked),
        };
        self.authorize(channel).await.map_err(|err| match err {
            Error::NotFound(_) => InvitationRefused::Unknown,
            other => InvitationRefused::Unavailable(other.to_string()),
        })
    }
}
