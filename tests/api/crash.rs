use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use inboxd::domain::secret::MasterKey;
use inboxd::sim::client::{AppRegistration, Delivery, SimClient};
use rand::Rng as _;
use serde_json::{Value, json};

const TOKEN: &str = "crash-test-admin-token-0123456789";
const MAILBOXES: usize = 4;
const KILLS: usize = 12;

struct Serve {
    env: Vec<(String, String)>,

    log: std::path::PathBuf,
}

impl Serve {
    fn spawn(&self) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        Command::new(env!("CARGO_BIN_EXE_inboxd"))
            .args(["--log-format", "json", "serve"])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }
}

/// The environment of an `inboxd serve` child on `port` with its store in `dir`.
fn serve_env(dir: &std::path::Path, port: u16, sim_url: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = inboxd_testkit::daemon_env(dir, port, sim_url, 1, &[])
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    env.push(("INBOXD_MASTER_KEY".into(), MasterKey::generate().encode()));
    env.push(("INBOXD_ADMIN_TOKEN".into(), TOKEN.into()));
    env
}

/// `inboxd serve` with no file allowed past `limit_kib` KiB (RLIMIT_FSIZE): a full disk that can be
/// emptied again. The shell does not shield the daemon from SIGXFSZ: inboxd ignores it itself, so
/// writes past the limit fail with EFBIG instead of killing it.
fn serve_with_file_size_limit(
    env: &[(String, String)],
    limit_kib: u64,
    rust_log: &str,
    log: &std::path::Path,
) -> Child {
    Command::new("bash")
        .args([
            "-c",
            &format!(
                "ulimit -S -f {limit_kib}; exec {} serve",
                env!("CARGO_BIN_EXE_inboxd")
            ),
        ])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("RUST_LOG", rust_log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Space returns: lifts the child's file-size limit.
fn lift_file_size_limit(child: &Child) {
    let status = Command::new("prlimit")
        .args(["--pid", &child.id().to_string(), "--fsize=unlimited:"])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn wait_healthy(http: &reqwest::Client, port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("inboxd serve exited with {status}");
        }
        let health = http
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await;
        if health.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        assert!(Instant::now() < deadline, "inboxd serve did not come up");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn api(
    http: &reqwest::Client,
    port: u16,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut request = http
        .request(method, format!("http://127.0.0.1:{port}{path}"))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap_or(Value::Null)
}

/// Registers a tenant, app and user in the simulator, adds the channel through the child daemon's
/// API and authorizes it through the simulator's sign-in; answers the channel id.
async fn authorized_channel(
    http: &reqwest::Client,
    port: u16,
    sim_client: &SimClient,
    upn: &str,
) -> String {
    authorized_channel_on(http, port, sim_client, upn, "graph").await
}

/// [`authorized_channel`] on `transport` (`graph` or `imap`).
async fn authorized_channel_on(
    http: &reqwest::Client,
    port: u16,
    sim_client: &SimClient,
    upn: &str,
    transport: &str,
) -> String {
    let domain = upn.split('@').nth(1).unwrap();
    let tenant = sim_client.register_tenant(None, &[domain]).await.unwrap();
    let app = sim_client
        .register_app(&AppRegistration {
            tenant_id: tenant.clone(),
            redirect_uris: vec!["http://127.0.0.1/oauth/callback".into()],
            ..AppRegistration::default()
        })
        .await
        .unwrap();
    sim_client.register_user(&tenant, upn, &[]).await.unwrap();
    let body = json!({"tenant_id": tenant, "client_id": app.client_id, "client_secret": app.client_secret, "mailbox": upn, "transport": transport});
    let channel = api(
        http,
        port,
        reqwest::Method::POST,
        "/api/channels",
        Some(body),
    )
    .await;
    let id = channel["id"].as_str().unwrap().to_owned();
    let start = api(
        http,
        port,
        reqwest::Method::POST,
        &format!("/api/channels/{id}/authorize"),
        None,
    )
    .await;
    let signin = http
        .get(start["authorization_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let location = signin.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(http.get(&location).send().await.unwrap().status(), 200);
    id
}

#[actix_rt::test]
async fn sigkill_at_random_moments_loses_and_doubles_nothing() {
    // Arrange: a simulator here, `inboxd serve` as a child process.
    let sim = inboxd::sim::spawn(inboxd::sim::SimOptions::default()).unwrap();
    let sim_client = SimClient::new(sim.url());
    let dir = tempfile::tempdir().unwrap();
    let port = inboxd_testkit::free_port().unwrap();
    let env = serve_env(dir.path(), port, &sim.url());
    let serve = Serve {
        env,
        log: dir.path().join("serve.log"),
    };
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut child = serve.spawn();
    wait_healthy(&http, port, &mut child).await;

    let mut mailboxes = Vec::new();
    let mut ids = Vec::new();
    for i in 0..MAILBOXES {
        let upn = format!("crash{i}@crash{i}.example");
        let id = authorized_channel(&http, port, &sim_client, &upn).await;
        mailboxes.push(upn);
        ids.push(id);
    }

    // Act: mail keeps arriving while the daemon is killed at random moments and restarted.
    let mut rng = rand::thread_rng();
    let mut sent = 0usize;
    for kill in 0..KILLS {
        for upn in &mailboxes {
            let n = rng.gen_range(20..80);
            sim_client
                .deliver(
                    upn,
                    &Delivery {
                        count: n,
                        unread: true,
                        ..Delivery::default()
                    },
                )
                .await
                .unwrap();
            sent += n;
        }
        actix_rt::time::sleep(Duration::from_millis(rng.gen_range(50..900))).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        child = serve.spawn();
        wait_healthy(&http, port, &mut child).await;
        eprintln!("kill {kill}: {sent} messages sent so far");
    }

    // Let it finish.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut unread = 0;
        for upn in &mailboxes {
            unread += sim_client.mailbox_state(upn).await.unwrap().unread;
        }
        if unread == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{unread} messages still unread");
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }

    // Assert: every message in the sink exactly once, every message read, nothing lost.
    let text = std::fs::read_to_string(dir.path().join("mail.jsonl")).unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for line in text.lines() {
        let record: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("a broken line ({e}): {line}"));
        *seen
            .entry(record["message_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "written more than once: {doubled:?}");
    let mut total = 0;
    for upn in &mailboxes {
        let state = sim_client.mailbox_state(upn).await.unwrap();
        assert_eq!(state.unread, 0);
        for message in &state.messages {
            total += 1;
            assert!(
                seen.contains_key(&message.immutable_id),
                "{} never reached the sink",
                message.immutable_id
            );
        }
    }
    assert_eq!(total, sent);
    assert_eq!(seen.len(), sent);
    // No channel configuration or token lost: every channel is still there and active.
    let list = api(&http, port, reqwest::Method::GET, "/api/channels", None).await;
    assert_eq!(list["total"], MAILBOXES);
    for channel in list["channels"].as_array().unwrap() {
        assert_eq!(channel["status"], "active", "{channel}");
        assert!(ids.contains(&channel["id"].as_str().unwrap().to_owned()));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The mail of the sink file, by Internet Message-ID: how often each was written.
fn sink_by_internet_message_id(dir: &std::path::Path) -> HashMap<String, usize> {
    let text = std::fs::read_to_string(dir.join("mail.jsonl")).unwrap_or_default();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for line in text.lines() {
        let record: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("a broken line ({e}): {line}"));
        *seen
            .entry(record["internet_message_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    seen
}

/// The IMAP transport under SIGKILL: mail keeps arriving while `inboxd serve` is killed at random
/// moments (mid-fetch, mid-hand-over, mid-STORE). While it is dead, every message the server shows
/// `\Seen` is already in the sink; at the end every message is in the sink exactly once.
#[actix_rt::test]
async fn sigkill_on_the_imap_transport_loses_doubles_and_marks_nothing_early() {
    let sim = inboxd::sim::spawn(inboxd::sim::SimOptions::default()).unwrap();
    let sim_client = SimClient::new(sim.url());
    let imap = sim.imap_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = inboxd_testkit::free_port().unwrap();
    let mut env = serve_env(dir.path(), port, &sim.url());
    env.push(("INBOXD_CLOUD__IMAP_URL".into(), format!("imap://{imap}")));
    let serve = Serve {
        env,
        log: dir.path().join("serve.log"),
    };
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut child = serve.spawn();
    wait_healthy(&http, port, &mut child).await;
    let mut mailboxes = Vec::new();
    for i in 0..MAILBOXES {
        let upn = format!("imapcrash{i}@imapcrash{i}.example");
        authorized_channel_on(&http, port, &sim_client, &upn, "imap").await;
        mailboxes.push(upn);
    }
    let mut rng = rand::thread_rng();
    let mut sent = 0usize;
    let mut checked_seen = 0usize;
    for kill in 0..KILLS {
        for upn in &mailboxes {
            let n = rng.gen_range(20..80);
            sim_client
                .deliver(
                    upn,
                    &Delivery {
                        count: n,
                        unread: true,
                        ..Delivery::default()
                    },
                )
                .await
                .unwrap();
            sent += n;
        }
        actix_rt::time::sleep(Duration::from_millis(rng.gen_range(50..900))).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Nothing runs now: whatever the server shows \Seen must be in the sink already.
        let written = sink_by_internet_message_id(dir.path());
        for upn in &mailboxes {
            for message in sim_client.mailbox_state(upn).await.unwrap().messages {
                if message.is_read {
                    checked_seen += 1;
                    assert!(
                        written.contains_key(&message.internet_message_id),
                        "{} is \\Seen but was never delivered (kill {kill})",
                        message.internet_message_id
                    );
                }
            }
        }
        child = serve.spawn();
        wait_healthy(&http, port, &mut child).await;
        eprintln!("kill {kill}: {sent} messages sent so far");
    }
    assert!(checked_seen > 0, "no mail was \\Seen between the kills");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut unread = 0;
        for upn in &mailboxes {
            unread += sim_client.mailbox_state(upn).await.unwrap().unread;
        }
        if unread == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{unread} messages still unseen");
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = sink_by_internet_message_id(dir.path());
    let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "written more than once: {doubled:?}");
    let mut total = 0;
    for upn in &mailboxes {
        for message in sim_client.mailbox_state(upn).await.unwrap().messages {
            total += 1;
            assert!(
                seen.contains_key(&message.internet_message_id),
                "{} never reached the sink",
                message.internet_message_id
            );
        }
    }
    assert_eq!((total, seen.len()), (sent, sent));
    let list = api(&http, port, reqwest::Method::GET, "/api/channels", None).await;
    for channel in list["channels"].as_array().unwrap() {
        assert_eq!(
            (channel["status"].as_str(), channel["transport"].as_str()),
            (Some("active"), Some("imap")),
            "{channel}"
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The sink's disk "fills" (a file-size limit on the daemon process): inboxd stops taking the mail it
/// cannot write, says so, loses nothing, and resumes by itself once the limit is lifted.
#[actix_rt::test]
async fn a_full_disk_pauses_ingestion_and_it_resumes_when_space_returns() {
    let sim = inboxd::sim::spawn(inboxd::sim::SimOptions::default()).unwrap();
    let sim_client = SimClient::new(sim.url());
    let dir = tempfile::tempdir().unwrap();
    let port = inboxd_testkit::free_port().unwrap();
    let env = serve_env(dir.path(), port, &sim.url());
    // 16 MiB per file: the store fits, the sink's file will not.
    let mut child = serve_with_file_size_limit(&env, 16384, "warn", &dir.path().join("serve.log"));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    wait_healthy(&http, port, &mut child).await;
    let upn = "full@full.example";
    let id = authorized_channel(&http, port, &sim_client, upn).await;

    // 60 messages of 512 KiB: about 30 MiB of JSONL, twice the limit.
    let big = "x".repeat(512 * 1024);
    for batch in 0..6 {
        let messages: Vec<Value> = (0..10)
            .map(|i| json!({"subject": format!("big {batch}-{i}"), "body_text": big}))
            .collect();
        sim_client
            .deliver(
                upn,
                &Delivery {
                    messages,
                    ..Delivery::default()
                },
            )
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let channel = loop {
        let channel = api(
            &http,
            port,
            reqwest::Method::GET,
            &format!("/api/channels/{id}"),
            None,
        )
        .await;
        if channel["status"] == "backing_off" && channel["last_error"]["source"] == "sink" {
            break channel;
        }
        assert!(
            Instant::now() < deadline,
            "the full disk never showed: {channel}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        channel["last_error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("full")
            || channel["last_error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("large"),
        "{channel}"
    );
    let unread_while_full = sim_client.mailbox_state(upn).await.unwrap().unread;
    assert!(
        unread_while_full > 0,
        "mail was marked read although it could not be written"
    );

    // Space returns.
    lift_file_size_limit(&child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while sim_client.mailbox_state(upn).await.unwrap().unread > 0 {
        assert!(Instant::now() < deadline, "ingestion did not resume");
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    let text = std::fs::read_to_string(dir.path().join("mail.jsonl")).unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for line in text.lines() {
        let record: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("a broken line: {e}"));
        *seen
            .entry(record["message_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(seen.len(), 60);
    assert!(
        seen.values().all(|n| *n == 1),
        "a message was written twice"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// What the test's webhook receiver took: per message id, the idempotency keys it came with.
#[derive(Default)]
struct Taken {
    ids: parking_lot::Mutex<HashMap<String, Vec<String>>>,
}

async fn take(
    req: actix_web::HttpRequest,
    body: actix_web::web::Bytes,
    taken: actix_web::web::Data<Taken>,
) -> actix_web::HttpResponse {
    let record: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = record["message_id"].as_str().unwrap_or("").to_owned();
    let key = req
        .headers()
        .get("Idempotency-Key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    taken.ids.lock().entry(id).or_default().push(key);
    actix_web::HttpResponse::Ok().finish()
}

/// The store's disk "fills" (a file-size limit on the daemon process; the sink is a webhook, so
/// only the store writes files): sled then refuses every call until it is reopened. inboxd stops
/// taking mail, shows the full disk on the channel, loses nothing (no mail, no channel, no token),
/// and resumes by itself once the limit is lifted.
#[actix_rt::test]
async fn a_full_store_disk_pauses_ingestion_and_it_resumes_when_space_returns() {
    let taken = actix_web::web::Data::new(Taken::default());
    let data = taken.clone();
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .route("/hook", actix_web::web::post().to(take))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let hook_port = server.addrs()[0].port();
    actix_rt::spawn(server.run());

    let sim = inboxd::sim::spawn(inboxd::sim::SimOptions::default()).unwrap();
    let sim_client = SimClient::new(sim.url());
    let dir = tempfile::tempdir().unwrap();
    let port = inboxd_testkit::free_port().unwrap();
    let mut env = serve_env(dir.path(), port, &sim.url());
    env.push(("INBOXD_PROCESSOR__SINK".into(), "webhook".into()));
    env.push((
        "INBOXD_PROCESSOR__WEBHOOK_URL".into(),
        format!("http://127.0.0.1:{hook_port}/hook"),
    ));
    env.push((
        "INBOXD_WEBHOOK_SECRET".into(),
        "store-full-test-webhook-secret".into(),
    ));
    // 2 MiB per file: the new store fits, a few thousand ledger entries do not.
    let mut child = serve_with_file_size_limit(&env, 2048, "info", &dir.path().join("serve.log"));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    wait_healthy(&http, port, &mut child).await;
    let upn = "storefull@full.example";
    let id = authorized_channel(&http, port, &sim_client, upn).await;
    let channel_path = format!("/api/channels/{id}");

    // Mail until the store's files outgrow the limit: every message adds ledger entries.
    let mut sent = 0usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    let channel = loop {
        let messages: Vec<Value> = (0..50)
            .map(|i| json!({"subject": format!("small {sent}-{i}")}))
            .collect();
        sim_client
            .deliver(
                upn,
                &Delivery {
                    messages,
                    ..Delivery::default()
                },
            )
            .await
            .unwrap();
        sent += 50;
        actix_rt::time::sleep(Duration::from_millis(200)).await;
        let channel = api(&http, port, reqwest::Method::GET, &channel_path, None).await;
        if channel["last_error"]["source"] == "store" {
            break channel;
        }
        assert!(
            Instant::now() < deadline,
            "the full store never showed after {sent} messages: {channel}"
        );
    };
    assert_eq!(channel["status"], "backing_off", "{channel}");
    assert_eq!(channel["last_error"]["code"], "DiskFull", "{channel}");
    // Still full a few seconds later: the channel keeps waiting, it does not take mail it cannot
    // record.
    actix_rt::time::sleep(Duration::from_secs(3)).await;
    let unread_while_full = sim_client.mailbox_state(upn).await.unwrap().unread;
    assert!(
        unread_while_full > 0,
        "all mail was marked read although the store was full"
    );
    let channel = api(&http, port, reqwest::Method::GET, &channel_path, None).await;
    assert_eq!(channel["last_error"]["source"], "store", "{channel}");

    // Space returns.
    lift_file_size_limit(&child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while sim_client.mailbox_state(upn).await.unwrap().unread > 0 {
        assert!(
            Instant::now() < deadline,
            "ingestion did not resume: {}",
            api(&http, port, reqwest::Method::GET, &channel_path, None).await
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    let channel = api(&http, port, reqwest::Method::GET, &channel_path, None).await;
    assert_eq!(channel["status"], "active", "{channel}");

    // Nothing lost: every message reached the receiver; a repeat (mail delivered whose ledger
    // entry the full disk swallowed) carries the same idempotency key, so the receiver drops it.
    let state = sim_client.mailbox_state(upn).await.unwrap();
    assert_eq!(state.messages.len(), sent);
    let ids = taken.ids.lock().clone();
    for message in &state.messages {
        let keys = ids
            .get(&message.immutable_id)
            .unwrap_or_else(|| panic!("{} never reached the receiver", message.immutable_id));
        assert!(
            keys.iter().all(|k| !k.is_empty() && k == &keys[0]),
            "a repeat came with another idempotency key: {keys:?}"
        );
    }
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(
        log.contains("reopened after a write error"),
        "the recovery was not logged"
    );

    // The store works after the recovery, across a restart: the channel and its tokens are there.
    child.kill().unwrap();
    child.wait().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_inboxd"))
        .arg("serve")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_healthy(&http, port, &mut child).await;
    sim_client
        .deliver(
            upn,
            &Delivery {
                messages: vec![json!({"subject": "after the restart"})],
                ..Delivery::default()
            },
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while sim_client.mailbox_state(upn).await.unwrap().unread > 0 {
        assert!(
            Instant::now() < deadline,
            "the channel did not work after the restart"
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Microsoft throttles a mailbox for 20 s; the daemon is stopped with SIGTERM and restarted, then
/// killed with SIGKILL and restarted, inside that window. The `Retry-After` was made durable when
/// it arrived, so no incarnation sends the mailbox a request before it passes.
#[actix_rt::test]
async fn restarts_and_kills_during_a_retry_after_send_nothing_early() {
    let sim = inboxd::sim::spawn(inboxd::sim::SimOptions::default()).unwrap();
    let sim_client = SimClient::new(sim.url());
    let dir = tempfile::tempdir().unwrap();
    let port = inboxd_testkit::free_port().unwrap();
    let serve = Serve {
        env: serve_env(dir.path(), port, &sim.url()),
        log: dir.path().join("serve.log"),
    };
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut child = serve.spawn();
    wait_healthy(&http, port, &mut child).await;
    let upn = "held@held.example";
    let id = authorized_channel(&http, port, &sim_client, upn).await;
    let listed = || async {
        sim_client
            .counters(Some(upn))
            .await
            .unwrap()
            .requests
            .iter()
            .filter(|(endpoint, _)| *endpoint == "list_messages" || *endpoint == "delta")
            .map(|(_, n)| *n)
            .sum::<u64>()
    };
    let before = listed().await;
    sim_client
        .add_fault_json(&json!({"kind": "throttle", "retry_after": 20, "count": 1,
            "mailbox": upn, "endpoints": ["list_messages", "delta"]}))
        .await
        .unwrap();
    api(
        &http,
        port,
        reqwest::Method::POST,
        &format!("/api/channels/{id}/poll"),
        None,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while listed().await == before {
        assert!(Instant::now() < deadline, "the channel did not poll");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let throttled_at = Instant::now();
    sim_client
        .deliver(upn, &Delivery::generated(3))
        .await
        .unwrap();
    // SIGTERM, restart; then SIGKILL, restart: both well inside the 20 s.
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    child.wait().unwrap();
    child = serve.spawn();
    wait_healthy(&http, port, &mut child).await;
    actix_rt::time::sleep(Duration::from_secs(2)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    child = serve.spawn();
    wait_healthy(&http, port, &mut child).await;
    api(
        &http,
        port,
        reqwest::Method::POST,
        &format!("/api/channels/{id}/poll"),
        None,
    )
    .await;
    actix_rt::time::sleep(Duration::from_secs(2)).await;
    let early = sim_client.counters(None).await.unwrap();
    assert_eq!(early.early_count, 0, "{:?}", early.early_requests);
    // After the window the mail flows on its own.
    let deadline = Instant::now() + Duration::from_secs(40);
    while sim_client.mailbox_state(upn).await.unwrap().unread > 0 {
        assert!(Instant::now() < deadline, "the mail was never read");
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(throttled_at.elapsed() >= Duration::from_secs(19));
    let early = sim_client.counters(None).await.unwrap();
    assert_eq!(early.early_count, 0, "{:?}", early.early_requests);
    child.kill().unwrap();
    child.wait().unwrap();
}
