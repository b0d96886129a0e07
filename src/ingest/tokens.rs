//! The access token a cycle polls with.
//!
//! - Refresh ahead of expiry: inside the margin (plus this channel's share of the jitter), or when
//!   Graph refused the access token (401).
//! - The rotated refresh token is durable before the new access token is used; a set whose write
//!   failed is kept in the channel's runtime and written first by the next cycle.
//! - One refresh per refresh token: refreshes run under the channel's turn and start from the
//!   newest set (the runtime's while its write failed, else the store's, read back for the refresh:
//!   the refresh token is not held in memory once stored), so a replaced actor never refreshes with
//!   a token already rotated out.
//! - A failing refresh does not stop polling while the access token is still valid: the cycle
//!   polls with it, the refresh is retried on its own backoff, and the problem is shown as a
//!   warning until the token really expires.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::ingest::apps::AppLookupError;
use crate::ingest::context::Ingest;
use crate::ingest::failure::Failure;
use crate::ingest::runtime::{CachedTokens, ChannelRuntime, HeldTokens};
use crate::oauth::{AppCredentials, OAuthError};
use crate::store::{ChannelRecord, TokenSet};

/// An access token is used for a request only while it is valid for at least this long.
pub const VALIDITY_SKEW: Duration = Duration::from_secs(60);

/// What [`access_token`] found.
#[derive(Debug)]
pub enum Access {
    /// Poll with this access token.
    Ready(String),
    /// The channel has no token set (a new grant is awaited).
    NoGrant,
}

/// Whether `set`'s access token is still valid for `skew`.
pub fn is_valid(set: &CachedTokens, skew: Duration) -> bool {
    set.access_expires_at - chrono::Duration::from_std(skew).unwrap_or_default() > Utc::now()
}

/// Whether a token of these scopes is for IMAP: it names Exchange Online's
/// `IMAP.AccessAsUser.All` (Microsoft writes it in full), a Graph token does not (Graph's scopes
/// may come back without their host).
pub fn is_imap_scope(scope: &str) -> bool {
    scope
        .split_whitespace()
        .any(|s| s.to_ascii_lowercase().ends_with("imap.accessasuser.all"))
}

/// Whether `set`'s access token is for `transport`'s resource.
pub fn serves(set: &CachedTokens, transport: crate::domain::Transport) -> bool {
    match transport {
        crate::domain::Transport::Graph => !set.imap,
        crate::domain::Transport::Imap => set.imap,
    }
}

/// Writes a channel's token set durably (`put_tokens` flushes: off the arbiter's thread).
async fn save(ctx: &Ingest, record: &ChannelRecord, set: &TokenSet) -> Result<(), Failure> {
    let store = ctx.store.clone();
    let id = record.id;
    let to_store = set.clone();
    match tokio::task::spawn_blocking(move || store.put_tokens(id, &to_store)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(Failure::Store(err)),
        Err(err) => Err(Failure::Processor(format!(
            "the token store task failed: {err}"
        ))),
    }
}

/// The access token to poll with: refreshed first when it expires within `margin` or when
/// `force` (Graph refused it). Call under the channel's turn.
pub async fn access_token(
    ctx: &Ingest,
    record: &ChannelRecord,
    runtime: &ChannelRuntime,
    tenant: &Arc<str>,
    force: bool,
    margin: Duration,
) -> Result<Access, Failure> {
    let Some(held) = runtime.tokens(&ctx.store, record.id)? else {
        return Ok(Access::NoGrant);
    };
    if let Some(unsaved) = &held.unsaved {
        save(ctx, record, unsaved).await?;
        runtime.saved(held.grant);
    }
    // A token of the other transport's resource (the channel moved between Graph and IMAP) is
    // no use: the same refresh token asks for one of this transport's resource.
    let force = force || !serves(&held.set, record.transport);
    let expiring = !is_valid(&held.set, margin);
    if !force && !expiring {
        return Ok(Access::Ready(held.set.access_token.expose().to_string()));
    }
    let usable = !force && is_valid(&held.set, VALIDITY_SKEW);
    if usable && !runtime.may_refresh(Instant::now()) {
        // A refresh failed a moment ago: poll with the valid token, retry on the backoff.
        return Ok(Access::Ready(held.set.access_token.expose().to_string()));
    }
    match refresh(ctx, record, runtime, tenant, &held).await {
        Ok(fresh) => Ok(Access::Ready(fresh)),
        Err(Failure::Identity(err)) if usable => {
            warn_and_go_on(ctx, record, runtime, &err);
            Ok(Access::Ready(held.set.access_token.expose().to_string()))
        }
        Err(failure) => {
            runtime.clear_warning();
            Err(failure)
        }
    }
}

