//! Channels on the IMAP transport (issue 17), against the simulator's IMAP server: the
//! authorization asks for Exchange Online's IMAP scope, mail is ingested over IMAP and marked
//! `\Seen` after delivery, a refused XOAUTH2 sign-in shows the status and remedy, and a channel
//! moved Graph → IMAP → Graph with mail arriving throughout delivers every mail once.

use std::collections::HashMap;
use std::time::Duration;

use inboxd::sim::SimOptions;
use inboxd::sim::client::{AppRegistration, Delivery, SimClient};
use inboxd_testkit::TestDaemon;
use serde_json::{Value, json};

use crate::helpers::{REDIRECT, until};

/// A simulator with its IMAP server, and a daemon whose IMAP host is that server.
struct ImapWorld {
    daemon: TestDaemon,
    sim: SimClient,
    sim_url: String,
    _dir: tempfile::TempDir,
    _handle: inboxd::sim::SimHandle,
}

struct Account {
    tenant: String,
    client_id: String,
    secret: String,
    upn: String,
}

async fn imap_world(interval_secs: u64) -> ImapWorld {
    let handle = inboxd::sim::spawn(SimOptions::default()).unwrap();
    let sim_url = handle.url();
    let imap = handle.imap_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let daemon = TestDaemon::start(
        dir.path(),
        &sim_url,
        interval_secs,
        &[("INBOXD_CLOUD__IMAP_URL", format!("imap://{imap}"))],
    )
    .await
    .unwrap();
    ImapWorld {
        daemon,
        sim: SimClient::new(sim_url.clone()),
        sim_url,
        _dir: dir,
        _handle: handle,
    }
}

impl ImapWorld {
    async fn account(&self, upn: &str) -> Account {
        let domain = upn.split('@').nth(1).unwrap();
        let tenant = self.sim.register_tenant(None, &[domain]).await.unwrap();
        let app = self
            .sim
            .register_app(&AppRegistration {
                tenant_id: tenant.clone(),
                redirect_uris: vec![REDIRECT.to_owned()],
                ..AppRegistration::default()
            })
            .await
            .unwrap();
        self.sim.register_user(&tenant, upn, &[]).await.unwrap();
        Account {
            tenant,
            client_id: app.client_id,
            secret: app.client_secret,
            upn: upn.to_owned(),
        }
    }

    async fn add(&self, account: &Account, transport: &str) -> String {
        let (status, channel) = self
            .daemon
            .api(
                reqwest::Method::POST,
                "/api/channels",
                Some(json!({
                    "tenant_id": account.tenant,
                    "client_id": account.client_id,
                    "client_secret": account.secret,
                    "mailbox": account.upn,
                    "first_import": "all",
                    "transport": transport,
                })),
            )
            .await
            .unwrap();
        assert_eq!(status, 201, "{channel}");
        assert_eq!(channel["transport"], transport);
        channel["id"].as_str().unwrap().to_owned()
    }

    async fn authorize(&self, id: &str) {
        let (status, page) = self.daemon.authorize(id).await.unwrap();
        assert_eq!(status, 200, "{page}");
    }

    async fn wait(&self, id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        self.daemon
            .wait_channel(id, Duration::from_secs(20), check)
            .await
            .unwrap_or_else(|err| panic!("waiting for {what}: {err:#}"))
    }

    async fn switch(&self, id: &str, transport: &str) {
        let (status, body) = self
            .daemon
            .api(
                reqwest::Method::PATCH,
                &format!("/api/channels/{id}"),
                Some(json!({ "transport": transport })),
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["transport"], transport);
    }

    async fn imap_requests(&self, upn: &str) -> u64 {
        let counters = self.sim.counters(Some(upn)).await.unwrap();
        counters
            .requests
            .iter()
            .filter(|(k, _)| k.starts_with("imap_"))
            .map(|(_, v)| *v)
            .sum()
    }

    async fn graph_polls(&self, upn: &str) -> u64 {
        let counters = self.sim.counters(Some(upn)).await.unwrap();
        ["list_messages", "delta"]
            .iter()
            .map(|e| counters.requests.get(*e).copied().unwrap_or(0))
            .sum()
    }

    /// Sink lines per Internet Message-ID.
    fn delivered(&self) -> HashMap<String, usize> {
        let mut seen = HashMap::new();
        for line in self.daemon.sink_lines().unwrap() {
            let id = line["internet_message_id"].as_str().unwrap().to_owned();
            *seen.entry(id).or_insert(0) += 1;
        }
        seen
    }
}

