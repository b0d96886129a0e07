//! What every actor shares: the clients, the limiters, the store, the settings they run by, and
//! the status board (the read model of every channel's state).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::Addr;
use chrono::{DateTime, Utc};
use dashmap::DashMap;

use crate::actors::processor::ProcessorActor;
use crate::domain::{ChannelId, ChannelStatus};
use crate::graph::GraphClient;
use crate::oauth::OAuthClient;
use crate::rate_limit::RateLimiters;
use crate::retry::BackoffPolicy;
use crate::store::{ChannelRecord, LastError, Store};

/// How channels run, taken from the settings once.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Time between two polls of a channel.
    pub interval: Duration,
    /// Random spread added to each channel's first poll.
    pub jitter: Duration,
    /// `$top` per page.
    pub page_size: u32,
    /// Most messages one poll takes before handing over (the rest follow at once).
    pub max_messages_per_poll: u32,
    /// Refresh the access token this long before it expires.
    pub token_refresh_margin: Duration,
    /// Spread of the refresh margin across channels.
    pub token_refresh_jitter: Duration,
    /// Backoff of a failing channel.
    pub backoff: BackoffPolicy,
    /// Failures of one message before it is quarantined.
    pub max_delivery_attempts: u32,
    /// Attachment content above this size is left out.
    pub max_attachment_bytes: u64,
}

/// The shared context every channel actor holds an `Arc` of.
pub struct Shared {
    /// The store.
    pub store: Store,
    /// One Graph client per arbiter (each with its own connection pool), so that a channel's
    /// requests run on connections its own thread drives, with no wake-up of another arbiter.
    pub graphs: Vec<GraphClient>,
    /// The identity platform clients, one per arbiter like `graphs`.
    pub oauths: Vec<OAuthClient>,
    /// The limiters.
    pub limiters: RateLimiters,
    /// How channels run.
    pub run: RunSettings,
    /// Where mail goes.
    pub processor: Addr<ProcessorActor>,
    /// The read model.
    pub board: StatusBoard,
    /// Counters the bench and tests read without scraping /metrics.
    pub stats: Stats,
}

