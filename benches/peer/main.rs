//! The peer bench: inboxd against what a team would otherwise write, side by side on the same
//! simulator in the same window (docs/benchmarks.md, "The peer bench").
//!
//! `cargo bench --bench peer -- --channels N --interval-secs I [--burst M] [--duration-secs D]`
//!
//! The peer is a plain Python asyncio + aiohttp poller (`benches/peer/poller.py`, in a virtual
//! environment the bench makes under the target directory from `requirements.txt`): the same Graph
//! requests as inboxd's delta mode, polls spread over the interval, group-committed JSONL with one
//! fsync per batch, `$batch` mark-read; no ledger, no limiter, no retries, no admin API.
//!
//! One run, in order:
//! 1. the simulator as a child process (`inboxd sim`, one worker);
//! 2. the empty baselines: `inboxd serve` on an empty store (scraped once) and the peer with no
//!    channel, each alone for 2 s, resident memory read;
//! 3. N channels each, on mailboxes of their own (inboxd's written into a sled store with tokens
//!    minted by the simulator; the peer's tokens in a JSON file);
//! 4. both pollers start at once; once each has polled every channel and one more interval has
//!    passed, the **idle window** (D seconds): CPU per poll and lateness of each, and resident
//!    memory at its end; inboxd's `/metrics` is scraped every 15 s throughout, as Prometheus would;
//! 5. with `--burst M`: M messages delivered to min(N, 1,000) of inboxd's mailboxes, as fast as the
//!    simulator takes them, timed until the simulator has seen M mark-read `$batch` items; then the
//!    same for the peer's mailboxes. CPU per mail is the poller's CPU over that span minus its idle
//!    rate from step 4 (its other channels keep polling), over M.
//!
//! Every figure is a ratio inboxd ÷ peer measured in the same run (the machine is shared). Results
//! go to `target/bench-results/peer-<timestamp>-n<N>.json`. Exits 1 when a burst is not delivered
//! and marked read within its deadline or a poller polled nothing; 2 when it cannot run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod peers;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Parser;
use inboxd::domain::ChannelId;
use inboxd::domain::secret::{AccessToken, MasterKey, RefreshToken};
use inboxd::sim::client::{BulkRequest, Delivery, SimClient, bulk_credentials};
use inboxd::store::{Store, StoreOptions, TokenSet};
use inboxd::telemetry::metrics::LATENESS_BUCKETS;
use inboxd_testkit::seed::{authorized_channel, secret_app};
use inboxd_testkit::{SimProcess, daemon_env, free_port};
use serde::Serialize;

use crate::peers::{Inboxd, Peer, Sample, TOKEN, quantile};

/// Mailboxes of inboxd's channels.
const INBOXD_PREFIX: &str = "peer-inboxd";
/// Mailboxes of the Python peer's channels.
const PEER_PREFIX: &str = "peer-python";
/// How often `/metrics` is scraped (Prometheus' common interval).
const SCRAPE_EVERY: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Parser, Serialize)]
#[command(
    name = "peer",
    bin_name = "cargo bench --bench peer --",
    about = "inboxd against a plain Python asyncio poller on the same simulator (docs/benchmarks.md)."
)]
struct Args {
    /// Channels of each poller (N).
    #[arg(long, default_value_t = 1000)]
    channels: usize,
    /// The polling interval in seconds (I).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    interval_secs: u64,
    /// The idle window in seconds (D); max(30, 3 × I) by default.
    #[arg(long)]
    duration_secs: Option<u64>,
    /// Messages of each poller's burst (M); 0 for none.
    #[arg(long, default_value_t = 0)]
    burst: usize,
    /// Mailboxes the burst is spread over: min(N, 1,000) by default.
    #[arg(long)]
    burst_channels: Option<usize>,
    /// A label for the results.
    #[arg(long, default_value = "")]
    label: String,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    #[serde(skip)]
    bench: bool,
    /// libtest filters `cargo bench` may pass; ignored.
    #[arg(hide = true)]
    #[serde(skip)]
    filters: Vec<String>,
}