#[actix_rt::test]
async fn an_imap_channel_authorizes_for_exchange_ingests_over_imap_and_marks_seen() {
    let w = imap_world(1).await;
    let account = w.account("helpdesk@imap-one.example").await;
    let id = w.add(&account, "imap").await;
    // The sign-in asks for Exchange Online's IMAP scope, not Graph's.
    let (_, start) = w
        .daemon
        .api(
            reqwest::Method::POST,
            &format!("/api/channels/{id}/authorize"),
            None,
        )
        .await
        .unwrap();
    let link = url::Url::parse(start["authorization_url"].as_str().unwrap()).unwrap();
    let query: HashMap<_, _> = link.query_pairs().into_owned().collect();
    assert_eq!(
        query["scope"],
        "offline_access https://outlook.office.com/IMAP.AccessAsUser.All"
    );
    w.sim
        .deliver(&account.upn, &Delivery::generated(20))
        .await
        .unwrap();
    w.authorize(&id).await;
    w.wait(&id, "active", |c| c["status"] == "active").await;
    until(Duration::from_secs(20), "20 mails in the sink", || async {
        w.daemon.sink_lines().unwrap().len() >= 20
    })
    .await;
    until(Duration::from_secs(20), "every mail \\Seen", || async {
        w.sim.mailbox_state(&account.upn).await.unwrap().unread == 0
    })
    .await;
    let lines = w.daemon.sink_lines().unwrap();
    assert_eq!(lines.len(), 20);
    assert!(w.delivered().values().all(|n| *n == 1));
    assert!(
        lines
            .iter()
            .all(|l| l["message_id"].as_str().unwrap().starts_with("imap:"))
    );
    assert!(
        lines
            .iter()
            .all(|l| !l["subject"].as_str().unwrap().is_empty())
    );
    assert!(w.imap_requests(&account.upn).await > 0);
    assert_eq!(
        w.graph_polls(&account.upn).await,
        0,
        "an IMAP channel never lists mail over Graph"
    );
    // `channel show` and the API say which transport the channel uses.
    let channel = w.daemon.channel(&id).await.unwrap();
    assert_eq!(channel["transport"], "imap");
}

#[actix_rt::test]
async fn a_refused_imap_sign_in_shows_the_status_and_the_remedy() {
    let w = imap_world(1).await;
    let account = w.account("shared@imap-two.example").await;
    let id = w.add(&account, "imap").await;
    w.authorize(&id).await;
    w.wait(&id, "active", |c| c["status"] == "active").await;
    // An admin switches IMAP off for the mailbox (Set-CASMailbox -ImapEnabled $false).
    let http = reqwest::Client::new();
    let off = http
        .put(format!("{}/_sim/mailboxes/{}/imap", w.sim_url, account.upn))
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert!(off.status().is_success());
    w.sim
        .deliver(&account.upn, &Delivery::generated(2))
        .await
        .unwrap();
    let channel = w
        .wait(&id, "needs_reauthorization", |c| {
            c["status"] == "needs_reauthorization"
        })
        .await;
    let error = &channel["last_error"];
    assert_eq!(error["source"], "imap");
    assert_eq!(error["code"], "ImapAuthenticateFailed");
    let remedy = error["remedy"].as_str().unwrap();
    assert!(remedy.contains("IMAP is switched off"), "{remedy}");
    assert!(remedy.contains("IMAP.AccessAsUser.All"), "{remedy}");
    assert!(remedy.contains("Full Access"), "{remedy}");
    assert!(w.daemon.sink_lines().unwrap().is_empty());
    assert_eq!(w.sim.mailbox_state(&account.upn).await.unwrap().unread, 2);
    // IMAP back on and the channel authorized again: the mail arrives, once.
    let on = http
        .put(format!("{}/_sim/mailboxes/{}/imap", w.sim_url, account.upn))
        .json(&json!({"enabled": true}))
        .send()
        .await
        .unwrap();
    assert!(on.status().is_success());
    w.authorize(&id).await;
    w.wait(&id, "active", |c| c["status"] == "active").await;
    until(Duration::from_secs(20), "the 2 mails", || async {
        w.daemon.sink_lines().unwrap().len() == 2
    })
    .await;
}

