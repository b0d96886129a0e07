//! `inboxd demo`: the simulator and the daemon in one process, on a temporary store. N channels are
//! added through the admin API and authorized through the real OAuth flow against the simulator;
//! mail is delivered while the daemon runs; the summary's numbers are counted from the JSONL file
//! and the simulator's mailboxes, not assumed.
//!
//! The daemon is built by [`Application::build`], as `inboxd serve` builds it, from the demo's own
//! settings ([`demo_settings`]), with a fresh random master key and admin token per run: the demo
//! holds no fixed secret and depends on no test support.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::stream::{self, StreamExt as _};
use serde_json::{Value, json};

use crate::cli::DemoArgs;
use crate::config::{Env, Settings};
use crate::domain::secret::{AdminToken, MasterKey};
use crate::sim::client::{BulkEntry, BulkRequest, Delivery, SimClient};
use crate::sim::{self, SimOptions};
use crate::startup::{Application, Secrets};

/// How many channels are set up at once.
const SETUP_CONCURRENCY: usize = 32;

/// What the demo counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Channels set up and authorized.
    pub channels: usize,
    /// Messages delivered to the simulator's mailboxes.
    pub sent: usize,
    /// Distinct messages in the JSONL sink.
    pub ingested: usize,
    /// Messages marked read in the simulator.
    pub marked_read: usize,
    /// Lines in the sink beyond the first of each message.
    pub duplicates: usize,
    /// Messages sent but not in the sink.
    pub lost: usize,
    /// From the first delivery to the last message marked read.
    pub wall: Duration,
}

/// Runs the demo and prints its summary.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let temp = tempfile::Builder::new()
        .prefix("inboxd-demo-")
        .tempdir()
        .context("Could not create a temporary directory")?;
    let dir: PathBuf = match &args.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("Could not create {}", dir.display()))?;
            dir.clone()
        }
        None => temp.path().to_path_buf(),
    };
    let simulator = sim::spawn(SimOptions {
        workers: 1,
        ..SimOptions::default()
    })
    .context("Could not start the simulator")?;
    let imap_url = match args.transport.as_str() {
        "imap" => Some(format!(
            "imap://{}",
            simulator
                .imap_addr()
                .context("The simulator started no IMAP server")?
        )),
        _ => None,
    };
    let summary = actix_rt::System::new().block_on(demo(
        &args,
        &dir,
        &simulator.url(),
        imap_url.as_deref(),
    ))?;
    simulator.stop();
    print_summary(&summary);
    if let Some(dir) = &args.keep {
        println!("Store and sink kept in {}", dir.display());
    }
    if summary.lost > 0 || summary.duplicates > 0 {
        bail!(
            "the demo lost {} and doubled {} message(s)",
            summary.lost,
            summary.duplicates
        );
    }
    Ok(())
}

/// The demo daemon's settings: the shipped defaults with the store and the JSONL sink in `dir`,
/// Microsoft's endpoints at the simulator, a loopback port, the given polling interval and no
/// jitter, and short backoffs so that a transient failure does not stall a run of seconds.
fn demo_settings(
    dir: &Path,
    port: u16,
    sim_url: &str,
    interval_secs: u64,
    imap_url: Option<&str>,
) -> anyhow::Result<Settings> {
    let imap: Vec<(&str, String)> = imap_url
        .map(|url| ("INBOXD_CLOUD__IMAP_URL", url.to_owned()))
        .into_iter()
        .collect();
    let env: Env = [
        ("INBOXD_SERVER__LISTEN", format!("127.0.0.1:{port}")),
        (
            "INBOXD_SERVER__PUBLIC_URL",
            format!("http://127.0.0.1:{port}"),
        ),
        (
            "INBOXD_STORE__PATH",
            dir.join("store").display().to_string(),
        ),
        ("INBOXD_CLOUD__LOGIN_URL", sim_url.to_owned()),
        ("INBOXD_CLOUD__GRAPH_URL", sim_url.to_owned()),
        ("INBOXD_POLLING__INTERVAL_SECS", interval_secs.to_string()),
        ("INBOXD_POLLING__JITTER_SECS", "0".to_owned()),
        (
            "INBOXD_PROCESSOR__JSONL_PATH",
            dir.join("mail.jsonl").display().to_string(),
        ),
        ("INBOXD_RETRY__INITIAL_BACKOFF_MS", "200".to_owned()),
        ("INBOXD_RETRY__MAX_BACKOFF_SECS", "5".to_owned()),
        ("INBOXD_SERVER__SHUTDOWN_GRACE_SECS", "5".to_owned()),
    ]
    .into_iter()
    .chain(imap)
    .collect();
    Settings::load(None, &env).map_err(|e| anyhow::anyhow!("{e}"))
}

