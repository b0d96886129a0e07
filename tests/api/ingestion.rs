use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use inboxd::domain::secret::{MasterKey, WebhookSecret};
use inboxd::sim::client::Delivery;
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::helpers::{World, until, world};

#[actix_rt::test]
async fn new_mail_reaches_the_sink_with_its_fields_and_is_marked_read() {
    let world = world(1, &[]).await;
    let (id, mailbox) = world.active_channel("inbox@contoso.example").await;
    let mut delivery = Delivery::generated(5);
    delivery.meeting_requests = true;
    delivery.messages = vec![json!({
        "subject": "Printer on fire",
        "from": {"name": "Ann Example", "address": "ann@customer.example"},
        "to": [{"name": "Support", "address": mailbox.upn}],
        "cc": [{"address": "boss@customer.example"}],
        "body_text": "It is on fire.",
        "body_html": "<p>It is on fire.</p>",
        "internet_message_id": "<fire-1@customer.example>",
    })];
    let delivered = world
        .sim_client
        .deliver(&mailbox.upn, &delivery)
        .await
        .unwrap();
    let expected = delivered.count;
    assert!(expected >= 6);

    until(
        Duration::from_secs(10),
        "every message in the sink",
        || async { world.daemon.sink_lines().unwrap().len() >= expected },
    )
    .await;
    until(
        Duration::from_secs(10),
        "every message marked read",
        || async {
            world
                .sim_client
                .mailbox_state(&mailbox.upn)
                .await
                .unwrap()
                .unread
                == 0
        },
    )
    .await;

    let lines = world.daemon.sink_lines().unwrap();
    assert_eq!(lines.len(), expected, "a message was written twice");
    let fire = lines
        .iter()
        .find(|l| l["subject"] == "Printer on fire")
        .expect("the explicit message");
    assert_eq!(fire["channel_id"], id.as_str());
    assert_eq!(fire["mailbox"], mailbox.upn.as_str());
    assert_eq!(fire["internet_message_id"], "<fire-1@customer.example>");
    assert_eq!(fire["from"]["address"], "ann@customer.example");
    assert_eq!(fire["to"][0]["address"], mailbox.upn.as_str());
    assert_eq!(fire["cc"][0]["address"], "boss@customer.example");
    assert_eq!(fire["body_content_type"], "text");
    assert!(fire["body"].as_str().unwrap().contains("on fire"));
    for field in [
        "message_id",
        "received_at",
        "has_attachments",
        "ingested_at",
    ] {
        assert!(!fire[field].is_null(), "{field} missing: {fire}");
    }
    let state = world.sim_client.mailbox_state(&mailbox.upn).await.unwrap();
    let ids: Vec<&str> = lines
        .iter()
        .map(|l| l["message_id"].as_str().unwrap())
        .collect();
    for message in &state.messages {
        assert!(
            ids.contains(&message.immutable_id.as_str()),
            "{} missing from the sink",
            message.immutable_id
        );
    }
    // Attachments carry their metadata; the meeting request did not break anything.
    assert!(
        lines
            .iter()
            .any(|l| l["has_attachments"] == true
                && !l["attachments"].as_array().unwrap().is_empty())
    );
    assert!(
        lines
            .iter()
            .any(|l| l["kind"].as_str().unwrap_or("").contains("eventMessage")),
        "no meeting request seen"
    );
}

