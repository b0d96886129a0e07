//! The command line as an operator meets it: help for every command, clear start-up refusals, keygen,
//! and `inboxd channel …` against a running daemon: the admin token from a flag, a file, the
//! environment or the configuration; `--json`; paging past 1,000 channels; `show` with Microsoft's
//! ids and the quarantine; a closed pipe; scheme-less `--server`; who must sign in to authorize.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Stdio};

use inboxd::domain::secret::MasterKey;
use inboxd::domain::{ChannelId, ChannelStatus, ClientId, Folder, Mailbox, TenantId};
use inboxd::store::{
    ChannelRecord, ErrorSource, FirstImport, LastError, LedgerEntry, LedgerState, Store,
    StoreOptions,
};
use inboxd_testkit::TestDaemon;
use serde_json::Value;

fn inboxd(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_inboxd"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .current_dir(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn help_describes_every_command_and_option() {
    let (code, out, _) = inboxd(&["--help"], &[]);
    assert_eq!(code, 0);
    for command in ["serve", "demo", "sim", "channel", "keygen", "--log-format"] {
        assert!(out.contains(command), "--help lacks {command}:\n{out}");
    }
    let (code, out, _) = inboxd(&["serve", "--help"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("--config") && out.contains("INBOXD_"), "{out}");
    let (_, out, _) = inboxd(&["channel", "--help"], &[]);
    for sub in [
        "add",
        "list",
        "show",
        "update",
        "remove",
        "enable",
        "disable",
        "authorize",
        "poll",
        "quarantine",
        "replay",
    ] {
        assert!(out.contains(sub), "channel --help lacks {sub}:\n{out}");
    }
    let (_, out, _) = inboxd(&["channel", "add", "--help"], &[]);
    assert!(
        out.contains("--client-secret-file") && out.contains("--tenant-id"),
        "{out}"
    );
    let (_, out, _) = inboxd(&["sim", "--help"], &[]);
    assert!(
        out.contains("--tls-cert") && out.contains("--listen"),
        "{out}"
    );
    for flag in [
        "--imap-listen",
        "--imaps-listen",
        "--imap-tls-cert",
        "--no-imap",
        "--imap-max-connections",
    ] {
        assert!(out.contains(flag), "sim --help lacks {flag}:\n{out}");
    }
}

#[tokio::test]
async fn inboxd_sim_prints_where_its_imap_server_listens() {
    let sim = inboxd_testkit::SimProcess::start(Path::new(env!("CARGO_BIN_EXE_inboxd"))).unwrap();
    let ctl = inboxd::sim::client::SimClient::new(sim.url.clone());
    assert_eq!(ctl.imap_addrs().await.unwrap().plain, Some(sim.imap));
    let c = inboxd_testkit::ImapClient::connect(sim.imap).unwrap();
    assert!(
        c.greeting.starts_with("* OK The Microsoft Exchange IMAP4"),
        "{}",
        c.greeting
    );
    // IMAP over TLS without a certificate is refused at start, naming what is missing.
    let (code, _, err) = inboxd(
        &[
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--imaps-listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert_ne!(code, 0);
    assert!(err.contains("--imap-tls-cert"), "{err}");
}

#[test]
fn serve_with_a_bad_config_names_every_wrong_key_and_exits_non_zero() {
    let (code, _, err) = inboxd(
        &["serve"],
        &[
            ("INBOXD_POLLING__INTERVAL_SECS", "0"),
            ("INBOXD_SERVER__LISTEN", "not-an-address"),
            ("INBOXD_CLOUD__NAME", "mars"),
            ("INBOXD_POLING__INTERVAL_SECS", "5"),
        ],
    );
    assert_ne!(code, 0);
    for key in [
        "polling.interval_secs",
        "server.listen",
        "cloud.name",
        "INBOXD_POLING__INTERVAL_SECS",
    ] {
        assert!(err.contains(key), "the error does not name {key}:\n{err}");
    }
    assert!(
        err.lines()
            .filter(|l| l.trim_start().starts_with("- "))
            .count()
            >= 4,
        "{err}"
    );
}

#[test]
fn serve_without_a_master_key_says_how_to_make_one() {
    let (code, _, err) = inboxd(
        &["serve"],
        &[("INBOXD_ADMIN_TOKEN", "an-admin-token-of-some-length")],
    );
    assert_ne!(code, 0);
    assert!(err.contains("inboxd keygen"), "{err}");
    assert!(
        err.contains("INBOXD_MASTER_KEY") || err.contains("master_key_file"),
        "{err}"
    );
}

#[test]
fn keygen_prints_a_usable_key_on_one_line() {
    let (code, out, _) = inboxd(&["keygen"], &[]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 1);
    assert!(inboxd::domain::secret::MasterKey::parse(out.trim()).is_ok());
    let (_, again, _) = inboxd(&["keygen"], &[]);
    assert_ne!(out, again);
}

#[test]
fn serve_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = inboxd_testkit::free_port().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_inboxd"))
        .arg("serve")
        .env(
            "INBOXD_MASTER_KEY",
            inboxd::domain::secret::MasterKey::generate().encode(),
        )
        .env("INBOXD_ADMIN_TOKEN", "an-admin-token-of-some-length")
        .env("INBOXD_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("INBOXD_STORE__PATH", dir.path().join("store"))
        .env(
            "INBOXD_PROCESSOR__JSONL_PATH",
            dir.path().join("mail.jsonl"),
        )
        .env("INBOXD_CLOUD__LOGIN_URL", "http://127.0.0.1:9")
        .env("INBOXD_CLOUD__GRAPH_URL", "http://127.0.0.1:9")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "serve did not listen");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let started = std::time::Instant::now();
    let status = child.wait().unwrap();
    assert!(status.success(), "serve exited with {status}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // The store was closed properly: it opens again.
    let store = inboxd::store::Store::open(
        &dir.path().join("store"),
        inboxd::domain::secret::MasterKey::generate(),
        Default::default(),
    );
    assert!(
        matches!(store, Err(inboxd::store::StoreError::WrongMasterKey)),
        "the store should exist and refuse another key"
    );
}

// ---- `inboxd channel …` against a running daemon -------------------------------------------------

/// How many channels the paging tests see: more than one page of the API (1,000).
const CHANNELS: usize = 1003;
const TRACE_ID: &str = "0f1e2d3c-aaaa-4bbb-8ccc-123456789abc";
const CORRELATION_ID: &str = "9a8b7c6d-dddd-4eee-8fff-cba987654321";
const QUARANTINED: usize = 7;

/// Runs the binary as a child process without blocking the daemon's runtime.
async fn cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    actix_rt::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        inboxd(&args, &env)
    })
    .await
    .unwrap()
}