/// One poller's figures.
#[derive(Debug, Clone, Default, Serialize)]
struct Side {
    rss_empty_bytes: u64,
    rss_bytes: u64,
    rss_per_channel_bytes: f64,
    idle_polls: f64,
    idle_cpu_secs: f64,
    idle_cpu_us_per_poll: f64,
    idle_cpu_cores: f64,
    lateness_p50_ms: f64,
    lateness_p99_ms: f64,
    burst_secs: f64,
    burst_delivery_secs: f64,
    burst_cpu_secs: f64,
    burst_cpu_us_per_mail: f64,
    burst_msgs_per_sec: f64,
    burst_sim_cores: f64,
}

#[derive(Debug, Serialize)]
struct Ratio {
    figure: &'static str,
    inboxd: String,
    peer: String,
    ratio: f64,
}

#[derive(Debug, Serialize)]
struct Results {
    timestamp: String,
    args: Args,
    cores: usize,
    idle_window: (f64, f64),
    idle_sim_cores: f64,
    inboxd: Side,
    peer: Side,
    inboxd_burst_window: (f64, f64),
    peer_burst_window: (f64, f64),
    ratios: Vec<Ratio>,
    scrapes: usize,
    failures: Vec<String>,
}

fn main() {
    let args = Args::parse();
    let code = match main_inner(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("peer bench failed: {err:#}");
            2
        }
    };
    std::process::exit(code);
}

fn main_inner(args: Args) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let results = local.block_on(&rt, run(args))?;
    print(&results);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-results");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!(
        "peer-{}-n{}.json",
        Utc::now().format("%Y%m%dT%H%M%S"),
        results.args.channels
    ));
    std::fs::write(&path, serde_json::to_vec_pretty(&results)?)?;
    println!("  results: {}", path.display());
    Ok(if results.failures.is_empty() { 0 } else { 1 })
}

/// Mints tokens for mailboxes `0..count` of `prefix` (provisioned already), 32 at a time.
async fn mint_all(
    sim: &SimClient,
    prefix: &str,
    count: usize,
) -> anyhow::Result<Vec<inboxd::sim::client::MintedTokens>> {
    let mut tasks = tokio::task::JoinSet::new();
    let mut minted = Vec::with_capacity(count);
    for i in 0..count {
        let sim = sim.clone();
        let (_, client, _, mailbox) = bulk_credentials(prefix, i);
        tasks.spawn_local(async move { (i, sim.mint_tokens(&mailbox, &client, None).await) });
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
    Ok(minted.into_iter().map(|(_, t)| t).collect())
}

async fn provision(sim: &SimClient, prefix: &str, count: usize) -> anyhow::Result<()> {
    const CHUNK: usize = 10_000;
    let mut start = 0;
    while start < count {
        let mut bulk = BulkRequest::new(CHUNK.min(count - start), prefix);
        bulk.start = start;
        bulk.return_entries = false;
        sim.bulk(&bulk).await?;
        start += CHUNK;
    }
    Ok(())
}

/// inboxd's N channels, written into a sled store at `dir/store` with `key`.
async fn seed_inboxd(sim: &SimClient, dir: &Path, key: &MasterKey, n: usize) -> anyhow::Result<()> {
    provision(sim, INBOXD_PREFIX, n).await?;
    let minted = mint_all(sim, INBOXD_PREFIX, n).await?;
    let store = Store::open(&dir.join("store"), key.clone(), StoreOptions::default())?;
    let now = Utc::now();
    let mut tokens = Vec::with_capacity(n);
    let mut apps = Vec::with_capacity(n);
    for (i, t) in minted.into_iter().enumerate() {
        let (tenant, client, secret, mailbox) = bulk_credentials(INBOXD_PREFIX, i);
        let id = ChannelId::generate();
        store.put_channel(&authorized_channel(
            id, &mailbox, &tenant, &client, &mailbox,
        )?)?;
        apps.push(secret_app(&tenant, &client, &secret)?);
        tokens.push((
            id,
            TokenSet {
                access_token: AccessToken::new(t.access_token)?,
                access_expires_at: now + chrono::Duration::seconds(t.expires_in as i64),
                refresh_token: RefreshToken::new(t.refresh_token)?,
                scope: "offline_access https://graph.microsoft.com/Mail.ReadWrite.Shared".into(),
                obtained_at: now,
            },
        ));
    }
    store.put_apps(&apps)?;
    store.put_tokens_many(&tokens)?;
    store.flush()?;
    Ok(())
}

/// The peer's N channels: `[[id, mailbox, access token], …]` in `file`.
async fn seed_peer(sim: &SimClient, file: &Path, n: usize) -> anyhow::Result<()> {
    provision(sim, PEER_PREFIX, n).await?;
    let minted = mint_all(sim, PEER_PREFIX, n).await?;
    let channels: Vec<(String, String, String)> = minted
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let (_, _, _, mailbox) = bulk_credentials(PEER_PREFIX, i);
            (ChannelId::generate().to_string(), mailbox, t.access_token)
        })
        .collect();
    write_private(file, &serde_json::to_vec(&channels)?)
}

