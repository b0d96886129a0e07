//! One run of the cluster bench, in order: the simulator as a child process; the single sled
//! daemon on N seeded channels, measured for the steady window (the yardstick); a fresh PostgreSQL
//! database seeded with N other channels and K nodes on it; the measured window (steady first,
//! then a SIGKILL of a random node every S seconds, each restarted at once, with the failover of
//! each of its channels timed); the drain; the exactly-once check of the `mail` table against the
//! simulator's mailboxes and the simulator's counters. Answers the [`Results`].

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use inboxd::domain::secret::MasterKey;
use inboxd::sim::client::{Delivery, SimClient, SimSettings};
use inboxd::store::{PgOptions, Store, StoreOptions, random_suffix};
use inboxd_testkit::{PgTestDb, SimProcess, daemon_env, free_port};
use rand::Rng as _;

use crate::Args;
use crate::node::{Node, Sample, TOKEN};
use crate::report::{Kill, Results, Window};
use crate::seed::seed;

/// The shards channels are hashed onto (the product's constant).
const SHARDS: f64 = 1024.0;

/// The settings every bench daemon shares: the test kit's environment (loopback, the simulator,
/// interval I, no jitter) plus the bench's master key and admin token and a short token-refresh
/// margin (the seeded expiries are what spread the refreshes).
fn base_env(
    dir: &Path,
    port: u16,
    sim_url: &str,
    args: &Args,
    key: &MasterKey,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = daemon_env(dir, port, sim_url, args.interval_secs, &[])
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    env.extend([
        ("INBOXD_MASTER_KEY".into(), key.encode()),
        ("INBOXD_ADMIN_TOKEN".into(), TOKEN.into()),
        ("INBOXD_RETRY__TOKEN_REFRESH_MARGIN_SECS".into(), "5".into()),
        ("INBOXD_RETRY__TOKEN_REFRESH_JITTER_SECS".into(), "0".into()),
    ]);
    env
}

/// Delivers `rate` messages per second (one per request, the mailboxes in turn) until `stop`.
/// Answers how many the simulator accepted.
async fn deliveries(sim: &SimClient, mailboxes: &[String], rate: u64, stop: &Cell<bool>) -> u64 {
    if rate == 0 || mailboxes.is_empty() {
        return 0;
    }
    let started = Instant::now();
    let mut sent = 0u64;
    let mut attempted = 0u64;
    let mut interval = tokio::time::interval(Duration::from_millis(100));
    while !stop.get() {
        interval.tick().await;
        let due = (rate as f64 * started.elapsed().as_secs_f64()) as u64;
        while attempted < due && !stop.get() {
            let mailbox = &mailboxes[attempted as usize % mailboxes.len()];
            attempted += 1;
            let delivery = Delivery {
                count: 1,
                unread: true,
                ..Delivery::default()
            };
            if let Ok(done) = sim.deliver(mailbox, &delivery).await {
                sent += done.count as u64;
            }
        }
    }
    sent
}

/// Unread messages left in `mailboxes`.
async fn unread(sim: &SimClient, mailboxes: &[String]) -> anyhow::Result<usize> {
    let mut total = 0;
    for mailbox in mailboxes {
        total += sim.mailbox_state(mailbox).await?.unread;
    }
    Ok(total)
}

