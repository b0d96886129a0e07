//! Plain counters of the daemon's work (polls, requests, deliveries, refreshes) and the
//! poll-lateness histogram: cheap to bump from any thread, read by the benches, the tests and the
//! status page without scraping `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
