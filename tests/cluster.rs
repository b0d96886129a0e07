//! Cluster mode end to end: `inboxd serve` processes on one PostgreSQL database (each test its own)
//! and the simulator, with mail arriving throughout while nodes are killed, frozen and restarted.
//!
//! What every test checks at the end: every message the simulator received is in the PostgreSQL
//! sink exactly once and read in the mailbox (nothing lost, nothing doubled, nothing marked read
//! without delivery), no refresh token was used after it was rotated out (the simulator revokes the
//! grant if one is), and no request reached a mailbox before its `Retry-After`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use inboxd::domain::secret::MasterKey;
use inboxd::sim::client::{AppRegistration, Delivery, SimClient};
use inboxd_testkit::PgTestDb;
use serde_json::{Value, json};

const TOKEN: &str = "cluster-test-admin-token-0123456789";
/// The lease TTL of the test nodes (the product's minimum).
const TTL: Duration = Duration::from_secs(5);

/// One `inboxd serve` process of the cluster.
struct Node {
    name: String,
    port: u16,
    env: Vec<(String, String)>,
    log: std::path::PathBuf,
    child: Option<Child>,
    /// SIGSTOPped: it answers nothing until SIGCONT.
    frozen: bool,
}

impl Node {
    /// Whether it runs and answers.
    fn answers(&self) -> bool {
        self.child.is_some() && !self.frozen
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_inboxd"))
            .args(["--log-format", "json", "serve"])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// SIGKILL, and reap it.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and wait for the graceful stop.
    fn terminate(&mut self) {
        self.signal("TERM");
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} did not stop on SIGTERM",
                    self.name
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A frozen node must be woken to die.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.kill();
    }
}

/// A cluster under test: the database, the simulator, the nodes and the channels.
struct Cluster {
    db: PgTestDb,
    sim: inboxd::sim::SimHandle,
    sim_client: SimClient,
    http: reqwest::Client,
    dir: tempfile::TempDir,
    key: String,
    nodes: Vec<Node>,
    mailboxes: Vec<String>,
    ids: Vec<String>,
    sent: usize,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // What each node said, for whoever reads the failure.
            for node in &self.nodes {
                let text = node.log_text();
                let lines: Vec<&str> = text.lines().collect();
                eprintln!(
                    "--- {} {} ({} bytes; last 60 lines) ---",
                    node.name,
                    node.log.display(),
                    text.len()
                );
                for line in &lines[lines.len().saturating_sub(60)..] {
                    eprintln!("{line}");
                }
            }
        }
    }
}

impl Cluster {
    async fn start(nodes: usize) -> Cluster {
        Self::start_with_db(PgTestDb::create(), nodes).await
    }

    async fn start_with_db(db: PgTestDb, nodes: usize) -> Cluster {
        let sim = inboxd::sim::spawn(inboxd::sim::SimOptions {
            // Short-lived access tokens: refreshes (and refresh-token rotation) all through the
            // test, across every failover.
            access_token_lifetime_secs: 20,
            revoke_on_refresh_token_reuse: true,
            ..inboxd::sim::SimOptions::default()
        })
        .unwrap();
        let sim_client = SimClient::new(sim.url());
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut cluster = Cluster {
            db,
            sim_client,
            http,
            dir: tempfile::tempdir().unwrap(),
            key: MasterKey::generate().encode(),
            nodes: Vec::new(),
            mailboxes: Vec::new(),
            ids: Vec::new(),
            sent: 0,
            sim,
        };
        for _ in 0..nodes {
            cluster.add_node().await;
        }
        cluster
    }

    /// Starts one more node and waits until it answers.
    async fn add_node(&mut self) -> usize {
        self.add_node_with(&[]).await
    }

