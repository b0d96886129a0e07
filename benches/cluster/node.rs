//! One `inboxd serve` child process of the bench (a cluster node on PostgreSQL, or the single sled
//! daemon it is compared with): start, SIGKILL, SIGTERM, its CPU from /proc, its `/metrics`
//! counters and the channels it runs (its live view, paged through `/api/channels`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use serde_json::Value;

/// The admin token every bench daemon gets.
pub(crate) const TOKEN: &str = "cluster-bench-admin-token-0123456789";

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

/// What the bench reads of a node at one moment: its CPU and the counters of its `/metrics`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct Sample {
    pub(crate) cpu_secs: f64,
    pub(crate) polls: f64,
    pub(crate) tx_read: f64,
    pub(crate) tx_write: f64,
    pub(crate) tx_lease: f64,
}

impl Sample {
    pub(crate) fn add(self, other: Sample) -> Sample {
        Sample {
            cpu_secs: self.cpu_secs + other.cpu_secs,
            polls: self.polls + other.polls,
            tx_read: self.tx_read + other.tx_read,
            tx_write: self.tx_write + other.tx_write,
            tx_lease: self.tx_lease + other.tx_lease,
        }
    }

    pub(crate) fn sub(self, other: Sample) -> Sample {
        Sample {
            cpu_secs: self.cpu_secs - other.cpu_secs,
            polls: self.polls - other.polls,
            tx_read: self.tx_read - other.tx_read,
            tx_write: self.tx_write - other.tx_write,
            tx_lease: self.tx_lease - other.tx_lease,
        }
    }

    pub(crate) fn transactions(&self) -> f64 {
        self.tx_read + self.tx_write + self.tx_lease
    }
}

/// A channel as the node that runs it shows it.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    pub(crate) node: String,
    pub(crate) active: bool,
    pub(crate) last_success_at: Option<DateTime<Utc>>,
}

/// One `inboxd serve` process (restarted in place after a kill: same name, port and settings, a
/// new node id).
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) port: u16,
    env: Vec<(String, String)>,
    dir: PathBuf,
    child: Option<Child>,
    /// Starts so far (each start logs to its own file).
    starts: usize,
    /// This start's node id (`<name>-<8 hex>`), read from its log once known.
    id: Option<String>,
    /// Whether it runs every channel (a single sled daemon) rather than those of its shards.
    single: bool,
}

impl Node {
    pub(crate) fn new(
        name: String,
        port: u16,
        env: Vec<(String, String)>,
        dir: PathBuf,
        single: bool,
    ) -> Node {
        Node {
            name,
            port,
            env,
            dir,
            child: None,
            starts: 0,
            id: None,
            single,
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(format!(
            "{}.{}.log",
            self.name,
            self.starts.saturating_sub(1)
        ))
    }

    /// Starts the process (it answers a little later: see [`Node::wait_healthy`]).
    pub(crate) fn spawn(&mut self) -> anyhow::Result<()> {
        self.starts += 1;
        self.id = None;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = Command::new(env!("CARGO_BIN_EXE_inboxd"))
            .args(["--log-format", "json", "serve"])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.name))?;
        self.child = Some(child);
        Ok(())
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub(crate) fn running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL, and reap it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and wait (30 s at most, then SIGKILL) for the graceful stop.
    pub(crate) fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The last lines of this start's log (for a failure message).
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// This start's node id, read from its log (`"node":"<name>-<8 hex>"`).
    pub(crate) fn id(&mut self) -> Option<String> {
        if self.id.is_none() {
            let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            let needle = format!("{}-", self.name);
            self.id = text.match_indices(&needle).find_map(|(at, _)| {
                let hex = text.get(at + needle.len()..at + needle.len() + 8)?;
                hex.chars()
                    .all(|c| c.is_ascii_hexdigit())
                    .then(|| format!("{needle}{hex}"))
            });
        }
        self.id.clone()
    }

    /// Waits until it answers `/healthz` (fails if it exits or never answers).
    pub(crate) async fn wait_healthy(
        &mut self,
        http: &reqwest::Client,
        within: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("{} exited ({status}):\n{}", self.name, self.log_tail());
            }
            let url = format!("http://127.0.0.1:{}/healthz", self.port);
            if let Ok(r) = http.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} never answered:\n{}", self.name, self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Its CPU and counters now (zeros for the counters it cannot be asked for).
    pub(crate) async fn sample(&self, http: &reqwest::Client) -> Sample {
        let cpu_secs = self.pid().map_or(0.0, cpu_secs);
        let text = match http
            .get(format!("http://127.0.0.1:{}/metrics", self.port))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(5))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let value = |prefix: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let tx = |kind: &str| {
            value(&format!(
                "inboxd_store_transactions_total{{engine=\"postgres\",kind=\"{kind}\"}} "
            ))
        };
        Sample {
            cpu_secs,
            polls: value("inboxd_polls_total "),
            tx_read: tx("read"),
            tx_write: tx("write"),
            tx_lease: tx("lease"),
        }
    }

    /// `inboxd_cluster_shards_held` (0 when it does not answer).
    pub(crate) async fn shards_held(&self, http: &reqwest::Client) -> f64 {
        let text = match http
            .get(format!("http://127.0.0.1:{}/metrics", self.port))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(5))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => return 0.0,
        };
        text.lines()
            .find_map(|l| l.strip_prefix("inboxd_cluster_shards_held "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    }

    /// The channels this node runs, by id, as it shows them (empty when it does not answer). A
    /// cluster node lists every channel but knows the poll times only of those it runs.
    pub(crate) async fn live(&mut self, http: &reqwest::Client) -> HashMap<String, Live> {
        let mut out = HashMap::new();
        if !self.running() {
            return out;
        }
        let me = if self.single { None } else { self.id() };
        if !self.single && me.is_none() {
            return out;
        }
        let mut offset = 0usize;
        loop {
            let url = format!(
                "http://127.0.0.1:{}/api/channels?limit=1000&offset={offset}",
                self.port
            );
            let Ok(response) = http
                .get(&url)
                .bearer_auth(TOKEN)
                .timeout(Duration::from_secs(5))
                .send()
                .await
            else {
                return out;
            };
            let Ok(page) = response.json::<Value>().await else {
                return out;
            };
            let channels = page["channels"].as_array().cloned().unwrap_or_default();
            let total = page["total"].as_u64().unwrap_or(0) as usize;
            for channel in &channels {
                let node = channel["node"].as_str().unwrap_or_default().to_owned();
                if let Some(me) = &me
                    && &node != me
                {
                    continue;
                }
                let Some(id) = channel["id"].as_str() else {
                    continue;
                };
                let last_success_at = channel["last_success_at"]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc));
                out.insert(
                    id.to_owned(),
                    Live {
                        node,
                        active: channel["status"] == "active",
                        last_success_at,
                    },
                );
            }
            offset += channels.len();
            if channels.is_empty() || offset >= total {
                return out;
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}
