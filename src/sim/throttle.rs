//! Outlook-style throttling per (app, mailbox): a 10-minute request budget and a cap on concurrent
//! requests, plus the bookkeeping of every `Retry-After` the simulator handed out so that requests
//! arriving too early can be counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

use dashmap::DashMap;

/// Length of the request-budget window.
pub const WINDOW_MS: i64 = 600_000;

/// Per-key throttling state.
#[derive(Debug, Default)]
pub struct Entry {
    pub in_flight: AtomicU32,
    pub peak: AtomicU32,
    window_start_ms: AtomicI64,
    window_count: AtomicU32,
    /// A `Retry-After` handed out to this key ends at this instant (ms since epoch).
    pub not_before_ms: AtomicI64,
    /// The last arrival (see [`Throttle::arrive`]) before the `Retry-After` window ending at
    /// `not_before_ms` opened: a request that arrived no later (a sibling in the same `$batch`, a
    /// request already in flight) could not have seen it, so it is not early.
    retry_after_issued_at: AtomicU64,
}

/// Why a request was throttled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Throttled {
    /// More than the allowed concurrent requests.
    Concurrency,
    /// Request budget of the window used up; seconds until the window ends.
    Budget(f64),
}

/// The table of throttling entries, keyed by `"{client_id}|{mailbox}"` (Graph) or `"token|…"`,
/// with an index of each mailbox's keys so that a per-mailbox look-up (the counters a bench probes
/// every millisecond) costs the same at 100,000 mailboxes as at ten.
#[derive(Debug, Default)]
pub struct Throttle {
    pub entries: DashMap<String, Arc<Entry>>,
    by_mailbox: DashMap<String, Vec<String>>,
    /// Requests that reached the simulator so far: each takes the next number on arrival.
    arrivals: AtomicU64,
}

/// Holds one concurrency slot; releases it when dropped.
#[derive(Debug)]
pub struct Slot {
    entry: Arc<Entry>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.entry.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Throttle {
    /// The entry for a key, created on first use.
    pub fn entry(&self, key: &str) -> Arc<Entry> {
        if let Some(e) = self.entries.get(key) {
            return e.value().clone();
        }
        let entry = self
            .entries
            .entry(key.to_owned())
            .or_default()
            .value()
            .clone();
        if let Some((_, mailbox)) = key.split_once('|') {
            let mut keys = self.by_mailbox.entry(mailbox.to_owned()).or_default();
            if !keys.iter().any(|k| k == key) {
                keys.push(key.to_owned());
            }
        }
        entry
    }

    /// The keys (and entries) of one mailbox, from the index.
    pub fn of_mailbox(&self, mailbox: &str) -> Vec<(String, Arc<Entry>)> {
        self.by_mailbox
            .get(mailbox)
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| self.entries.get(k).map(|e| (k.clone(), e.value().clone())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Takes a concurrency slot and a unit of budget for `key`, or says why not.
    pub fn acquire(
        &self,
        entry: &Arc<Entry>,
        now_ms: i64,
        max_concurrent: usize,
        budget: u32,
    ) -> Result<Slot, Throttled> {
        let current = entry.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        entry.peak.fetch_max(current, Ordering::AcqRel);
        let slot = Slot {
            entry: entry.clone(),
        };
        if current as usize > max_concurrent {
            return Err(Throttled::Concurrency);
        }
        let start = entry.window_start_ms.load(Ordering::Acquire);
        if now_ms - start >= WINDOW_MS {
            entry.window_start_ms.store(now_ms, Ordering::Release);
            entry.window_count.store(0, Ordering::Release);
        }
        let used = entry.window_count.fetch_add(1, Ordering::AcqRel) + 1;
        if used > budget {
            let start = entry.window_start_ms.load(Ordering::Acquire);
            let left = ((start + WINDOW_MS - now_ms).max(1000)) as f64 / 1000.0;
            return Err(Throttled::Budget(left.ceil()));
        }
        Ok(slot)
    }

    /// Numbers a request that just reached the simulator (an HTTP request; a `$batch`'s items
    /// share their batch's number), so that it can later be told whether it arrived before or
    /// after a `Retry-After` was handed out.
    pub fn arrive(&self) -> u64 {
        self.arrivals.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Records that a `Retry-After` of `secs` was handed to `entry` at `now_ms`.
    pub fn set_retry_after(&self, entry: &Entry, now_ms: i64, secs: f64) {
        let until = now_ms + (secs * 1000.0).ceil() as i64;
        let before = entry.not_before_ms.fetch_max(until, Ordering::AcqRel);
        if before <= now_ms {
            let last = self.arrivals.load(Ordering::Acquire);
            entry.retry_after_issued_at.store(last, Ordering::Release);
        }
    }

    /// How many ms too early the request numbered `arrival` is at `now_ms`: `None` unless a
    /// `Retry-After` handed out before it arrived still runs.
    pub fn early_by(entry: &Entry, arrival: u64, now_ms: i64) -> Option<i64> {
        let not_before = entry.not_before_ms.load(Ordering::Acquire);
        let issued = entry.retry_after_issued_at.load(Ordering::Acquire);
        (not_before > now_ms && issued < arrival).then_some(not_before - now_ms)
    }

    /// Resets peaks to the current in-flight counts and forgets handed-out `Retry-After`s.
    pub fn reset(&self) {
        for e in self.entries.iter() {
            let now = e.in_flight.load(Ordering::Acquire);
            e.peak.store(now, Ordering::Release);
            e.not_before_ms.store(0, Ordering::Release);
            e.retry_after_issued_at.store(0, Ordering::Release);
            e.window_count.store(0, Ordering::Release);
        }
    }
}
