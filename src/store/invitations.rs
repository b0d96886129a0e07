//! Sign-in invitations: a link an admin sends to a mailbox's owner, valid for days, used once,
//! revocable. Only the SHA-256 of the link's token is stored (keyed `invitation/<hex>` in the
//! metadata table): the store never holds a usable link. Taking one is a compare-and-swap, so two
//! opens of one link start one sign-in.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::ChannelId;

use super::engine::Table;
use super::{Store, StoreError};

/// The stored format's version.
const VERSION: u8 = 1;

/// An invitation as stored (its token's hash is the key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    /// The channel it authorizes.
    pub channel_id: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// When it was opened (it works once).
    #[serde(default)]
    pub used_at: Option<DateTime<Utc>>,
    /// When an admin revoked it.
    #[serde(default)]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What taking an invitation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvitationLookup {
    /// Valid: it is now used, for this channel.
    Taken(ChannelId),
    /// No such invitation.
    Unknown,
    /// Past its time.
    Expired,
    /// Opened before.
    AlreadyUsed,
    /// Revoked by an admin.
    Revoked,
}

/// The id of an invitation: the hex SHA-256 of its token (what the API names and revokes).
pub fn invitation_id(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn key(id: &str) -> Vec<u8> {
    format!("invitation/{id}").into_bytes()
}

fn encode(invitation: &Invitation) -> Result<Vec<u8>, StoreError> {
    let json = serde_json::to_vec(invitation).map_err(|err| {
        StoreError::InvalidInput(format!("an invitation could not be encoded: {err}"))
    })?;
    let mut value = vec![VERSION];
    value.extend_from_slice(&json);
    Ok(value)
}

fn decode(id: &str, value: &[u8]) -> Result<Invitation, StoreError> {
    let what = || format!("invitation {id}");
    match value.split_first() {
        Some((&VERSION, json)) => {
            serde_json::from_slice(json).map_err(|err| StoreError::corrupt(what(), err.to_string()))
        }
        Some((version, _)) => Err(StoreError::UnsupportedVersion {
            what: what(),
            found: u32::from(*version),
            supported: u32::from(VERSION),
        }),
        None => Err(StoreError::corrupt(what(), "it is empty")),
    }
}

impl Store {
    /// Stores a new invitation under the hash of `token`; answers its id.
    pub fn put_invitation(
        &self,
        token: &str,
        invitation: &Invitation,
    ) -> Result<String, StoreError> {
        let id = invitation_id(token);
        let value = encode(invitation)?;
        self.with(|e| e.insert(Table::Meta, &key(&id), &value))?;
        Ok(id)
    }

    /// The invitation `id` (a token's hash), if any.
    pub fn get_invitation(&self, id: &str) -> Result<Option<Invitation>, StoreError> {
        let raw = self.with(|e| e.get(Table::Meta, &key(id)))?;
        raw.map(|value| decode(id, &value)).transpose()
    }

    /// Takes the invitation of `token` at `now`: valid ones are marked used (once, whoever races).
    pub fn take_invitation(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<InvitationLookup, StoreError> {
        let id = invitation_id(token);
        loop {
            let Some(current) = self.with(|e| e.get(Table::Meta, &key(&id)))? else {
                return Ok(InvitationLookup::Unknown);
            };
            let mut invitation = decode(&id, &current)?;
            if invitation.revoked_at.is_some() {
                return Ok(InvitationLookup::Revoked);
            }
            if invitation.used_at.is_some() {
                return Ok(InvitationLookup::AlreadyUsed);
            }
            if invitation.expires_at <= now {
                return Ok(InvitationLookup::Expired);
            }
            let channel = ChannelId::parse(&invitation.channel_id)
                .map_err(|err| StoreError::corrupt(format!("invitation {id}"), err.to_string()))?;
            invitation.used_at = Some(now);
            let value = encode(&invitation)?;
            if self.with(|e| {
                e.compare_and_swap(Table::Meta, &key(&id), Some(&current), Some(&value))
            })? {
                return Ok(InvitationLookup::Taken(channel));
            }
        }
    }

    /// Revokes the invitation `id`; answers whether there was one still usable.
    pub fn revoke_invitation(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        loop {
            let Some(current) = self.with(|e| e.get(Table::Meta, &key(id)))? else {
                return Ok(false);
            };
            let mut invitation = decode(id, &current)?;
            if invitation.revoked_at.is_some() || invitation.used_at.is_some() {
                return Ok(false);
            }
            invitation.revoked_at = Some(now);
            let value = encode(&invitation)?;
            if self
                .with(|e| e.compare_and_swap(Table::Meta, &key(id), Some(&current), Some(&value)))?
            {
                return Ok(true);
            }
        }
    }
}
