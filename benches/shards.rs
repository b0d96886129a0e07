//! How long a walk of a million keys (the limiters' ten-minute `shrink`, a `/metrics` scrape of the
//! status board) holds up a lookup beside it, with dashmap's default shard count (4 × cores) and
//! with the 1,024 shards inboxd's limiter maps and board use. A keyed governor limiter of a million
//! keys, walked by `retain_recent` on one thread while another looks keys up and keeps the longest
//! wait. `cargo bench --bench shards`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use governor::clock::DefaultClock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

const KEYS: usize = 1_000_000;

/// The mailbox limiter's quota (10,000 per 10 minutes), on a map of `shards` shards.
fn limiter(shards: usize) -> DefaultKeyedRateLimiter<Arc<str>> {
    let quota = Quota::with_period(Duration::from_millis(60))
        .unwrap()
        .allow_burst(NonZeroU32::new(10_000).unwrap());
    RateLimiter::new(
        quota,
        DashMap::with_hasher_and_shard_amount(Default::default(), shards),
        DefaultClock::default(),
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let keys: Arc<Vec<Arc<str>>> = Arc::new(
        (0..KEYS)
            .map(|i| Arc::from(format!("client-{i}/care{i}@tenant{i}.example")))
            .collect(),
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let default_shards = (cores * 4).next_power_of_two();
    println!("{KEYS} keys; a lookup thread beside one walk of them (retain_recent)");
    for shards in [default_shards, 1024] {
        for round in 1..=3 {
            let limiter = Arc::new(limiter(shards));
            for key in keys.iter() {
                let _ = limiter.check_key(key);
            }
            let stop = Arc::new(AtomicBool::new(false));
            let prober = {
                let (limiter, keys, stop) = (limiter.clone(), keys.clone(), stop.clone());
                std::thread::spawn(move || {
                    let (mut worst, mut calls, mut i) = (Duration::ZERO, 0u64, 7usize);
                    while !stop.load(Ordering::Relaxed) {
                        i = (i.wrapping_mul(2_654_435_761).wrapping_add(1)) % keys.len();
                        let started = Instant::now();
                        let _ = limiter.check_key(&keys[i]);
                        worst = worst.max(started.elapsed());
                        calls += 1;
                    }
                    (worst, calls)
                })
            };
            std::thread::sleep(Duration::from_millis(100));
            let started = Instant::now();
            limiter.retain_recent();
            let walk = started.elapsed();
            std::thread::sleep(Duration::from_millis(50));
            stop.store(true, Ordering::Relaxed);
            let (worst, calls) = prober.join().unwrap();
            println!(
                "  {shards:5} shards, run {round}: walk {:6.1} ms; longest lookup beside it {:6.2} ms ({calls} lookups)",
                walk.as_secs_f64() * 1e3,
                worst.as_secs_f64() * 1e3,
            );
        }
    }
}