#[actix_rt::test]
async fn moving_a_channel_graph_to_imap_to_graph_with_mail_arriving_delivers_every_mail_once() {
    let w = imap_world(1).await;
    let account = w.account("moving@imap-three.example").await;
    let id = w.add(&account, "graph").await;
    w.authorize(&id).await;
    w.wait(&id, "active", |c| c["status"] == "active").await;
    // Mail arrives throughout, a few at a time.
    let sim = w.sim.clone();
    let upn = account.upn.clone();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sender = actix_rt::spawn(async move {
        let mut sent = 0usize;
        loop {
            sim.deliver(&upn, &Delivery::generated(3)).await.unwrap();
            sent += 3;
            tokio::select! {
                _ = &mut stop_rx => return sent,
                _ = actix_rt::time::sleep(Duration::from_millis(150)) => {}
            }
        }
    });
    until(Duration::from_secs(20), "Graph delivering", || async {
        w.daemon.sink_lines().unwrap().len() >= 6
    })
    .await;
    // Graph → IMAP: the Graph-only grant lacks consent for Exchange Online, so the channel asks
    // for a sign-in (AADSTS65001) that asks for the IMAP scope.
    w.switch(&id, "imap").await;
    let channel = w
        .wait(&id, "a new sign-in", |c| {
            c["status"] == "needs_reauthorization"
        })
        .await;
    assert_eq!(channel["last_error"]["code"], "AADSTS65001", "{channel:#}");
    w.authorize(&id).await;
    w.wait(&id, "active on IMAP", |c| c["status"] == "active")
        .await;
    let before = w.imap_requests(&account.upn).await;
    let delivered_before = w.daemon.sink_lines().unwrap().len();
    until(Duration::from_secs(20), "IMAP delivering", || async {
        w.daemon.sink_lines().unwrap().len() >= delivered_before + 6
    })
    .await;
    assert!(w.imap_requests(&account.upn).await > before);
    // IMAP → Graph: the user consented to both resources now, so the same refresh token gets a
    // Graph token: no sign-in needed.
    w.switch(&id, "graph").await;
    let polls = w.graph_polls(&account.upn).await;
    until(Duration::from_secs(20), "Graph polling again", || async {
        w.graph_polls(&account.upn).await > polls
    })
    .await;
    let delivered_before = w.daemon.sink_lines().unwrap().len();
    until(
        Duration::from_secs(20),
        "Graph delivering again",
        || async { w.daemon.sink_lines().unwrap().len() >= delivered_before + 6 },
    )
    .await;
    stop_tx.send(()).unwrap();
    let sent = sender.await.unwrap();
    until(Duration::from_secs(30), "every mail delivered", || async {
        w.daemon.sink_lines().unwrap().len() >= sent
            && w.sim.mailbox_state(&account.upn).await.unwrap().unread == 0
    })
    .await;
    // Settle: a few more polls must not deliver anything again.
    actix_rt::time::sleep(Duration::from_secs(3)).await;
    let delivered = w.delivered();
    let doubled: Vec<_> = delivered.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "delivered twice: {doubled:?}");
    assert_eq!(delivered.len(), sent, "every mail once");
    let lines = w.daemon.sink_lines().unwrap();
    let over_imap = lines
        .iter()
        .filter(|l| l["message_id"].as_str().unwrap().starts_with("imap:"))
        .count();
    assert!(
        over_imap > 0 && over_imap < sent,
        "both transports delivered"
    );
    let channel = w.daemon.channel(&id).await.unwrap();
    assert_eq!(
        (channel["status"].as_str(), channel["transport"].as_str()),
        (Some("active"), Some("graph"))
    );
}

#[actix_rt::test]
async fn imap_throttling_a_bye_and_a_dropped_connection_lose_and_double_nothing() {
    let w = imap_world(1).await;
    let account = w.account("busy@imap-four.example").await;
    let id = w.add(&account, "imap").await;
    w.authorize(&id).await;
    w.wait(&id, "active", |c| c["status"] == "active").await;
    // Exchange throttles the fetches ("Suggested Backoff Time"), says BYE instead of storing
    // \Seen once, and drops a search's connection without a word.
    for spec in [
        json!({"kind": "throttle", "retry_after": 1.5, "mailbox": account.upn,
               "endpoints": ["imap_fetch"], "count": 2}),
        json!({"kind": "imap_bye", "mailbox": account.upn, "endpoints": ["imap_store"], "count": 1}),
        json!({"kind": "reset", "mailbox": account.upn, "endpoints": ["imap_search"], "count": 1}),
    ] {
        let answer = w.sim.add_fault_json(&spec).await.unwrap();
        assert!(answer["id"].as_u64().is_some(), "{answer}");
    }
    w.sim
        .deliver(&account.upn, &Delivery::generated(30))
        .await
        .unwrap();
    let throttled = w
        .wait(&id, "the throttling shown", |c| {
            c["last_error"]["code"] == "ImapThrottled"
        })
        .await;
    assert_eq!(throttled["status"], "backing_off", "{throttled:#}");
    assert_eq!(throttled["last_error"]["source"], "imap");
    w.wait(&id, "active again", |c| c["status"] == "active")
        .await;
    until(Duration::from_secs(30), "every mail \\Seen", || async {
        w.sim.mailbox_state(&account.upn).await.unwrap().unread == 0
    })
    .await;
    let delivered = w.delivered();
    assert_eq!(delivered.len(), 30);
    assert!(delivered.values().all(|n| *n == 1), "{delivered:?}");
}
