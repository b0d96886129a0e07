//! The load bench: runs the daemon library against the simulator (in its own process, so that the
//! daemon's memory and CPU are measured alone) and reports the figures DESIGN.md §5 budgets.
//!
//! `cargo bench --bench load -- [--channels N] [--duration-secs D] [--interval-secs I]
//! [--messages-per-sec R] [--hot-adds K] [--label TEXT] [--plot] [--plot-only]`
//!
//! What one run does, in order:
//! 1. starts `inboxd sim --listen 127.0.0.1:0 --workers 1` and reads its URL;
//! 2. builds the daemon on an empty store and reads its resident memory (the empty baseline);
//! 3. provisions N mailboxes (plus K for hot-adds and a few for the floor) in the simulator and
//!    writes N channel records with valid tokens straight into a store, in a child process (so its
//!    allocations do not count as the daemon's memory);
//! 4. builds the daemon on that store, waits one interval (the start-up burst is not measured),
//!    then measures for D seconds: polls, lateness, CPU, memory; meanwhile it hot-adds K channels,
//!    delivers R messages per second, and a bare reqwest loop on its own thread sends the same
//!    request as a poll at the daemon's poll rate (the CPU floor; its CPU and the bench driver's
//!    are subtracted from the process's to give the daemon's);
//! 5. waits until every message sent was delivered and marked read, and stops the daemon;
//! 6. restarts the daemon on the same store and times until every channel actor runs.
//!
//! Results go to `target/bench-results/load-<timestamp>.json` and a row of
//! `target/bench-results/results.md`; `--plot` draws `docs/bench-curves.svg` from every JSON
//! result present. The process exits 1 when something is plainly broken (no polls, lost
//! messages, a hot-added channel never polled, a restart that never completes).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix::Addr;
use anyhow::{Context as _, anyhow, bail};
use chrono::Utc;
use inboxd::actors::messages::AddChannel;
use inboxd::actors::supervisor::ChannelSupervisor;
use inboxd::config::{self, Settings};
use inboxd::domain::secret::{AccessToken, AdminToken, ClientSecret, MasterKey, RefreshToken};
use inboxd::domain::{ChannelId, ChannelStatus, ClientId, Folder, Mailbox, TenantId};
use inboxd::graph::{BodyContentType, GraphClient};
use inboxd::ingest::Ingest as Shared;
use inboxd::sim::client::{BulkRequest, Delivery, SimClient, bulk_credentials};
use inboxd::startup::{Application, Secrets, http_client};
use inboxd::stats::LatenessSnapshot;
use inboxd::store::{ChannelRecord, FirstImport, Store, StoreOptions, TokenSet};
use inboxd_testkit::SimProcess;
use inboxd_testkit::{daemon_env, free_port};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// Mailboxes of the measured channels.
const PREFIX: &str = "load";
/// Mailboxes hot-added during the run.
const HOT_PREFIX: &str = "hot";
/// Idle mailboxes the floor loop reads.
const FLOOR_PREFIX: &str = "floor";
/// Enough that the floor stays far below the simulator's 10,000 requests per mailbox per 10 minutes.
const FLOOR_MAILBOXES: usize = 64;
/// Linux reports process times in USER_HZ, which is 100 on every architecture.
const USER_HZ: f64 = 100.0;

// ---------------------------------------------------------------------------------------------
// Arguments

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Args {
    channels: usize,
    duration_secs: u64,
    interval_secs: u64,
    messages_per_sec: u64,
    hot_adds: usize,
    label: String,
    #[serde(skip)]
    plot: bool,
    #[serde(skip)]
    plot_only: bool,
}

fn parse_args(raw: &[String]) -> anyhow::Result<Args> {
    let mut args = Args {
        channels: 1000,
        duration_secs: 20,
        interval_secs: 10,
        messages_per_sec: 0,
        hot_adds: usize::MAX,
        label: String::new(),
        plot: false,
        plot_only: false,
    };
    let mut it = raw.iter();
    while let Some(flag) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .with_context(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--channels" => args.channels = value(flag)?.parse().context("--channels N")?,
            "--duration-secs" => {
                args.duration_secs = value(flag)?.parse().context("--duration-secs D")?
            }
            "--interval-secs" => {
                args.interval_secs = value(flag)?.parse().context("--interval-secs I")?
            }
            "--messages-per-sec" => {
                args.messages_per_sec = value(flag)?.parse().context("--messages-per-sec R")?
            }
            "--hot-adds" => args.hot_adds = value(flag)?.parse().context("--hot-adds K")?,
            "--label" => args.label = value(flag)?,
            "--plot" => args.plot = true,
            "--plot-only" => args.plot_only = true,
            // `cargo bench` passes `--bench`; libtest filters may follow.
            "--bench" => {}
            other if other.starts_with("--") => bail!(
                "unknown option {other}: the load bench takes --channels N --duration-secs D \
                 --interval-secs I --messages-per-sec R --hot-adds K --label TEXT --plot --plot-only"
            ),
            _ => {}
        }
    }
    if args.hot_adds == usize::MAX {
        args.hot_adds = args.channels.clamp(1, 20);
    }
    if args.interval_secs == 0 || args.duration_secs == 0 {
        bail!("--interval-secs and --duration-secs must be at least 1");
    }
    Ok(args)
}