/// Writes `CHANNELS - 1` disabled channels and one blocked channel, whose last error carries
/// Microsoft's trace and correlation ids and which holds quarantined messages, into a new store;
/// answers the blocked channel's id.
fn seed(store_path: &Path, key: &MasterKey) -> String {
    let store = Store::open(store_path, key.clone(), StoreOptions::default()).unwrap();
    let now = chrono::Utc::now();
    let record = |i: usize, status: ChannelStatus| ChannelRecord {
        id: ChannelId::generate(),
        name: format!("mailbox {i:04}").into(),
        tenant_id: TenantId::parse("contoso.com").unwrap(),
        client_id: ClientId::parse("11111111-2222-4333-8444-555555555555").unwrap(),
        mailbox: Mailbox::parse(&format!("user{i:04}@contoso.com")).unwrap(),
        folder: Folder::inbox(),
        enabled: status != ChannelStatus::Disabled,
        first_import: FirstImport::AllUnread,
        poll_mode: None,
        transport: inboxd::domain::Transport::Graph,
        created_at: now,
        updated_at: now,
        activated_at: None,
        status,
        last_error: None,
        last_poll_at: None,
        last_success_at: None,
    };
    for i in 1..CHANNELS {
        store
            .put_channel(&record(i, ChannelStatus::Disabled))
            .unwrap();
    }
    let mut blocked = record(0, ChannelStatus::Blocked);
    blocked.last_error = Some(Box::new(LastError {
        source: ErrorSource::IdentityPlatform,
        code: "AADSTS53003".into(),
        message: "Access has been blocked by Conditional Access policies.".into(),
        remedy: "Ask the tenant's admin to exclude the app from the policy.".into(),
        at: now,
        trace_id: Some(TRACE_ID.into()),
        correlation_id: Some(CORRELATION_ID.into()),
    }));
    store.put_channel(&blocked).unwrap();
    let entries: Vec<(String, LedgerEntry)> = (0..QUARANTINED)
        .map(|i| {
            (
                format!("AAMkQuarantined{i}"),
                LedgerEntry {
                    state: LedgerState::Quarantined,
                    failures: 5,
                    last_error: Some(format!("the sink refused it ({i})")),
                    received_at: None,
                    first_seen_at: now,
                    updated_at: now,
                },
            )
        })
        .collect();
    store.ledger_put_many(blocked.id, &entries).unwrap();
    blocked.id.to_string()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|err| panic!("not JSON ({err}):\n{text}"))
}

