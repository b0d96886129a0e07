//! The two pollers the peer bench compares, each a child process of the bench: `inboxd serve` (the
//! binary Cargo built, sled store, JSONL sink) and the Python peer (`poller.py`, asyncio + aiohttp,
//! in a virtual environment the bench sets up under the target directory). Each answers a
//! [`Sample`]: its CPU and resident memory from /proc, and its counters (inboxd's from `/metrics`,
//! the peer's over its stdin/stdout).

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;

/// The admin token of the bench's daemon.
pub(crate) const TOKEN: &str = "peer-bench-admin-token-0123456789abcdef";

/// Linux reports process times in USER_HZ, which is 100 on every architecture.
const USER_HZ: f64 = 100.0;

/// utime + stime of process `pid`, in seconds (0 when it is gone).
pub(crate) fn cpu_secs(pid: u32) -> f64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some((_, after)) = text.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Field 3 (state) is index 0, so utime (14) and stime (15) are 11 and 12.
    let utime: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let stime: f64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    (utime + stime) / USER_HZ
}

/// Resident memory of process `pid` in bytes (0 when it is gone).
pub(crate) fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// One look at a poller: CPU so far, resident memory, polls so far and the lateness histogram
/// (cumulative counts per bucket of [`inboxd::telemetry::metrics::LATENESS_BUCKETS`], plus one for
/// "above the last").
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    pub(crate) at: Option<Instant>,
    pub(crate) cpu_secs: f64,
    pub(crate) rss_bytes: u64,
    pub(crate) polls: f64,
    pub(crate) lateness: Vec<f64>,
}

impl Sample {
    /// Polls, CPU and lateness counts between `earlier` and this sample.
    pub(crate) fn since(&self, earlier: &Sample) -> (f64, f64, Vec<f64>, f64) {
        let lateness = self
            .lateness
            .iter()
            .zip(earlier.lateness.iter().chain(std::iter::repeat(&0.0)))
            .map(|(a, b)| a - b)
            .collect();
        let secs = match (self.at, earlier.at) {
            (Some(a), Some(b)) => a.duration_since(b).as_secs_f64(),
            _ => 0.0,
        };
        (
            self.polls - earlier.polls,
            self.cpu_secs - earlier.cpu_secs,
            lateness,
            secs,
        )
    }
}

/// The quantile `q` of a histogram (counts per bucket, the last one above the top bound), by
/// linear interpolation inside the bucket, as Prometheus' `histogram_quantile` does: the same
/// method for both pollers.
pub(crate) fn quantile(bounds: &[f64], counts: &[f64], q: f64) -> f64 {
    let total: f64 = counts.iter().sum();
    if total <= 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let mut seen = 0.0;
    for (i, count) in counts.iter().enumerate() {
        if seen + count >= rank && *count > 0.0 {
            let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
            let Some(upper) = bounds.get(i) else {
                return lower;
            };
            return lower + (upper - lower) * (rank - seen) / count;
        }
        seen += count;
    }
    bounds.last().copied().unwrap_or(f64::NAN)
}

/// `inboxd serve` as a child process.
pub(crate) struct Inboxd {
    child: Child,
    pub(crate) port: u16,
    log: PathBuf,
}

