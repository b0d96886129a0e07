//! One run of the load bench, in order: the empty daemon's memory and idle CPU; seeding N channels
//! in a child process; the daemon on them, a warm-up of one interval, then the measured window
//! (polls, lateness, CPU, memory) while K channels are hot-added, R messages per second delivered
//! and the floor runs; the drain of messages in flight; the restart on the same store. Answers the
//! [`Results`] with their budget verdicts.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix::Addr;
use anyhow::anyhow;
use chrono::Utc;
use inboxd::actors::messages::AddChannel;
use inboxd::actors::supervisor::ChannelSupervisor;
use inboxd::domain::secret::MasterKey;
use inboxd::ingest::Ingest as Shared;
use inboxd::sim::client::{Delivery, SimClient, bulk_credentials};
use inboxd::stats::LatenessSnapshot;
use inboxd_testkit::SimProcess;

use crate::daemon::{Daemon, settings_for};
use crate::floor::{spawn_floor, spawn_pacer};
use crate::proc::{process_cpu, rss_kib, sim_cpu, thread_cpu};
use crate::report::{Quantiles, Results, budgets, ms, quantile, results_dir};
use crate::seed::{record, seed_in_child};
use crate::{Args, HOT_PREFIX, PREFIX};

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
        // Graph requests, or IMAP commands for channels on the IMAP transport.
        graph: s.graph_requests.load(Ordering::Relaxed) + shared.imap.commands_sent(),
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
    transport: &str,
) -> anyhow::Result<(Vec<f64>, Vec<String>)> {
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    if count == 0 {
        return Ok((latencies, failures));
    }
    let spacing = window.mul_f64(0.8) / count as u32;
    for i in 0..count {
        tokio::time::sleep(spacing).await;
        let record = record(HOT_PREFIX, i, transport)?;
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

/// Where the simulator's plain IMAP listener is (`GET /_sim/imap`), as an `imap://` URL.
async fn imap_url(sim_url: &str) -> anyhow::Result<String> {
    let answer: serde_json::Value = reqwest::get(format!("{sim_url}/_sim/imap"))
        .await?
        .error_for_status()?
        .json()
        .await?;
    let plain = answer["plain"]
        .as_str()
        .ok_or_else(|| anyhow!("the simulator runs no plain IMAP listener"))?;
    Ok(format!("imap://{plain}"))
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

/// How often `/metrics` is scraped during the window (Prometheus' common interval).
const SCRAPE_EVERY: Duration = Duration::from_secs(15);

/// Scrapes the daemon's `/metrics` every 15 s (the first at once) until `window` has passed, as
/// Prometheus would: an operator's daemon pays for its scrapes, so the measured one does too.
/// Answers how many scrapes succeeded.
async fn scrapes(listen: std::net::SocketAddr, window: Duration) -> usize {
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut done = 0;
    let mut every = tokio::time::interval(SCRAPE_EVERY);
    while started.elapsed() < window {
        every.tick().await;
        if started.elapsed() >= window {
            break;
        }
        if let Ok(r) = http.get(format!("http://{listen}/metrics")).send().await
            && r.status().is_success()
            && r.bytes().await.is_ok()
        {
            done += 1;
        }
    }
    done
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Results> {
    let origin = Instant::now();
    let since_origin = |t: Instant| t.duration_since(origin).as_secs_f64();
    let mut windows: Vec<(String, f64, f64)> = Vec::new();
    let sim_process = SimProcess::start(std::path::Path::new(env!("CARGO_BIN_EXE_inboxd")))?;
    let sim = SimClient::new(sim_process.url.clone());
    let imap_url = match args.transport.as_str() {
        "imap" => Some(imap_url(&sim_process.url).await?),
        _ => None,
    };
    let imap_url = imap_url.as_deref();
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
        settings_for(
            &empty_dir,
            &sim_process.url,
            args.interval_secs,
            &args.mode,
            imap_url,
        )?,
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
    seed_in_child(
        &dir,
        &key,
        &sim_process.url,
        args.channels,
        args.hot_adds,
        &args.transport,
    )?;
    eprintln!("seeded in {:.1} s", seeding.elapsed().as_secs_f64());

    // 3. Run the daemon on them.
    let settings = settings_for(
        &dir,
        &sim_process.url,
        args.interval_secs,
        &args.mode,
        imap_url,
    )?;
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
    windows.push((
        "warm-up (not measured)".into(),
        since_origin(warmup_started),
        since_origin(Instant::now()),
    ));

    let window = Duration::from_secs(args.duration_secs);
    let start_at = Instant::now() + Duration::from_secs(2);
    let floor_thread = spawn_floor(
        settings.clone(),
        sim_process.url.clone(),
        args.channels as f64 / args.interval_secs as f64,
        start_at,
        window,
    );
    let pacer_thread = spawn_pacer(
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
    let (_, hot, sent, scraped) = tokio::join!(
        ticker,
        hot_adds(&supervisor, &sim, args.hot_adds, window, &args.transport),
        deliveries(&sim, args.channels, args.messages_per_sec, window),
        scrapes(settings.server.listen, window),
    );
    let end = snapshot(&shared, &sim_process);
    bar.finish_and_clear();
    let rss_full = rss_kib();
    windows.push((
        format!(
            "measured window: polls, lateness, CPU, floor, hot-adds, {scraped} /metrics scrapes; memory at its end"
        ),
        since_origin(start.at),
        since_origin(end.at),
    ));
    // The heap profile is of this moment: N channels, after the window.
    crate::heap::finish();
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
    if sent > 0 {
        windows.push((
            "ingestion: first message sent → last marked read".into(),
            since_origin(start.at),
            since_origin(drained_at),
        ));
    }
    let live_after = shared.stats.live_channels.load(Ordering::Relaxed);
    drop(shared);
    daemon.stop().await?;

    let polls = end.polls - start.polls;
    let (floor_requests, floor_cpu, floor_bytes) =
        tokio::task::spawn_blocking(move || floor_thread.join())
            .await?
            .map_err(|_| anyhow!("the floor thread panicked"))??;
    let (pacer_ticks, pacer_cpu) = tokio::task::spawn_blocking(move || pacer_thread.join())
        .await?
        .map_err(|_| anyhow!("the pacer thread panicked"))??;
    // The floor's request cost without its timer wake-ups (the pacer's CPU per tick, taken off).
    let pacing_per_tick = pacer_cpu / pacer_ticks.max(1) as f64;
    let floor_gross_per_request = floor_cpu / floor_requests.max(1) as f64;
    let floor_per_request = (floor_gross_per_request - pacing_per_tick).max(0.0);

    // 5. Restart on the same store: until every channel is scheduled, until the first Graph
    // request, and the first polls' lateness (each channel keeps its phase, so its first poll after
    // a restart is due at its usual slot, up to one interval later). Watched for one interval when
    // it is 60 s or less (every channel's first poll), else for 60 s.
    let restart_started = Instant::now();
    let restart_wall = Utc::now();
    let daemon = Daemon::start(settings.clone(), key.clone()).await?;
    let expected = live_after;
    let mut restart_secs = f64::NAN;
    let mut first_poll_secs = f64::NAN;
    let mut all_polled_secs = f64::NAN;
    let watch = if interval <= Duration::from_secs(60) {
        interval + Duration::from_secs(10)
    } else {
        Duration::from_secs(60)
    };
    let lateness_before = daemon.shared.stats.lateness.snapshot();
    let mut last_count = Instant::now();
    let mut polled_once = 0usize;
    // Until the watch ends, and in any case until every channel is scheduled (120 s at most).
    while restart_started.elapsed() < watch
        || (restart_secs.is_nan() && restart_started.elapsed() < Duration::from_secs(120))
    {
        let elapsed = restart_started.elapsed().as_secs_f64();
        if restart_secs.is_nan()
            && daemon.shared.stats.live_channels.load(Ordering::Relaxed) >= expected
        {
            restart_secs = elapsed;
        }
        if first_poll_secs.is_nan() && daemon.shared.stats.polls.load(Ordering::Relaxed) > 0 {
            first_poll_secs = elapsed;
        }
        if last_count.elapsed() >= Duration::from_millis(500) {
            last_count = Instant::now();
            let mut polled = 0usize;
            daemon.board.for_each(|row| {
                if row.last_poll_at.is_some_and(|at| at >= restart_wall) {
                    polled += 1;
                }
            });
            polled_once = polled;
            if polled >= expected {
                all_polled_secs = restart_started.elapsed().as_secs_f64();
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let first_polls = daemon
        .shared
        .stats
        .lateness
        .snapshot()
        .since(&lateness_before);
    windows.push((
        format!("restart: scheduled, first polls ({polled_once} of {expected} channels polled)"),
        since_origin(restart_started),
        since_origin(Instant::now()),
    ));
    daemon.stop().await?;
    drop(sim_process);

    let window_secs = end.at.duration_since(start.at).as_secs_f64();
    // From the first message sent to the last one marked read (or the window, when idle).
    let ingest_secs = drained_at.duration_since(start.at).as_secs_f64().max(0.001);
    let driver_cpu = end.driver_cpu - start.driver_cpu;
    let daemon_cpu =
        (end.process_cpu - start.process_cpu - driver_cpu - floor_cpu - pacer_cpu).max(0.0);
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
        graph_requests_per_delivered: if end.delivered > start.delivered {
            (end.graph - start.graph) as f64 / (end.delivered - start.delivered) as f64
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
        bytes_per_idle_poll: floor_bytes / floor_requests.max(1),
        floor_cpu_ms_per_1000_requests: floor_per_1000,
        floor_gross_cpu_ms_per_1000_requests: floor_gross_per_request * 1e6,
        pacing_cpu_ms_per_1000_ticks: pacing_per_tick * 1e6,
        cpu_ratio_to_floor: if floor_per_1000 > 0.0 {
            daemon_per_1000 / floor_per_1000
        } else {
            f64::NAN
        },
        hot_add_method: "from sending AddChannel to the simulator's per-mailbox request counter \
                         turning non-zero (an O(1) look-up of the mailbox's keys), polled every 1 ms"
            .into(),
        hot_adds: hot_ms.len(),
        hot_add_ms: Quantiles {
            p50: quantile(&hot_ms, 0.5),
            p99: quantile(&hot_ms, 0.99),
            max: hot_ms.last().copied().unwrap_or(0.0),
        },
        restart_channels: expected,
        restart_secs,
        restart_first_poll_secs: first_poll_secs,
        restart_all_polled_secs: all_polled_secs,
        restart_polled: polled_once,
        restart_first_polls_lateness_ms: Quantiles {
            p50: ms(first_polls.quantile(0.5)),
            p99: ms(first_polls.quantile(0.99)),
            max: ms(first_polls.quantile(1.0)),
        },
        scrapes: scraped,
        windows,
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
