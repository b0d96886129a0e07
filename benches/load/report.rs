//! A run's results and how they are reported: the figures (serialized as JSON to
//! `target/bench-results/load-<timestamp>-n<N>.json`), the verdict against each budget (the budgets
//! are in docs/benchmarks.md, section "Budgets"), the row appended to
//! `target/bench-results/results.md`, and the table printed at the end of a run.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::Args;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Quantiles {
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Budget {
    pub(crate) name: String,
    pub(crate) budget: String,
    pub(crate) measured: String,
    pub(crate) met: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Results {
    pub(crate) timestamp: String,
    pub(crate) label: String,
    pub(crate) cores: usize,
    pub(crate) args: Args,
    pub(crate) channels: usize,
    pub(crate) warmup_secs: f64,
    pub(crate) window_secs: f64,
    pub(crate) polls: u64,
    pub(crate) polls_per_sec: f64,
    /// Channels that `polls_per_sec` would serve at the two-minute cadence.
    pub(crate) equivalent_channels_at_120s: f64,
    pub(crate) graph_requests_per_poll: f64,
    /// Graph requests in the window per message delivered in it (ingestion runs).
    #[serde(default)]
    pub(crate) graph_requests_per_delivered: f64,
    pub(crate) lateness_ms: Quantiles,
    pub(crate) rss_empty_kib: u64,
    pub(crate) rss_with_channels_kib: u64,
    pub(crate) rss_per_channel_bytes: f64,
    pub(crate) daemon_cpu_secs: f64,
    pub(crate) bench_driver_cpu_secs: f64,
    pub(crate) sim_cpu_secs: f64,
    pub(crate) daemon_cpu_ms_per_1000_polls: f64,
    /// CPU of the empty daemon per second, doing nothing.
    #[serde(default)]
    pub(crate) idle_cpu_ms_per_sec: f64,
    /// `daemon_cpu_ms_per_1000_polls` without the empty daemon's idle CPU.
    #[serde(default)]
    pub(crate) daemon_cpu_ms_per_1000_polls_net_of_idle: f64,
    pub(crate) floor_requests: u64,
    /// Response bytes of an idle poll (the floor sends the same request).
    #[serde(default)]
    pub(crate) bytes_per_idle_poll: u64,
    /// The floor's request cost: its thread's CPU minus its pacing's (see `floor::spawn_pacer`).
    pub(crate) floor_cpu_ms_per_1000_requests: f64,
    /// The floor thread's CPU per request, pacing included.
    #[serde(default)]
    pub(crate) floor_gross_cpu_ms_per_1000_requests: f64,
    /// The pacing alone (a twin thread with the same timer, sending nothing).
    #[serde(default)]
    pub(crate) pacing_cpu_ms_per_1000_ticks: f64,
    pub(crate) cpu_ratio_to_floor: f64,
    pub(crate) hot_add_method: String,
    pub(crate) hot_adds: usize,
    pub(crate) hot_add_ms: Quantiles,
    pub(crate) restart_channels: usize,
    /// Every channel scheduled.
    pub(crate) restart_secs: f64,
    /// The first Graph request after the start.
    #[serde(default)]
    pub(crate) restart_first_poll_secs: f64,
    /// Every channel polled once (NaN when the watch ended first: intervals over 60 s).
    #[serde(default)]
    pub(crate) restart_all_polled_secs: f64,
    /// Channels polled during the watch.
    #[serde(default)]
    pub(crate) restart_polled: usize,
    /// Lateness of the polls during the watch (each against its own due time).
    #[serde(default)]
    pub(crate) restart_first_polls_lateness_ms: Quantiles,
    /// `/metrics` scrapes during the window.
    #[serde(default)]
    pub(crate) scrapes: usize,
    /// What each figure was measured over: (what, from, to) in seconds since the run started.
    #[serde(default)]
    pub(crate) windows: Vec<(String, f64, f64)>,
    pub(crate) messages_sent: u64,
    pub(crate) messages_delivered: u64,
    pub(crate) messages_marked_read: u64,
    /// From the first message sent to the last one marked read.
    #[serde(default)]
    pub(crate) ingest_secs: f64,
    pub(crate) delivered_per_sec: f64,
    pub(crate) marked_read_per_sec: f64,
    pub(crate) budgets: Vec<Budget>,
    pub(crate) failures: Vec<String>,
}

pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) fn results_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-results")
}

/// Which budgets [`budgets`] judges against, as printed above the verdicts.
const BUDGETS: &str = "version 2, docs/benchmarks.md \"Budgets\"";

