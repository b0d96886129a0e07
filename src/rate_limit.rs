//! The one place that decides "may I call Microsoft now": governor rate limiters and concurrency caps.
//!
//! Graph's published Outlook limits are the defaults: 10,000 requests per 10 minutes and 4 concurrent
//! requests per (app, mailbox). On top: a per-app rate, a global cap on requests in flight (so a
//! burst of 100,000 channels cannot open 100,000 sockets), and a per-tenant rate on the token endpoint.
//! Checks never block: a caller that is refused gets the wait and reschedules itself.
//!
//! Each (app, mailbox) has one [`MailboxGate`] for the life of the process, whichever actor or
//! channel uses it: its 4 concurrency slots and its `Retry-After` floor (no request to the mailbox
//! before it) hold across actor replacement and across channels that share the pair. The floors
//! are persisted by the caller (the ingestion cycle) and loaded back at start, so a restart honours
//! them too.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

use dashmap::DashMap;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits, from `[limits]` in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests per (app, mailbox) in any 10 minutes.
    pub mailbox_requests_per_10_min: u32,
    /// Requests in flight per (app, mailbox).
    pub mailbox_concurrency: u32,
    /// Requests per second per app, across its mailboxes.
    pub app_requests_per_sec: u32,
    /// Requests in flight to Microsoft across all channels.
    pub global_concurrency: u32,
    /// Token-endpoint requests per tenant per minute.
    pub token_requests_per_tenant_per_min: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            mailbox_requests_per_10_min: 10_000,
            mailbox_concurrency: 4,
            app_requests_per_sec: 100,
            global_concurrency: 512,
            token_requests_per_tenant_per_min: 60,
        }
    }
}

/// Identifies one (app, mailbox) pair: Outlook counts its limits per pair.
///
/// It holds the channel's own strings (shared, not copied): a key lives in every channel's job
/// and in the limiters' maps, and a copy of `{client_id}/{mailbox}` was 80 bytes a channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MailboxKey {
    app: Arc<str>,
    mailbox: Arc<str>,
}

impl MailboxKey {
    /// The key of `mailbox` as seen by app `client_id`.
    pub fn new(client_id: &str, mailbox: &str) -> Self {
        MailboxKey {
            app: Arc::from(client_id),
            mailbox: Arc::from(mailbox.to_ascii_lowercase()),
        }
    }

    /// The key of a channel's `mailbox` as seen by its app, sharing their strings (a
    /// [`Mailbox`](crate::domain::Mailbox) is already lowercased).
    pub fn of(client_id: &crate::domain::ClientId, mailbox: &crate::domain::Mailbox) -> Self {
        MailboxKey {
            app: client_id.shared(),
            mailbox: mailbox.shared(),
        }
    }

    /// The key as text (`{client_id}/{mailbox}`), as floors are stored under it.
    pub fn stored(&self) -> String {
        format!("{}/{}", self.app, self.mailbox)
    }

    /// The key stored as `text` (what [`stored`](Self::stored) gave).
    pub fn from_stored(text: &str) -> Self {
        let (app, mailbox) = text.split_once('/').unwrap_or((text, ""));
        MailboxKey {
            app: Arc::from(app),
            mailbox: Arc::from(mailbox),
        }
    }
}

/// One (app, mailbox)'s shared state: its concurrency slots and its `Retry-After` floor.
#[derive(Debug)]
pub struct MailboxGate {
    slots: Arc<Semaphore>,
    /// No request before this instant (milliseconds since the Unix epoch; 0 = none).
    floor_ms: AtomicI64,
}

impl MailboxGate {
    fn new(cap: u32) -> Self {
        MailboxGate {
            slots: Arc::new(Semaphore::new(cap as usize)),
            floor_ms: AtomicI64::new(0),
        }
    }

    /// The floor, if it is still ahead of `now`.
    fn floor_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let floor = self.floor_ms.load(Ordering::Acquire);
        (floor > now.timestamp_millis())
            .then(|| DateTime::<Utc>::from_timestamp_millis(floor))
            .flatten()
    }
}

