//! The daemon against a real IMAP server: a Dovecot of the test's own (the test kit's), whose
//! OAuth2 passdb validates every XOAUTH2 token through the simulator's RFC 7662 introspection.
//! The daemon authorizes an IMAP channel through the simulator's identity platform, ingests the
//! mail delivered into Dovecot's Maildir and sets `\Seen` on Dovecot after delivery, exactly as on
//! the simulator; an expired token is refused by Dovecot and replaced by a refresh; a token without
//! the scope the server requires is refused and the channel shows `ImapAuthenticateFailed` with
//! its remedy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use inboxd::sim::client::{AppRegistration, SimClient};
use inboxd::sim::{SimHandle, SimOptions};
use inboxd_testkit::{Dovecot, TestDaemon, eventually};
use serde_json::{Value, json};

const SECRET: &str = "dovecot-daemon-secret";
const REDIRECT: &str = "http://127.0.0.1/oauth/callback";

struct World {
    daemon: TestDaemon,
    dovecot: Dovecot,
    sim: SimClient,
    upn: String,
    id: String,
    _dir: tempfile::TempDir,
    _sim: SimHandle,
}

/// A simulator (the identity platform), a Dovecot asking it about tokens (requiring `scope`), a
/// daemon whose IMAP server is that Dovecot, and an IMAP channel added for `upn` (not authorized).
async fn world(upn: &str, scope: Option<&str>) -> World {
    let handle = inboxd::sim::spawn(SimOptions::default()).unwrap();
    let sim = SimClient::new(handle.url());
    let domain = upn.split('@').nth(1).unwrap();
    let tenant = sim.register_tenant(None, &[domain]).await.unwrap();
    let app = sim
        .register_app(&AppRegistration {
            tenant_id: tenant.clone(),
            client_secret: Some(SECRET.into()),
            redirect_uris: vec![REDIRECT.into()],
            ..AppRegistration::default()
        })
        .await
        .unwrap();
    sim.register_user(&tenant, upn, &[]).await.unwrap();
    let introspection = format!(
        "http://{}:{SECRET}@{}/_sim/introspect",
        app.client_id,
        handle.addr()
    );
    let dovecot = Dovecot::start_with_scope(&introspection, scope).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let daemon = TestDaemon::start(
        dir.path(),
        &handle.url(),
        1,
        &[(
            "INBOXD_CLOUD__IMAP_URL",
            format!("imap://{}", dovecot.addr()),
        )],
    )
    .await
    .unwrap();
    let (status, channel) = daemon
        .api(
            reqwest::Method::POST,
            "/api/channels",
            Some(json!({
                "tenant_id": tenant,
                "client_id": app.client_id,
                "client_secret": SECRET,
                "mailbox": upn,
                "first_import": "all",
                "transport": "imap",
            })),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{channel}");
    World {
        id: channel["id"].as_str().unwrap().to_owned(),
        daemon,
        dovecot,
        sim,
        upn: upn.to_owned(),
        _dir: dir,
        _sim: handle,
    }
}

fn message(n: usize, upn: &str) -> Vec<u8> {
    format!(
        "From: Bob Kelly <bob@fabrikam.example>\r\nTo: {upn}\r\nSubject: Dovecot mail {n}\r\nDate: Tue, 01 Dec 2026 08:00:{:02} +0000\r\nMessage-ID: <dovecot-{n}@fabrikam.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBody of mail {n}.\r\n",
        n % 60
    )
    .into_bytes()
}

/// The messages of a Maildir and whether each carries the Seen flag (`:2,…S…` in its name).
fn maildir_flags(maildir: &Path) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        for entry in std::fs::read_dir(maildir.join(sub)).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            let seen = name
                .rsplit_once(":2,")
                .is_some_and(|(_, flags)| flags.contains('S'));
            out.push((name, seen));
        }
    }
    out
}

impl World {
    async fn authorize(&self) {
        let (status, page) = self.daemon.authorize(&self.id).await.unwrap();
        assert_eq!(status, 200, "{page}");
    }

    fn by_message_id(&self) -> HashMap<String, Value> {
        let mut out = HashMap::new();
        for line in self.daemon.sink_lines().unwrap() {
            let id = line["internet_message_id"].as_str().unwrap().to_owned();
            assert!(
                out.insert(id.clone(), line).is_none(),
                "{id} delivered twice"
            );
        }
        out
    }
}