    /// Starts one more node with these settings changed, and waits until it answers.
    async fn add_node_with(&mut self, changed: &[(String, String)]) -> usize {
        let index = self.nodes.len();
        let port = inboxd_testkit::free_port().unwrap();
        let dir = self.dir.path().join(format!("node{index}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut env: Vec<(String, String)> =
            inboxd_testkit::daemon_env(&dir, port, &self.sim.url(), 1, &[])
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        env.retain(|(k, _)| k != "INBOXD_PROCESSOR__JSONL_PATH");
        env.extend([
            ("INBOXD_MASTER_KEY".into(), self.key.clone()),
            ("INBOXD_ADMIN_TOKEN".into(), TOKEN.into()),
            ("INBOXD_STORE__ENGINE".into(), "postgres".into()),
            (
                "INBOXD_STORE__POSTGRES_URL".into(),
                self.db.url().to_owned(),
            ),
            ("INBOXD_PROCESSOR__SINK".into(), "postgres".into()),
            (
                "INBOXD_CLUSTER__LEASE_SECS".into(),
                TTL.as_secs().to_string(),
            ),
            ("INBOXD_CLUSTER__NODE_NAME".into(), format!("node{index}")),
            ("INBOXD_RETRY__TOKEN_REFRESH_MARGIN_SECS".into(), "8".into()),
            ("INBOXD_RETRY__TOKEN_REFRESH_JITTER_SECS".into(), "0".into()),
        ]);
        for (key, value) in changed {
            env.retain(|(k, _)| k != key);
            env.push((key.clone(), value.clone()));
        }
        let mut node = Node {
            name: format!("node{index}"),
            port,
            env,
            log: self.dir.path().join(format!("node{index}.log")),
            child: None,
            frozen: false,
        };
        node.spawn();
        self.nodes.push(node);
        self.wait_healthy(index).await;
        index
    }

    async fn wait_healthy(&mut self, index: usize) {
        let port = self.nodes[index].port;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.nodes[index]
                .child
                .as_mut()
                .unwrap()
                .try_wait()
                .unwrap()
            {
                panic!(
                    "node{index} exited ({status}):\n{}",
                    self.nodes[index].log_text()
                );
            }
            let url = format!("http://127.0.0.1:{port}/healthz");
            if let Ok(r) = self.http.get(&url).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(Instant::now() < deadline, "node{index} never answered");
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn api(
        &self,
        node: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let url = format!("http://127.0.0.1:{}{path}", self.nodes[node].port);
        let mut request = self.http.request(method, &url).bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        assert!(
            response.status().is_success(),
            "{path} on node{node}: {}",
            response.status()
        );
        response.json().await.unwrap_or(Value::Null)
    }

    /// Adds `n` channels through `node`'s API and authorizes each through the simulator's sign-in
    /// (the callback lands on that node, whichever node runs the channel).
    async fn add_channels(&mut self, node: usize, n: usize) {
        for _ in 0..n {
            let i = self.mailboxes.len();
            let upn = format!("care{i}@tenant{i}.example");
            let domain = format!("tenant{i}.example");
            let tenant = self
                .sim_client
                .register_tenant(None, &[domain.as_str()])
                .await
                .unwrap();
            let app = self
                .sim_client
                .register_app(&AppRegistration {
                    tenant_id: tenant.clone(),
                    redirect_uris: vec!["http://127.0.0.1/oauth/callback".into()],
                    ..AppRegistration::default()
                })
                .await
                .unwrap();
            self.sim_client
                .register_user(&tenant, &upn, &[])
                .await
                .unwrap();
            let body = json!({"tenant_id": tenant, "client_id": app.client_id,
                "client_secret": app.client_secret, "mailbox": upn});
            let channel = self
                .api(node, reqwest::Method::POST, "/api/channels", Some(body))
                .await;
            let id = channel["id"].as_str().unwrap().to_owned();
            let start = self
                .api(
                    node,
                    reqwest::Method::POST,
                    &format!("/api/channels/{id}/authorize"),
                    None,
                )
                .await;
            let signin = self
                .http
                .get(start["authorization_url"].as_str().unwrap())
                .send()
                .await
                .unwrap();
            let location = signin.headers()["location"].to_str().unwrap().to_owned();
            assert_eq!(self.http.get(&location).send().await.unwrap().status(), 200);
            self.mailboxes.push(upn);
            self.ids.push(id);
        }
    }

    /// Every channel as `node` lists it.
    async fn channels(&self, node: usize) -> Vec<Value> {
        let list = self
            .api(node, reqwest::Method::GET, "/api/channels?limit=1000", None)
            .await;
        list["channels"].as_array().cloned().unwrap_or_default()
    }

    /// Delivers a few messages to every mailbox.
    async fn deliver_round(&mut self, per_mailbox: usize) {
        for upn in &self.mailboxes {
            self.sim_client
                .deliver(
                    upn,
                    &Delivery {
                        count: per_mailbox,
                        unread: true,
                        ..Delivery::default()
                    },
                )
                .await
                .unwrap();
            self.sent += per_mailbox;
        }
    }

    /// Keeps delivering for `how_long` (a round every 300 ms).
    async fn deliver_for(&mut self, how_long: Duration) {
        let until = Instant::now() + how_long;
        while Instant::now() < until {
            self.deliver_round(1).await;
            actix_rt::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Every channel as the node that runs it shows it (live: its last poll, its status). An idle
    /// poll writes nothing to the database, so only the owner knows the poll times.
    async fn live_channels(&self) -> HashMap<String, Value> {
        let mut live = HashMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if !node.answers() {
                continue;
            }
            let mine = format!("{}-", node.name);
            let single = node
                .env
                .iter()
                .any(|(k, v)| k == "INBOXD_STORE__ENGINE" && v == "sled");
            for channel in self.channels(i).await {
                // A single host (sled) runs every channel; a node, those of its shards.
                if single
                    || channel["node"]
                        .as_str()
                        .is_some_and(|n| n.starts_with(&mine))
                {
                    live.insert(channel["id"].as_str().unwrap().to_owned(), channel);
                }
            }
        }
        live
    }

    /// The node names running each channel, as `node` sees them (after a round or two).
    async fn owners(&self, node: usize) -> HashMap<String, Option<String>> {
        self.channels(node)
            .await
            .into_iter()
            .map(|c| {
                (
                    c["id"].as_str().unwrap().to_owned(),
                    c["node"].as_str().map(str::to_owned),
                )
            })
            .collect()
    }

    /// The index of the live node running the most channels.
    async fn busiest(&self, asking: usize) -> usize {
        let owners = self.owners(asking).await;
        let mut counts: HashMap<usize, usize> = HashMap::new();
        for node in owners.values().flatten() {
            if let Some(index) = self
                .nodes
                .iter()
                .position(|n| node.starts_with(&format!("{}-", n.name)))
            {
                *counts.entry(index).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(index, _)| index)
            .unwrap()
    }

    /// Waits until no mailbox holds unread mail (all delivered and marked read).
    async fn drain(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let mut unread = 0;
            for upn in &self.mailboxes {
                unread += self.sim_client.mailbox_state(upn).await.unwrap().unread;
            }
            if unread == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "{unread} messages still unread");
            actix_rt::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The PostgreSQL sink's rows: message id → how many rows.
    fn sink(&self) -> HashMap<String, i64> {
        let url = self.db.url().to_owned();
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            client
                .query(
                    "SELECT message_id, count(*) FROM mail GROUP BY message_id",
                    &[],
                )
                .unwrap()
                .into_iter()
                .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1)))
                .collect()
        })
        .join()
        .unwrap()
    }