fn rows(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| l.split_whitespace().next().is_some_and(|id| id.len() == 36))
        .collect()
}

#[actix_web::test]
async fn channel_commands_match_the_admin_api() {
    let sim = inboxd::sim::spawn(inboxd::sim::SimOptions {
        workers: 1,
        ..inboxd::sim::SimOptions::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate();
    let blocked = seed(&dir.path().join("store"), &key);
    let daemon = TestDaemon::start_with_key(dir.path(), &sim.url(), 600, &[], key)
        .await
        .unwrap();
    let token = daemon.token.clone();
    let server = daemon.base.clone();
    let env = [
        ("INBOXD_SERVER", server.as_str()),
        ("INBOXD_ADMIN_TOKEN", token.as_str()),
    ];
    let no_secret = |text: &str| assert!(!text.contains(&token), "the token leaked:\n{text}");

    // One page by default, and it says that there is more.
    let (code, out, err) = cli(&["channel", "list"], &env).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(rows(&out).len(), 1000, "{out}");
    let last = out.lines().last().unwrap();
    assert!(
        last.contains("showing 1000 of 1003") && last.contains("--all"),
        "{last}"
    );

    // --all follows the pages to the end.
    let (code, out, err) = cli(&["channel", "list", "--all"], &env).await;
    assert_eq!(code, 0, "{err}");
    let all = rows(&out);
    assert_eq!(all.len(), CHANNELS);
    let ids: std::collections::HashSet<&str> = all
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(ids.len(), CHANNELS);
    assert_eq!(out.lines().last(), Some("1003 channel(s)"));
    let (code, out, err) = cli(&["channel", "list", "--all", "--json"], &env).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["channels"].as_array().unwrap().len(), CHANNELS);

    // A page of its own, as JSON: the API's answer as is; the truncation note on stderr.
    let (code, out, err) = cli(
        &["channel", "list", "--limit", "2", "--offset", "1", "--json"],
        &env,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let page = json(&out);
    assert_eq!(page["channels"].as_array().unwrap().len(), 2);
    assert_eq!(
        (page["offset"].as_u64(), page["total"].as_u64()),
        (Some(1), Some(1003))
    );
    assert!(
        err.contains("showing 2 of 1003") && err.contains("--offset 3"),
        "{err}"
    );
    let (code, out, _) = cli(&["channel", "list", "--status", "blocked"], &env).await;
    assert_eq!(code, 0);
    assert_eq!(rows(&out).len(), 1, "{out}");
    assert!(
        out.contains(&blocked) && out.contains("AADSTS53003"),
        "{out}"
    );

    // show: Microsoft's ids and the quarantine with the first messages' last errors.
    let (code, out, err) = cli(&["channel", "show", &blocked], &env).await;
    assert_eq!(code, 0, "{err}");
    for part in [
        TRACE_ID,
        CORRELATION_ID,
        "AADSTS53003",
        "quarantine:    7 message(s)",
        "AAMkQuarantined0",
        "the sink refused it (0)",
        "and 2 more",
    ] {
        assert!(out.contains(part), "show lacks {part}:\n{out}");
    }
    let (code, out, _) = cli(&["channel", "show", &blocked, "--json"], &env).await;
    assert_eq!(code, 0);
    let channel = json(&out);
    assert_eq!(channel["last_error"]["trace_id"], TRACE_ID);
    assert_eq!(channel["last_error"]["correlation_id"], CORRELATION_ID);
    let (code, out, _) = cli(&["channel", "quarantine", &blocked, "--json"], &env).await;
    assert_eq!(code, 0);
    assert_eq!(
        json(&out)["messages"].as_array().unwrap().len(),
        QUARANTINED
    );

    // The token from a file; one its group may read works, with a warning.
    let files = tempfile::tempdir().unwrap();
    let token_file = files.path().join("admin.token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    set_mode(&token_file, 0o600);
    let server_only = [("INBOXD_SERVER", server.as_str())];
    let file_arg = token_file.to_str().unwrap();
    let (code, out, err) = cli(
        &["channel", "list", "--limit", "1", "--token-file", file_arg],
        &server_only,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(rows(&out).len(), 1);
    assert!(!err.contains("warning"), "{err}");
    set_mode(&token_file, 0o644);
    let (code, _, err) = cli(
        &["channel", "list", "--limit", "1", "--token-file", file_arg],
        &server_only,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning") && err.contains("chmod 600"),
        "{err}"
    );
    no_secret(&err);
    set_mode(&token_file, 0o600);

    // The token from the configuration's security.admin_token_file.
    let config = files.path().join("inboxd.toml");
    std::fs::write(
        &config,
        format!("[security]\nadmin_token_file = \"{file_arg}\"\n"),
    )
    .unwrap();
    let (code, out, err) = cli(
        &[
            "channel",
            "list",
            "--limit",
            "1",
            "--config",
            config.to_str().unwrap(),
        ],
        &server_only,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(rows(&out).len(), 1);
    let (code, _, err) = cli(
        &["channel", "list", "--limit", "1"],
        &[
            ("INBOXD_SERVER", server.as_str()),
            ("INBOXD_SECURITY__ADMIN_TOKEN_FILE", file_arg),
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");

    // No token: every way to give one is named. A wrong one: refused, and not repeated.
    let (code, _, err) = cli(&["channel", "list"], &server_only).await;
    assert_ne!(code, 0);
    for way in [
        "--token-file",
        "INBOXD_ADMIN_TOKEN",
        "security.admin_token_file",
    ] {
        assert!(err.contains(way), "the error does not name {way}:\n{err}");
    }
    let wrong = "a-wrong-admin-token-0123456789";
    let (code, out, err) = cli(
        &["channel", "list"],
        &[
            ("INBOXD_SERVER", server.as_str()),
            ("INBOXD_ADMIN_TOKEN", wrong),
        ],
    )
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("401") && err.contains("--token-file"), "{err}");
    assert!(!err.contains(wrong) && !out.contains(wrong), "{err}");

    // --server without a scheme: a loopback address is http://; another host is explained.
    let bare = server.trim_start_matches("http://");
    let (code, out, err) = cli(
        &["channel", "list", "--limit", "1", "--server", bare],
        &[("INBOXD_ADMIN_TOKEN", token.as_str())],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(rows(&out).len(), 1);
    let (code, _, err) = cli(
        &["channel", "list", "--server", "inbox.example.com:8443"],
        &[("INBOXD_ADMIN_TOKEN", token.as_str())],
    )
    .await;
    assert_ne!(code, 0);
    assert!(
        err.contains("--server needs a scheme: https://inbox.example.com:8443"),
        "{err}"
    );
    assert!(!err.contains("relative URL"), "{err}");

    // add, authorize (who signs in, and the link), remove, as text and as JSON.
    let secret_file = files.path().join("secret.txt");
    std::fs::write(&secret_file, "Sim8Q~a-client-secret-for-the-cli-test\n").unwrap();
    let (code, out, err) = cli(
        &[
            "channel",
            "add",
            "--json",
            "--tenant-id",
            "fabrikam.com",
            "--client-id",
            "22222222-3333-4444-8555-666666666666",
            "--client-secret-file",
            secret_file.to_str().unwrap(),
            "--mailbox",
            "shared@fabrikam.com",
        ],
        &env,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let added = json(&out);
    let id = added["id"].as_str().unwrap().to_owned();
    assert_eq!(added["mailbox"], "shared@fabrikam.com");
    let (code, out, err) = cli(&["channel", "authorize", &id], &env).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("shared@fabrikam.com") && out.contains("Full Access"),
        "{out}"
    );
    assert!(!out.contains("admin of the"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with(&sim.url()) && l.contains("authorize")),
        "no link:\n{out}"
    );
    let (code, out, _) = cli(&["channel", "authorize", &id, "--json"], &env).await;
    assert_eq!(code, 0);
    assert!(json(&out)["authorization_url"].is_string());
    for command in ["disable", "enable"] {
        let (code, out, err) = cli(&["channel", command, &id, "--json"], &env).await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(json(&out)["id"], id.as_str());
    }
    let (code, out, _) = cli(&["channel", "remove", &id, "--json"], &env).await;
    assert_eq!(code, 0);
    assert_eq!(json(&out)["removed"], true);

    // A closed pipe ends the command quietly and successfully: standard output closed before
    // anything was written (deterministic), and a real `| head -1`.
    for json_flag in [false, true] {
        let mut args = vec!["channel", "list", "--all"];
        if json_flag {
            args.push("--json");
        }
        let (code, err) = closed_stdout(&args, &env).await;
        assert_eq!(code, 0, "{err}");
        assert!(
            !err.contains("Broken pipe") && !err.contains("panicked"),
            "{err}"
        );
    }
    let (code, out, err) = pipe_into_head(&env).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        !err.contains("Broken pipe") && !err.contains("panicked"),
        "{err}"
    );

    daemon.stop().await.unwrap();
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Runs the binary with a standard output whose reader is gone; answers its status and stderr.
async fn closed_stdout(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    actix_rt::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_inboxd"))
            .args(&args)
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// `inboxd channel list --all | head -1` in bash with `pipefail`: the pipeline's status is the
/// first failing command's.
async fn pipe_into_head(env: &[(&str, &str)]) -> (i32, String, String) {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    actix_rt::task::spawn_blocking(move || {
        let output = Command::new("bash")
            .args([
                "-c",
                "set -o pipefail; \"$INBOXD\" channel list --all | head -1",
            ])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("INBOXD", env!("CARGO_BIN_EXE_inboxd"))
            .envs(env)
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[actix_web::test]
async fn app_commands_record_rotate_and_protect_an_app() {
    let sim = inboxd::sim::spawn(inboxd::sim::SimOptions {
        workers: 1,
        ..inboxd::sim::SimOptions::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let daemon = TestDaemon::start(dir.path(), &sim.url(), 600, &[])
        .await
        .unwrap();
    let env = [
        ("INBOXD_SERVER", daemon.base.as_str()),
        ("INBOXD_ADMIN_TOKEN", daemon.token.as_str()),
    ];
    let secret = "Cli8Q~a-secret-value-never-printed";
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, secret).unwrap();
    let pem =
        inboxd_testkit::certificate_pem("cli", chrono::Utc::now() + chrono::Duration::days(90))
            .unwrap();
    let pem_file = dir.path().join("app.pem");
    std::fs::write(&pem_file, &pem).unwrap();
    let app = "contoso.com/11111111-2222-4333-8444-555555555555";
    let secret_path = secret_file.to_str().unwrap();
    let pem_path = pem_file.to_str().unwrap();

    let (code, out, err) = cli(
        &[
            "app",
            "add",
            "--tenant-id",
            "contoso.com",
            "--client-id",
            "11111111-2222-4333-8444-555555555555",
            "--client-secret-file",
            secret_path,
            "--client-secret-expires-at",
            "2031-01-31",
            "--json",
        ],
        &env,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let added = json(&out);
    assert_eq!(added["id"], app);
    assert_eq!(added["credential_kind"], "secret");
    // A channel of the app needs no secret of its own.
    let (code, _, err) = cli(
        &[
            "channel",
            "add",
            "--tenant-id",
            "contoso.com",
            "--client-id",
            "11111111-2222-4333-8444-555555555555",
            "--mailbox",
            "desk@contoso.com",
        ],
        &env,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cli(&["app", "list"], &env).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(app) && out.contains("1 app(s)"), "{out}");

    let (code, out, err) = cli(
        &["app", "rotate", app, "--client-certificate-file", pem_path],
        &env,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("certificate") && out.contains("thumbprint:"),
        "{out}"
    );
    let (code, out, err) = cli(&["app", "show", app, "--json"], &env).await;
    assert_eq!(code, 0, "{err}");
    let shown = json(&out);
    assert_eq!(shown["credential_kind"], "certificate");
    assert_eq!(shown["channels"], 1);
    assert!(shown["rotated_at"].is_string());

    // Still used: refused with what to do, and nothing changes.
    let (code, _, err) = cli(&["app", "remove", app], &env).await;
    assert_ne!(code, 0);
    assert!(err.contains("used by 1 channel"), "{err}");
    let (code, _, err) = cli(&["app", "rotate", app], &env).await;
    assert_ne!(code, 0);
    assert!(err.contains("nothing to rotate"), "{err}");
    let (code, _, err) = cli(&["app", "show", "contoso.com"], &env).await;
    assert_ne!(code, 0);
    assert!(err.contains("tenant/client"), "{err}");
    let (_, everything, _) = cli(&["app", "list", "--json"], &env).await;
    assert!(!everything.contains(secret) && !everything.contains("PRIVATE KEY"));
    daemon.stop().await.unwrap();
}