#[actix_rt::test]
async fn the_daemon_authorizes_ingests_and_marks_seen_on_dovecot() {
    let w = world(
        "adele@dovecot-one.example",
        Some(inboxd_testkit::dovecot::IMAP_SCOPE),
    )
    .await;
    for n in 1..=5 {
        w.dovecot.deliver(&w.upn, &message(n, &w.upn)).unwrap();
    }
    w.authorize().await;
    let maildir = w.dovecot.maildir(&w.upn).unwrap();
    eventually(
        Duration::from_secs(20),
        "5 mails delivered and \\Seen on Dovecot",
        || async {
            Ok(w.daemon.sink_lines()?.len() == 5
                && maildir_flags(&maildir).iter().all(|(_, seen)| *seen))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", w.dovecot.log()));
    let delivered = w.by_message_id();
    for n in 1..=5 {
        let line = &delivered[&format!("<dovecot-{n}@fabrikam.example>")];
        assert_eq!(line["subject"], format!("Dovecot mail {n}"));
        assert_eq!(line["from"]["address"], "bob@fabrikam.example");
        assert_eq!(
            line["body"].as_str().unwrap().trim(),
            format!("Body of mail {n}.")
        );
        assert!(line["message_id"].as_str().unwrap().starts_with("imap:"));
    }
    let channel = w.daemon.channel(&w.id).await.unwrap();
    assert_eq!(channel["status"], "active", "{channel:#}");
    // More mail: delivered once, nothing of the first five again.
    for n in 6..=8 {
        w.dovecot.deliver(&w.upn, &message(n, &w.upn)).unwrap();
    }
    eventually(Duration::from_secs(20), "8 mails, all \\Seen", || async {
        Ok(w.daemon.sink_lines()?.len() == 8
            && maildir_flags(&maildir).iter().all(|(_, seen)| *seen))
    })
    .await
    .unwrap();
    assert_eq!(w.by_message_id().len(), 8);
    actix_rt::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        w.daemon.sink_lines().unwrap().len(),
        8,
        "polls went on without redelivering"
    );

    // The token expires (the identity platform's clock moves past it, the daemon's does not):
    // Dovecot refuses it, the daemon refreshes and goes on.
    w.sim.advance_clock(2.0 * 3600.0).await.unwrap();
    w.dovecot.deliver(&w.upn, &message(9, &w.upn)).unwrap();
    eventually(
        Duration::from_secs(20),
        "the 9th mail after a refresh",
        || async { Ok(w.daemon.sink_lines()?.len() == 9) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", w.dovecot.log()));
    let log = w.dovecot.log();
    assert!(
        log.contains("oauth2 failed"),
        "Dovecot never refused the expired token: {log}"
    );
    let channel = w.daemon.channel(&w.id).await.unwrap();
    assert_eq!(channel["status"], "active", "{channel:#}");
}

#[actix_rt::test]
async fn a_token_dovecot_does_not_accept_shows_authenticate_failed_with_its_remedy() {
    // This server accepts only tokens for POP: the daemon's IMAP token lacks the scope it needs,
    // as a token for another resource, or without the IMAP permission, would.
    let w = world(
        "megan@dovecot-two.example",
        Some("https://outlook.office.com/POP.AccessAsUser.All"),
    )
    .await;
    w.dovecot.deliver(&w.upn, &message(1, &w.upn)).unwrap();
    w.authorize().await;
    let channel = w
        .daemon
        .wait_channel(&w.id, Duration::from_secs(30), |c| {
            c["status"] == "needs_reauthorization"
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", w.dovecot.log()));
    assert_eq!(channel["last_error"]["code"], "ImapAuthenticateFailed");
    assert_eq!(channel["last_error"]["source"], "imap");
    let remedy = channel["last_error"]["remedy"].as_str().unwrap();
    assert!(remedy.contains("IMAP.AccessAsUser.All"), "{remedy}");
    assert!(
        w.dovecot.log().contains("Token is not valid for scope"),
        "{}",
        w.dovecot.log()
    );
    // Nothing delivered, nothing \Seen.
    assert!(w.daemon.sink_lines().unwrap().is_empty());
    let maildir = w.dovecot.maildir(&w.upn).unwrap();
    assert!(maildir_flags(&maildir).iter().all(|(_, seen)| !*seen));
}
