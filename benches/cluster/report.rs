//! The cluster bench's results: the figures of one run, the printed table and the JSON file
//! (`target/bench-results/cluster-<timestamp>.json`).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::Args;
use crate::node::Sample;

/// What the daemons did over one measured window.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Window {
    pub(crate) secs: f64,
    /// The daemons' CPU and counters over the window, summed over the nodes (and over each killed
    /// node's life up to its kill).
    pub(crate) nodes: Sample,
    /// Graph requests the simulator received (a `$batch` counts once).
    pub(crate) graph_requests: u64,
    /// Token requests (refreshes) the simulator received.
    pub(crate) token_requests: u64,
    /// Messages delivered to the mailboxes during the window.
    pub(crate) sent: u64,
    /// Unread messages left when the drain gave up (0: all delivered and marked read).
    pub(crate) unread_after_drain: usize,
}

impl Window {
    pub(crate) fn cpu_us_per_poll(&self) -> f64 {
        if self.nodes.polls > 0.0 {
            self.nodes.cpu_secs * 1e6 / self.nodes.polls
        } else {
            f64::NAN
        }
    }

    pub(crate) fn tx_per_poll(&self) -> f64 {
        if self.nodes.polls > 0.0 {
            self.nodes.transactions() / self.nodes.polls
        } else {
            f64::NAN
        }
    }
}

/// One SIGKILL and what followed.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Kill {
    /// The killed node's id.
    pub(crate) node: String,
    /// Channels it ran when killed.
    pub(crate) channels: usize,
    /// Per channel: from the kill to its first successful poll on another node.
    pub(crate) failover_secs: Vec<f64>,
    /// Channels not polled elsewhere within TTL + 30 s.
    pub(crate) untaken: usize,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Results {
    pub(crate) args: Args,
    pub(crate) seed_secs: f64,
    /// From starting the nodes to every channel running with the shards spread.
    pub(crate) start_secs: f64,
    /// The single sled daemon over the steady window's length.
    pub(crate) sled: Window,
    /// The cluster before the first kill.
    pub(crate) steady: Window,
    /// The cluster over the whole measured window, kills and restarts included.
    pub(crate) whole: Window,
    pub(crate) kills: Vec<Kill>,
    /// Messages the simulator's mailboxes hold at the end.
    pub(crate) in_mailboxes: usize,
    /// Distinct messages in the `mail` table.
    pub(crate) delivered: usize,
    pub(crate) lost: usize,
    pub(crate) doubled: u64,
    pub(crate) refresh_token_reuse: u64,
    pub(crate) early_requests: usize,
    pub(crate) failures: Vec<String>,
}

pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl Results {
    /// Every channel's failover time over every kill, sorted.
    pub(crate) fn failovers(&self) -> Vec<f64> {
        let mut all: Vec<f64> = self
            .kills
            .iter()
            .flat_map(|k| k.failover_secs.iter().copied())
            .collect();
        all.sort_by(f64::total_cmp);
        all
    }
}

fn row(label: &str, value: String) {
    println!("  {label:<46} {value}");
}

pub(crate) fn print(r: &Results) {
    let a = &r.args;
    println!();
    println!(
        "cluster bench: {} nodes, {} channels, interval {} s, lease TTL {} s, {} msg/s, window {} s{}",
        a.nodes,
        a.channels,
        a.interval_secs,
        a.lease_secs,
        a.messages_per_sec,
        a.duration_secs,
        a.kill_every
            .map(|s| format!(", SIGKILL every {s} s"))
            .unwrap_or_default()
    );
    row(
        "seeding N channels into PostgreSQL",
        format!("{:.1} s", r.seed_secs),
    );
    row(
        "start: every channel running, shards spread",
        format!("{:.1} s", r.start_secs),
    );
    println!();
    println!(
        "  {:<46} {:>12} {:>12} {:>12}",
        "", "sled, 1 node", "cluster", "cluster"
    );
    println!(
        "  {:<46} {:>12} {:>12} {:>12}",
        "", "steady", "steady", "with kills"
    );
    let line = |label: &str, f: &dyn Fn(&Window) -> String| {
        println!(
            "  {label:<46} {:>12} {:>12} {:>12}",
            f(&r.sled),
            f(&r.steady),
            f(&r.whole)
        );
    };
    line("window (s)", &|w| format!("{:.1}", w.secs));
    line("polls", &|w| format!("{:.0}", w.nodes.polls));
    line("polls/s", &|w| {
        format!("{:.1}", w.nodes.polls / w.secs.max(0.001))
    });
    line("Graph requests per poll", &|w| {
        format!("{:.2}", w.graph_requests as f64 / w.nodes.polls.max(1.0))
    });
    line("token refreshes", &|w| w.token_requests.to_string());
    line("CPU of the daemon processes (s)", &|w| {
        format!("{:.2}", w.nodes.cpu_secs)
    });
    line("CPU per poll (µs)", &|w| {
        format!("{:.0}", w.cpu_us_per_poll())
    });
    line("PostgreSQL transactions per poll", &|w| {
        format!("{:.3}", w.tx_per_poll())
    });
    line("  of which read / write / lease", &|w| {
        format!(
            "{:.0}/{:.0}/{:.0}",
            w.nodes.tx_read, w.nodes.tx_write, w.nodes.tx_lease
        )
    });
    println!();
    row(
        "CPU per poll, cluster / sled (steady)",
        format!(
            "{:.2}×",
            r.steady.cpu_us_per_poll() / r.sled.cpu_us_per_poll()
        ),
    );
    row(
        "CPU per poll, cluster with kills / sled",
        format!(
            "{:.2}×",
            r.whole.cpu_us_per_poll() / r.sled.cpu_us_per_poll()
        ),
    );
    let failovers = r.failovers();
    if !r.kills.is_empty() {
        row(
            "kills (channels taken over / owned)",
            r.kills
                .iter()
                .map(|k| format!("{}/{}", k.failover_secs.len(), k.channels))
                .collect::<Vec<_>>()
                .join(", "),
        );
        row(
            "failover p50 / p99 / max (s)",
            format!(
                "{:.2} / {:.2} / {:.2}  ({} channels)",
                quantile(&failovers, 0.5),
                quantile(&failovers, 0.99),
                failovers.last().copied().unwrap_or(f64::NAN),
                failovers.len()
            ),
        );
    }
    row(
        "messages sent / in mailboxes / in mail table",
        format!("{} / {} / {}", r.whole.sent, r.in_mailboxes, r.delivered),
    );
    row("lost", r.lost.to_string());
    row("doubled", r.doubled.to_string());
    row(
        "unread after the drain",
        r.whole.unread_after_drain.to_string(),
    );
    row(
        "refresh-token reuse (whole bench)",
        r.refresh_token_reuse.to_string(),
    );
    row(
        "requests before Retry-After (whole bench)",
        r.early_requests.to_string(),
    );
    if r.failures.is_empty() {
        println!("\n  OK: nothing lost or doubled, no refresh token reused");
    } else {
        println!("\n  FAILED:");
        for failure in &r.failures {
            println!("  - {failure}");
        }
    }
}

fn results_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-results")
}

/// Writes the results as JSON; answers the file.
pub(crate) fn write(r: &Results) -> anyhow::Result<PathBuf> {
    let dir = results_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!(
        "cluster-{}.json",
        chrono::Utc::now().format("%Y%m%d-%H%M%S")
    ));
    std::fs::write(&path, serde_json::to_vec_pretty(r)?)?;
    Ok(path)
}