/// A webhook receiver whose behaviour the test switches.
#[derive(Default)]
struct Receiver {
    /// Answer 503 to everything.
    down: AtomicBool,
    /// Answer 422 to subjects containing "poison".
    reject_poison: AtomicBool,
    attempts: AtomicUsize,
    /// (idempotency key, signature ok, subject) of every accepted delivery.
    accepted: Mutex<Vec<(String, bool, String)>>,
    keys_seen: Mutex<Vec<String>>,
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<Receiver>>,
) -> HttpResponse {
    state.attempts.fetch_add(1, Ordering::SeqCst);
    let key = req
        .headers()
        .get("Idempotency-Key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    state.keys_seen.lock().push(key.clone());
    if state.down.load(Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable().finish();
    }
    let record: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let subject = record["subject"].as_str().unwrap_or("").to_owned();
    if state.reject_poison.load(Ordering::SeqCst) && subject.contains("poison") {
        return HttpResponse::UnprocessableEntity().body("cannot process this one");
    }
    let signature = req
        .headers()
        .get("X-Inboxd-Signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let secret = WebhookSecret::new("webhook-secret-for-tests").unwrap();
    let ok = inboxd::sink::verify_signature(&secret, &body, signature);
    state.accepted.lock().push((key, ok, subject));
    HttpResponse::Ok().finish()
}

async fn webhook_world(receiver: Arc<Receiver>) -> World {
    let data = web::Data::new(receiver);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/hook", web::post().to(receive))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let port = server.addrs()[0].port();
    actix_rt::spawn(server.run());
    let sim = inboxd::sim::spawn(inboxd::sim::SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let extra = [
        ("INBOXD_PROCESSOR__SINK", "webhook".to_owned()),
        (
            "INBOXD_PROCESSOR__WEBHOOK_URL",
            format!("http://127.0.0.1:{port}/hook"),
        ),
        ("INBOXD_PROCESSOR__WEBHOOK_MAX_ATTEMPTS", "2".to_owned()),
        ("INBOXD_RETRY__MAX_DELIVERY_ATTEMPTS", "2".to_owned()),
    ];
    let daemon = inboxd_testkit::TestDaemon::start_with(
        dir.path(),
        &sim.url(),
        1,
        &extra,
        MasterKey::generate(),
        Some(WebhookSecret::new("webhook-secret-for-tests").unwrap()),
    )
    .await
    .unwrap();
    World {
        daemon,
        sim_client: inboxd::sim::client::SimClient::new(sim.url()),
        sim_url: sim.url(),
        dir,
        _sim: sim,
    }
}

#[actix_rt::test]
async fn a_failing_webhook_leaves_the_mail_unread_and_retries_it() {
    let receiver = Arc::new(Receiver::default());
    receiver.down.store(true, Ordering::SeqCst);
    let world = webhook_world(Arc::clone(&receiver)).await;
    let (id, mailbox) = world.active_channel("hook@contoso.example").await;
    world
        .sim_client
        .deliver(&mailbox.upn, &Delivery::generated(2))
        .await
        .unwrap();

    until(
        Duration::from_secs(10),
        "several failed attempts",
        || async { receiver.attempts.load(Ordering::SeqCst) >= 4 },
    )
    .await;
    let channel = world
        .wait_status(&id, "backing_off", Duration::from_secs(5))
        .await;
    assert_eq!(channel["last_error"]["source"], "sink", "{channel:#}");
    assert_eq!(
        world
            .sim_client
            .mailbox_state(&mailbox.upn)
            .await
            .unwrap()
            .unread,
        2,
        "mail marked read although the webhook failed"
    );

    receiver.down.store(false, Ordering::SeqCst);
    until(
        Duration::from_secs(15),
        "the mail delivered and read",
        || async {
            world
                .sim_client
                .mailbox_state(&mailbox.upn)
                .await
                .unwrap()
                .unread
                == 0
        },
    )
    .await;
    let accepted = receiver.accepted.lock().clone();
    assert_eq!(accepted.len(), 2, "{accepted:?}");
    assert!(
        accepted.iter().all(|(_, signed, _)| *signed),
        "a bad signature: {accepted:?}"
    );
    // Every retry of a message carried the same idempotency key.
    for (key, _, _) in &accepted {
        assert!(key.starts_with(&format!("{id}:")), "{key}");
        assert!(
            receiver
                .keys_seen
                .lock()
                .iter()
                .filter(|k| *k == key)
                .count()
                >= 2
        );
    }
    world
        .wait_status(&id, "active", Duration::from_secs(5))
        .await;
}

#[actix_rt::test]
async fn a_message_that_keeps_failing_is_quarantined_and_can_be_replayed() {
    let receiver = Arc::new(Receiver::default());
    receiver.reject_poison.store(true, Ordering::SeqCst);
    let world = webhook_world(Arc::clone(&receiver)).await;
    let (id, mailbox) = world.active_channel("q@contoso.example").await;
    let mut delivery = Delivery::generated(2);
    delivery.messages = vec![json!({"subject": "poison pill", "body_text": "x"})];
    world
        .sim_client
        .deliver(&mailbox.upn, &delivery)
        .await
        .unwrap();

    until(
        Duration::from_secs(15),
        "the poison message quarantined",
        || async {
            let (_, body) = world
                .daemon
                .api(
                    reqwest::Method::GET,
                    &format!("/api/channels/{id}/quarantine"),
                    None,
                )
                .await
                .unwrap();
            body["messages"].as_array().is_some_and(|m| m.len() == 1)
        },
    )
    .await;
    let (_, quarantined) = world
        .daemon
        .api(
            reqwest::Method::GET,
            &format!("/api/channels/{id}/quarantine"),
            None,
        )
        .await
        .unwrap();
    assert!(
        quarantined["messages"][0]["failures"].as_u64().unwrap() >= 2,
        "{quarantined}"
    );
    until(
        Duration::from_secs(10),
        "the good mail delivered",
        || async {
            world
                .sim_client
                .mailbox_state(&mailbox.upn)
                .await
                .unwrap()
                .unread
                == 1
        },
    )
    .await;
    // The quarantined message no longer blocks anything and stays unread.
    actix_rt::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        world
            .sim_client
            .mailbox_state(&mailbox.upn)
            .await
            .unwrap()
            .unread,
        1
    );
    let channel = world.daemon.channel(&id).await.unwrap();
    assert_eq!(channel["status"], "active");
    // The count is on the channel, in the listing and in /metrics, not only in the quarantine view.
    assert_eq!(channel["quarantined"], 1, "{channel}");
    let (_, listing) = world
        .daemon
        .api(reqwest::Method::GET, "/api/channels", None)
        .await
        .unwrap();
    assert_eq!(listing["channels"][0]["quarantined"], 1, "{listing}");
    let scrape = reqwest::get(format!("{}/metrics", world.daemon.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        scrape.contains("inboxd_messages_quarantined 1")
            && scrape.contains(&format!(
                "inboxd_channel_quarantined_messages{{channel_id=\"{id}\"}} 1"
            )),
        "{scrape}"
    );

    receiver.reject_poison.store(false, Ordering::SeqCst);
    let (status, body) = world
        .daemon
        .api(
            reqwest::Method::POST,
            &format!("/api/channels/{id}/quarantine/replay"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["released"], 1);
    until(
        Duration::from_secs(10),
        "the replayed message delivered and read",
        || async {
            world
                .sim_client
                .mailbox_state(&mailbox.upn)
                .await
                .unwrap()
                .unread
                == 0
        },
    )
    .await;
    assert!(
        receiver
            .accepted
            .lock()
            .iter()
            .any(|(_, _, subject)| subject == "poison pill")
    );
    assert_eq!(world.daemon.channel(&id).await.unwrap()["quarantined"], 0);
}

#[actix_rt::test]
async fn the_first_import_policy_decides_what_old_unread_mail_is_taken() {
    let world = world(1, &[]).await;
    let old = (chrono::Utc::now() - chrono::Duration::days(3)).to_rfc3339();
    let recent = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let mut expected = Vec::new();
    for (policy, wanted) in [("all", 3usize), ("last_days:2", 2), ("new", 1)] {
        let upn = format!("{}@policy.example", policy.replace(':', "-"));
        let mailbox = world.mailbox(&upn).await;
        let delivery = Delivery {
            messages: vec![
                json!({"subject": "old", "received_date_time": old}),
                json!({"subject": "recent", "received_date_time": recent}),
            ],
            ..Delivery::default()
        };
        world.sim_client.deliver(&upn, &delivery).await.unwrap();
        let (status, channel) = world
            .daemon
            .api(
                reqwest::Method::POST,
                "/api/channels",
                Some(json!({"tenant_id": mailbox.tenant, "client_id": mailbox.client_id, "client_secret": mailbox.secret, "mailbox": upn, "first_import": policy})),
            )
            .await
            .unwrap();
        assert_eq!(status, 201, "{channel}");
        let id = channel["id"].as_str().unwrap().to_owned();
        assert_eq!(world.daemon.authorize(&id).await.unwrap().0, 200);
        world
            .sim_client
            .deliver(
                &upn,
                &Delivery {
                    messages: vec![json!({"subject": "after"})],
                    ..Delivery::default()
                },
            )
            .await
            .unwrap();
        expected.push((id, wanted));
    }
    until(
        Duration::from_secs(10),
        "the wanted mail in the sink",
        || async { world.daemon.sink_lines().unwrap().len() == 6 },
    )
    .await;
    actix_rt::time::sleep(Duration::from_millis(1500)).await;
    let lines = world.daemon.sink_lines().unwrap();
    for (id, wanted) in expected {
        let got = lines
            .iter()
            .filter(|l| l["channel_id"] == id.as_str())
            .count();
        assert_eq!(got, wanted, "channel {id}");
    }
}