/// Writes a file only its owner can read (it holds access tokens).
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    Ok(())
}

fn inboxd_env(
    dir: &Path,
    port: u16,
    sim_url: &str,
    interval: u64,
    key: &MasterKey,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = daemon_env(dir, port, sim_url, interval, &[])
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    env.extend([
        ("INBOXD_MASTER_KEY".into(), key.encode()),
        ("INBOXD_ADMIN_TOKEN".into(), TOKEN.into()),
        ("INBOXD_STORE__ENGINE".into(), "sled".into()),
        ("INBOXD_PROCESSOR__SINK".into(), "jsonl".into()),
        ("INBOXD_SERVER__SHUTDOWN_GRACE_SECS".into(), "10".into()),
    ]);
    env
}

/// Marked-read `$batch` items the simulator has answered so far (all clients).
async fn batch_items(sim: &SimClient) -> anyhow::Result<u64> {
    let counters = sim.counters(None).await?;
    Ok(counters.requests.get("batch_item").copied().unwrap_or(0))
}

/// Delivers `total` messages over mailboxes `0..mailboxes` of `prefix`, as evenly as possible,
/// one request per mailbox (at most 100 messages each), 4 requests in flight.
async fn deliver_burst(
    sim: &SimClient,
    prefix: &str,
    mailboxes: usize,
    total: usize,
) -> anyhow::Result<()> {
    let mut parts = Vec::new();
    let mut left = total;
    let mut i = 0usize;
    while left > 0 {
        let share = total.div_ceil(mailboxes).min(100).min(left);
        parts.push((i % mailboxes, share));
        left -= share;
        i += 1;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (mailbox, count) in parts {
        let sim = sim.clone();
        let (_, _, _, mailbox) = bulk_credentials(prefix, mailbox);
        tasks.spawn_local(async move {
            let delivery = Delivery {
                count,
                unread: true,
                ..Delivery::default()
            };
            sim.deliver(&mailbox, &delivery).await
        });
        while tasks.len() >= 4 {
            if let Some(done) = tasks.join_next().await {
                done??;
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// One burst: delivers `total` messages to `prefix`'s mailboxes and waits until the simulator has
/// marked that many read. Answers (start, end, delivery seconds, CPU of `pid`, simulator CPU), or
/// an error after `deadline`.
async fn burst(
    sim: &SimClient,
    sim_pid: u32,
    pid: u32,
    prefix: &str,
    mailboxes: usize,
    total: usize,
    deadline: Duration,
) -> anyhow::Result<(Instant, Instant, f64, f64, f64)> {
    let before = batch_items(sim).await?;
    let cpu0 = peers::cpu_secs(pid);
    let sim0 = peers::cpu_secs(sim_pid);
    let t0 = Instant::now();
    deliver_burst(sim, prefix, mailboxes, total).await?;
    let delivered = t0.elapsed().as_secs_f64();
    loop {
        if batch_items(sim).await? - before >= total as u64 {
            break;
        }
        if t0.elapsed() > deadline {
            anyhow::bail!(
                "{prefix}: only {} of {total} messages marked read within {} s",
                batch_items(sim).await? - before,
                deadline.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t1 = Instant::now();
    Ok((
        t0,
        t1,
        delivered,
        peers::cpu_secs(pid) - cpu0,
        peers::cpu_secs(sim_pid) - sim0,
    ))
}

fn ms(secs: f64) -> f64 {
    secs * 1e3
}

async fn run(args: Args) -> anyhow::Result<Results> {
    let origin = Instant::now();
    let at = |t: Instant| t.duration_since(origin).as_secs_f64();
    let n = args.channels.max(1);
    let python = peers::python()?;
    let sim_process = SimProcess::start(Path::new(env!("CARGO_BIN_EXE_inboxd")))?;
    let sim = SimClient::new(sim_process.url.clone());
    let http = reqwest::Client::new();
    let results_dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let tmp = tempfile::Builder::new()
        .prefix("inboxd-peer-")
        .tempdir_in(&results_dir)
        .or_else(|_| tempfile::tempdir())?;
    let key = MasterKey::generate();
    let mut failures = Vec::new();

    // 2. The empty baselines.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty)?;
    let port = free_port()?;
    let daemon = Inboxd::start(
        &inboxd_env(&empty, port, &sim_process.url, args.interval_secs, &key),
        &empty,
        port,
        &http,
    )
    .await?;
    daemon.scrape(&http).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let inboxd_empty = peers::rss_bytes(daemon.pid());
    daemon.stop();
    let none = empty.join("none.json");
    std::fs::write(&none, "[]")?;
    let peer = Peer::start(
        &python,
        &none,
        &sim_process.url,
        args.interval_secs,
        &empty.join("peer.jsonl"),
    )?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let peer_empty = peers::rss_bytes(peer.pid());
    drop(peer);

    // 3. N channels each.
    let seeding = Instant::now();
    let dir = tmp.path().join("inboxd");
    std::fs::create_dir_all(&dir)?;
    seed_inboxd(&sim, &dir, &key, n).await?;
    let channels_file = tmp.path().join("peer-channels.json");
    seed_peer(&sim, &channels_file, n).await?;
    eprintln!(
        "seeded 2 × {n} channels in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );

    // 4. Both pollers, and the scrapes.
    let port = free_port()?;
    let daemon = Inboxd::start(
        &inboxd_env(&dir, port, &sim_process.url, args.interval_secs, &key),
        &dir,
        port,
        &http,
    )
    .await?;
    let mut peer = Peer::start(
        &python,
        &channels_file,
        &sim_process.url,
        args.interval_secs,
        &tmp.path().join("peer.jsonl"),
    )?;
    let scrapes = std::rc::Rc::new(std::cell::Cell::new(0usize));
    let scraper = {
        let http = http.clone();
        let scrapes = scrapes.clone();
        tokio::task::spawn_local(async move {
            let mut every = tokio::time::interval(SCRAPE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let url = format!("http://127.0.0.1:{port}/metrics");
                if let Ok(r) = http.get(&url).bearer_auth(TOKEN).send().await
                    && r.bytes().await.is_ok()
                {
                    scrapes.set(scrapes.get() + 1);
                }
            }
        })
    };
    let interval = Duration::from_secs(args.interval_secs);
    let warm = Instant::now();
    loop {
        let a = daemon.sample(&http).await?.polls;
        let b = peer.sample()?.polls;
        if a >= n as f64 && b >= n as f64 {
            break;
        }
        if warm.elapsed() > interval * 3 + Duration::from_secs(60) {
            anyhow::bail!(
                "not every channel polled within 3 intervals + 60 s: inboxd {a}, peer {b}"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "every channel polled once after {:.1} s; warming up one more interval",
        warm.elapsed().as_secs_f64()
    );
    tokio::time::sleep(interval).await;

    let window = Duration::from_secs(
        args.duration_secs
            .unwrap_or_else(|| (3 * args.interval_secs).max(30)),
    );
    eprintln!("idle window: {} s", window.as_secs());
    let sim0 = peers::cpu_secs(sim_process.pid());
    let i0 = daemon.sample(&http).await?;
    peer.mark()?;
    let p0 = peer.sample()?;
    tokio::time::sleep(window).await;
    let i1 = daemon.sample(&http).await?;
    let p1 = peer.sample()?;
    let sim1 = peers::cpu_secs(sim_process.pid());
    let idle_window = (at(i0.at.unwrap_or(origin)), at(p1.at.unwrap_or(origin)));

    let side = |empty: u64, a: &Sample, b: &Sample, reset: bool| {
        let (polls, cpu, lateness, secs) = b.since(a);
        let lateness = if reset { b.lateness.clone() } else { lateness };
        Side {
            rss_empty_bytes: empty,
            rss_bytes: b.rss_bytes,
            rss_per_channel_bytes: b.rss_bytes.saturating_sub(empty) as f64 / n as f64,
            idle_polls: polls,
            idle_cpu_secs: cpu,
            idle_cpu_us_per_poll: cpu * 1e6 / polls.max(1.0),
            idle_cpu_cores: cpu / secs.max(1e-9),
            lateness_p50_ms: ms(quantile(LATENESS_BUCKETS, &lateness, 0.5)),
            lateness_p99_ms: ms(quantile(LATENESS_BUCKETS, &lateness, 0.99)),
            ..Side::default()
        }
    };
    let mut mine = side(inboxd_empty, &i0, &i1, false);
    let mut theirs = side(peer_empty, &p0, &p1, true);
    for (who, s) in [("inboxd", &mine), ("the peer", &theirs)] {
        if s.idle_polls <= 0.0 {
            failures.push(format!("{who} polled nothing in the idle window"));
        }
    }

    // 5. The bursts, one poller after the other.
    let mut inboxd_burst_window = (0.0, 0.0);
    let mut peer_burst_window = (0.0, 0.0);
    if args.burst > 0 {
        let k = args.burst_channels.unwrap_or(1000).clamp(1, n);
        let deadline = interval * 2 + Duration::from_secs(60 + args.burst as u64 / 500);
        let sides: [(&str, u32, &mut Side, &mut (f64, f64)); 2] = [
            (
                INBOXD_PREFIX,
                daemon.pid(),
                &mut mine,
                &mut inboxd_burst_window,
            ),
            (PEER_PREFIX, peer.pid(), &mut theirs, &mut peer_burst_window),
        ];
        for (prefix, pid, s, w) in sides {
            eprintln!(
                "burst of {} messages to {k} of {prefix}'s mailboxes…",
                args.burst
            );
            match burst(
                &sim,
                sim_process.pid(),
                pid,
                prefix,
                k,
                args.burst,
                deadline,
            )
            .await
            {
                Ok((t0, t1, delivery, cpu, sim_cpu)) => {
                    let secs = t1.duration_since(t0).as_secs_f64();
                    let net = (cpu - s.idle_cpu_cores * secs).max(0.0);
                    s.burst_secs = secs;
                    s.burst_delivery_secs = delivery;
                    s.burst_cpu_secs = cpu;
                    s.burst_cpu_us_per_mail = net * 1e6 / args.burst as f64;
                    s.burst_msgs_per_sec = args.burst as f64 / secs;
                    s.burst_sim_cores = sim_cpu / secs;
                    *w = (at(t0), at(t1));
                }
                Err(err) => failures.push(format!("{err:#}")),
            }
            // Let the delta rounds that follow the marks settle before the next burst.
            tokio::time::sleep(interval).await;
        }
    }
    scraper.abort();
    let stats = peer.stats()?;
    if stats["errors"].as_f64().unwrap_or(0.0) > 0.0 {
        eprintln!("note: the peer counted {} failed polls", stats["errors"]);
    }
    drop(peer);
    daemon.stop();
    drop(sim_process);

    let mut ratios = vec![
        Ratio {
            figure: "CPU per idle poll",
            inboxd: format!("{:.1} µs", mine.idle_cpu_us_per_poll),
            peer: format!("{:.1} µs", theirs.idle_cpu_us_per_poll),
            ratio: mine.idle_cpu_us_per_poll / theirs.idle_cpu_us_per_poll,
        },
        Ratio {
            figure: "RSS per channel (scraped)",
            inboxd: format!("{:.0} B", mine.rss_per_channel_bytes),
            peer: format!("{:.0} B", theirs.rss_per_channel_bytes),
            ratio: mine.rss_per_channel_bytes / theirs.rss_per_channel_bytes,
        },
        Ratio {
            figure: "lateness p99",
            inboxd: format!("{:.2} ms", mine.lateness_p99_ms),
            peer: format!("{:.2} ms", theirs.lateness_p99_ms),
            ratio: mine.lateness_p99_ms / theirs.lateness_p99_ms,
        },
    ];
    if args.burst > 0 {
        ratios.extend([
            Ratio {
                figure: "ingestion CPU per mail",
                inboxd: format!("{:.1} µs", mine.burst_cpu_us_per_mail),
                peer: format!("{:.1} µs", theirs.burst_cpu_us_per_mail),
                ratio: mine.burst_cpu_us_per_mail / theirs.burst_cpu_us_per_mail,
            },
            Ratio {
                figure: "ingestion msg/s",
                inboxd: format!("{:.0}", mine.burst_msgs_per_sec),
                peer: format!("{:.0}", theirs.burst_msgs_per_sec),
                ratio: mine.burst_msgs_per_sec / theirs.burst_msgs_per_sec,
            },
        ]);
    }
    Ok(Results {
        timestamp: Utc::now().format("%Y-%m-%d %H:%M:%S").to_string(),
        cores: std::thread::available_parallelism().map_or(1, |c| c.get()),
        idle_window,
        idle_sim_cores: (sim1 - sim0) / window.as_secs_f64(),
        inboxd: mine,
        peer: theirs,
        inboxd_burst_window,
        peer_burst_window,
        ratios,
        scrapes: scrapes.get(),
        failures,
        args,
    })
}

fn print(r: &Results) {
    let a = &r.args;
    println!();
    println!(
        "peer bench: {} channels each at {} s ({:.0} polls/s each), burst {} over {} mailboxes, {} cores, /metrics scraped {} times",
        a.channels,
        a.interval_secs,
        a.channels as f64 / a.interval_secs as f64,
        a.burst,
        a.burst_channels.unwrap_or(1000).min(a.channels),
        r.cores,
        r.scrapes
    );
    println!("| figure | inboxd | Python peer | inboxd ÷ peer |");
    println!("|---|---|---|---|");
    for ratio in &r.ratios {
        println!(
            "| {} | {} | {} | **{:.2}** |",
            ratio.figure, ratio.inboxd, ratio.peer, ratio.ratio
        );
    }
    println!(
        "  idle window {:.1}–{:.1} s of the run (simulator {:.2} cores); empty RSS inboxd {:.1} MiB, peer {:.1} MiB; idle CPU inboxd {:.2} cores, peer {:.2} cores",
        r.idle_window.0,
        r.idle_window.1,
        r.idle_sim_cores,
        r.inboxd.rss_empty_bytes as f64 / 1048576.0,
        r.peer.rss_empty_bytes as f64 / 1048576.0,
        r.inboxd.idle_cpu_cores,
        r.peer.idle_cpu_cores
    );
    if a.burst > 0 {
        for (who, s, w) in [
            ("inboxd", &r.inboxd, r.inboxd_burst_window),
            ("peer", &r.peer, r.peer_burst_window),
        ] {
            // Every mailbox is polled once per interval, so no poller can take the burst in
            // less than about one interval: M / I is the most this run can show.
            let bound = a.burst as f64 / a.interval_secs as f64;
            let limit = if s.burst_sim_cores >= 0.9 {
                "the simulator limits (≈ one core: its one worker)".to_owned()
            } else if s.burst_msgs_per_sec >= 0.9 * bound {
                format!(
                    "the interval limits (M / I = {bound:.0} msg/s: each mailbox is polled once per interval; a larger burst or a shorter interval shows more)"
                )
            } else {
                format!(
                    "the poller limits (below M / I = {bound:.0} msg/s, the simulator has headroom)"
                )
            };
            println!(
                "  {who} burst {:.1}–{:.1} s: {:.2} s (delivery {:.2} s), CPU {:.2} s gross, {:.1} µs per mail net of idle; simulator {:.2} cores: {limit}",
                w.0,
                w.1,
                s.burst_secs,
                s.burst_delivery_secs,
                s.burst_cpu_secs,
                s.burst_cpu_us_per_mail,
                s.burst_sim_cores
            );
        }
    }
    for failure in &r.failures {
        println!("  FAILED: {failure}");
    }
}
