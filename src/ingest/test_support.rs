//! For the mail path's unit tests only: a simulator with one authorized channel (its record, its
//! app and its minted tokens written into an in-memory store) and an ingestion context against it.
#![cfg(test)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use chrono::Utc;

use crate::domain::secret::{AccessToken, ClientSecret, MasterKey, RefreshToken};
use crate::domain::{
    AppCredential, ChannelId, ChannelStatus, ClientId, Folder, HttpUrl, Mailbox, PollMode,
    TenantId, Transport,
};
use crate::graph::{BodyContentType, GraphClient};
use crate::ingest::{Ingest, RunSettings};
use crate::oauth::OAuthClient;
use crate::rate_limit::{Limits, RateLimiters};
use crate::retry::BackoffPolicy;
use crate::sim::client::SimClient;
use crate::store::{AppRecord, ChannelRecord, FirstImport, Store, TokenSet};

/// A simulator with one authorized channel in an in-memory store.
pub(crate) struct Seeded {
    pub sim_handle: crate::sim::SimHandle,
    pub sim: SimClient,
    pub url: HttpUrl,
    pub store: Store,
    pub record: ChannelRecord,
}

/// Starts a simulator, provisions `upn`, and stores its channel on `transport` (all unread on the
/// first poll) with its app's secret and tokens minted for `scope` (the Graph scope if `None`).
pub(crate) async fn authorized_channel(
    upn: &str,
    transport: Transport,
    scope: Option<&str>,
) -> Seeded {
    let sim_handle = crate::sim::spawn(crate::sim::SimOptions::default()).unwrap();
    let url = HttpUrl::parse(&sim_handle.url()).unwrap();
    let sim = SimClient::new(sim_handle.url());
    let provisioned = sim.provision(upn, &["http://127.0.0.1/cb"]).await.unwrap();
    let minted = sim
        .mint_tokens(upn, &provisioned.app.client_id, scope)
        .await
        .unwrap();
    let store = Store::in_memory(MasterKey::generate()).unwrap();
    let now = Utc::now();
    let record = ChannelRecord {
        id: ChannelId::generate(),
        name: upn.into(),
        tenant_id: TenantId::parse(&provisioned.tenant_id).unwrap(),
        client_id: ClientId::parse(&provisioned.app.client_id).unwrap(),
        mailbox: Mailbox::parse(upn).unwrap(),
        folder: Folder::inbox(),
        enabled: true,
        first_import: FirstImport::AllUnread,
        poll_mode: None,
        transport,
        created_at: now,
        updated_at: now,
        activated_at: Some(now),
        status: ChannelStatus::Active,
        last_error: None,
        last_poll_at: None,
        last_success_at: None,
    };
    store.put_channel(&record).unwrap();
    store
        .put_app(&AppRecord {
            tenant_id: record.tenant_id.clone(),
            client_id: record.client_id.clone(),
            name: String::new(),
            credential: AppCredential::Secret {
                secret: ClientSecret::new(provisioned.app.client_secret.clone()).unwrap(),
                expires_at: None,
            },
            created_at: now,
            updated_at: now,
            rotated_at: None,
        })
        .unwrap();
    store
        .put_tokens(
            record.id,
            &TokenSet {
                access_token: AccessToken::new(minted.access_token).unwrap(),
                access_expires_at: now + chrono::Duration::seconds(minted.expires_in as i64),
                refresh_token: RefreshToken::new(minted.refresh_token).unwrap(),
                scope: scope
                    .unwrap_or("offline_access https://graph.microsoft.com/Mail.ReadWrite.Shared")
                    .into(),
                obtained_at: now,
            },
        )
        .unwrap();
    Seeded {
        sim_handle,
        sim,
        url,
        store,
        record,
    }
}

/// An ingestion context on `store` against the simulator at `url`, polling in `mode` (pages of
/// 10, two delivery attempts before the quarantine).
pub(crate) fn context(store: Store, url: &HttpUrl, mode: PollMode) -> Ingest {
    let http = reqwest::Client::new();
    let timeout = Duration::from_secs(5);
    Ingest::new(
        store,
        vec![GraphClient::new(
            http.clone(),
            url,
            BodyContentType::Text,
            timeout,
        )],
        vec![OAuthClient::new(
            http,
            url,
            "https://graph.microsoft.com",
            "http://127.0.0.1/cb",
            timeout,
        )],
        RateLimiters::new(Limits::default()),
        RunSettings {
            interval: Duration::from_secs(120),
            jitter: Duration::ZERO,
            page_size: 10,
            max_messages_per_poll: 1000,
            token_refresh_margin: Duration::from_secs(300),
            token_refresh_jitter: Duration::ZERO,
            backoff: BackoffPolicy::default(),
            max_delivery_attempts: 2,
            max_attachment_bytes: 1 << 20,
            mode,
        },
    )
}