// ---------------------------------------------------------------------------------------------
// Process measurements

/// utime + stime in seconds from a `/proc/.../stat` file.
fn cpu_secs_of(stat: &str) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(stat).with_context(|| format!("reading {stat}"))?;
    let after = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unexpected stat format")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Field 3 (state) is index 0, so utime (14) and stime (15) are 11 and 12.
    let utime: f64 = fields.get(11).context("no utime")?.parse()?;
    let stime: f64 = fields.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) / USER_HZ)
}

fn process_cpu() -> f64 {
    cpu_secs_of("/proc/self/stat").unwrap_or(0.0)
}

/// The CPU of the calling thread (the bench driver's own work).
fn thread_cpu() -> f64 {
    cpu_secs_of("/proc/thread-self/stat").unwrap_or(0.0)
}

fn pid_cpu(pid: u32) -> f64 {
    cpu_secs_of(&format!("/proc/{pid}/stat")).unwrap_or(0.0)
}

/// Resident memory of this process in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// The simulator process

/// The simulator's CPU seconds so far.
fn sim_cpu(sim: &SimProcess) -> f64 {
    pid_cpu(sim.pid())
}

// ---------------------------------------------------------------------------------------------
// Seeding (in a child process: its allocations must not count as the daemon's memory)

/// A stable channel id for mailbox `i` of `prefix`, so that both processes agree on it.
fn channel_id(prefix: &str, i: usize) -> ChannelId {
    let digest = sha2::Sha256::digest(format!("inboxd-bench:{prefix}:{i}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    ChannelId::from_bytes(bytes)
}

fn record(prefix: &str, i: usize) -> anyhow::Result<ChannelRecord> {
    let (tenant, client, secret, mailbox) = bulk_credentials(prefix, i);
    let now = Utc::now();
    Ok(ChannelRecord {
        id: channel_id(prefix, i),
        name: format!("{prefix} {i}"),
        tenant_id: TenantId::parse(&tenant)?,
        client_id: ClientId::parse(&client)?,
        client_secret: ClientSecret::new(secret)?,
        client_secret_expires_at: None,
        mailbox: Mailbox::parse(&mailbox)?,
        folder: Folder::inbox(),
        enabled: true,
        first_import: FirstImport::AllUnread,
        created_at: now,
        updated_at: now,
        activated_at: Some(now),
        status: ChannelStatus::Active,
        last_error: None,
        last_poll_at: None,
        last_success_at: None,
    })
}

/// Mints a refresh and an access token for mailbox `i` of `prefix`.
async fn mint(sim: &SimClient, prefix: &str, i: usize) -> anyhow::Result<TokenSet> {
    let (_, client, _, mailbox) = bulk_credentials(prefix, i);
    let minted = sim.mint_tokens(&mailbox, &client, None).await?;
    let now = Utc::now();
    Ok(TokenSet {
        access_token: AccessToken::new(minted.access_token)?,
        access_expires_at: now + chrono::Duration::seconds(minted.expires_in as i64),
        refresh_token: RefreshToken::new(minted.refresh_token)?,
        scope: "https://graph.microsoft.com/Mail.ReadWrite.Shared offline_access".to_owned(),
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
            tasks.spawn_local(async move { (i, mint(&sim, &prefix, i).await) });
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
        let records: Vec<(ChannelRecord, TokenSet)> = sets
            .into_iter()
            .map(|(i, set)| Ok((record(prefix, i)?, set)))
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
fn seed_main(raw: &[String]) -> anyhow::Result<()> {
    let [dir, key, url, n, k] = raw else {
        bail!("--seed DIR KEY URL N K");
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
        },
    )?;
    let sim = SimClient::new(url.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        seed_prefix(&sim, &store, PREFIX, n, true).await?;
        seed_prefix(&sim, &store, HOT_PREFIX, k, false).await?;
        let mut bulk = BulkRequest::new(FLOOR_MAILBOXES, FLOOR_PREFIX);
        bulk.return_entries = false;
        sim.bulk(&bulk).await?;
        anyhow::Ok(())
    })?;
    store.flush()?;
    Ok(())
}

fn seed_in_child(dir: &Path, key: &MasterKey, url: &str, n: usize, k: usize) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let status = Command::new(exe)
        .arg("--seed")
        .arg(dir)
        .arg(key.encode())
        .arg(url)
        .arg(n.to_string())
        .arg(k.to_string())
        .status()
        .context("could not start the seeding process")?;
    if !status.success() {
        bail!("seeding the store failed ({status})");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The daemon, in its own thread with its own actix system

struct Daemon {
    shared: Arc<Shared>,
    supervisor: Addr<ChannelSupervisor>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

fn settings_for(dir: &Path, sim_url: &str, interval: u64) -> anyhow::Result<Settings> {
    let env = daemon_env(
        dir,
        free_port()?,
        sim_url,
        interval,
        &[
            ("INBOXD_SERVER__SHUTDOWN_GRACE_SECS", "30".to_owned()),
            ("INBOXD_LIMITS__GLOBAL_CONCURRENCY", "512".to_owned()),
        ],
    );
    Settings::load(None, &env).map_err(|e| anyhow!("{e}"))
}

impl Daemon {
    async fn start(settings: Settings, key: MasterKey) -> anyhow::Result<Daemon> {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("daemon".into())
            .spawn(move || {
                actix_rt::System::new().block_on(async move {
                    let secrets = Secrets {
                        master_key: key,
                        admin_token: AdminToken::new("bench-admin-token-0123456789")?,
                        webhook_secret: None,
                    };
                    let app = match Application::build(settings, secrets).await {
                        Ok(app) => app,
                        Err(err) => {
                            let _ = ready_tx.send(Err(err));
                            return Ok(());
                        }
                    };
                    let _ = ready_tx.send(Ok((app.ingest(), app.supervisor())));
                    let _ = stop_rx.await;
                    app.stop().await
                })
            })?;
        let (shared, supervisor) = ready_rx.await.context("the daemon thread died")??;
        Ok(Daemon {
            shared,
            supervisor,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Stops the daemon and waits until its store is closed.
    async fn stop(mut self) -> anyhow::Result<()> {
        let thread = self.thread.take();
        let stop = self.stop.take();
        drop(self);
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        if let Some(thread) = thread {
            tokio::task::spawn_blocking(move || thread.join())
                .await?
                .map_err(|_| anyhow!("the daemon thread panicked"))??;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Results

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Quantiles {
    p50: f64,
    p99: f64,
    max: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Budget {
    name: String,
    budget: String,
    measured: String,
    met: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Results {
    timestamp: String,
    label: String,
    cores: usize,
    args: Args,
    channels: usize,
    warmup_secs: f64,
    window_secs: f64,
    polls: u64,
    polls_per_sec: f64,
    /// Channels that `polls_per_sec` would serve at the two-minute cadence.
    equivalent_channels_at_120s: f64,
    graph_requests_per_poll: f64,
    lateness_ms: Quantiles,
    rss_empty_kib: u64,
    rss_with_channels_kib: u64,
    rss_per_channel_bytes: f64,
    daemon_cpu_secs: f64,
    bench_driver_cpu_secs: f64,
    sim_cpu_secs: f64,
    daemon_cpu_ms_per_1000_polls: f64,
    /// CPU of the empty daemon per second, doing nothing.
    #[serde(default)]
    idle_cpu_ms_per_sec: f64,
    /// `daemon_cpu_ms_per_1000_polls` without the empty daemon's idle CPU.
    #[serde(default)]
    daemon_cpu_ms_per_1000_polls_net_of_idle: f64,
    floor_requests: u64,
    floor_cpu_ms_per_1000_requests: f64,
    cpu_ratio_to_floor: f64,
    hot_add_method: String,
    hot_adds: usize,
    hot_add_ms: Quantiles,
    restart_channels: usize,
    restart_secs: f64,
    messages_sent: u64,
    messages_delivered: u64,
    messages_marked_read: u64,
    /// From the first message sent to the last one marked read.
    #[serde(default)]
    ingest_secs: f64,
    delivered_per_sec: f64,
    marked_read_per_sec: f64,
    budgets: Vec<Budget>,
    failures: Vec<String>,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn results_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-results")
}

fn budgets(r: &Results) -> Vec<Budget> {
    // The poll rate of 100,000 channels at two minutes (833/s), within 5 %.
    let at_scale = r.equivalent_channels_at_120s >= 95_000.0;
    vec![
        Budget {
            name: "p99 poll lateness".into(),
            budget: "≤ 1 s at 100,000 channels / 2 min".into(),
            measured: format!(
                "{:.1} ms at {:.0} polls/s ({:.0} channel-equivalents)",
                r.lateness_ms.p99, r.polls_per_sec, r.equivalent_channels_at_120s
            ),
            met: Some(r.lateness_ms.p99 <= 1000.0).filter(|_| at_scale).or(
                // Below scale a miss is still a miss; a pass proves nothing about 100,000.
                (r.lateness_ms.p99 > 1000.0).then_some(false),
            ),
        },
        Budget {
            name: "memory per channel".into(),
            budget: "≤ 8 KiB".into(),
            measured: format!("{:.0} B", r.rss_per_channel_bytes),
            met: Some(r.rss_per_channel_bytes <= 8192.0),
        },
        Budget {
            name: "CPU per poll vs bare reqwest".into(),
            budget: "≤ 1.5×".into(),
            measured: format!("{:.2}×", r.cpu_ratio_to_floor),
            met: Some(r.cpu_ratio_to_floor <= 1.5),
        },
        Budget {
            name: "restart, all scheduled".into(),
            budget: "≤ 5 s at 100,000".into(),
            measured: format!("{:.2} s for {}", r.restart_secs, r.restart_channels),
            met: Some(r.restart_secs <= 5.0),
        },
        Budget {
            name: "hot-add p99".into(),
            budget: "≤ 100 ms".into(),
            measured: format!("{:.1} ms", r.hot_add_ms.p99),
            met: (r.hot_adds > 0).then_some(r.hot_add_ms.p99 <= 100.0),
        },
        Budget {
            name: "ingestion".into(),
            budget: "≥ 5,000 msg/s".into(),
            measured: format!(
                "{:.0} delivered/s, {:.0} marked read/s (offered {} msg/s)",
                r.delivered_per_sec, r.marked_read_per_sec, r.args.messages_per_sec
            ),
            met: (r.args.messages_per_sec > 0).then_some(r.marked_read_per_sec >= 5000.0),
        },
    ]
}

fn write_results(r: &Results) -> anyhow::Result<PathBuf> {
    let dir = results_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!(
        "load-{}-n{}.json",
        Utc::now().format("%Y%m%dT%H%M%S"),
        r.channels
    ));
    std::fs::write(&path, serde_json::to_vec_pretty(r)?)?;
    let table = dir.join("results.md");
    let new = !table.exists();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&table)?;
    if new {
        writeln!(
            file,
            "| when (UTC) | label | N | I s | D s | R msg/s | polls/s | ≙ channels @2 min | lateness p50 / p99 / max ms | RSS B/channel | CPU ms / 1k polls | floor ms / 1k | ratio | hot-add p50 / p99 ms | restart s | delivered / read msg/s | failures |"
        )?;
        writeln!(
            file,
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        )?;
    }
    writeln!(
        file,
        "| {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.1} / {:.1} / {:.1} | {:.0} | {:.1} | {:.1} | {:.2} | {:.1} / {:.1} | {:.2} | {:.0} / {:.0} | {} |",
        r.timestamp,
        r.label,
        r.channels,
        r.args.interval_secs,
        r.args.duration_secs,
        r.args.messages_per_sec,
        r.polls_per_sec,
        r.equivalent_channels_at_120s,
        r.lateness_ms.p50,
        r.lateness_ms.p99,
        r.lateness_ms.max,
        r.rss_per_channel_bytes,
        r.daemon_cpu_ms_per_1000_polls,
        r.floor_cpu_ms_per_1000_requests,
        r.cpu_ratio_to_floor,
        r.hot_add_ms.p50,
        r.hot_add_ms.p99,
        r.restart_secs,
        r.delivered_per_sec,
        r.marked_read_per_sec,
        if r.failures.is_empty() {
            "none".to_owned()
        } else {
            r.failures.join("; ")
        },
    )?;
    Ok(path)
}

fn print_results(r: &Results) {
    println!(
        "\ninboxd load bench: {} channels, interval {} s, window {:.1} s, {} cores",
        r.channels, r.args.interval_secs, r.window_secs, r.cores
    );
    println!(
        "  polls                {} ({:.1}/s ≙ {:.0} channels at the 2-minute cadence; {:.2} Graph requests per poll)",
        r.polls, r.polls_per_sec, r.equivalent_channels_at_120s, r.graph_requests_per_poll
    );
    println!(
        "  poll lateness        p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        r.lateness_ms.p50, r.lateness_ms.p99, r.lateness_ms.max
    );
    println!(
        "  resident memory      empty {} KiB, with channels {} KiB, {:.0} B per channel",
        r.rss_empty_kib, r.rss_with_channels_kib, r.rss_per_channel_bytes
    );
    println!(
        "  daemon CPU           {:.2} s in the window ({:.1} ms per 1,000 polls); bench driver {:.2} s (subtracted); simulator {:.2} s",
        r.daemon_cpu_secs, r.daemon_cpu_ms_per_1000_polls, r.bench_driver_cpu_secs, r.sim_cpu_secs
    );
    println!(
        "  daemon idle CPU      {:.1} ms/s when empty; per 1,000 polls net of it {:.1} ms",
        r.idle_cpu_ms_per_sec, r.daemon_cpu_ms_per_1000_polls_net_of_idle
    );
    println!(
        "  bare reqwest floor   {:.1} ms per 1,000 requests ({} requests); ratio {:.2}×",
        r.floor_cpu_ms_per_1000_requests, r.floor_requests, r.cpu_ratio_to_floor
    );
    println!(
        "  hot-add              {} channels: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({})",
        r.hot_adds, r.hot_add_ms.p50, r.hot_add_ms.p99, r.hot_add_ms.max, r.hot_add_method
    );
    println!(
        "  restart              {} channels all started and scheduled in {:.2} s",
        r.restart_channels, r.restart_secs
    );
    if r.args.messages_per_sec > 0 {
        println!(
            "  ingestion            sent {}, delivered {}, marked read {} within {:.1} s of the first send: {:.0} delivered/s, {:.0} marked read/s",
            r.messages_sent,
            r.messages_delivered,
            r.messages_marked_read,
            r.ingest_secs,
            r.delivered_per_sec,
            r.marked_read_per_sec
        );
    }
    println!("  budgets (DESIGN.md §5):");
    for b in &r.budgets {
        let verdict = match b.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured at this size",
        };
        println!(
            "    {:<30} {:<36} {:<60} {}",
            b.name, b.budget, b.measured, verdict
        );
    }
    for f in &r.failures {
        println!("  FAILURE: {f}");
    }
}

// ---------------------------------------------------------------------------------------------
// The curves

fn plot() -> anyhow::Result<PathBuf> {
    use plotters::prelude::*;
    let mut runs: Vec<Results> = Vec::new();
    for entry in std::fs::read_dir(results_dir())? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json")
            && let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(r) = serde_json::from_str::<Results>(&text)
            && r.failures.is_empty()
            && r.args.messages_per_sec == 0
        {
            runs.push(r);
        }
    }
    if runs.is_empty() {
        bail!(
            "no idle (R = 0) results in {} to plot",
            results_dir().display()
        );
    }
    runs.sort_by_key(|r| r.channels);
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/bench-curves.svg");
    let root = SVGBackend::new(&out, (1000, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(500);
    let max_n = runs.iter().map(|r| r.channels).max().unwrap_or(1) as f64 * 1.5;
    let min_n = runs.iter().map(|r| r.channels).min().unwrap_or(1).max(1) as f64 / 1.5;
    let series = |f: &dyn Fn(&Results) -> f64| -> Vec<(f64, f64)> {
        runs.iter().map(|r| (r.channels as f64, f(r))).collect()
    };
    type Points = Vec<(f64, f64)>;
    type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
    let panels: [(&Area, &str, &str, Points, Points, f64); 2] = [
        (
            &left,
            "Poll lateness vs channels",
            "ms",
            series(&|r| r.lateness_ms.p99),
            series(&|r| r.lateness_ms.p50),
            1000.0,
        ),
        (
            &right,
            "Resident memory per channel",
            "bytes",
            series(&|r| r.rss_per_channel_bytes),
            Vec::new(),
            8192.0,
        ),
    ];
    for (area, title, unit, main, second, budget) in panels {
        let measured_top = main
            .iter()
            .chain(second.iter())
            .map(|p| p.1)
            .fold(0.0, f64::max);
        // A budget far above every point would flatten them onto the axis: leave it off the chart.
        let show_budget = budget <= measured_top * 3.0;
        let top = if show_budget {
            budget.max(measured_top)
        } else {
            measured_top.max(f64::MIN_POSITIVE)
        } * 1.15;
        let title = if show_budget {
            title.to_owned()
        } else {
            format!("{title} (budget {budget} {unit}, far above)")
        };
        let mut chart = ChartBuilder::on(area)
            .caption(&title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d((min_n..max_n).log_scale(), 0.0..top)?;
        chart
            .configure_mesh()
            .x_desc("channels")
            .y_desc(unit)
            .draw()?;
        chart
            .draw_series(LineSeries::new(main.clone(), &BLUE))?
            .label(if second.is_empty() { "measured" } else { "p99" })
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE));
        chart.draw_series(PointSeries::of_element(main, 4, &BLUE, &|c, s, st| {
            Circle::new(c, s, st.filled())
        }))?;
        if !second.is_empty() {
            chart
                .draw_series(LineSeries::new(second.clone(), &GREEN))?
                .label("p50")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], GREEN));
            chart.draw_series(PointSeries::of_element(second, 4, &GREEN, &|c, s, st| {
                Circle::new(c, s, st.filled())
            }))?;
        }
        if show_budget {
            chart
                .draw_series(LineSeries::new(
                    vec![(min_n, budget), (max_n, budget)],
                    &RED,
                ))?
                .label("budget")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()?;
    }
    root.present()?;
    Ok(out.clone())
}

// ---------------------------------------------------------------------------------------------
// The run

struct Window {
    at: Instant,
    polls: u64,
    graph: u64,
    delivered: u64,
    marked: u64,
    lateness: LatenessSnapshot,
    process_cpu: f64,
    driver_cpu: f64,
    sim_cpu: f64,
}

fn snapshot(shared: &Shared, sim: &SimProcess) -> Window {
    let s = &shared.stats;
    Window {
        at: Instant::now(),
        polls: s.polls.load(Ordering::Relaxed),
        graph: s.graph_requests.load(Ordering::Relaxed),
        delivered: s.delivered.load(Ordering::Relaxed),
        marked: s.marked_read.load(Ordering::Relaxed),
        lateness: s.lateness.snapshot(),
        process_cpu: process_cpu(),
        driver_cpu: thread_cpu(),
        sim_cpu: sim_cpu(sim),
    }
}

/// Hot-adds the stored-token channels one after another, spread over `window`; answers the
/// latencies from the control message to the simulator's first Graph request for the mailbox.
async fn hot_adds(
    supervisor: &Addr<ChannelSupervisor>,
    sim: &SimClient,
    count: usize,
    window: Duration,
) -> anyhow::Result<(Vec<f64>, Vec<String>)> {
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    if count == 0 {
        return Ok((latencies, failures));
    }
    let spacing = window.mul_f64(0.8) / count as u32;
    for i in 0..count {
        tokio::time::sleep(spacing).await;
        let record = record(HOT_PREFIX, i)?;
        let mailbox = record.mailbox.to_string();
        let started = Instant::now();
        supervisor
            .send(AddChannel { record })
            .await
            .map_err(|e| anyhow!("the supervisor is gone: {e}"))?
            .map_err(|e| anyhow!("AddChannel was refused: {e}"))?;
        let deadline = started + Duration::from_secs(10);
        loop {
            let counters = sim.counters(Some(&mailbox)).await?;
            if counters.requests.values().sum::<u64>() > 0 {
                latencies.push(ms(started.elapsed()));
                break;
            }
            if Instant::now() > deadline {
                failures.push(format!("hot-added {mailbox} was not polled within 10 s"));
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    Ok((latencies, failures))
}

/// Delivers `rate` messages per second for `window`, spread over the measured mailboxes.
async fn deliveries(sim: &SimClient, channels: usize, rate: u64, window: Duration) -> u64 {
    if rate == 0 || channels == 0 {
        return 0;
    }
    let tick = Duration::from_millis(100);
    let started = Instant::now();
    let mut sent = 0u64;
    let mut next_mailbox = 0usize;
    let mut interval = tokio::time::interval(tick);
    while started.elapsed() < window {
        interval.tick().await;
        let due = (rate as f64 * started.elapsed().as_secs_f64()) as u64;
        let mut owed = due.saturating_sub(sent);
        // At most 10 messages per mailbox per request: many mailboxes, like real traffic.
        while owed > 0 {
            let n = owed.min(10) as usize;
            let (_, _, _, mailbox) = bulk_credentials(PREFIX, next_mailbox % channels);
            next_mailbox += 1;
            let delivery = Delivery {
                count: n,
                unread: true,
                ..Delivery::default()
            };
            if sim.deliver(&mailbox, &delivery).await.is_ok() {
                sent += n as u64;
            }
            owed -= n as u64;
        }
    }
    sent
}

/// The floor: a bare reqwest loop on its own thread sending the same GET of an idle mailbox's
/// unread list, with the same client settings and headers, at the daemon's poll rate, during the
/// same window (so that both see the same machine). Answers (requests, CPU seconds of the thread).
fn spawn_floor(
    settings: Settings,
    sim_url: String,
    rate: f64,
    start_at: Instant,
    window: Duration,
) -> std::thread::JoinHandle<anyhow::Result<(u64, f64)>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(floor(
            &settings,
            &SimClient::new(sim_url),
            rate,
            start_at,
            window,
        ))
    })
}

async fn floor(
    settings: &Settings,
    sim: &SimClient,
    rate: f64,
    start_at: Instant,
    window: Duration,
) -> anyhow::Result<(u64, f64)> {
    let client = http_client(settings)?;
    let body = match settings.polling.body_content_type {
        config::BodyContentType::Text => BodyContentType::Text,
        config::BodyContentType::Html => BodyContentType::Html,
    };
    let prefer = match body {
        BodyContentType::Text => r#"IdType="ImmutableId", outlook.body-content-type="text""#,
        BodyContentType::Html => r#"IdType="ImmutableId", outlook.body-content-type="html""#,
    };
    let graph = GraphClient::new(
        client.clone(),
        &settings.cloud.graph_url,
        body,
        settings.polling.request_timeout,
    );
    let mut targets = Vec::new();
    for i in 0..FLOOR_MAILBOXES {
        let record = record(FLOOR_PREFIX, i)?;
        let tokens = mint(sim, FLOOR_PREFIX, i).await?;
        let url = graph.unread_url(
            &record.mailbox,
            &record.folder,
            chrono::DateTime::<Utc>::from_timestamp(0, 0).unwrap_or_default(),
            settings.polling.page_size,
        );
        targets.push((url, tokens.access_token.expose().to_owned()));
    }
    // Warm the connection up first.
    for (url, token) in &targets {
        client
            .get(url)
            .bearer_auth(token)
            .send()
            .await?
            .bytes()
            .await?;
    }
    tokio::time::sleep_until(start_at.into()).await;
    let end_at = start_at + window;
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1.0)));
    let before = thread_cpu();
    let mut requests = 0u64;
    while Instant::now() < end_at {
        pace.tick().await;
        let (url, token) = &targets[requests as usize % targets.len()];
        requests += 1;
        let response = client
            .get(url)
            .header("Prefer", prefer)
            .header(reqwest::header::ACCEPT, "application/json")
            .bearer_auth(token)
            .timeout(settings.polling.request_timeout)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("the floor request answered {}", response.status());
        }
        let bytes = response.bytes().await?;
        std::hint::black_box(bytes);
    }
    Ok((requests, thread_cpu() - before))
}

fn progress(len: u64, prefix: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix:>9} [{bar:30}] {pos}/{len} s  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_owned());
    bar
}

async fn run(args: Args) -> anyhow::Result<Results> {
    let sim_process = SimProcess::start(std::path::Path::new(env!("CARGO_BIN_EXE_inboxd")))?;
    let sim = SimClient::new(sim_process.url.clone());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let tmp = tempfile::Builder::new()
        .prefix("inboxd-load-")
        .tempdir_in(results_dir().parent().unwrap_or(Path::new("/tmp")))
        .or_else(|_| tempfile::tempdir())?;
    let key = MasterKey::generate();

    // 1. The empty daemon's memory.
    let empty_dir = tmp.path().join("empty");
    std::fs::create_dir_all(&empty_dir)?;
    let daemon = Daemon::start(
        settings_for(&empty_dir, &sim_process.url, args.interval_secs)?,
        key.clone(),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_empty = rss_kib();
    // What the empty daemon burns doing nothing (server, store flusher, timers).
    let idle_from = (process_cpu() - thread_cpu(), Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_cpu_per_sec =
        (process_cpu() - thread_cpu() - idle_from.0) / idle_from.1.elapsed().as_secs_f64();
    daemon.stop().await?;

    // 2. Seed N channels (and K hot-add token sets) in a child process.
    let dir = tmp.path().join("run");
    std::fs::create_dir_all(&dir)?;
    let seeding = Instant::now();
    eprintln!("seeding {} channels…", args.channels);
    seed_in_child(&dir, &key, &sim_process.url, args.channels, args.hot_adds)?;
    eprintln!("seeded in {:.1} s", seeding.elapsed().as_secs_f64());

    // 3. Run the daemon on them.
    let settings = settings_for(&dir, &sim_process.url, args.interval_secs)?;
    let daemon = Daemon::start(settings.clone(), key.clone()).await?;
    let shared = Arc::clone(&daemon.shared);
    let interval = Duration::from_secs(args.interval_secs);
    let warmup_started = Instant::now();
    let bar = progress(args.interval_secs, "warm-up");
    while warmup_started.elapsed() < interval.max(Duration::from_secs(1)) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        bar.set_position(warmup_started.elapsed().as_secs());
        bar.set_message(format!(
            "{} live, {} polls",
            shared.stats.live_channels.load(Ordering::Relaxed),
            shared.stats.polls.load(Ordering::Relaxed)
        ));
    }
    bar.finish_and_clear();
    let warmup_secs = warmup_started.elapsed().as_secs_f64();

    let window = Duration::from_secs(args.duration_secs);
    let start_at = Instant::now() + Duration::from_secs(2);
    let floor_thread = spawn_floor(
        settings.clone(),
        sim_process.url.clone(),
        args.channels as f64 / args.interval_secs as f64,
        start_at,
        window,
    );
    tokio::time::sleep_until(start_at.into()).await;
    let start = snapshot(&shared, &sim_process);
    let bar = progress(args.duration_secs, "measuring");
    let ticker = async {
        while start.at.elapsed() < window {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let polls = shared.stats.polls.load(Ordering::Relaxed) - start.polls;
            let secs = start.at.elapsed().as_secs_f64().max(0.001);
            let lateness = shared.stats.lateness.snapshot().since(&start.lateness);
            bar.set_position(start.at.elapsed().as_secs().min(args.duration_secs));
            bar.set_message(format!(
                "{:.0} polls/s, lateness p99 {:.1} ms, {} delivered",
                polls as f64 / secs,
                ms(lateness.quantile(0.99)),
                shared.stats.delivered.load(Ordering::Relaxed) - start.delivered
            ));
        }
    };
    let supervisor = daemon.supervisor.clone();
    let (_, hot, sent) = tokio::join!(
        ticker,
        hot_adds(&supervisor, &sim, args.hot_adds, window),
        deliveries(&sim, args.channels, args.messages_per_sec, window),
    );
    let end = snapshot(&shared, &sim_process);
    bar.finish_and_clear();
    let rss_full = rss_kib();
    let (mut hot_ms, mut failures) = hot?;

    // Messages still in flight are picked up at the next poll of their mailbox.
    let mut tail_delivered = end.delivered;
    let mut tail_marked = end.marked;
    let mut drained_at = end.at;
    if sent > 0 {
        let deadline = Instant::now() + interval + Duration::from_secs(15);
        loop {
            tail_delivered = shared.stats.delivered.load(Ordering::Relaxed);
            tail_marked = shared.stats.marked_read.load(Ordering::Relaxed);
            if (tail_delivered - start.delivered >= sent && tail_marked - start.marked >= sent)
                || Instant::now() > deadline
            {
                drained_at = Instant::now();
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let live_after = shared.stats.live_channels.load(Ordering::Relaxed);
    drop(shared);
    daemon.stop().await?;

    let polls = end.polls - start.polls;
    let (floor_requests, floor_cpu) = tokio::task::spawn_blocking(move || floor_thread.join())
        .await?
        .map_err(|_| anyhow!("the floor thread panicked"))??;
    let floor_per_request = floor_cpu / floor_requests.max(1) as f64;

    // 5. Restart on the same store.
    let restart_started = Instant::now();
    let daemon = Daemon::start(settings.clone(), key.clone()).await?;
    let expected = live_after;
    let mut restart_secs = f64::NAN;
    while restart_started.elapsed() < Duration::from_secs(120) {
        if daemon.shared.stats.live_channels.load(Ordering::Relaxed) >= expected {
            restart_secs = restart_started.elapsed().as_secs_f64();
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    daemon.stop().await?;
    drop(sim_process);

    let window_secs = end.at.duration_since(start.at).as_secs_f64();
    // From the first message sent to the last one marked read (or the window, when idle).
    let ingest_secs = drained_at.duration_since(start.at).as_secs_f64().max(0.001);
    let driver_cpu = end.driver_cpu - start.driver_cpu;
    let daemon_cpu = (end.process_cpu - start.process_cpu - driver_cpu - floor_cpu).max(0.0);
    let lateness = end.lateness.since(&start.lateness);
    let lateness_max = {
        // The exact max is kept since start; the window's own max is its top bucket.
        ms(lateness.quantile(1.0))
    };
    let delivered = tail_delivered - start.delivered;
    let marked = tail_marked - start.marked;
    hot_ms.sort_by(f64::total_cmp);
    let daemon_per_1000 = if polls > 0 {
        daemon_cpu * 1e6 / polls as f64
    } else {
        0.0
    };
    let floor_per_1000 = floor_per_request * 1e6;
    if polls == 0 {
        failures.push("no poll happened in the window".into());
    }
    if sent > 0 && (delivered < sent || marked < sent) {
        failures.push(format!(
            "messages lost: sent {sent}, delivered {delivered}, marked read {marked}"
        ));
    }
    if restart_secs.is_nan() {
        failures.push(format!(
            "the restart did not start all {expected} channels within 120 s"
        ));
    }
    if live_after < args.channels + hot_ms.len() {
        failures.push(format!(
            "only {live_after} channel actors were running at the end, expected {}",
            args.channels + hot_ms.len()
        ));
    }
    let mut results = Results {
        timestamp: Utc::now().format("%Y-%m-%d %H:%M:%S").to_string(),
        label: args.label.clone(),
        cores,
        args: args.clone(),
        channels: args.channels,
        warmup_secs,
        window_secs,
        polls,
        polls_per_sec: polls as f64 / window_secs,
        equivalent_channels_at_120s: polls as f64 / window_secs * 120.0,
        graph_requests_per_poll: if polls > 0 {
            (end.graph - start.graph) as f64 / polls as f64
        } else {
            0.0
        },
        lateness_ms: Quantiles {
            p50: ms(lateness.quantile(0.5)),
            p99: ms(lateness.quantile(0.99)),
            max: lateness_max,
        },
        rss_empty_kib: rss_empty,
        rss_with_channels_kib: rss_full,
        rss_per_channel_bytes: (rss_full.saturating_sub(rss_empty) * 1024) as f64
            / args.channels.max(1) as f64,
        daemon_cpu_secs: daemon_cpu,
        bench_driver_cpu_secs: driver_cpu,
        sim_cpu_secs: end.sim_cpu - start.sim_cpu,
        daemon_cpu_ms_per_1000_polls: daemon_per_1000,
        idle_cpu_ms_per_sec: idle_cpu_per_sec * 1000.0,
        daemon_cpu_ms_per_1000_polls_net_of_idle: if polls > 0 {
            (daemon_cpu - idle_cpu_per_sec * window_secs).max(0.0) * 1e6 / polls as f64
        } else {
            0.0
        },
        floor_requests,
        floor_cpu_ms_per_1000_requests: floor_per_1000,
        cpu_ratio_to_floor: if floor_per_1000 > 0.0 {
            daemon_per_1000 / floor_per_1000
        } else {
            f64::NAN
        },
        hot_add_method: "from sending AddChannel to the simulator's per-mailbox request counter \
                         turning non-zero, polled every 1 ms"
            .into(),
        hot_adds: hot_ms.len(),
        hot_add_ms: Quantiles {
            p50: quantile(&hot_ms, 0.5),
            p99: quantile(&hot_ms, 0.99),
            max: hot_ms.last().copied().unwrap_or(0.0),
        },
        restart_channels: expected,
        restart_secs,
        messages_sent: sent,
        messages_delivered: delivered,
        messages_marked_read: marked,
        ingest_secs,
        delivered_per_sec: delivered as f64 / ingest_secs,
        marked_read_per_sec: marked as f64 / ingest_secs,
        budgets: Vec::new(),
        failures,
    };
    results.budgets = budgets(&results);
    Ok(results)
}

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if raw.first().map(String::as_str) == Some("--seed") {
        if let Err(err) = seed_main(&raw[1..]) {
            eprintln!("seeding failed: {err:#}");
            std::process::exit(2);
        }
        return;
    }
    let code = match main_inner(&raw) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("load bench failed: {err:#}");
            2
        }
    };
    std::process::exit(code);
}

fn main_inner(raw: &[String]) -> anyhow::Result<i32> {
    let args = parse_args(raw)?;
    if args.plot_only {
        let out = plot()?;
        println!("curves written to {}", out.display());
        return Ok(0);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = rt.block_on(run(args.clone()))?;
    print_results(&results);
    let path = write_results(&results)?;
    println!("  results: {} (and results.md)", path.display());
    if args.plot {
        let out = plot()?;
        println!("  curves: {}", out.display());
    }
    Ok(if results.failures.is_empty() { 0 } else { 1 })
}
