//! The soak test, time-compressed: many channels on a short interval for a long while, with mail
//! flowing and faults injected; it samples resident memory and the store's size, then checks that
//! nothing was lost or doubled and that memory and the store stayed bounded.
//!
//! `cargo bench --bench soak -- --channels 10000 --minutes 30 --interval-secs 10`
//! (defaults: 2,000 channels, 3 minutes, interval 5 s). The simulator runs in its own process, so
//! the memory sampled is the daemon's alone. Exits non-zero when a check fails.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use inboxd::config::Settings;
use inboxd::domain::secret::{AdminToken, MasterKey};
use inboxd::sim::client::{Delivery, SimClient};
use inboxd::startup::{Application, Secrets};
use inboxd_testkit::{SimProcess, daemon_env, free_port, resident_bytes, seed_channels};
use rand::Rng as _;
use serde_json::json;

struct Args {
    channels: usize,
    minutes: f64,
    interval_secs: u64,
    messages_per_sec: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut parsed = Args {
        channels: 2000,
        minutes: 3.0,
        interval_secs: 5,
        messages_per_sec: 50,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--bench" {
            continue; // passed by `cargo bench`
        }
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--channels" => parsed.channels = value.parse()?,
            "--minutes" => parsed.minutes = value.parse()?,
            "--interval-secs" => parsed.interval_secs = value.parse()?,
            "--messages-per-sec" => parsed.messages_per_sec = value.parse()?,
            other => bail!(
                "unknown flag {other}: use --channels, --minutes, --interval-secs, --messages-per-sec"
            ),
        }
    }
    Ok(parsed)
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let sim = SimProcess::start(std::path::Path::new(env!("CARGO_BIN_EXE_inboxd")))?;
    actix_rt::System::new().block_on(soak(args, sim.url.clone()))
}

