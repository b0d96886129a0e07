//! The command line as an operator meets it: help for every command, clear start-up refusals, keygen.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

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