    /// Everything every test asserts at the end.
    async fn assert_exactly_once(&self) {
        let sink = self.sink();
        let doubled: Vec<_> = sink.iter().filter(|(_, n)| **n > 1).collect();
        assert!(doubled.is_empty(), "delivered more than once: {doubled:?}");
        let mut total = 0;
        for upn in &self.mailboxes {
            let state = self.sim_client.mailbox_state(upn).await.unwrap();
            assert_eq!(state.unread, 0, "{upn} holds unread mail");
            for message in &state.messages {
                total += 1;
                assert!(
                    sink.contains_key(&message.immutable_id),
                    "{} of {upn} was marked read but never reached the sink",
                    message.immutable_id
                );
            }
        }
        assert_eq!(total, self.sent, "the simulator holds every message sent");
        assert_eq!(sink.len(), self.sent, "every message is in the sink");
        let counters = self.sim_client.counters(None).await.unwrap();
        assert_eq!(
            counters.refresh_token_reuse, 0,
            "a refresh token was used after it was rotated out"
        );
        assert_eq!(
            counters.early_count, 0,
            "requests before a Retry-After: {:?}",
            counters.early_requests
        );
    }

    /// Waits until every channel is active and polled after `since` by a node other than `not`.
    /// Answers each channel's failover time: from `since` to its first successful poll elsewhere.
    async fn wait_taken_over(
        &self,
        not: &str,
        since: DateTime<Utc>,
        within: Duration,
    ) -> Vec<Duration> {
        let deadline = Instant::now() + within;
        let mut taken: HashMap<String, Duration> = HashMap::new();
        loop {
            for channel in self.live_channels().await.into_values() {
                let id = channel["id"].as_str().unwrap().to_owned();
                let node = channel["node"].as_str().unwrap_or_default();
                let polled = channel["last_success_at"]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc));
                if !taken.contains_key(&id)
                    && !node.is_empty()
                    && !node.starts_with(&format!("{not}-"))
                    && channel["status"] == "active"
                    && polled.is_some_and(|t| t > since)
                {
                    let after = (polled.unwrap() - since).to_std().unwrap_or_default();
                    taken.insert(id, after);
                }
            }
            if taken.len() == self.ids.len() {
                return taken.into_values().collect();
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {} channels polled elsewhere within {within:?}",
                taken.len(),
                self.ids.len()
            );
            actix_rt::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until every channel runs on a live node and is active there.
    async fn wait_all_running(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let channels: Vec<Value> = self.live_channels().await.into_values().collect();
            let running = channels
                .iter()
                .filter(|c| c["status"] == "active" && c["last_success_at"].is_string())
                .count();
            if running == self.ids.len() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{running} of {} channels run: {channels:?}",
                self.ids.len()
            );
            actix_rt::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[actix_rt::test]
async fn a_killed_nodes_channels_poll_elsewhere_within_the_ttl_and_nothing_is_lost_or_doubled() {
    let mut cluster = Cluster::start(3).await;
    cluster.add_channels(0, 12).await;
    cluster.wait_all_running(Duration::from_secs(30)).await;
    cluster.deliver_for(Duration::from_secs(4)).await;

    // SIGKILL the node that runs the most channels, with mail arriving.
    let victim = cluster.busiest(0).await;
    let killed_at = Utc::now();
    cluster.nodes[victim].kill();
    let name = cluster.nodes[victim].name.clone();
    cluster.deliver_for(Duration::from_secs(3)).await;
    let failover = cluster
        .wait_taken_over(&name, killed_at, TTL + Duration::from_secs(15))
        .await;
    let worst = failover.iter().max().copied().unwrap_or_default();
    eprintln!("failover: worst {worst:?} over {} channels", failover.len());
    assert!(
        worst <= TTL + Duration::from_secs(15),
        "failover took {worst:?}"
    );

    cluster.deliver_for(Duration::from_secs(2)).await;
    cluster.drain(Duration::from_secs(60)).await;
    cluster.assert_exactly_once().await;
}

#[actix_rt::test]
async fn a_frozen_node_commits_nothing_for_the_shards_it_lost_and_rejoins() {
    let mut cluster = Cluster::start(3).await;
    cluster.add_channels(0, 9).await;
    cluster.wait_all_running(Duration::from_secs(30)).await;
    cluster.deliver_for(Duration::from_secs(3)).await;

    // SIGSTOP for two TTLs with mail arriving: the others take its shards; on waking it finds its
    // deadline passed and its leases gone, and writes nothing for them.
    let victim = cluster.busiest(0).await;
    let asking = (victim + 1) % 3;
    let name = cluster.nodes[victim].name.clone();
    let frozen_at = Utc::now();
    // Microsoft throttles every mailbox just before: the floors hold on whichever node polls next.
    for upn in &cluster.mailboxes {
        cluster
            .sim_client
            .add_fault_json(
                &json!({"kind": "throttle", "retry_after": 4, "mailbox": upn, "count": 1}),
            )
            .await
            .unwrap();
    }
    actix_rt::time::sleep(Duration::from_millis(1500)).await;
    cluster.nodes[victim].signal("STOP");
    cluster.nodes[victim].frozen = true;
    cluster.deliver_for(TTL * 2).await;
    cluster
        .wait_taken_over(&name, frozen_at, TTL + Duration::from_secs(15))
        .await;
    cluster.nodes[victim].signal("CONT");
    cluster.nodes[victim].frozen = false;
    cluster.deliver_for(Duration::from_secs(3)).await;

    // It rejoins: it heartbeats again and takes its share back.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let owners = cluster.owners(asking).await;
        let held = owners
            .values()
            .flatten()
            .filter(|n| n.starts_with(&format!("{name}-")))
            .count();
        let metrics = cluster
            .http
            .get(format!(
                "http://127.0.0.1:{}/metrics",
                cluster.nodes[victim].port
            ))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let shards = metrics
            .lines()
            .find_map(|l| l.strip_prefix("inboxd_cluster_shards_held "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if shards > 0.0 {
            eprintln!("{name} rejoined with {shards} shards, {held} of the test's channels");
            break;
        }
        assert!(Instant::now() < deadline, "{name} did not rejoin");
        actix_rt::time::sleep(Duration::from_millis(250)).await;
    }
    cluster.deliver_for(Duration::from_secs(2)).await;
    cluster.wait_all_running(Duration::from_secs(30)).await;
    cluster.drain(Duration::from_secs(60)).await;
    cluster.assert_exactly_once().await;
    // What it said on waking: its leases were lost, its channels stopped there.
    assert!(
        cluster.nodes[victim].log_text().contains("Leases lost")
            || cluster.nodes[victim]
                .log_text()
                .contains("every channel stops on this node"),
        "the woken node did not notice it lost its shards"
    );
}

#[actix_rt::test]
async fn a_rolling_restart_and_a_joining_node_lose_and_double_nothing() {
    let mut cluster = Cluster::start(3).await;
    cluster.add_channels(0, 9).await;
    cluster.wait_all_running(Duration::from_secs(30)).await;
    cluster.deliver_for(Duration::from_secs(2)).await;

    // Every node in turn: SIGTERM (it hands its shards back), mail arriving, start again.
    let mut last_success: HashMap<String, DateTime<Utc>> = HashMap::new();
    for i in 0..3 {
        cluster.nodes[i].terminate();
        cluster.deliver_for(Duration::from_secs(2)).await;
        cluster.nodes[i].spawn();
        cluster.wait_healthy(i).await;
        cluster.deliver_for(Duration::from_secs(2)).await;
        for channel in cluster.live_channels().await.into_values() {
            if let Some(at) = channel["last_success_at"].as_str() {
                let at = DateTime::parse_from_rfc3339(at)
                    .unwrap()
                    .with_timezone(&Utc);
                last_success.insert(channel["id"].as_str().unwrap().to_owned(), at);
            }
        }
    }
    // A fourth node joins and takes its share.
    cluster.add_node().await;
    cluster.deliver_for(Duration::from_secs(3)).await;
    cluster.wait_all_running(Duration::from_secs(30)).await;
    // No channel went unpolled for more than one interval plus the TTL (and the restart).
    let now = Utc::now();
    for channel in cluster.live_channels().await.into_values() {
        let at = channel["last_success_at"].as_str().unwrap();
        let at = DateTime::parse_from_rfc3339(at)
            .unwrap()
            .with_timezone(&Utc);
        let stale = (now - at).to_std().unwrap_or_default();
        assert!(
            stale < Duration::from_secs(1) + TTL + Duration::from_secs(5),
            "channel {} last polled {stale:?} ago",
            channel["id"]
        );
    }
    cluster.drain(Duration::from_secs(60)).await;
    cluster.assert_exactly_once().await;
    let owners: HashSet<String> = cluster
        .owners(0)
        .await
        .into_values()
        .flatten()
        .map(|n| n.split('-').next().unwrap_or_default().to_owned())
        .collect();
    assert!(
        owners.len() >= 2,
        "channels spread over the nodes: {owners:?}"
    );
}

/// The value of a counter on a node's `/metrics` (0 when absent).
async fn metric(cluster: &Cluster, node: usize, name_and_labels: &str) -> f64 {
    let text = cluster
        .http
        .get(format!(
            "http://127.0.0.1:{}/metrics",
            cluster.nodes[node].port
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

#[actix_rt::test]
async fn an_idle_poll_writes_nothing_to_postgresql_and_lease_upkeep_is_per_node() {
    let mut cluster = Cluster::start(1).await;
    cluster.add_channels(0, 10).await;
    cluster.wait_all_running(Duration::from_secs(30)).await;
    // Let the first polls settle (activation, the first delta round).
    actix_rt::time::sleep(Duration::from_secs(3)).await;
    let writes = r#"inboxd_store_transactions_total{engine="postgres",kind="write"} "#;
    let reads = r#"inboxd_store_transactions_total{engine="postgres",kind="read"} "#;
    let leases = r#"inboxd_store_transactions_total{engine="postgres",kind="lease"} "#;
    let polls_before = cluster.sim_client.counters(None).await.unwrap();
    let (w0, r0, l0) = (
        metric(&cluster, 0, writes).await,
        metric(&cluster, 0, reads).await,
        metric(&cluster, 0, leases).await,
    );
    actix_rt::time::sleep(Duration::from_secs(6)).await;
    let (w1, r1, l1) = (
        metric(&cluster, 0, writes).await,
        metric(&cluster, 0, reads).await,
        metric(&cluster, 0, leases).await,
    );
    let polls_after = cluster.sim_client.counters(None).await.unwrap();
    let polls: u64 =
        polls_after.requests.values().sum::<u64>() - polls_before.requests.values().sum::<u64>();
    eprintln!(
        "idle: {polls} Graph requests, {} writes, {} reads, {} lease transactions",
        w1 - w0,
        r1 - r0,
        l1 - l0
    );
    assert!(polls >= 40, "the channels polled ({polls} requests in 6 s)");
    assert_eq!(w1 - w0, 0.0, "an idle poll wrote to PostgreSQL");
    // Lease upkeep: a round every TTL/3 of at most five statements, whatever the channels.
    let rounds = 6.0 / (TTL.as_secs_f64() / 3.0) + 1.0;
    assert!(l1 - l0 <= rounds * 5.0, "{} lease transactions", l1 - l0);
}

#[actix_rt::test]
async fn a_single_host_moves_into_the_cluster_without_any_reauthorization() {
    // A single host on sled with authorized channels.
    let mut cluster = Cluster::start(0).await;
    let sled_dir = cluster.dir.path().join("single");
    let single_env = [
        ("INBOXD_STORE__ENGINE".to_owned(), "sled".to_owned()),
        (
            "INBOXD_STORE__PATH".to_owned(),
            sled_dir.join("store").display().to_string(),
        ),
        ("INBOXD_PROCESSOR__SINK".to_owned(), "jsonl".to_owned()),
        (
            "INBOXD_PROCESSOR__JSONL_PATH".to_owned(),
            sled_dir.join("mail.jsonl").display().to_string(),
        ),
    ];
    let single = cluster.add_node_with(&single_env).await;
    cluster.add_channels(single, 4).await;
    cluster.wait_all_running(Duration::from_secs(30)).await;
    cluster.nodes[single].terminate();

    // Export with the single host's config, import into PostgreSQL with the cluster's.
    let dump = cluster.dir.path().join("store.jsonl");
    let run = |args: &[&str], env: &[(String, String)]| {
        let output = Command::new(env!("CARGO_BIN_EXE_inboxd"))
            .args(args)
            .env("INBOXD_MASTER_KEY", &cluster.key)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "inboxd {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(
        &["store", "export", "--out", dump.to_str().unwrap()],
        &single_env,
    );
    let cluster_env = [
        ("INBOXD_STORE__ENGINE".to_owned(), "postgres".to_owned()),
        (
            "INBOXD_STORE__POSTGRES_URL".to_owned(),
            cluster.db.url().to_owned(),
        ),
        ("INBOXD_PROCESSOR__SINK".to_owned(), "postgres".to_owned()),
    ];
    run(
        &["store", "import", "--in", dump.to_str().unwrap()],
        &cluster_env,
    );

    // Two nodes on the imported store: every channel active and its mail delivered, with no
    // sign-in asked of anyone.
    let first = cluster.add_node().await;
    cluster.add_node().await;
    assert_eq!(cluster.channels(first).await.len(), 4);
    cluster.deliver_round(3).await;
    cluster.wait_all_running(Duration::from_secs(30)).await;
    cluster.drain(Duration::from_secs(30)).await;
    cluster.assert_exactly_once().await;
}

#[actix_rt::test]
async fn postgresql_restarted_mid_run_loses_and_doubles_nothing() {
    // A server of this test's own: restarting the shared one would cut every other test.
    let server = inboxd_testkit::PgServer::start().unwrap();
    let db = PgTestDb::create_on(&server.admin_url());
    let mut cluster = Cluster::start_with_db(db, 3).await;
    cluster.add_channels(0, 9).await;
    cluster.wait_all_running(Duration::from_secs(30)).await;
    cluster.deliver_for(Duration::from_secs(3)).await;

    // Every connection is cut; the nodes back off, reconnect and go on.
    server.restart().unwrap();
    cluster.deliver_for(Duration::from_secs(4)).await;
    server.restart().unwrap();
    cluster.deliver_for(Duration::from_secs(3)).await;

    cluster.wait_all_running(Duration::from_secs(30)).await;
    cluster.drain(Duration::from_secs(60)).await;
    cluster.assert_exactly_once().await;
    for node in &mut cluster.nodes {
        assert!(
            node.child.as_mut().unwrap().try_wait().unwrap().is_none(),
            "{} died",
            node.name
        );
    }
}
