//! Channels written straight into a store, authorized, for runs of thousands of channels that
//! need no browser flow.

use std::path::Path;

use anyhow::Context as _;
use inboxd::domain::secret::{AccessToken, ClientSecret, MasterKey, RefreshToken};
use inboxd::domain::{
    AppCredential, ChannelId, ChannelStatus, ClientId, Folder, Mailbox, TenantId,
};
use inboxd::sim::client::{BulkRequest, SimClient};
use inboxd::store::{AppRecord, ChannelRecord, FirstImport, Store, StoreOptions, TokenSet};

/// An authorized, active channel record of `mailbox` (inbox, all unread on its first poll) for the
/// app (`tenant`, `client`): what seeding writes.
pub fn authorized_channel(
    id: ChannelId,
    name: &str,
    tenant: &str,
    client: &str,
    mailbox: &str,
) -> anyhow::Result<ChannelRecord> {
    let now = chrono::Utc::now();
    Ok(ChannelRecord {
        id,
        name: name.into(),
        tenant_id: TenantId::parse(tenant)?,
        client_id: ClientId::parse(client)?,
        mailbox: Mailbox::parse(mailbox)?,
        folder: Folder::inbox(),
        enabled: true,
        first_import: FirstImport::AllUnread,
        poll_mode: None,
        transport: inboxd::domain::Transport::Graph,
        created_at: now,
        updated_at: now,
        activated_at: Some(now),
        status: ChannelStatus::Active,
        last_error: None,
        last_poll_at: None,
        last_success_at: None,
    })
}

/// The app (`tenant`, `client`) with a client secret without expiry: what seeding writes.
pub fn secret_app(tenant: &str, client: &str, secret: &str) -> anyhow::Result<AppRecord> {
    let now = chrono::Utc::now();
    Ok(AppRecord {
        tenant_id: TenantId::parse(tenant)?,
        client_id: ClientId::parse(client)?,
        name: String::new(),
        credential: AppCredential::Secret {
            secret: ClientSecret::new(secret)?,
            expires_at: None,
        },
        created_at: now,
        updated_at: now,
        rotated_at: None,
    })
}

/// Provisions `count` tenants/apps/mailboxes in the simulator (bulk, with refresh tokens minted
/// directly) and writes them as authorized channels into the store at `store_path`, so thousands of
/// channels need no browser flow. The store must not be open elsewhere. Answers the mailboxes.
pub async fn seed_channels(
    sim: &SimClient,
    store_path: &Path,
    key: &MasterKey,
    count: usize,
    prefix: &str,
) -> anyhow::Result<Vec<String>> {
    let mut bulk = BulkRequest::new(count, prefix);
    bulk.issue_refresh_tokens = true;
    let entries = sim.bulk(&bulk).await?.entries;
    let store = Store::open(store_path, key.clone(), StoreOptions::default())?;
    let now = chrono::Utc::now();
    let mut token_sets = Vec::with_capacity(entries.len());
    let mut mailboxes = Vec::with_capacity(entries.len());
    let mut apps = Vec::with_capacity(entries.len());
    for entry in entries {
        let id = ChannelId::generate();
        let record = authorized_channel(
            id,
            &entry.mailbox,
            &entry.tenant_id,
            &entry.client_id,
            &entry.mailbox,
        )?;
        apps.push(secret_app(
            &entry.tenant_id,
            &entry.client_id,
            &entry.client_secret,
        )?);
        store.put_channel(&record)?;
        // An expired access token: each channel refreshes on its first poll, as after a long stop.
        let refresh = entry
            .refresh_token
            .clone()
            .context("the simulator minted no refresh token")?;
        token_sets.push((
            id,
            TokenSet {
                access_token: AccessToken::new("expired")?,
                access_expires_at: now - chrono::Duration::hours(1),
                refresh_token: RefreshToken::new(refresh)?,
                scope: "offline_access https://graph.microsoft.com/Mail.ReadWrite.Shared".into(),
                obtained_at: now,
            },
        ));
        mailboxes.push(entry.mailbox);
    }
    store.put_apps(&apps)?;
    store.put_tokens_many(&token_sets)?;
    Ok(mailboxes)
}
