//! The cluster bench: K `inboxd serve` nodes on one PostgreSQL database against the simulator, a
//! random node SIGKILLed (and restarted at once) every S seconds while mail arrives, compared with
//! a single sled daemon on the same number of channels in the same invocation
//! (docs/benchmarks.md, section "Cluster").
//!
//! `cargo bench --bench cluster -- [--nodes K] [--channels N] [--kill-every S] [--duration-secs D]
//! [--interval-secs I] [--lease-secs T] [--messages-per-sec R]`
//!
//! What one run does, in order ([`run`]):
//! 1. starts `inboxd sim` as a child process (its CPU is not the daemons');
//! 2. seeds N channels into a sled store and measures one `inboxd serve` on it for the steady
//!    window (S seconds, or D without kills): the yardstick;
//! 3. creates a fresh PostgreSQL database, seeds N other channels into it from this process
//!    (`Store::open_postgres` with the nodes' master key, see [`seed`]) and starts K nodes;
//! 4. measures D seconds: the steady part up to the first kill, then a SIGKILL of a random node
//!    every S seconds, each restarted at once (a new node id), timing the failover of every channel
//!    the killed node ran;
//! 5. drains, and checks the `mail` table against the simulator's mailboxes.
//!
//! It prints a table ([`report`]), writes `target/bench-results/cluster-<timestamp>.json`, and
//! exits 1 when a message was lost or doubled, a refresh token reused, a request sent before its
//! `Retry-After`, or a killed node's channel not polled elsewhere in time; 2 when it cannot run.
//! Every daemon is a child process ([`node`]); all traffic is on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod node;
mod report;
mod run;
mod seed;

use clap::Parser;
use serde::Serialize;

/// The command line (`cargo bench --bench cluster -- …`).
#[derive(Debug, Parser)]
#[command(
    name = "cluster",
    bin_name = "cargo bench --bench cluster --",
    about = "The cluster bench: K nodes on PostgreSQL, nodes killed, against one sled daemon."
)]
struct Cli {
    /// Nodes of the cluster (K).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=16))]
    nodes: u64,
    /// Channels (N), seeded for each of the two runs.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    channels: u64,
    /// SIGKILL a random node every S seconds (and start it again at once); none when absent.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    kill_every: Option<u64>,
    /// The cluster's measured window in seconds (D).
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration_secs: u64,
    /// The polling interval in seconds (I).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    interval_secs: u64,
    /// The lease TTL in seconds (the product's minimum is 5).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(5..))]
    lease_secs: u64,
    /// Messages delivered per second throughout (one per request, the mailboxes in turn).
    #[arg(long, default_value_t = 20)]
    messages_per_sec: u64,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
    /// libtest filters `cargo bench` may pass; ignored.
    #[arg(hide = true)]
    filters: Vec<String>,
}

/// The arguments of a run, as they are saved with its results.
#[derive(Debug, Clone, Serialize)]
struct Args {
    nodes: usize,
    channels: usize,
    kill_every: Option<u64>,
    duration_secs: u64,
    interval_secs: u64,
    lease_secs: u64,
    messages_per_sec: u64,
}

impl From<Cli> for Args {
    fn from(cli: Cli) -> Args {
        Args {
            nodes: cli.nodes as usize,
            channels: cli.channels as usize,
            kill_every: cli.kill_every,
            duration_secs: cli.duration_secs,
            interval_secs: cli.interval_secs,
            lease_secs: cli.lease_secs,
            messages_per_sec: cli.messages_per_sec,
        }
    }
}

fn main() {
    let args = Args::from(Cli::parse());
    let code = match main_inner(&args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("cluster bench failed: {err:#}");
            2
        }
    };
    std::process::exit(code);
}

fn main_inner(args: &Args) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = rt.block_on(run::run(args))?;
    report::print(&results);
    let path = report::write(&results)?;
    println!("  results: {}", path.display());
    Ok(if results.failures.is_empty() { 0 } else { 1 })
}
