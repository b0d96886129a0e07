//! A daemon under test: [`TestDaemon`] builds it through `Application::build` (as `inboxd serve`
//! does) on a directory the test owns, with a fresh master key and a random admin token, and talks
//! to its admin API; [`daemon_env`] is the environment such a daemon runs with.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use inboxd::config::{Env, Settings};
use inboxd::domain::secret::{AdminToken, MasterKey, WebhookSecret};
use inboxd::startup::{Application, Secrets};
use serde_json::{Value, json};

/// Whether a start failed because its port was taken.
fn port_taken(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse)
    })
}

/// Picks a free loopback port (bound and released at once).
pub fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("Could not find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The environment of a daemon on `port` with its store in `dir`, talking to the simulator at
/// `sim_url`; `extra` overrides or adds keys.
pub fn daemon_env(
    dir: &Path,
    port: u16,
    sim_url: &str,
    interval_secs: u64,
    extra: &[(&str, String)],
) -> Env {
    let mut pairs: Vec<(String, String)> = vec![
        ("INBOXD_SERVER__LISTEN".into(), format!("127.0.0.1:{port}")),
        (
            "INBOXD_SERVER__PUBLIC_URL".into(),
            format!("http://127.0.0.1:{port}"),
        ),
        (
            "INBOXD_STORE__PATH".into(),
            dir.join("store").display().to_string(),
        ),
        ("INBOXD_CLOUD__LOGIN_URL".into(), sim_url.to_owned()),
        ("INBOXD_CLOUD__GRAPH_URL".into(), sim_url.to_owned()),
        (
            "INBOXD_POLLING__INTERVAL_SECS".into(),
            interval_secs.to_string(),
        ),
        ("INBOXD_POLLING__JITTER_SECS".into(), "0".into()),
        (
            "INBOXD_PROCESSOR__JSONL_PATH".into(),
            dir.join("mail.jsonl").display().to_string(),
        ),
        ("INBOXD_RETRY__INITIAL_BACKOFF_MS".into(), "200".into()),
        ("INBOXD_RETRY__MAX_BACKOFF_SECS".into(), "5".into()),
        ("INBOXD_SERVER__SHUTDOWN_GRACE_SECS".into(), "5".into()),
    ];
    for (key, value) in extra {
        pairs.retain(|(k, _)| k != key);
        pairs.push(((*key).to_owned(), value.clone()));
    }
    pairs.into_iter().collect()
}

/// A daemon under test.
pub struct TestDaemon {
    /// The running daemon (taken by [`TestDaemon::stop`]).
    pub app: Option<Application>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The admin token: random, made for this daemon (a restart gets a new one).
    pub token: String,
    /// A client that follows no redirects.
    pub http: reqwest::Client,
    /// The directory of the store and the JSONL sink.
    pub dir: PathBuf,
    /// The master key (to restart on the same store).
    pub master_key: MasterKey,
}

impl TestDaemon {
    /// Starts a daemon in `dir` (which must outlive it) against the simulator at `sim_url`.
    pub async fn start(
        dir: &Path,
        sim_url: &str,
        interval_secs: u64,
        extra: &[(&str, String)],
    ) -> anyhow::Result<TestDaemon> {
        Self::start_with_key(dir, sim_url, interval_secs, extra, MasterKey::generate()).await
    }

    /// Like [`start`](Self::start) with a given master key (a restart on the same store).
    pub async fn start_with_key(
        dir: &Path,
        sim_url: &str,
        interval_secs: u64,
        extra: &[(&str, String)],
        master_key: MasterKey,
    ) -> anyhow::Result<TestDaemon> {
        Self::start_with(dir, sim_url, interval_secs, extra, master_key, None).await
    }

    /// Like [`start_with_key`](Self::start_with_key) with a webhook secret for a webhook sink.
    pub async fn start_with(
        dir: &Path,
        sim_url: &str,
        interval_secs: u64,
        extra: &[(&str, String)],
        master_key: MasterKey,
        webhook_secret: Option<WebhookSecret>,
    ) -> anyhow::Result<TestDaemon> {
        let admin_token = AdminToken::generate();
        let token = admin_token.expose().to_owned();
        // The redirect URI names the port, so it is chosen before the daemon listens; another
        // process may take it in between. The daemon listens before it opens anything, so a
        // start that lost the race left nothing behind: try another port.
        let mut attempt = 0;
        let app = loop {
            attempt += 1;
            let port = free_port()?;
            let env = daemon_env(dir, port, sim_url, interval_secs, extra);
            let settings = Settings::load(None, &env).map_err(|e| anyhow::anyhow!("{e}"))?;
            let secrets = Secrets {
                master_key: master_key.clone(),
                admin_token: admin_token.clone(),
                webhook_secret: webhook_secret.clone(),
            };
            match Application::build(settings, secrets).await {
                Ok(app) => break app,
                Err(err) if attempt < 5 && port_taken(&err) => continue,
                Err(err) => return Err(err),
            }
        };
        let base = format!("http://127.0.0.1:{}", app.port());
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(TestDaemon {
            app: Some(app),
            base,
            token,
            http,
            dir: dir.to_path_buf(),
            master_key,
        })
    }

    /// The running application.
    pub fn app(&self) -> anyhow::Result<&Application> {
        self.app.as_ref().context("the daemon was stopped")
    }

    /// Calls the admin API; answers the status and the JSON body (`Null` when empty).
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, value))
    }

    /// Adds a channel; answers its id.
    pub async fn add_channel(
        &self,
        tenant_id: &str,
        client_id: &str,
        client_secret: &str,
        mailbox: &str,
    ) -> anyhow::Result<String> {
        let body = json!({
            "tenant_id": tenant_id,
            "client_id": client_id,
            "client_secret": client_secret,
            "mailbox": mailbox,
            "first_import": "all",
        });
        let (status, channel) = self
            .api(reqwest::Method::POST, "/api/channels", Some(body))
            .await?;
        if status != 201 {
            bail!("adding a channel answered {status}: {channel}");
        }
        channel
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .context("no id in the answer")
    }

    /// Runs the OAuth flow for a channel through the simulator's sign-in; answers the callback's
    /// status and page.
    pub async fn authorize(&self, id: &str) -> anyhow::Result<(u16, String)> {
        let (status, start) = self
            .api(
                reqwest::Method::POST,
                &format!("/api/channels/{id}/authorize"),
                None,
            )
            .await?;
        if status != 200 {
            bail!("authorize answered {status}: {start}");
        }
        let url = start
            .get("authorization_url")
            .and_then(Value::as_str)
            .context("no authorization_url")?;
        let signin = self.http.get(url).send().await?;
        let location = signin
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .with_context(|| format!("the sign-in did not redirect (HTTP {})", signin.status()))?
            .to_owned();
        let landed = self.http.get(&location).send().await?;
        let status = landed.status().as_u16();
        Ok((status, landed.text().await?))
    }

    /// One channel as the API shows it.
    pub async fn channel(&self, id: &str) -> anyhow::Result<Value> {
        let (status, channel) = self
            .api(reqwest::Method::GET, &format!("/api/channels/{id}"), None)
            .await?;
        if status != 200 {
            bail!("GET channel answered {status}: {channel}");
        }
        Ok(channel)
    }

    /// Waits until the channel satisfies `check`, or fails with its last state after `timeout`.
    pub async fn wait_channel(
        &self,
        id: &str,
        timeout: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let channel = self.channel(id).await?;
            if check(&channel) {
                return Ok(channel);
            }
            if Instant::now() > deadline {
                bail!("the channel did not reach the expected state in {timeout:?}: {channel:#}");
            }
            actix_rt::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The JSONL sink's lines, parsed.
    pub fn sink_lines(&self) -> anyhow::Result<Vec<Value>> {
        let text = std::fs::read_to_string(self.dir.join("mail.jsonl")).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).context("a sink line is not JSON"))
            .collect()
    }

    /// Stops the daemon gracefully.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        match self.app.take() {
            Some(app) => app.stop().await,
            None => Ok(()),
        }
    }
}

/// Waits until `check` holds, polling every 20 ms, or fails with `what` after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}