/// A free loopback port (bound and released at once): the redirect URI names the port, so it is
/// chosen before the daemon listens.
fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("Could not find a free port")?;
    Ok(listener.local_addr()?.port())
}

async fn demo(
    args: &DemoArgs,
    dir: &Path,
    sim_url: &str,
    imap_url: Option<&str>,
) -> anyhow::Result<Summary> {
    let jsonl = dir.join("mail.jsonl");
    let settings = demo_settings(
        dir,
        free_port()?,
        sim_url,
        args.interval_secs.max(1),
        imap_url,
    )?;
    // Fresh secrets for every run: nothing fixed, nothing that outlives the demo.
    let admin_token = AdminToken::generate();
    let token = admin_token.expose().to_owned();
    let secrets = Secrets {
        master_key: MasterKey::generate(),
        admin_token,
        webhook_secret: None,
    };
    let app = Application::build(settings, secrets).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let sim = SimClient::new(sim_url);
    let channels = args.channels as usize;
    let messages = args.messages as usize;

    let progress = indicatif::ProgressBar::new((channels + channels * messages) as u64);
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg:<28} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    progress.set_message("authorizing channels");

    let mut bulk = BulkRequest::new(channels, "demo");
    bulk.redirect_uris = Some(vec!["http://127.0.0.1/oauth/callback".to_owned()]);
    let entries = sim
        .bulk(&bulk)
        .await
        .context("The simulator could not provision the demo's tenants")?
        .entries;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let setups = stream::iter(
        entries
            .iter()
            .map(|entry| setup_channel(&http, &base, &token, entry, &args.transport)),
    )
    .buffer_unordered(SETUP_CONCURRENCY)
    .inspect(|_| progress.inc(1))
    .collect::<Vec<_>>()
    .await;
    for result in &setups {
        if let Err(err) = result {
            bail!("setting up a demo channel failed: {err:#}");
        }
    }

    progress.set_message("ingesting mail");
    let started = Instant::now();
    // Deliver in two halves, the second while the daemon is already ingesting the first.
    let first = messages / 2;
    deliver_all(&sim, &entries, first).await?;
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    deliver_all(&sim, &entries, messages - first).await?;
    let sent = channels * messages;
    let shared = app.ingest();
    let deadline = started + Duration::from_secs(args.timeout_secs);
    loop {
        let delivered = shared.stats.delivered.load(Ordering::Relaxed) as usize;
        let marked = shared.stats.marked_read.load(Ordering::Relaxed) as usize;
        progress.set_position((channels + delivered.min(sent)) as u64);
        if (delivered >= sent && marked >= sent) || Instant::now() > deadline {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    let wall = started.elapsed();
    progress.finish_with_message("done");
    app.stop().await?;
    count(&sim, &entries, &jsonl, sent, wall).await
}

/// Adds one channel through the admin API and authorizes it through the simulator's sign-in.
async fn setup_channel(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    entry: &BulkEntry,
    transport: &str,
) -> anyhow::Result<()> {
    let channel: Value = http
        .post(format!("{base}/api/channels"))
        .bearer_auth(token)
        .json(&json!({
            "tenant_id": entry.tenant_id,
            "client_id": entry.client_id,
            "client_secret": entry.client_secret,
            "mailbox": entry.mailbox,
            "first_import": "all",
            "transport": transport,
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = channel
        .get("id")
        .and_then(Value::as_str)
        .context("the API returned no channel id")?;
    let start: Value = http
        .post(format!("{base}/api/channels/{id}/authorize"))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let url = start
        .get("authorization_url")
        .and_then(Value::as_str)
        .context("no authorization_url")?;
    let signin = http.get(url).send().await?;
    let location = signin
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .with_context(|| {
            format!(
                "the simulator's sign-in did not redirect (HTTP {})",
                signin.status()
            )
        })?
        .to_owned();
    let landed = http.get(&location).send().await?;
    if !landed.status().is_success() {
        bail!(
            "the OAuth callback answered {}: {}",
            landed.status(),
            landed.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

async fn deliver_all(sim: &SimClient, entries: &[BulkEntry], count: usize) -> anyhow::Result<()> {
    if count == 0 {
        return Ok(());
    }
    let delivery = Delivery::generated(count);
    let results = stream::iter(
        entries
            .iter()
            .map(|entry| sim.deliver(&entry.mailbox, &delivery)),
    )
    .buffer_unordered(SETUP_CONCURRENCY)
    .collect::<Vec<_>>()
    .await;
    for result in results {
        result.context("The simulator refused a delivery")?;
    }
    Ok(())
}

/// Counts what happened, from the sink file and the simulator's mailboxes.
async fn count(
    sim: &SimClient,
    entries: &[BulkEntry],
    jsonl: &Path,
    sent: usize,
    wall: Duration,
) -> anyhow::Result<Summary> {
    let text = std::fs::read_to_string(jsonl).unwrap_or_default();
    let mut seen = HashSet::new();
    // IMAP mail carries its UID as `message_id`: it is matched by Internet Message-ID.
    let mut by_imid = HashSet::new();
    let mut lines = 0usize;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        lines += 1;
        let record: Value =
            serde_json::from_str(line).context("the JSONL sink holds a line that is not JSON")?;
        let id = record
            .get("message_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        seen.insert(id);
        if let Some(imid) = record.get("internet_message_id").and_then(Value::as_str) {
            by_imid.insert(imid.to_owned());
        }
    }
    let mut expected = 0usize;
    let mut lost = 0usize;
    let mut marked_read = 0usize;
    for entry in entries {
        let state = sim.mailbox_state(&entry.mailbox).await?;
        marked_read += state.read;
        for message in &state.messages {
            expected += 1;
            if !seen.contains(&message.immutable_id)
                && !seen.contains(&message.id)
                && !by_imid.contains(&message.internet_message_id)
            {
                lost += 1;
            }
        }
    }
    if expected != sent {
        tracing::warn!(
            expected,
            sent,
            "The simulator holds a different number of messages than were sent."
        );
    }
    Ok(Summary {
        channels: entries.len(),
        sent,
        ingested: seen.len(),
        marked_read,
        duplicates: lines - seen.len(),
        lost,
        wall,
    })
}

fn print_summary(summary: &Summary) {
    let secs = summary.wall.as_secs_f64().max(0.001);
    println!();
    println!("inboxd demo summary");
    println!("  channels authorized    {}", summary.channels);
    println!("  messages sent          {}", summary.sent);
    println!("  delivered to sink      {}", summary.ingested);
    println!("  marked read (\\Seen)    {}", summary.marked_read);
    println!("  duplicates             {}", summary.duplicates);
    println!("  lost                   {}", summary.lost);
    println!("  wall time              {:.2} s", secs);
    println!(
        "  rate                   {:.0} messages/s",
        summary.ingested as f64 / secs
    );
}