/// Waits until no mailbox holds unread mail, or `within` passes; answers the unread left.
async fn drain(sim: &SimClient, mailboxes: &[String], within: Duration) -> anyhow::Result<usize> {
    let deadline = Instant::now() + within;
    loop {
        let left = unread(sim, mailboxes).await?;
        if left == 0 || Instant::now() > deadline {
            return Ok(left);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every channel a live node runs, by id.
async fn live_all(
    nodes: &mut [Node],
    http: &reqwest::Client,
) -> HashMap<String, crate::node::Live> {
    let mut all = HashMap::new();
    for node in nodes.iter_mut() {
        all.extend(node.live(http).await);
    }
    all
}

/// Waits until all `n` channels run on a live node, active and polled, and (in a cluster) the
/// shards are spread: all 1,024 held and every node holding some.
async fn wait_all_running(
    nodes: &mut [Node],
    http: &reqwest::Client,
    n: usize,
    cluster: bool,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let live = live_all(nodes, http).await;
        let running = live
            .values()
            .filter(|c| c.active && c.last_success_at.is_some())
            .count();
        let mut spread = true;
        if cluster {
            let mut held = 0.0;
            for node in nodes.iter() {
                let mine = node.shards_held(http).await;
                spread &= mine > 0.0;
                held += mine;
            }
            spread &= held >= SHARDS;
        }
        if running >= n && spread {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("only {running} of {n} channels run (shards spread: {spread})");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Graph requests the simulator counted so far (HTTP requests: a batch counts once).
async fn graph_requests(sim: &SimClient) -> anyhow::Result<(u64, u64)> {
    let counters = sim.counters(None).await?;
    let graph = counters
        .requests
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "authorize" | "token" | "openid_configuration" | "keys" | "other" | "batch_item"
            )
        })
        .map(|(_, v)| *v)
        .sum();
    let tokens = counters.requests.get("token").copied().unwrap_or(0);
    Ok((graph, tokens))
}

/// The single sled daemon on N channels of its own, measured for `window`: the yardstick.
async fn run_sled(
    args: &Args,
    sim: &SimClient,
    sim_url: &str,
    http: &reqwest::Client,
    root: &Path,
    key: &MasterKey,
    window: Duration,
) -> anyhow::Result<Window> {
    let dir = root.join("sled");
    std::fs::create_dir_all(&dir)?;
    let seeding = Instant::now();
    let store = Store::open(&dir.join("store"), key.clone(), StoreOptions::default())?;
    // Refreshes spread over D seconds from about the window's start (margin 5 s + start-up + I),
    // as in the cluster: the same share of refreshes per poll in both steady windows.
    let refresh_after = 5 + 3 + args.interval_secs;
    let mailboxes = seed(
        sim,
        &store,
        "solo",
        args.channels,
        refresh_after,
        args.duration_secs,
    )
    .await?;
    drop(store);
    eprintln!(
        "sled: seeded {} channels in {:.1} s",
        args.channels,
        seeding.elapsed().as_secs_f64()
    );
    let port = free_port()?;
    let mut env = base_env(&dir, port, sim_url, args, key);
    env.extend([
        ("INBOXD_STORE__ENGINE".into(), "sled".into()),
        ("INBOXD_PROCESSOR__SINK".into(), "jsonl".into()),
    ]);
    let mut node = Node::new("solo".into(), port, env, dir.clone(), true);
    node.spawn()?;
    node.wait_healthy(http, Duration::from_secs(60)).await?;
    wait_all_running(
        std::slice::from_mut(&mut node),
        http,
        args.channels,
        false,
        Duration::from_secs(60),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(args.interval_secs)).await;

    eprintln!("sled: measuring {} s", window.as_secs());
    let (graph0, tokens0) = graph_requests(sim).await?;
    let start = node.sample(http).await;
    let at = Instant::now();
    let stop = Cell::new(false);
    let (sent, ()) = tokio::join!(
        deliveries(sim, &mailboxes, args.messages_per_sec, &stop),
        async {
            tokio::time::sleep(window).await;
            stop.set(true);
        }
    );
    let end = node.sample(http).await;
    let secs = at.elapsed().as_secs_f64();
    let (graph1, tokens1) = graph_requests(sim).await?;
    let left = drain(
        sim,
        &mailboxes,
        Duration::from_secs(args.interval_secs + 30),
    )
    .await?;
    node.terminate();
    Ok(Window {
        secs,
        nodes: end.sub(start),
        graph_requests: graph1 - graph0,
        token_requests: tokens1 - tokens0,
        sent,
        unread_after_drain: left,
    })
}

/// Times the failover of `owned` (the channels `victim_id` ran when it was killed at `killed_at`):
/// each one's first successful poll after the kill on another node, as the node that runs it shows
/// it. Answers the times in seconds and how many were not taken over within `within`.
async fn track_failover(
    nodes: &mut [Node],
    http: &reqwest::Client,
    victim_id: &str,
    owned: &HashSet<String>,
    killed_at: DateTime<Utc>,
    within: Duration,
) -> (Vec<f64>, usize) {
    let deadline = Instant::now() + within;
    let mut taken: HashMap<String, f64> = HashMap::new();
    while taken.len() < owned.len() && Instant::now() < deadline {
        for node in nodes.iter_mut() {
            for (id, live) in node.live(http).await {
                if !owned.contains(&id) || taken.contains_key(&id) {
                    continue;
                }
                if live.node != victim_id
                    && live.active
                    && let Some(at) = live.last_success_at
                    && at > killed_at
                {
                    let after = (at - killed_at).to_std().unwrap_or_default();
                    taken.insert(id, after.as_secs_f64());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let untaken = owned.len() - taken.len();
    (taken.into_values().collect(), untaken)
}

/// The PostgreSQL sink's rows: message id → how many rows (on a thread of its own: the sync
/// client must not run on the runtime's thread).
fn sink_rows(url: &str) -> anyhow::Result<HashMap<String, i64>> {
    let url = url.to_owned();
    std::thread::spawn(move || -> anyhow::Result<HashMap<String, i64>> {
        let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
        Ok(client
            .query(
                "SELECT message_id, count(*) FROM mail GROUP BY message_id",
                &[],
            )?
            .into_iter()
            .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1)))
            .collect())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the sink query thread panicked"))?
}

/// Sum of the nodes' samples minus their bases.
async fn total(
    nodes: &[Node],
    http: &reqwest::Client,
    bases: &[Sample],
    retired: Sample,
) -> Sample {
    let mut sum = retired;
    for (node, base) in nodes.iter().zip(bases) {
        sum = sum.add(node.sample(http).await.sub(*base));
    }
    sum
}

pub(crate) async fn run(args: &Args) -> anyhow::Result<Results> {
    let sim_process = SimProcess::start(Path::new(env!("CARGO_BIN_EXE_inboxd")))?;
    let sim = SimClient::new(sim_process.url.clone());
    sim.put_settings(&SimSettings {
        revoke_on_refresh_token_reuse: true,
    })
    .await?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let tmp = tempfile::Builder::new()
        .prefix("inboxd-cluster-bench-")
        .tempdir()?;
    let key = MasterKey::generate();
    let duration = Duration::from_secs(args.duration_secs);
    let steady = args
        .kill_every
        .map_or(duration, |s| Duration::from_secs(s).min(duration));
    let ttl = Duration::from_secs(args.lease_secs);
    let mut failures = Vec::new();

    // 1. The yardstick: one sled daemon, same N, interval and message rate, for the steady window.
    let sled = run_sled(
        args,
        &sim,
        &sim_process.url,
        &http,
        tmp.path(),
        &key,
        steady,
    )
    .await
    .context("the single sled daemon's run")?;
    if sled.nodes.polls <= 0.0 {
        failures.push("the sled daemon polled nothing".to_owned());
    }

    // 2. The cluster's database, seeded from this process with the nodes' master key.
    let db = PgTestDb::create();
    let seeding = Instant::now();
    let store = Store::open_postgres(
        db.url(),
        key.clone(),
        PgOptions {
            pool: 4,
            node_id: format!("seeder-{}", random_suffix()),
        },
    )?;
    let refresh_after = 5 + 10 + args.interval_secs;
    let mailboxes = seed(
        &sim,
        &store,
        "clu",
        args.channels,
        refresh_after,
        args.duration_secs,
    )
    .await?;
    drop(store);
    let seed_secs = seeding.elapsed().as_secs_f64();
    eprintln!(
        "cluster: seeded {} channels into PostgreSQL in {seed_secs:.1} s",
        args.channels
    );

    // 3. K nodes.
    let mut nodes = Vec::with_capacity(args.nodes);
    for i in 0..args.nodes {
        let dir = tmp.path().join(format!("node{i}"));
        std::fs::create_dir_all(&dir)?;
        let port = free_port()?;
        let mut env = base_env(&dir, port, &sim_process.url, args, &key);
        env.retain(|(k, _)| k != "INBOXD_PROCESSOR__JSONL_PATH");
        env.extend([
            ("INBOXD_STORE__ENGINE".into(), "postgres".into()),
            ("INBOXD_STORE__POSTGRES_URL".into(), db.url().to_owned()),
            ("INBOXD_PROCESSOR__SINK".into(), "postgres".into()),
            (
                "INBOXD_CLUSTER__LEASE_SECS".into(),
                args.lease_secs.to_string(),
            ),
            ("INBOXD_CLUSTER__NODE_NAME".into(), format!("node{i}")),
        ]);
        let mut node = Node::new(format!("node{i}"), port, env, tmp.path().to_owned(), false);
        node.spawn()?;
        nodes.push(node);
    }
    let starting = Instant::now();
    for node in &mut nodes {
        node.wait_healthy(&http, Duration::from_secs(60)).await?;
    }
    wait_all_running(
        &mut nodes,
        &http,
        args.channels,
        true,
        Duration::from_secs(90) + ttl * 3,
    )
    .await
    .context("the cluster never ran every channel")?;
    let start_secs = starting.elapsed().as_secs_f64();
    eprintln!(
        "cluster: {} nodes run every channel after {start_secs:.1} s",
        args.nodes
    );
    tokio::time::sleep(Duration::from_secs(args.interval_secs)).await;

    // 4. The measured window.
    eprintln!(
        "cluster: measuring {} s (steady {} s{})",
        args.duration_secs,
        steady.as_secs(),
        args.kill_every
            .map(|s| format!(", a node killed every {s} s"))
            .unwrap_or_default()
    );
    let (graph0, tokens0) = graph_requests(&sim).await?;
    let mut bases = Vec::with_capacity(nodes.len());
    for node in &nodes {
        bases.push(node.sample(&http).await);
    }
    let window_start = Instant::now();
    let stop = Cell::new(false);
    let mut kills: Vec<Kill> = Vec::new();
    let mut steady_window: Option<(Sample, f64, u64, u64)> = None;
    let chaos = async {
        tokio::time::sleep_until((window_start + steady).into()).await;
        let (graph, tokens) = graph_requests(&sim).await?;
        steady_window = Some((
            total(&nodes, &http, &bases, Sample::default()).await,
            window_start.elapsed().as_secs_f64(),
            graph - graph0,
            tokens - tokens0,
        ));
        let mut retired = Sample::default();
        if let Some(every) = args.kill_every {
            let mut k = 1u32;
            loop {
                let due = window_start + Duration::from_secs(every) * k;
                if due >= window_start + duration {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                k += 1;
                let victim = rand::thread_rng().gen_range(0..nodes.len());
                let Some(victim_id) = nodes[victim].id() else {
                    failures.push(format!("{} logged no node id", nodes[victim].name));
                    continue;
                };
                let owned: HashSet<String> = nodes[victim].live(&http).await.into_keys().collect();
                // What it did until now counts; its counters die with it.
                let last = nodes[victim].sample(&http).await;
                retired = retired.add(last.sub(bases[victim]));
                bases[victim] = Sample::default();
                let killed_at = Utc::now();
                nodes[victim].kill();
                nodes[victim].spawn()?;
                let (times, untaken) = track_failover(
                    &mut nodes,
                    &http,
                    &victim_id,
                    &owned,
                    killed_at,
                    ttl + Duration::from_secs(30),
                )
                .await;
                if untaken > 0 {
                    failures.push(format!(
                        "{untaken} of {} channels of {victim_id} were not polled elsewhere within {:?}",
                        owned.len(),
                        ttl + Duration::from_secs(30)
                    ));
                }
                if let Err(err) = nodes[victim]
                    .wait_healthy(&http, Duration::from_secs(30))
                    .await
                {
                    failures.push(format!("{} did not come back: {err:#}", nodes[victim].name));
                }
                eprintln!(
                    "  killed {victim_id} ({} channels): taken over in max {:.2} s",
                    owned.len(),
                    times.iter().copied().fold(0.0, f64::max)
                );
                kills.push(Kill {
                    node: victim_id,
                    channels: owned.len(),
                    failover_secs: times,
                    untaken,
                });
            }
        }
        tokio::time::sleep_until((window_start + duration).into()).await;
        let whole = total(&nodes, &http, &bases, retired).await;
        stop.set(true);
        anyhow::Ok(whole)
    };
    let (sent, whole) = tokio::join!(
        deliveries(&sim, &mailboxes, args.messages_per_sec, &stop),
        chaos
    );
    let whole = whole?;
    let window_secs = window_start.elapsed().as_secs_f64();
    let (graph1, tokens1) = graph_requests(&sim).await?;

    // 5. Drain, then check every message against the `mail` table.
    let left = drain(
        &sim,
        &mailboxes,
        ttl + Duration::from_secs(args.interval_secs + 60),
    )
    .await?;
    let sink = sink_rows(db.url())?;
    let mut in_mailboxes = 0usize;
    let mut lost = 0usize;
    let mut known = HashSet::new();
    for mailbox in &mailboxes {
        for message in sim.mailbox_state(mailbox).await?.messages {
            in_mailboxes += 1;
            if !sink.contains_key(&message.immutable_id) {
                lost += 1;
            }
            known.insert(message.immutable_id);
        }
    }
    let doubled: i64 = sink.values().map(|n| n - 1).filter(|n| *n > 0).sum();
    let unknown = sink.keys().filter(|id| !known.contains(*id)).count();
    let counters = sim.counters(None).await?;
    for node in &mut nodes {
        node.terminate();
    }
    drop(nodes);
    drop(db);

    let (steady_nodes, steady_secs, steady_graph, steady_tokens) =
        steady_window.unwrap_or_default();
    if lost > 0 || left > 0 {
        failures.push(format!(
            "{lost} messages lost, {left} still unread after the drain"
        ));
    }
    if doubled > 0 {
        failures.push(format!("{doubled} extra rows in the mail table (doubled)"));
    }
    if unknown > 0 {
        failures.push(format!("{unknown} rows in the mail table match no message"));
    }
    if in_mailboxes as u64 != sent {
        failures.push(format!(
            "the simulator holds {in_mailboxes} messages, {sent} were sent"
        ));
    }
    if counters.refresh_token_reuse > 0 {
        failures.push(format!(
            "{} refresh tokens were used after rotation",
            counters.refresh_token_reuse
        ));
    }
    if counters.early_count > 0 {
        failures.push(format!(
            "{} requests before their Retry-After",
            counters.early_count
        ));
    }
    if steady_nodes.polls <= 0.0 {
        failures.push("the cluster polled nothing in the steady window".to_owned());
    }
    drop(sim_process);
    Ok(Results {
        args: args.clone(),
        seed_secs,
        start_secs,
        sled,
        steady: Window {
            secs: steady_secs,
            nodes: steady_nodes,
            graph_requests: steady_graph,
            token_requests: steady_tokens,
            sent: 0,
            unread_after_drain: 0,
        },
        whole: Window {
            secs: window_secs,
            nodes: whole,
            graph_requests: graph1 - graph0,
            token_requests: tokens1 - tokens0,
            sent,
            unread_after_drain: left,
        },
        kills,
        in_mailboxes,
        delivered: sink.len(),
        lost,
        doubled: doubled as u64,
        refresh_token_reuse: counters.refresh_token_reuse,
        early_requests: counters.early_count,
        failures,
    })
}