thread_local! {
    /// Which arbiter this thread is (0 on threads that are not arbiters).
    static LANE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the current thread as arbiter `lane` (called once on each arbiter at start-up).
pub fn set_lane(lane: usize) {
    LANE.with(|cell| cell.set(lane));
}

impl Shared {
    /// The Graph client of the current arbiter.
    pub fn graph(&self) -> &GraphClient {
        let lane = LANE.with(std::cell::Cell::get);
        &self.graphs[lane % self.graphs.len().max(1)]
    }

    /// The identity platform client of the current arbiter.
    pub fn oauth(&self) -> &OAuthClient {
        let lane = LANE.with(std::cell::Cell::get);
        &self.oauths[lane % self.oauths.len().max(1)]
    }
}

/// Plain counters, cheap to bump from any thread.
#[derive(Debug, Default)]
pub struct Stats {
    /// Polls started.
    pub polls: AtomicU64,
    /// Graph requests sent.
    pub graph_requests: AtomicU64,
    /// Messages the sink accepted.
    pub delivered: AtomicU64,
    /// Messages marked read.
    pub marked_read: AtomicU64,
    /// Token refreshes that succeeded.
    pub refreshes: AtomicU64,
    /// Channel actors restarted after a failure.
    pub restarts: AtomicU64,
    /// Channel actors running now.
    pub live_channels: std::sync::atomic::AtomicUsize,
    /// Sum of poll lateness in microseconds.
    pub lateness_micros_sum: AtomicU64,
    /// Largest poll lateness in microseconds.
    pub lateness_micros_max: AtomicU64,
    /// The distribution of poll lateness.
    pub lateness: LatenessHistogram,
}

impl Stats {
    /// Records one poll's lateness.
    pub fn record_lateness(&self, lateness: Duration) {
        let micros = u64::try_from(lateness.as_micros()).unwrap_or(u64::MAX);
        self.polls.fetch_add(1, Ordering::Relaxed);
        self.lateness_micros_sum
            .fetch_add(micros, Ordering::Relaxed);
        self.lateness_micros_max
            .fetch_max(micros, Ordering::Relaxed);
        self.lateness.record(micros);
        metrics::histogram!("inboxd_poll_lateness_seconds").record(lateness.as_secs_f64());
        metrics::counter!("inboxd_polls_total").increment(1);
    }

    /// The `q` quantile (`0..=1`) of every poll lateness recorded so far (within 1/16 of the true
    /// value); zero before the first poll.
    pub fn lateness_quantile(&self, q: f64) -> Duration {
        self.lateness.snapshot().quantile(q)
    }
}

/// Sub-buckets per power of two: the relative error of a quantile is at most 1/16.
const SUB_BUCKET_BITS: u32 = 4;
const SUB_BUCKETS: usize = 1 << SUB_BUCKET_BITS;
/// Values of 2^36 µs (19 hours) and more share the last bucket.
const MAX_EXPONENT: u32 = 36;
const BUCKETS: usize = SUB_BUCKETS * (MAX_EXPONENT - SUB_BUCKET_BITS + 2) as usize;

/// A lock-free log-linear histogram of microseconds: one relaxed `fetch_add` per value.
pub struct LatenessHistogram {
    buckets: Box<[AtomicU64]>,
}

impl Default for LatenessHistogram {
    fn default() -> Self {
        LatenessHistogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl std::fmt::Debug for LatenessHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let snapshot = self.snapshot();
        f.debug_struct("LatenessHistogram")
            .field("count", &snapshot.count())
            .field("p50", &snapshot.quantile(0.5))
            .field("p99", &snapshot.quantile(0.99))
            .finish()
    }
}

/// The bucket of `micros`: exact below 16, then 16 linear sub-buckets per power of two.
fn bucket_of(micros: u64) -> usize {
    if micros < SUB_BUCKETS as u64 {
        return micros as usize;
    }
    let exponent = (63 - micros.leading_zeros()).min(MAX_EXPONENT);
    if exponent == MAX_EXPONENT && micros >> MAX_EXPONENT > 1 {
        return BUCKETS - 1;
    }
    let sub = (micros >> (exponent - SUB_BUCKET_BITS)) as usize & (SUB_BUCKETS - 1);
    SUB_BUCKETS * (exponent - SUB_BUCKET_BITS + 1) as usize + sub
}

/// The largest value bucket `index` holds.
fn bucket_upper(index: usize) -> u64 {
    if index < SUB_BUCKETS {
        return index as u64;
    }
    let exponent = (index / SUB_BUCKETS) as u32 + SUB_BUCKET_BITS - 1;
    let sub = (index % SUB_BUCKETS) as u64;
    let width = 1u64 << (exponent - SUB_BUCKET_BITS);
    ((SUB_BUCKETS as u64 + sub) << (exponent - SUB_BUCKET_BITS)) + width - 1
}

impl LatenessHistogram {
    /// Counts one value.
    pub fn record(&self, micros: u64) {
        if let Some(bucket) = self.buckets.get(bucket_of(micros)) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A copy of the counts now.
    pub fn snapshot(&self) -> LatenessSnapshot {
        LatenessSnapshot {
            counts: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// The counts of a [`LatenessHistogram`] at one moment; two snapshots give the distribution of a
/// time window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatenessSnapshot {
    counts: Vec<u64>,
}

impl LatenessSnapshot {
    /// The values counted since `earlier`.
    pub fn since(&self, earlier: &LatenessSnapshot) -> LatenessSnapshot {
        LatenessSnapshot {
            counts: self
                .counts
                .iter()
                .zip(earlier.counts.iter().chain(std::iter::repeat(&0)))
                .map(|(now, before)| now.saturating_sub(*before))
                .collect(),
        }
    }

    /// How many values.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q` quantile (`0..=1`), as its bucket's upper bound; zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        let total = self.count();
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Duration::from_micros(bucket_upper(index));
            }
        }
        Duration::from_micros(bucket_upper(self.counts.len().saturating_sub(1)))
    }
}

/// One channel as the API and the status page show it. Never holds a secret.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelView {
    /// The configuration, without secrets.
    pub id: ChannelId,
    /// Display name.
    pub name: String,
    /// Tenant.
    pub tenant_id: String,
    /// App.
    pub client_id: String,
    /// Mailbox.
    pub mailbox: String,
    /// Folder.
    pub folder: String,
    /// Enabled by the operator.
    pub enabled: bool,
    /// Status.
    pub status: ChannelStatus,
    /// The last error, with its remedy.
    pub last_error: Option<LastError>,
    /// When it last polled.
    pub last_poll_at: Option<DateTime<Utc>>,
    /// When it last polled successfully.
    pub last_success_at: Option<DateTime<Utc>>,
    /// When it polls next.
    pub next_poll_at: Option<DateTime<Utc>>,
    /// The client secret's expiry, if known.
    pub client_secret_expires_at: Option<DateTime<Utc>>,
    /// Messages delivered today (UTC).
    pub messages_today: u64,
    /// The day `messages_today` counts.
    pub messages_day: Option<chrono::NaiveDate>,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

impl ChannelView {
    /// The view of a stored channel before its actor reported anything.
    pub fn from_record(record: &ChannelRecord) -> Self {
        ChannelView {
            id: record.id,
            name: record.name.clone(),
            tenant_id: record.tenant_id.to_string(),
            client_id: record.client_id.to_string(),
            mailbox: record.mailbox.to_string(),
            folder: record.folder.to_string(),
            enabled: record.enabled,
            status: record.status,
            last_error: record.last_error.clone(),
            last_poll_at: record.last_poll_at,
            last_success_at: record.last_success_at,
            next_poll_at: None,
            client_secret_expires_at: record.client_secret_expires_at,
            messages_today: 0,
            messages_day: None,
            created_at: record.created_at,
        }
    }

    /// Whole days until the client secret expires (negative once expired).
    pub fn secret_days_left(&self, now: DateTime<Utc>) -> Option<i64> {
        self.client_secret_expires_at
            .map(|at| (at - now).num_days())
    }
}

/// Every channel's current view; each row is written by its channel's actor (or the supervisor
/// while no actor runs) and read by anyone.
#[derive(Debug, Default)]
pub struct StatusBoard {
    rows: DashMap<ChannelId, ChannelView>,
}

impl StatusBoard {
    /// Inserts or replaces a row.
    pub fn put(&self, view: ChannelView) {
        self.rows.insert(view.id, view);
    }

    /// Changes a row in place.
    pub fn update(&self, id: ChannelId, change: impl FnOnce(&mut ChannelView)) {
        if let Some(mut row) = self.rows.get_mut(&id) {
            change(&mut row);
        }
    }

    /// Removes a row.
    pub fn remove(&self, id: ChannelId) {
        self.rows.remove(&id);
    }

    /// One row.
    pub fn get(&self, id: ChannelId) -> Option<ChannelView> {
        self.rows.get(&id).map(|row| row.clone())
    }

    /// How many channels.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Rows matching `keep`, sorted by name then id, `limit` of them after skipping `offset`;
    /// with the total number that matched.
    pub fn page(
        &self,
        keep: impl Fn(&ChannelView) -> bool,
        offset: usize,
        limit: usize,
    ) -> (usize, Vec<ChannelView>) {
        let mut matched: Vec<ChannelView> = self
            .rows
            .iter()
            .filter(|row| keep(row.value()))
            .map(|row| row.value().clone())
            .collect();
        matched.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        let total = matched.len();
        let rows = matched.into_iter().skip(offset).take(limit).collect();
        (total, rows)
    }

    /// How many channels are in each status.
    pub fn counts(&self) -> Vec<(ChannelStatus, usize)> {
        let mut counts = [0usize; 6];
        for row in &self.rows {
            if let Some(index) = ChannelStatus::ALL.iter().position(|s| *s == row.status) {
                counts[index] += 1;
            }
        }
        ChannelStatus::ALL.iter().copied().zip(counts).collect()
    }
}

/// A stable number in `0..1` for a channel, used to spread its work over time.
pub fn stable_fraction(id: ChannelId, salt: u64) -> f64 {
    let mixed = (id.stable_hash() ^ salt).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_bound_their_values() {
        let mut last = 0;
        for v in (0..20_000u64).chain([1 << 20, 123_456_789, 1 << 35, (1 << 36) - 1]) {
            let b = bucket_of(v);
            assert!(b >= last || v > 20_000, "bucket of {v} went backwards");
            last = last.max(b);
            assert!(bucket_upper(b) >= v, "upper of {v}'s bucket is below it");
            assert!(
                bucket_upper(b) as f64 <= v as f64 * 1.0625 + 1.0,
                "bucket of {v} too wide"
            );
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_of_a_window() {
        let h = LatenessHistogram::default();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let before = h.snapshot();
        let p50 = before.quantile(0.5).as_micros() as f64;
        assert!((500_000.0..=532_000.0).contains(&p50), "p50 {p50}");
        let p99 = before.quantile(0.99).as_micros() as f64;
        assert!((990_000.0..=1_052_000.0).contains(&p99), "p99 {p99}");
        for _ in 0..10 {
            h.record(7);
        }
        let window = h.snapshot().since(&before);
        assert_eq!(window.count(), 10);
        assert_eq!(window.quantile(0.99), Duration::from_micros(7));
        let stats = Stats::default();
        assert_eq!(stats.lateness_quantile(0.5), Duration::ZERO);
    }
}