/// Records a refresh failure that does not stop polling yet.
fn warn_and_go_on(
    ctx: &Ingest,
    record: &ChannelRecord,
    runtime: &ChannelRuntime,
    err: &OAuthError,
) {
    let classified = Failure::Identity(err.clone()).classify();
    tracing::warn!(channel = %record.id, mailbox = %record.mailbox, code = %classified.error.code,
        "The access token could not be refreshed; polling goes on with the current one until it expires.");
    runtime.refresh_failed(
        classified.error,
        ctx.run.backoff,
        classified.retry_after,
        Instant::now(),
    );
}

/// Refreshes the access token and makes the rotated refresh token durable before answering the
/// new access token. A failed write keeps the new set in the runtime (the old refresh token may no
/// longer be accepted) and answers the store's failure: nothing polls with an unsaved set.
async fn refresh(
    ctx: &Ingest,
    record: &ChannelRecord,
    runtime: &ChannelRuntime,
    tenant: &Arc<str>,
    held: &HeldTokens,
) -> Result<String, Failure> {
    while let Err(wait) = ctx.limiters.check_token(tenant) {
        tokio::time::sleep(wait).await;
    }
    if !may_refresh_in_time(ctx, record) {
        return Err(Failure::NotOwned);
    }
    // The app's credential as stored now: a rotation counts from the next request on.
    let app = match ctx.apps.credential(record) {
        Ok(app) => app,
        Err(AppLookupError::Store(err)) => return Err(Failure::Store(err)),
        Err(AppLookupError::Credential(err)) => return Err(Failure::Identity(err)),
    };
    let credentials = AppCredentials {
        tenant: &record.tenant_id,
        client_id: &record.client_id,
        credential: &app.credential,
    };
    // The refresh token is not kept in memory once stored: read back the set it belongs to. A
    // set in the store with another access token than the cell's was written by someone else
    // (a new authorization whose notice is still on its way): its refresh token is not this
    // grant's to use; the next cycle reads that set afresh.
    let stored = match &held.unsaved {
        Some(unsaved) => unsaved.clone(),
        // A read like the cycle's first (`ChannelRuntime::tokens`): from the store's cache, or one
        // page from disk.
        None => match ctx.store.get_tokens(record.id)? {
            Some(stored) if held.set.access_token.is(&stored.access_token) => stored,
            _ => {
                runtime.new_grant();
                return Err(superseded());
            }
        },
    };
    let refreshing = ctx
        .oauth()
        .refresh_for(record.transport, credentials, &stored.refresh_token);
    let answered = match ctx.cluster.as_ref().map(|ownership| ownership.time_left()) {
        None => refreshing.await,
        // Cluster mode: the answer must arrive while this node may still store the rotated token
        // under its lease; past that, another node may hold the channel.
        Some(left) => match tokio::time::timeout(left, refreshing).await {
            Ok(answered) => answered,
            Err(_) => return Err(Failure::NotOwned),
        },
    };
    let grant = match answered {
        Ok(grant) => grant,
        Err(err) => {
            metrics::counter!("inboxd_token_refreshes_total", "outcome" => "failed").increment(1);
            return Err(Failure::Identity(err));
        }
    };
    let now = Utc::now();
    let fresh = TokenSet {
        access_token: grant.access_token,
        access_expires_at: now + chrono::Duration::from_std(grant.expires_in).unwrap_or_default(),
        // Microsoft may leave the refresh token out; the old one then stays valid.
        refresh_token: grant.refresh_token.unwrap_or(stored.refresh_token),
        scope: grant.scope,
        obtained_at: now,
    };
    let access = fresh.access_token.expose().to_owned();
    if !runtime.is_grant(held.grant) {
        // A new authorization replaced the grant while this refresh ran: its tokens win.
        return Err(superseded());
    }
    if let Err(failure) = save(ctx, record, &fresh).await {
        runtime.install(held.grant, fresh, false);
        return Err(failure);
    }
    if !runtime.install(held.grant, fresh, true) {
        return Err(superseded());
    }
    ctx.stats
        .refreshes
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    metrics::counter!("inboxd_token_refreshes_total", "outcome" => "ok").increment(1);
    Ok(access)
}

/// Cluster mode: whether a refresh may start. It rotates the refresh token, and the rotated token
/// must be stored under this node's lease: so it starts only while the node may act and has room
/// left for the request (its timeout, at most a third of the lease TTL) before its deadline; the
/// write of the rotated token is then fenced by the database. Always on a single node.
fn may_refresh_in_time(ctx: &Ingest, record: &ChannelRecord) -> bool {
    match &ctx.cluster {
        None => true,
        Some(ownership) => {
            ownership.may_act(record.id)
                && ownership.time_left() >= ctx.oauth().timeout().min(ownership.ttl() / 3)
        }
    }
}

fn superseded() -> Failure {
    Failure::Processor(
        "the channel was authorized again while its token was refreshed; the next cycle uses the new grant"
            .to_owned(),
    )
}
