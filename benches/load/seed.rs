//! Seeding the store the bench's daemon runs on: N channels (records and valid tokens minted by the
//! simulator) and K token sets for the hot-adds, written straight into a store by a child process
//! (the bench binary re-invoked with `--seed`), so that its allocations do not count as the
//! daemon's memory. Channel ids are derived from the mailbox, so both processes agree on them.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, anyhow, bail};
use chrono::Utc;
use inboxd::domain::ChannelId;
use inboxd::domain::secret::{AccessToken, MasterKey, RefreshToken};
use inboxd::sim::client::{BulkRequest, SimClient, bulk_credentials};
use inboxd::store::{AppRecord, ChannelRecord, Store, StoreOptions, TokenSet};
use inboxd_testkit::seed::{authorized_channel, secret_app};
use sha2::Digest as _;

use crate::{FLOOR_MAILBOXES, FLOOR_PREFIX, HOT_PREFIX, PREFIX};

/// A stable channel id for mailbox `i` of `prefix`, so that both processes agree on it.
fn channel_id(prefix: &str, i: usize) -> ChannelId {
    let digest = sha2::Sha256::digest(format!("inboxd-bench:{prefix}:{i}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    ChannelId::from_bytes(bytes)
}

pub(crate) fn record(prefix: &str, i: usize, transport: &str) -> anyhow::Result<ChannelRecord> {
    let (tenant, client, _, mailbox) = bulk_credentials(prefix, i);
    let mut record = authorized_channel(
        channel_id(prefix, i),
        &format!("{prefix} {i}"),
        &tenant,
        &client,
        &mailbox,
    )?;
    record.transport = inboxd::domain::Transport::parse(transport)
        .ok_or_else(|| anyhow!("unknown transport {transport:?}"))?;
    Ok(record)
}

/// The app of mailbox `i` of `prefix` (each bulk mailbox has its own tenant and app).
fn app(prefix: &str, i: usize) -> anyhow::Result<AppRecord> {
    let (tenant, client, secret, _) = bulk_credentials(prefix, i);
    secret_app(&tenant, &client, &secret)
}

/// Mints a refresh and an access token for mailbox `i` of `prefix`.
pub(crate) async fn mint(
    sim: &SimClient,
    prefix: &str,
    i: usize,
    transport: &str,
) -> anyhow::Result<TokenSet> {
    let (_, client, _, mailbox) = bulk_credentials(prefix, i);
    let scope = match transport {
        "imap" => "https://outlook.office.com/IMAP.AccessAsUser.All offline_access",
        _ => "https://graph.microsoft.com/Mail.ReadWrite.Shared offline_access",
    };
    let minted = sim.mint_tokens(&mailbox, &client, Some(scope)).await?;
    let now = Utc::now();
    Ok(TokenSet {
        access_token: AccessToken::new(minted.access_token)?,
        access_expires_at: now + chrono::Duration::seconds(minted.expires_in as i64),
        refresh_token: RefreshToken::new(minted.refresh_token)?,
        scope: scope.to_owned(),
        obtained_at: now,
    })
}

/// Provisions `count` mailboxes of `prefix` in the simulator and stores their channels (records
/// when `with_records`, tokens always).
async fn seed_prefix(
    sim: &SimClient,
    store: &Store,
    prefix: &str,
    count: usize,
    with_records: bool,
    transport: &str,
) -> anyhow::Result<()> {
    const CHUNK: usize = 2000;
    let mut start = 0;
    while start < count {
        let n = CHUNK.min(count - start);
        let mut bulk = BulkRequest::new(n, prefix);
        bulk.start = start;
        bulk.return_entries = false;
        sim.bulk(&bulk).await?;
        let mut tasks = tokio::task::JoinSet::new();
        let mut sets: Vec<(usize, TokenSet)> = Vec::with_capacity(n);
        for i in start..start + n {
            let sim = sim.clone();
            let prefix = prefix.to_owned();
            let transport = transport.to_owned();
            tasks.spawn_local(async move { (i, mint(&sim, &prefix, i, &transport).await) });
            while tasks.len() >= 32 {
                if let Some(done) = tasks.join_next().await {
                    let (i, set) = done?;
                    sets.push((i, set?));
                }
            }
        }
        while let Some(done) = tasks.join_next().await {
            let (i, set) = done?;
            sets.push((i, set?));
        }
        // `put_tokens` flushes each time: spread the writes over threads so flushes overlap.
        // Every channel's app, hot-added ones' too (they are added with their app recorded).
        let apps: Vec<AppRecord> = (start..start + n)
            .map(|i| app(prefix, i))
            .collect::<anyhow::Result<_>>()?;
        store.put_apps(&apps)?;
        let records: Vec<(ChannelRecord, TokenSet)> = sets
            .into_iter()
            .map(|(i, set)| Ok((record(prefix, i, transport)?, set)))
            .collect::<anyhow::Result<_>>()?;
        std::thread::scope(|scope| -> anyhow::Result<()> {
            let handles: Vec<_> = records
                .chunks(records.len().div_ceil(8).max(1))
                .map(|part| {
                    scope.spawn(move || -> anyhow::Result<()> {
                        for (record, tokens) in part {
                            if with_records {
                                store.put_channel(record)?;
                            }
                            store.put_tokens(record.id, tokens)?;
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
        start += n;
    }
    Ok(())
}

/// The child process's work: `--seed DIR KEY URL N K`.
pub(crate) fn seed_main(raw: &[String]) -> anyhow::Result<()> {
    let [dir, key, url, n, k, transport] = raw else {
        bail!("--seed DIR KEY URL N K TRANSPORT");
    };
    let n: usize = n.parse()?;
    let k: usize = k.parse()?;
    let key = MasterKey::parse(key)?;
    let store = Store::open(
        &Path::new(dir).join("store"),
        key,
        StoreOptions {
            cache_capacity_bytes: 64 * 1024 * 1024,
            flush_every_ms: None,
            ..StoreOptions::default()
        },
    )?;
    let sim = SimClient::new(url.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        seed_prefix(&sim, &store, PREFIX, n, true, transport).await?;
        seed_prefix(&sim, &store, HOT_PREFIX, k, false, transport).await?;
        let mut bulk = BulkRequest::new(FLOOR_MAILBOXES, FLOOR_PREFIX);
        bulk.return_entries = false;
        sim.bulk(&bulk).await?;
        anyhow::Ok(())
    })?;
    store.flush()?;
    Ok(())
}

pub(crate) fn seed_in_child(
    dir: &Path,
    key: &MasterKey,
    url: &str,
    n: usize,
    k: usize,
    transport: &str,
) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let status = Command::new(exe)
        .arg("--seed")
        .arg(dir)
        .arg(key.encode())
        .arg(url)
        .arg(n.to_string())
        .arg(k.to_string())
        .arg(transport)
        .status()
        .context("could not start the seeding process")?;
    if !status.success() {
        bail!("seeding the store failed ({status})");
    }
    Ok(())
}