impl Inboxd {
    /// Starts it with `env` (its log goes to `dir/inboxd.log`) and waits until `/healthz` answers.
    pub(crate) async fn start(
        env: &[(String, String)],
        dir: &Path,
        port: u16,
        http: &reqwest::Client,
    ) -> anyhow::Result<Inboxd> {
        let log = dir.join("inboxd.log");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = Command::new(env!("CARGO_BIN_EXE_inboxd"))
            .args(["--log-format", "json", "serve"])
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .context("starting inboxd serve")?;
        let mut me = Inboxd { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = me.child.try_wait()? {
                bail!("inboxd exited ({status}):\n{}", me.log_tail());
            }
            if let Ok(r) = http
                .get(format!("http://127.0.0.1:{port}/healthz"))
                .send()
                .await
                && r.status().is_success()
            {
                return Ok(me);
            }
            if Instant::now() > deadline {
                bail!("inboxd never answered:\n{}", me.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Scrapes `/metrics` (as Prometheus does); answers the text.
    pub(crate) async fn scrape(&self, http: &reqwest::Client) -> anyhow::Result<String> {
        let response = http
            .get(format!("http://127.0.0.1:{}/metrics", self.port))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(30))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("/metrics answered {}", response.status());
        }
        Ok(response.text().await?)
    }

    /// CPU, memory, polls and lateness now (one scrape; its own CPU is in the figure, as a
    /// Prometheus scrape's would be).
    pub(crate) async fn sample(&self, http: &reqwest::Client) -> anyhow::Result<Sample> {
        let text = self.scrape(http).await?;
        let value = |prefix: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // `inboxd_poll_lateness_seconds_bucket{le="0.005"} 12`, matched by the bound's value.
        let bounds = inboxd::telemetry::metrics::LATENESS_BUCKETS;
        let mut lateness = vec![0.0; bounds.len() + 1];
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("inboxd_poll_lateness_seconds_bucket{le=\"") else {
                continue;
            };
            let Some((le, count)) = rest.split_once("\"} ") else {
                continue;
            };
            let count: f64 = count.trim().parse().unwrap_or(0.0);
            let slot = if le == "+Inf" {
                Some(bounds.len())
            } else {
                le.parse::<f64>()
                    .ok()
                    .and_then(|le| bounds.iter().position(|b| (b - le).abs() < 1e-12))
            };
            if let Some(slot) = slot {
                lateness[slot] = count;
            }
        }
        // Cumulative (Prometheus) to per bucket.
        for i in (1..lateness.len()).rev() {
            lateness[i] -= lateness[i - 1];
        }
        Ok(Sample {
            at: Some(Instant::now()),
            cpu_secs: cpu_secs(self.pid()),
            rss_bytes: rss_bytes(self.pid()),
            polls: value("inboxd_polls_total "),
            lateness,
        })
    }

    /// SIGTERM, and wait (30 s at most, then SIGKILL).
    pub(crate) fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Inboxd {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The directory of the bench's Python files.
fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peer")
}

/// A Python with aiohttp: `INBOXD_PEER_PYTHON` if set, else a virtual environment under the
/// target directory, made (and `requirements.txt` installed into it) on first use.
pub(crate) fn python() -> anyhow::Result<PathBuf> {
    if let Ok(python) = std::env::var("INBOXD_PEER_PYTHON") {
        return Ok(PathBuf::from(python));
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("peer-venv");
    let python = venv.join("bin/python3");
    let requirements = peer_dir().join("requirements.txt");
    let stamp = venv.join("requirements.txt");
    let wanted = std::fs::read_to_string(&requirements)?;
    if python.exists() && std::fs::read_to_string(&stamp).is_ok_and(|have| have == wanted) {
        return Ok(python);
    }
    eprintln!("setting up the Python peer in {}…", venv.display());
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .context("python3 -m venv (install python3 and python3-venv)")?;
    if !status.success() {
        bail!(
            "python3 -m venv {} failed ({status}): install python3-venv, or set INBOXD_PEER_PYTHON to a Python that has aiohttp",
            venv.display()
        );
    }
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements)
        .status()
        .context("pip install -r benches/peer/requirements.txt")?;
    if !status.success() {
        bail!(
            "pip install -r {} failed ({status})",
            requirements.display()
        );
    }
    std::fs::write(&stamp, wanted)?;
    Ok(python)
}

/// The Python peer as a child process, driven over its stdin and stdout.
pub(crate) struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    /// Starts `poller.py` on the channels in `channels_file` and waits until it is ready.
    pub(crate) fn start(
        python: &Path,
        channels_file: &Path,
        sim_url: &str,
        interval_secs: u64,
        sink: &Path,
    ) -> anyhow::Result<Peer> {
        let buckets: Vec<String> = inboxd::telemetry::metrics::LATENESS_BUCKETS
            .iter()
            .map(f64::to_string)
            .collect();
        let mut child = Command::new(python)
            .arg(peer_dir().join("poller.py"))
            .arg("--channels")
            .arg(channels_file)
            .args(["--graph-url", sim_url])
            .args(["--interval", &interval_secs.to_string()])
            .arg("--sink")
            .arg(sink)
            .args(["--buckets", &buckets.join(",")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the Python peer")?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("no stdout")?);
        let mut peer = Peer {
            child,
            stdin,
            stdout,
        };
        let ready = peer.read_line()?;
        if ready["ready"] != true {
            bail!("the Python peer did not start: {ready}");
        }
        Ok(peer)
    }

    fn read_line(&mut self) -> anyhow::Result<Value> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("the Python peer exited");
        }
        Ok(serde_json::from_str(&line)?)
    }

    fn command(&mut self, cmd: &str) -> anyhow::Result<Value> {
        writeln!(self.stdin, "{{\"cmd\":\"{cmd}\"}}")?;
        self.stdin.flush()?;
        self.read_line()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU, memory, polls and lateness now.
    pub(crate) fn sample(&mut self) -> anyhow::Result<Sample> {
        let stats = self.command("stats")?;
        let lateness = stats["lateness_counts"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        Ok(Sample {
            at: Some(Instant::now()),
            cpu_secs: cpu_secs(self.pid()),
            rss_bytes: rss_bytes(self.pid()),
            polls: stats["polls"].as_f64().unwrap_or(0.0),
            lateness,
        })
    }

    /// Its counters (polls, requests, delivered, marked, errors).
    pub(crate) fn stats(&mut self) -> anyhow::Result<Value> {
        self.command("stats")
    }

    /// Starts a new lateness histogram (the peer keeps counts, not a cumulative histogram).
    pub(crate) fn mark(&mut self) -> anyhow::Result<()> {
        self.command("mark").map(|_| ())
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
