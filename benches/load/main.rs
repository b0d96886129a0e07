//! The load bench: runs the daemon library against the simulator (in its own process, so that the
//! daemon's memory and CPU are measured alone) and reports the figures the performance budgets are
//! about (docs/benchmarks.md, section "Budgets").
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
//!
//! Modules, by responsibility: the arguments are here (clap); [`seed`] fills the store (in the child
//! process); [`daemon`] runs the daemon in its own thread; [`run`] is one run, step by step;
//! [`floor`] is the bare reqwest yardstick; [`proc`] reads /proc; [`report`] holds the results, the
//! budget verdicts, the JSON and Markdown files and the printed table; [`plot`] draws the curves.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod daemon;
mod floor;
mod heap;
mod plot;
mod proc;
mod report;
mod run;
mod seed;

use clap::Parser;
use serde::{Deserialize, Serialize};

/// Mailboxes of the measured channels.
const PREFIX: &str = "load";
/// Mailboxes hot-added during the run.
const HOT_PREFIX: &str = "hot";
/// Idle mailboxes the floor loop reads.
const FLOOR_PREFIX: &str = "floor";
/// Enough that the floor stays far below the simulator's 10,000 requests per mailbox per 10 minutes.
const FLOOR_MAILBOXES: usize = 64;

/// The command line (`cargo bench --bench load -- …`).
#[derive(Debug, Parser)]
#[command(
    name = "load",
    bin_name = "cargo bench --bench load --",
    about = "The load bench: the daemon on N channels against the simulator (docs/benchmarks.md)."
)]
struct Cli {
    /// Channels seeded and measured (N).
    #[arg(long, default_value_t = 1000)]
    channels: usize,
    /// The measured window in seconds (D).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    duration_secs: u64,
    /// The polling interval in seconds (I).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    interval_secs: u64,
    /// Messages delivered per second during the window (R).
    #[arg(long, default_value_t = 0)]
    messages_per_sec: u64,
    /// Channels hot-added during the window (K); min(N, 20) by default, at least 1.
    #[arg(long)]
    hot_adds: Option<usize>,
    /// How the channels find new mail: `delta` (the product's default) or `unread`.
    #[arg(long, default_value = "delta", value_parser = ["delta", "unread"])]
    mode: String,
    /// How the channels reach their mailboxes: `graph` or `imap` (the simulator's IMAP server).
    #[arg(long, default_value = "graph", value_parser = ["graph", "imap"])]
    transport: String,
    /// A label for the results.
    #[arg(long, default_value = "")]
    label: String,
    /// Also draw docs/bench-curves.svg from every idle result present.
    #[arg(long)]
    plot: bool,
    /// Write a dhat heap profile of the daemon with N channels, taken at the end of the window,
    /// to this file (needs `--features dhat-heap`; `benches/load/heap.py FILE` sums it up).
    #[arg(long)]
    heap_profile: Option<std::path::PathBuf>,
    /// Only draw the curves; run nothing.
    #[arg(long)]
    plot_only: bool,
    /// The child process's work: seed the store (DIR KEY URL N K TRANSPORT).
    #[arg(long, num_args = 6, hide = true, value_names = ["DIR", "KEY", "URL", "N", "K", "TRANSPORT"])]
    seed: Option<Vec<String>>,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
    /// libtest filters `cargo bench` may pass; ignored.
    #[arg(hide = true)]
    filters: Vec<String>,
}

/// The arguments of a run, as they are saved with its results.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Args {
    channels: usize,
    duration_secs: u64,
    interval_secs: u64,
    messages_per_sec: u64,
    hot_adds: usize,
    /// `delta` or `unread`.
    #[serde(default = "default_mode")]
    mode: String,
    /// `graph` or `imap`.
    #[serde(default = "default_transport")]
    transport: String,
    label: String,
    #[serde(skip)]
    plot: bool,
    #[serde(skip)]
    plot_only: bool,
    #[serde(skip)]
    heap_profile: Option<std::path::PathBuf>,
}

/// Results saved before the transport was recorded were measured over Graph.
fn default_transport() -> String {
    "graph".to_owned()
}

/// Results saved before the mode was recorded were measured in unread mode.
fn default_mode() -> String {
    "unread".to_owned()
}

impl From<Cli> for Args {
    fn from(cli: Cli) -> Args {
        Args {
            channels: cli.channels,
            duration_secs: cli.duration_secs,
            interval_secs: cli.interval_secs,
            messages_per_sec: cli.messages_per_sec,
            hot_adds: cli.hot_adds.unwrap_or_else(|| cli.channels.clamp(1, 20)),
            mode: cli.mode,
            transport: cli.transport,
            label: cli.label,
            plot: cli.plot,
            plot_only: cli.plot_only,
            heap_profile: cli.heap_profile,
        }
    }
}

fn main() {
    let mut cli = Cli::parse();
    if let Some(seed) = cli.seed.take() {
        if let Err(err) = seed::seed_main(&seed) {
            eprintln!("seeding failed: {err:#}");
            std::process::exit(2);
        }
        return;
    }
    let code = match main_inner(Args::from(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("load bench failed: {err:#}");
            2
        }
    };
    std::process::exit(code);
}

fn main_inner(args: Args) -> anyhow::Result<i32> {
    if args.plot_only {
        let out = plot::plot()?;
        println!("curves written to {}", out.display());
        return Ok(0);
    }
    if let Some(path) = &args.heap_profile {
        heap::start(path)?;
    }
    // `RUST_LOG=inboxd::startup=info,inboxd::actors::supervisor=info` shows the daemon's start-up
    // phases (its start and the restart's) on stderr; nothing is logged without it.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = rt.block_on(run::run(args.clone()))?;
    report::print_results(&results);
    let path = report::write_results(&results)?;
    println!("  results: {} (and results.md)", path.display());
    if args.plot {
        let out = plot::plot()?;
        println!("  curves: {}", out.display());
    }
    Ok(if results.failures.is_empty() { 0 } else { 1 })
}