async fn soak(args: Args, sim_url: String) -> anyhow::Result<()> {
    let sim = SimClient::new(sim_url.clone());
    let dir = tempfile::tempdir()?;
    let key = MasterKey::generate();
    println!("seeding {} channels…", args.channels);
    let mailboxes =
        seed_channels(&sim, &dir.path().join("store"), &key, args.channels, "soak").await?;
    let env = daemon_env(dir.path(), free_port()?, &sim_url, args.interval_secs, &[]);
    let mut settings = Settings::load(None, &env).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Time-compressed: ledger entries of mail marked read are pruned after a minute, not 30 days.
    settings.store.ledger_retention = Duration::from_secs(60);
    let secrets = Secrets {
        master_key: key,
        admin_token: AdminToken::generate(),
        webhook_secret: None,
    };
    let app = Application::build(settings, secrets).await?;
    let shared = app.ingest();
    let started = Instant::now();
    let run_for = Duration::from_secs_f64(args.minutes * 60.0);
    let mut rng = rand::thread_rng();
    let mut sent = 0usize;
    let mut samples: Vec<(f64, u64, u64)> = Vec::new();
    let mut next_sample = Instant::now();
    let mut next_fault = Instant::now() + Duration::from_secs(20);
    while started.elapsed() < run_for {
        for _ in 0..args.messages_per_sec {
            let mailbox = &mailboxes[rng.gen_range(0..mailboxes.len())];
            sim.deliver(
                mailbox,
                &Delivery {
                    count: 1,
                    unread: true,
                    ..Delivery::default()
                },
            )
            .await?;
            sent += 1;
        }
        if Instant::now() >= next_fault {
            // A burst of trouble on a few mailboxes for ten seconds.
            for _ in 0..5 {
                let mailbox = &mailboxes[rng.gen_range(0..mailboxes.len())];
                let kind = match rng.gen_range(0..3) {
                    0 => json!({"kind": "status", "status": 503, "retry_after": 2}),
                    1 => json!({"kind": "throttle", "retry_after": 3}),
                    _ => json!({"kind": "latency", "ms": 800}),
                };
                let mut spec = kind;
                spec["mailbox"] = json!(mailbox);
                spec["duration_ms"] = json!(10_000);
                sim.add_fault_json(&spec).await?;
            }
            next_fault = Instant::now() + Duration::from_secs(30);
        }
        if Instant::now() >= next_sample {
            let rss = resident_bytes();
            let store = shared.store.size_on_disk().unwrap_or(0);
            let minute = started.elapsed().as_secs_f64() / 60.0;
            println!(
                "t={minute:5.1} min  rss={:7.1} MiB  store={:7.1} MiB  polls={}  delivered={}  sent={sent}",
                rss as f64 / 1048576.0,
                store as f64 / 1048576.0,
                shared
                    .stats
                    .polls
                    .load(std::sync::atomic::Ordering::Relaxed),
                shared
                    .stats
                    .delivered
                    .load(std::sync::atomic::Ordering::Relaxed),
            );
            samples.push((minute, rss, store));
            next_sample = Instant::now() + Duration::from_secs(15);
        }
        actix_rt::time::sleep(Duration::from_secs(1)).await;
    }
    println!("draining…");
    sim.clear_faults().await?;
    let drain_deadline = Instant::now() + Duration::from_secs(args.interval_secs * 3 + 60);
    loop {
        let mut unread = 0;
        for mailbox in &mailboxes {
            unread += sim.mailbox_state(mailbox).await?.unread;
        }
        if unread == 0 {
            break;
        }
        if Instant::now() > drain_deadline {
            bail!("{unread} messages still unread after draining");
        }
        actix_rt::time::sleep(Duration::from_secs(2)).await;
    }
    let counters = sim.counters(None).await?;
    let text = std::fs::read_to_string(dir.path().join("mail.jsonl"))?;
    let mut seen = HashSet::new();
    let mut lines = 0usize;
    for line in text.lines() {
        let record: serde_json::Value = serde_json::from_str(line)?;
        seen.insert(record["message_id"].as_str().unwrap_or_default().to_owned());
        lines += 1;
    }
    let doubled = lines - seen.len();
    let lost = sent.saturating_sub(seen.len());
    // Bounded: after a warm-up third, the last third grows memory and store by less than 25 % over
    // the middle third.
    let third = (samples.len() / 3).max(1);
    let window_max = |from: usize, to: usize, pick: fn(&(f64, u64, u64)) -> u64| {
        samples[from.min(samples.len())..to.min(samples.len())]
            .iter()
            .map(pick)
            .max()
            .unwrap_or(0)
    };
    let middle = (
        window_max(third, 2 * third, |s| s.1),
        window_max(third, 2 * third, |s| s.2),
    );
    let last = (
        window_max(2 * third, samples.len(), |s| s.1),
        window_max(2 * third, samples.len(), |s| s.2),
    );
    let rss_growth = last.0 as f64 / middle.0.max(1) as f64;
    let store_growth = last.1 as f64 / middle.1.max(1) as f64;
    println!();
    println!(
        "soak: {} channels, {:.1} min, interval {} s",
        args.channels, args.minutes, args.interval_secs
    );
    println!(
        "  messages sent {sent}, in the sink {}, doubled {doubled}, lost {lost}",
        seen.len()
    );
    println!(
        "  requests before their Retry-After: {}",
        counters.early_count
    );
    println!(
        "  resident memory: middle third max {:.1} MiB, last third max {:.1} MiB (x{rss_growth:.2})",
        middle.0 as f64 / 1048576.0,
        last.0 as f64 / 1048576.0
    );
    println!(
        "  store size: middle third max {:.1} MiB, last third max {:.1} MiB (x{store_growth:.2})",
        middle.1 as f64 / 1048576.0,
        last.1 as f64 / 1048576.0
    );
    drop(shared);
    app.stop().await?;
    if lost > 0
        || doubled > 0
        || counters.early_count > 0
        || rss_growth > 1.25
        || store_growth > 1.25
    {
        bail!("the soak failed its checks");
    }
    println!("soak passed");
    Ok(())
}