/// Permission to have one request in flight; dropping it frees the slot.
#[derive(Debug)]
pub struct RequestPermit {
    _global: OwnedSemaphorePermit,
    _mailbox: OwnedSemaphorePermit,
}

/// The shared limiters of the whole daemon.
pub struct RateLimiters {
    limits: Limits,
    mailbox_rate: DefaultKeyedRateLimiter<MailboxKey>,
    app_rate: DefaultKeyedRateLimiter<Arc<str>>,
    token_rate: DefaultKeyedRateLimiter<Arc<str>>,
    global_slots: Arc<Semaphore>,
    gates: DashMap<MailboxKey, Arc<MailboxGate>>,
    clock: DefaultClock,
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

/// Shards of each per-key map (a power of two). [`RateLimiters::shrink`] write-locks one shard at
/// a time while it walks it: with a million keys and dashmap's default (4 × cores) a shard holds
/// ~125,000 and a channel that needs it waits for the whole walk of it (a stall of the arbiter);
/// at 1,024 shards a walk holds ~1,000 keys for some tens of microseconds.
const KEY_SHARDS: usize = 1024;

/// A keyed limiter whose map has [`KEY_SHARDS`] shards.
fn keyed<K: std::hash::Hash + Eq + Clone>(quota: Quota) -> DefaultKeyedRateLimiter<K> {
    RateLimiter::new(
        quota,
        DashMap::with_hasher_and_shard_amount(Default::default(), KEY_SHARDS),
        DefaultClock::default(),
    )
}

/// A quota of `count` per `period`, refilled smoothly, with a burst of the whole count.
fn quota(count: u32, period: Duration) -> Quota {
    let count = nonzero(count);
    let per_cell = period / count.get();
    Quota::with_period(per_cell.max(Duration::from_nanos(1)))
        .unwrap_or_else(|| Quota::per_second(count))
        .allow_burst(count)
}

impl RateLimiters {
    /// Builds the limiters.
    pub fn new(limits: Limits) -> Self {
        RateLimiters {
            limits,
            mailbox_rate: keyed(quota(
                limits.mailbox_requests_per_10_min,
                Duration::from_secs(600),
            )),
            app_rate: keyed(quota(limits.app_requests_per_sec, Duration::from_secs(1))),
            token_rate: keyed(quota(
                limits.token_requests_per_tenant_per_min,
                Duration::from_secs(60),
            )),
            global_slots: Arc::new(Semaphore::new(limits.global_concurrency.max(1) as usize)),
            gates: DashMap::with_shard_amount(KEY_SHARDS),
            clock: DefaultClock::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Takes one Graph request from the mailbox's and the app's budgets, or says how long to wait.
    pub fn check_graph(&self, key: &MailboxKey, app: &Arc<str>) -> Result<(), Duration> {
        let now = self.clock.now();
        if let Err(not_until) = self.mailbox_rate.check_key(key) {
            return Err(not_until.wait_time_from(now));
        }
        if let Err(not_until) = self.app_rate.check_key(app) {
            return Err(not_until.wait_time_from(now));
        }
        Ok(())
    }

    /// Takes `n` Graph requests at once (the items of a `$batch`), or says how long to wait.
    pub fn check_graph_n(&self, key: &MailboxKey, app: &Arc<str>, n: u32) -> Result<(), Duration> {
        let now = self.clock.now();
        let n = nonzero(n);
        match self.mailbox_rate.check_key_n(key, n) {
            Ok(Ok(())) => {}
            Ok(Err(not_until)) => return Err(not_until.wait_time_from(now)),
            // More than the whole budget at once: let it through one request at a time instead.
            Err(_) => return self.check_graph(key, app),
        }
        match self.app_rate.check_key_n(app, n) {
            Ok(Ok(())) | Err(_) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(now)),
        }
    }

    /// Takes one token-endpoint request from the tenant's budget, or says how long to wait.
    pub fn check_token(&self, tenant: &Arc<str>) -> Result<(), Duration> {
        let now = self.clock.now();
        self.token_rate
            .check_key(tenant)
            .map_err(|not_until| not_until.wait_time_from(now))
    }

    /// Waits for a free slot both globally and for the mailbox. Await it inside the request's future,
    /// never on an actor's thread.
    pub async fn acquire(&self, key: &MailboxKey) -> Option<RequestPermit> {
        self.acquire_n(key, 1).await
    }

    /// Like [`acquire`](Self::acquire) for a request that Outlook runs as `n` parallel requests on the
    /// mailbox (the items of a `$batch`, at most 4 at a time).
    pub async fn acquire_n(&self, key: &MailboxKey, n: u32) -> Option<RequestPermit> {
        let cap = self.limits.mailbox_concurrency.max(1);
        let mailbox = Arc::clone(&self.gate(key).slots);
        // Mailbox first: a mailbox at its cap must not hold one of the scarce global slots.
        let mailbox_permit = mailbox.acquire_many_owned(n.clamp(1, cap)).await.ok()?;
        let global_permit = self.global_slots.clone().acquire_owned().await.ok()?;
        Some(RequestPermit {
            _global: global_permit,
            _mailbox: mailbox_permit,
        })
    }

    /// Waits for a global slot only (token-endpoint requests, which belong to no mailbox).
    pub async fn acquire_global(&self) -> Option<OwnedSemaphorePermit> {
        self.global_slots.clone().acquire_owned().await.ok()
    }

    /// The gate of one (app, mailbox), made on first use.
    fn gate(&self, key: &MailboxKey) -> Arc<MailboxGate> {
        if let Some(gate) = self.gates.get(key) {
            return Arc::clone(&gate);
        }
        let cap = self.limits.mailbox_concurrency.max(1);
        Arc::clone(
            &self
                .gates
                .entry(key.clone())
                .or_insert_with(|| Arc::new(MailboxGate::new(cap))),
        )
    }

    /// The `Retry-After` floor of a mailbox, if it is still ahead.
    pub fn floor(&self, key: &MailboxKey) -> Option<DateTime<Utc>> {
        self.gates
            .get(key)
            .and_then(|gate| gate.floor_after(Utc::now()))
    }

    /// Raises a mailbox's floor to `until` (a floor never moves back). Answers whether it rose,
    /// so the caller persists only a change.
    pub fn raise_floor(&self, key: &MailboxKey, until: DateTime<Utc>) -> bool {
        let gate = self.gate(key);
        let until = until.timestamp_millis();
        gate.floor_ms.fetch_max(until, Ordering::AcqRel) < until
    }

    /// Waits until the mailbox's floor has passed (at once when there is none).
    pub async fn wait_floor(&self, key: &MailboxKey) {
        while let Some(floor) = self.floor(key) {
            let wait = (floor - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }

    /// Every floor still ahead, for persistence and the status page.
    pub fn floors(&self) -> Vec<(MailboxKey, DateTime<Utc>)> {
        let now = Utc::now();
        self.gates
            .iter()
            .filter_map(|entry| {
                entry
                    .value()
                    .floor_after(now)
                    .map(|at| (entry.key().clone(), at))
            })
            .collect()
    }

    /// Drops limiter state that has fully refilled (keeps memory bounded as channels come and go).
    /// A gate stays while a request holds or awaits one of its slots, or its floor is ahead.
    /// Walks every key (a million maps take a good fraction of a second): call it off the actors'
    /// threads; it locks one small shard at a time.
    pub fn shrink(&self) {
        self.mailbox_rate.retain_recent();
        self.app_rate.retain_recent();
        self.token_rate.retain_recent();
        let now = Utc::now();
        let cap = self.limits.mailbox_concurrency.max(1) as usize;
        self.gates.retain(|_, gate| {
            Arc::strong_count(gate) > 1
                || Arc::strong_count(&gate.slots) > 1
                || gate.slots.available_permits() < cap
                || gate.floor_after(now).is_some()
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_mailbox_budget_refuses_with_a_wait() {
        let limiters = RateLimiters::new(Limits {
            mailbox_requests_per_10_min: 3,
            ..Limits::default()
        });
        let key = MailboxKey::new("app", "a@contoso.com");
        let other = MailboxKey::new("app", "b@contoso.com");
        let app: Arc<str> = Arc::from("app");
        for _ in 0..3 {
            assert!(limiters.check_graph(&key, &app).is_ok());
        }
        let wait = limiters.check_graph(&key, &app).unwrap_err();
        assert!(
            wait > Duration::from_secs(100) && wait <= Duration::from_secs(200),
            "{wait:?}"
        );
        // Another mailbox of the same app is not delayed.
        assert!(limiters.check_graph(&other, &app).is_ok());
    }

    #[test]
    fn token_budget_is_per_tenant() {
        let limiters = RateLimiters::new(Limits {
            token_requests_per_tenant_per_min: 1,
            ..Limits::default()
        });
        let a: Arc<str> = Arc::from("tenant-a");
        let b: Arc<str> = Arc::from("tenant-b");
        assert!(limiters.check_token(&a).is_ok());
        assert!(limiters.check_token(&a).is_err());
        assert!(limiters.check_token(&b).is_ok());
    }

    #[actix_rt::test]
    async fn at_most_four_requests_per_mailbox_are_in_flight() {
        let limiters = RateLimiters::new(Limits::default());
        let key = MailboxKey::new("app", "a@contoso.com");
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(limiters.acquire(&key).await.unwrap());
        }
        let fifth = tokio::time::timeout(Duration::from_millis(50), limiters.acquire(&key)).await;
        assert!(fifth.is_err(), "a fifth request got a slot");
        held.pop();
        let fifth = tokio::time::timeout(Duration::from_millis(500), limiters.acquire(&key)).await;
        assert!(fifth.is_ok());
    }

    #[test]
    fn a_channel_key_is_the_key_its_stored_floor_comes_back_as() {
        let client =
            crate::domain::ClientId::parse("0A1B2C3D-4E5F-4061-8273-9485A6B7C8D9").unwrap();
        let mailbox = crate::domain::Mailbox::parse("Desk@Contoso.com").unwrap();
        let key = MailboxKey::of(&client, &mailbox);
        assert_eq!(
            key.stored(),
            "0a1b2c3d-4e5f-4061-8273-9485a6b7c8d9/desk@contoso.com"
        );
        assert_eq!(MailboxKey::from_stored(&key.stored()), key);
        assert_eq!(
            MailboxKey::new("0a1b2c3d-4e5f-4061-8273-9485a6b7c8d9", "DESK@contoso.com"),
            key
        );
        let limiters = RateLimiters::new(Limits::default());
        let until = Utc::now() + chrono::Duration::seconds(60);
        limiters.raise_floor(&MailboxKey::from_stored(&key.stored()), until);
        assert_eq!(
            limiters.floor(&key).map(|f| f.timestamp_millis()),
            Some(until.timestamp_millis()),
            "a floor loaded from the store does not hold the channel's own key"
        );
    }

    #[actix_rt::test]
    async fn a_floor_holds_every_user_of_the_mailbox_and_never_moves_back() {
        let limiters = RateLimiters::new(Limits::default());
        let key = MailboxKey::new("app", "A@contoso.com");
        let same = MailboxKey::new("app", "a@contoso.com");
        let other = MailboxKey::new("app", "b@contoso.com");
        let until = Utc::now() + chrono::Duration::milliseconds(300);
        assert!(limiters.raise_floor(&key, until));
        assert!(!limiters.raise_floor(&key, until - chrono::Duration::seconds(1)));
        assert_eq!(
            limiters.floor(&same).map(|f| f.timestamp_millis()),
            Some(until.timestamp_millis())
        );
        assert!(limiters.floor(&other).is_none());
        limiters.shrink();
        assert!(
            limiters.floor(&key).is_some(),
            "shrink dropped a floor ahead"
        );
        let started = std::time::Instant::now();
        limiters.wait_floor(&same).await;
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert!(limiters.floor(&key).is_none());
    }
}