/// The run's verdict against each budget of version 2 (docs/benchmarks.md, section "Budgets").
/// The ingestion budget's CPU half is the peer bench's (`cargo bench --bench peer`).
pub(crate) fn budgets(r: &Results) -> Vec<Budget> {
    // The poll rate of 100,000 channels at two minutes (833/s), within 5 %.
    let at_scale = r.equivalent_channels_at_120s >= 95_000.0;
    let million = r.channels >= 1_000_000;
    vec![
        Budget {
            name: "p99 poll lateness".into(),
            budget: "≤ 1 s with 1,000,000 channels".into(),
            measured: format!(
                "{:.1} ms at {:.0} polls/s ({:.0} channel-equivalents at 2 min)",
                r.lateness_ms.p99, r.polls_per_sec, r.equivalent_channels_at_120s
            ),
            met: Some(r.lateness_ms.p99 <= 1000.0)
                .filter(|_| million || at_scale)
                .or((r.lateness_ms.p99 > 1000.0).then_some(false)),
        },
        Budget {
            name: "memory per channel".into(),
            budget: "≤ 4 KiB (/metrics scraped)".into(),
            measured: format!("{:.0} B", r.rss_per_channel_bytes),
            met: Some(r.rss_per_channel_bytes <= 4096.0),
        },
        Budget {
            name: "CPU per poll vs bare reqwest".into(),
            budget: "≤ 1.2× (floor net of pacing)".into(),
            measured: format!("{:.2}×", r.cpu_ratio_to_floor),
            met: Some(r.cpu_ratio_to_floor <= 1.2),
        },
        Budget {
            name: "restart: scheduled, first polls".into(),
            budget: "≤ 10 s with 1,000,000; on time".into(),
            measured: format!(
                "{:.2} s for {}; first polls p99 {:.1} ms late",
                r.restart_secs, r.restart_channels, r.restart_first_polls_lateness_ms.p99
            ),
            met: Some(r.restart_secs <= 10.0 && r.restart_first_polls_lateness_ms.p99 <= 1000.0)
                .filter(|ok| million || !ok),
        },
        Budget {
            name: "hot-add p99".into(),
            budget: "≤ 100 ms".into(),
            measured: format!("{:.1} ms", r.hot_add_ms.p99),
            met: (r.hot_adds > 0).then_some(r.hot_add_ms.p99 <= 100.0),
        },
        Budget {
            name: "ingestion".into(),
            budget: "≥ 10,000 msg/s".into(),
            measured: format!(
                "{:.0} delivered/s, {:.0} marked read/s (offered {} msg/s; simulator {:.2} cores)",
                r.delivered_per_sec,
                r.marked_read_per_sec,
                r.args.messages_per_sec,
                r.sim_cpu_secs / r.window_secs.max(0.001)
            ),
            met: (r.args.messages_per_sec >= 10_000).then_some(r.marked_read_per_sec >= 10_000.0),
        },
    ]
}

pub(crate) fn write_results(r: &Results) -> anyhow::Result<PathBuf> {
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

pub(crate) fn print_results(r: &Results) {
    // What one request is: a Graph request, or an IMAP command on the IMAP transport.
    let requests = if r.args.transport == "imap" {
        "IMAP commands"
    } else {
        "Graph requests"
    };
    println!(
        "\ninboxd load bench: {} channels over {}, {} mode, interval {} s, window {:.1} s, {} cores",
        r.channels, r.args.transport, r.args.mode, r.args.interval_secs, r.window_secs, r.cores
    );
    println!(
        "  polls                {} ({:.1}/s ≙ {:.0} channels at the 2-minute cadence; {:.2} {requests} per poll, {} response bytes per idle Graph poll)",
        r.polls,
        r.polls_per_sec,
        r.equivalent_channels_at_120s,
        r.graph_requests_per_poll,
        r.bytes_per_idle_poll
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
        "  bare reqwest floor   {:.1} ms per 1,000 requests ({} requests; {:.1} ms with its pacing, which alone costs {:.1} ms per 1,000 ticks); ratio {:.2}×",
        r.floor_cpu_ms_per_1000_requests,
        r.floor_requests,
        r.floor_gross_cpu_ms_per_1000_requests,
        r.pacing_cpu_ms_per_1000_ticks,
        r.cpu_ratio_to_floor
    );
    println!(
        "  hot-add              {} channels: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({})",
        r.hot_adds, r.hot_add_ms.p50, r.hot_add_ms.p99, r.hot_add_ms.max, r.hot_add_method
    );
    println!(
        "  restart              {} channels all scheduled in {:.2} s, first Graph request after {:.2} s, {} polled once {}; first polls late p50 {:.1} / p99 {:.1} / max {:.1} ms",
        r.restart_channels,
        r.restart_secs,
        r.restart_first_poll_secs,
        r.restart_polled,
        if r.restart_all_polled_secs.is_nan() {
            "during the watch".to_owned()
        } else {
            format!("(all) after {:.2} s", r.restart_all_polled_secs)
        },
        r.restart_first_polls_lateness_ms.p50,
        r.restart_first_polls_lateness_ms.p99,
        r.restart_first_polls_lateness_ms.max
    );
    if r.args.messages_per_sec > 0 {
        println!(
            "  ingestion            sent {}, delivered {}, marked read {} within {:.1} s of the first send: {:.0} delivered/s, {:.0} marked read/s, {:.2} {requests} per delivered message",
            r.messages_sent,
            r.messages_delivered,
            r.messages_marked_read,
            r.ingest_secs,
            r.delivered_per_sec,
            r.marked_read_per_sec,
            r.graph_requests_per_delivered
        );
    }
    println!("  windows (seconds since the run started):");
    for (what, from, to) in &r.windows {
        println!("    {from:>8.1} – {to:>8.1}  {what}");
    }
    println!("  budgets ({BUDGETS}):");
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
