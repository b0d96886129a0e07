//! Seeding N authorized channels straight into a store, from the bench's own process, before any
//! daemon opens it: the simulator provisions the mailboxes in bulk (`POST /_sim/bulk`) and mints
//! tokens for each (`POST /_sim/tokens`), and the channel records and token sets are written with
//! `Store::put_channel` / `put_tokens_many` into a sled store (the single daemon's) or through
//! `Store::open_postgres` into the cluster's database, with the same master key the daemons get.
//! No browser flow: 1,000 channels take a few seconds, where authorizing each through the API
//! takes several requests and a sign-in per channel.
//!
//! Each access token is stored with an expiry spread over the run, so that every channel refreshes
//! its token once while the bench runs (refresh-token rotation is exercised across the kills)
//! rather than all at once at the start or never.

use anyhow::anyhow;
use chrono::Utc;
use inboxd::domain::ChannelId;
use inboxd::domain::secret::{AccessToken, RefreshToken};
use inboxd::sim::client::{BulkRequest, SimClient, bulk_credentials};
use inboxd::store::{Store, TokenSet};
use inboxd_testkit::seed::{authorized_channel, secret_app};

/// Provisions `count` mailboxes of `prefix` and writes them as authorized channels into `store`.
/// Channel `i`'s access token expires `refresh_after_secs + i × spread_secs / count` seconds from
/// now. Answers the mailboxes.
pub(crate) async fn seed(
    sim: &SimClient,
    store: &Store,
    prefix: &str,
    count: usize,
    refresh_after_secs: u64,
    spread_secs: u64,
) -> anyhow::Result<Vec<String>> {
    let mut bulk = BulkRequest::new(count, prefix);
    bulk.return_entries = false;
    sim.bulk(&bulk).await?;
    let mut tasks = tokio::task::JoinSet::new();
    let mut minted = Vec::with_capacity(count);
    for i in 0..count {
        let sim = sim.clone();
        let (_, client, _, mailbox) = bulk_credentials(prefix, i);
        tasks.spawn(async move { (i, sim.mint_tokens(&mailbox, &client, None).await) });
        while tasks.len() >= 32 {
            if let Some(done) = tasks.join_next().await {
                let (i, tokens) = done?;
                minted.push((i, tokens?));
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        let (i, tokens) = done?;
        minted.push((i, tokens?));
    }
    minted.sort_by_key(|(i, _)| *i);

    let now = Utc::now();
    let mut records = Vec::with_capacity(count);
    let mut apps = Vec::with_capacity(count);
    let mut token_sets = Vec::with_capacity(count);
    let mut mailboxes = Vec::with_capacity(count);
    for (i, tokens) in minted {
        let (tenant, client, secret, mailbox) = bulk_credentials(prefix, i);
        let id = ChannelId::generate();
        records.push(authorized_channel(
            id, &mailbox, &tenant, &client, &mailbox,
        )?);
        apps.push(secret_app(&tenant, &client, &secret)?);
        let expires_in =
            refresh_after_secs as f64 + spread_secs as f64 * i as f64 / count.max(1) as f64;
        token_sets.push((
            id,
            TokenSet {
                access_token: AccessToken::new(tokens.access_token)?,
                access_expires_at: now + chrono::Duration::milliseconds((expires_in * 1e3) as i64),
                refresh_token: RefreshToken::new(tokens.refresh_token)?,
                scope: "offline_access https://graph.microsoft.com/Mail.ReadWrite.Shared".into(),
                obtained_at: now,
            },
        ));
        mailboxes.push(mailbox);
    }
    // One transaction per record: spread over a few threads (PostgreSQL's round trips overlap).
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let handles: Vec<_> = records
            .chunks(records.len().div_ceil(4).max(1))
            .map(|part| {
                scope.spawn(move || -> anyhow::Result<()> {
                    for record in part {
                        store.put_channel(record)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for handle in handles {
            handle
                .join()
                .map_err(|_| anyhow!("a seeding thread panicked"))??;
        }
        Ok(())
    })?;
    store.put_apps(&apps)?;
    store.put_tokens_many(&token_sets)?;
    Ok(mailboxes)
}
