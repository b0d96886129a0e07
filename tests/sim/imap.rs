//! The simulator's IMAP server: XOAUTH2 as Exchange Online checks it (audience, scope, expiry, Full
//! Access, IMAP switched off), the identity platform issuing Exchange Online tokens, SELECT and
//! UIDVALIDITY, FETCH serving the Graph message as MIME, `\Seen` and `isRead` as one state, the
//! faults, the connection cap, TLS, and token introspection.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use inboxd::sim::client::{Delivery, IMAP_TOKEN_SCOPE};
use inboxd::sim::{ImapOptions, SimOptions};
use inboxd_testkit::ImapClient;
use inboxd_testkit::imap::literal_after;
use mail_parser::{MessageParser, MimeHeaders};
use serde_json::{Value, json};

use crate::support::{Env, env, env_with, graph_error, q, query_of, sts_error};

const IMAP_SCOPE: &str = "https://outlook.office.com/IMAP.AccessAsUser.All";

async fn imap_token(env: &Env, upn: &str) -> String {
    env.ctl
        .mint_imap_tokens(upn, &env.app.client_id)
        .await
        .unwrap()
        .access_token
}

fn connect(env: &Env) -> ImapClient {
    ImapClient::connect(
        env.sim
            .imap_addr()
            .expect("the IMAP listener is on by default"),
    )
    .unwrap()
}

/// A connection authenticated to `mailbox` with `token`.
fn session(env: &Env, mailbox: &str, token: &str) -> ImapClient {
    let mut c = connect(env);
    let r = c.authenticate_xoauth2(mailbox, token).unwrap();
    assert_eq!(r.tagged.as_deref(), Some("OK AUTHENTICATE completed."));
    c
}

const FAILED: Option<&str> = Some("NO AUTHENTICATE failed.");

async fn deliver_one(env: &Env, message: Value) -> String {
    let d = Delivery {
        unread: true,
        messages: vec![message],
        ..Delivery::default()
    };
    env.ctl.deliver(&env.upn, &d).await.unwrap().ids.remove(0)
}

async fn graph_is_read(env: &Env, at: &str, id: &str) -> bool {
    let r = env
        .get(
            at,
            &format!("/users/{}/messages/{id}?$select=isRead", env.upn),
        )
        .await;
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["isRead"]
        .as_bool()
        .unwrap()
}

#[tokio::test]
async fn xoauth2_accepts_an_exchange_token_with_and_without_sasl_ir() {
    let env = env().await;
    let at = imap_token(&env, &env.upn).await;
    let mut c = connect(&env);
    assert!(
        c.greeting
            .starts_with("* OK The Microsoft Exchange IMAP4 service is ready."),
        "{}",
        c.greeting
    );
    let caps = c.command("CAPABILITY").unwrap();
    let line = caps.find("* CAPABILITY").unwrap();
    for cap in ["IMAP4rev1", "AUTH=XOAUTH2", "SASL-IR", "ID"] {
        assert!(line.split_whitespace().any(|w| w == cap), "{line}");
    }
    assert_eq!(
        c.command("SELECT INBOX").unwrap().tagged.as_deref(),
        Some("BAD Command received in Invalid state.")
    );
    let r = c.authenticate_xoauth2(&env.upn, &at).unwrap();
    assert_eq!(r.tagged.as_deref(), Some("OK AUTHENTICATE completed."));
    assert_eq!(
        c.authenticate_xoauth2(&env.upn, &at)
            .unwrap()
            .tagged
            .as_deref(),
        Some("BAD Command received in Invalid state.")
    );
    let mut c2 = connect(&env);
    let r = c2.authenticate_xoauth2_continued(&env.upn, &at).unwrap();
    assert_eq!(r.tagged.as_deref(), Some("OK AUTHENTICATE completed."));
    let counters = env.ctl.counters(Some(&env.upn)).await.unwrap();
    assert_eq!(counters.imap.authenticate_ok, 2);
    assert_eq!(counters.imap.connections, 2);
    assert_eq!(counters.imap.open, 2);
    assert_eq!(counters.requests["imap_authenticate"], 2);
    let r = c.command("LOGOUT").unwrap();
    assert_eq!(r.tagged.as_deref(), Some("OK LOGOUT completed."));
    assert!(r.find("* BYE").is_some());
    drop(c);
    crate::support::eventually_true(|| async {
        env.ctl.counters(Some(&env.upn)).await.unwrap().imap.open == 1
    })
    .await;
}

#[tokio::test]
async fn xoauth2_refuses_what_exchange_refuses() {
    let env = env().await;
    let other = "megan@contoso.example";
    env.ctl
        .register_user(&env.tenant, other, &[])
        .await
        .unwrap();
    let imap = imap_token(&env, &env.upn).await;
    let mut failures = 0;
    let mut refused = |user: &str, token: &str, why: &str| {
        let mut c = connect(&env);
        assert_eq!(
            c.authenticate_xoauth2(user, token)
                .unwrap()
                .tagged
                .as_deref(),
            FAILED,
            "{why}"
        );
        failures += 1;
    };
    // A Graph token: the wrong audience.
    let graph = env
        .ctl
        .mint_tokens(&env.upn, &env.app.client_id, None)
        .await
        .unwrap()
        .access_token;
    refused(&env.upn, &graph, "a Graph token");
    // An Exchange Online token without IMAP.AccessAsUser.All.
    let pop = env
        .ctl
        .mint_tokens(
            &env.upn,
            &env.app.client_id,
            Some("https://outlook.office.com/POP.AccessAsUser.All"),
        )
        .await
        .unwrap()
        .access_token;
    refused(&env.upn, &pop, "no IMAP scope");
    refused(
        &env.upn,
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.e30.x",
        "not a token of the simulator",
    );
    // Another user's mailbox without Full Access.
    refused(other, &imap, "no Full Access");
    // An unknown mailbox.
    refused("nobody@contoso.example", &imap, "no such mailbox");
    // IMAP switched off for the mailbox.
    env.ctl.set_imap_enabled(&env.upn, false).await.unwrap();
    refused(&env.upn, &imap, "IMAP disabled");
    env.ctl.set_imap_enabled(&env.upn, true).await.unwrap();
    // Full Access granted: the user's token opens the shared mailbox, named in user=.
    env.ctl.grant_mailbox(&env.upn, other).await.unwrap();
    session(&env, other, &imap);
    session(&env, &env.upn, &imap);
    // Basic authentication is off.
    let mut c = connect(&env);
    assert_eq!(
        c.command("LOGIN adele secret").unwrap().tagged.as_deref(),
        Some("NO LOGIN failed.")
    );
    // An expired token.
    env.ctl.advance_clock(3600.0).await.unwrap();
    let mut c = connect(&env);
    assert_eq!(
        c.authenticate_xoauth2(&env.upn, &imap)
            .unwrap()
            .tagged
            .as_deref(),
        FAILED,
        "expired"
    );
    let counters = env.ctl.counters(None).await.unwrap();
    assert_eq!(counters.imap.authenticate_failed, failures + 1);
    assert_eq!(counters.imap.authenticate_ok, 2);
}

#[tokio::test]
async fn graph_refuses_an_exchange_token_and_the_platform_issues_one_resource_per_token() {
    let env = env().await;
    // The sign-in asks for IMAP: the token is an Exchange Online token.
    let code = env
        .code(&[("scope", &format!("{IMAP_TOKEN_SCOPE} openid"))])
        .await;
    let r = env.redeem(&code, &[]).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["scope"], format!("{IMAP_SCOPE} openid"));
    let at = v["access_token"].as_str().unwrap();
    let rt = v["refresh_token"].as_str().unwrap();
    session(&env, &env.upn, at);
    let r = env.get(at, &format!("/users/{}/messages", env.upn)).await;
    let body = graph_error(r, 401, "InvalidAuthenticationToken").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Invalid audience"),
        "{body}"
    );
    // The same refresh token renews IMAP; Graph was never consented in this sign-in.
    let refresh = async |scope: &'static str| {
        env.token(&[
            ("client_id", env.app.client_id.as_str()),
            ("client_secret", env.app.client_secret.as_str()),
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("scope", scope),
        ])
        .await
    };
    let r = refresh(IMAP_TOKEN_SCOPE).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    session(&env, &env.upn, v["access_token"].as_str().unwrap());
    let r = refresh("https://graph.microsoft.com/Mail.Read offline_access").await;
    sts_error(r, 400, "invalid_grant", 65001).await;
    // Two resources in one request: refused.
    let r = env
        .authorize(&[(
            "scope",
            "https://outlook.office.com/IMAP.AccessAsUser.All https://graph.microsoft.com/Mail.Read",
        )])
        .await;
    assert_eq!(r.status(), 302);
    let loc = query_of(r.headers()["location"].to_str().unwrap());
    assert_eq!(q(&loc, "error"), Some("invalid_scope"));
    assert!(
        q(&loc, "error_description")
            .unwrap()
            .contains("more than one resource")
    );
}

#[tokio::test]
async fn select_reports_uidvalidity_and_uids_follow_arrival() {
    let env = env().await;
    let ids = env.deliver(3).await;
    let at = imap_token(&env, &env.upn).await;
    let mut c = session(&env, &env.upn, &at);
    let list = c.command("LIST \"\" \"*\"").unwrap();
    assert!(list.is_ok());
    let text = list.text().join("");
    assert!(text.contains("\"INBOX\""), "{text}");
    assert!(
        text.contains("(\\HasNoChildren \\Sent) \"/\" \"Sent Items\""),
        "{text}"
    );
    let r = c.command("SELECT INBOX").unwrap();
    assert_eq!(
        r.tagged.as_deref(),
        Some("OK [READ-WRITE] SELECT completed.")
    );
    assert!(r.find("* 3 EXISTS").is_some(), "{:?}", r.text());
    assert!(r.find("* OK [UIDNEXT 4]").is_some(), "{:?}", r.text());
    let validity: u32 = r
        .find("* OK [UIDVALIDITY ")
        .unwrap()
        .trim_start_matches("* OK [UIDVALIDITY ")
        .split(']')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(validity > 0);
    let search = |c: &mut ImapClient, q: &str| c.command(q).unwrap().find("* SEARCH").unwrap();
    assert_eq!(search(&mut c, "UID SEARCH ALL").trim(), "* SEARCH 1 2 3");
    assert_eq!(search(&mut c, "UID SEARCH UID 2:*").trim(), "* SEARCH 2 3");
    // `n:*` with n past the last UID still names the last message (RFC 3501).
    assert_eq!(search(&mut c, "UID SEARCH UID 9:*").trim(), "* SEARCH 3");
    assert_eq!(search(&mut c, "UID SEARCH UNSEEN").trim(), "* SEARCH 1 2 3");
    // New mail shows on NOOP; mail deleted through the mailbox's user is expunged.
    env.deliver(1).await;
    let r = c.command("NOOP").unwrap();
    assert!(r.find("* 4 EXISTS").is_some(), "{:?}", r.text());
    env.ctl.delete_message(&env.upn, &ids[0]).await.unwrap();
    let r = c.command("NOOP").unwrap();
    assert!(r.find("* 1 EXPUNGE").is_some(), "{:?}", r.text());
    assert_eq!(search(&mut c, "UID SEARCH ALL").trim(), "* SEARCH 2 3 4");
    // EXAMINE is read-only.
    let mut ro = session(&env, &env.upn, &at);
    let r = ro.command("EXAMINE INBOX").unwrap();
    assert_eq!(
        r.tagged.as_deref(),
        Some("OK [READ-ONLY] EXAMINE completed.")
    );
    assert!(!ro.command("UID STORE 2 +FLAGS (\\Seen)").unwrap().is_ok());
    let r = ro.command("SELECT \"No Such Folder\"").unwrap();
    assert!(r.tagged.unwrap().starts_with("NO "));
    // A new UIDVALIDITY: the selected session is told to start over, a new one sees new UIDs.
    let (bumped, next) = env.ctl.bump_uid_validity(&env.upn, "inbox").await.unwrap();
    assert_ne!(bumped, validity);
    assert_eq!(next, 4, "three messages renumbered from 1");
    let r = c.command("NOOP").unwrap();
    assert!(r.tagged.is_none(), "{r:?}");
    assert!(r.find("* BYE").is_some(), "{:?}", r.text());
    let mut c = session(&env, &env.upn, &at);
    let r = c.command("SELECT INBOX").unwrap();
    assert!(
        r.find(&format!("* OK [UIDVALIDITY {bumped}]")).is_some(),
        "{:?}",
        r.text()
    );
    assert_eq!(search(&mut c, "UID SEARCH ALL").trim(), "* SEARCH 1 2 3");
    let status = c
        .command("STATUS INBOX (MESSAGES UNSEEN UIDNEXT UIDVALIDITY)")
        .unwrap();
    assert_eq!(
        status.find("* STATUS").unwrap().trim(),
        format!("* STATUS \"INBOX\" (MESSAGES 3 UNSEEN 3 UIDNEXT 4 UIDVALIDITY {bumped})")
    );
}

#[tokio::test]
async fn fetch_serves_the_graph_message_as_mime_and_peek_leaves_it_unread() {
    let env = env().await;
    let attachment = b"%PDF-1.4 not really a pdf \x00\x01\x02";
    let id = deliver_one(
        &env,
        json!({
            "subject": "Grüße: the Q3 report",
            "from": {"name": "Bob Kelly", "address": "bob@fabrikam.example"},
            "to": [{"name": "Adele Vance", "address": "adele@contoso.example"}],
            "cc": ["carol@fabrikam.example"],
            "body_text": "Hello Adele,\nthe report is attached.",
            "body_html": "<html><body><p>Hello Adele,</p><p>the report is attached.</p></body></html>",
            "internet_message_id": "<q3-report-1@fabrikam.example>",
            "attachments": [{"name": "report.pdf", "contentType": "application/pdf", "contentBytes": STANDARD.encode(attachment)}],
        }),
    )
    .await;
    let (graph_at, _) = env.tokens().await;
    let g: Value = env
        .get(&graph_at, &format!("/users/{}/messages/{id}", env.upn))
        .await
        .json()
        .await
        .unwrap();
    let at = imap_token(&env, &env.upn).await;
    let mut c = session(&env, &env.upn, &at);
    assert!(c.command("SELECT INBOX").unwrap().is_ok());
    let r = c
        .command("UID FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODY.PEEK[])")
        .unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(r.untagged.len(), 1);
    let resp = &r.untagged[0];
    let head = String::from_utf8_lossy(&resp[..resp.iter().position(|b| *b == b'{').unwrap()]);
    assert!(
        head.starts_with("* 1 FETCH (UID 1 FLAGS () RFC822.SIZE "),
        "{head}"
    );
    assert!(
        head.contains("ENVELOPE (\"") && head.contains("\"<q3-report-1@fabrikam.example>\")"),
        "{head}"
    );
    let raw = literal_after(resp, "BODY[] ").unwrap();
    let size: usize = head
        .split("RFC822.SIZE ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(size, raw.len(), "RFC822.SIZE is the size of BODY[]");
    let m = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(m.subject(), g["subject"].as_str());
    let from = m.from().unwrap().first().unwrap();
    assert_eq!(
        from.address(),
        g["from"]["emailAddress"]["address"].as_str()
    );
    assert_eq!(from.name(), g["from"]["emailAddress"]["name"].as_str());
    let to = m.to().unwrap().first().unwrap();
    assert_eq!(
        to.address(),
        g["toRecipients"][0]["emailAddress"]["address"].as_str()
    );
    let cc = m.cc().unwrap().first().unwrap();
    assert_eq!(
        cc.address(),
        g["ccRecipients"][0]["emailAddress"]["address"].as_str()
    );
    assert_eq!(
        format!("<{}>", m.message_id().unwrap()),
        g["internetMessageId"].as_str().unwrap()
    );
    // MIME lines end in CRLF.
    assert_eq!(
        m.body_text(0).unwrap().trim_end().replace("\r\n", "\n"),
        "Hello Adele,\nthe report is attached."
    );
    assert_eq!(
        m.body_html(0).unwrap().trim_end().replace("\r\n", "\n"),
        g["body"]["content"].as_str().unwrap()
    );
    let attachments: Vec<_> = m.attachments().collect();
    assert_eq!(attachments.len(), 1);
    assert_eq!(attachments[0].attachment_name(), Some("report.pdf"));
    assert_eq!(attachments[0].contents(), attachment);
    assert!(attachments[0].is_content_type("application", "pdf"));
    // PEEK left it unread, over IMAP and over Graph.
    assert!(!graph_is_read(&env, &graph_at, &id).await);
    // The same bytes every time.
    let again = c.command("UID FETCH 1 BODY.PEEK[]").unwrap();
    assert_eq!(literal_after(&again.untagged[0], "BODY[] ").unwrap(), raw);
    // BODY[] without PEEK reads the message: \Seen, isRead.
    let r = c
        .command("UID FETCH 1 (BODY[HEADER.FIELDS (SUBJECT)])")
        .unwrap();
    let text = r.text().join("");
    assert!(text.contains("FLAGS (\\Seen)"), "{text}");
    assert!(text.contains("Subject: =?"), "{text}");
    assert!(graph_is_read(&env, &graph_at, &id).await);
    let counters = env.ctl.counters(Some(&env.upn)).await.unwrap();
    assert_eq!(counters.imap.fetch, 3);
}

#[tokio::test]
async fn store_seen_and_graph_is_read_are_one_state() {
    let env = env().await;
    let ids = env.deliver(2).await;
    let (graph_at, _) = env.tokens().await;
    let at = imap_token(&env, &env.upn).await;
    let mut c = session(&env, &env.upn, &at);
    assert!(c.command("SELECT INBOX").unwrap().is_ok());
    let r = c.command("UID STORE 1 +FLAGS.SILENT (\\Seen)").unwrap();
    assert_eq!(r.tagged.as_deref(), Some("OK STORE completed."));
    assert!(r.untagged.is_empty(), "{r:?}");
    assert!(graph_is_read(&env, &graph_at, &ids[0]).await);
    assert!(!graph_is_read(&env, &graph_at, &ids[1]).await);
    let r = c.command("UID STORE 2 +FLAGS (\\Seen)").unwrap();
    assert_eq!(
        r.find("* 2 FETCH").unwrap().trim(),
        "* 2 FETCH (UID 2 FLAGS (\\Seen))"
    );
    assert!(graph_is_read(&env, &graph_at, &ids[1]).await);
    // Marked unread through Graph: IMAP sees it.
    let r = env
        .http
        .patch(env.graph(&format!("/users/{}/messages/{}", env.upn, ids[0])))
        .bearer_auth(&graph_at)
        .json(&json!({"isRead": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c.command("UID FETCH 1:* FLAGS").unwrap();
    let text = r.text().join("");
    assert!(text.contains("* 1 FETCH (UID 1 FLAGS ())"), "{text}");
    assert!(text.contains("* 2 FETCH (UID 2 FLAGS (\\Seen))"), "{text}");
    assert_eq!(
        c.command("UID SEARCH UNSEEN")
            .unwrap()
            .find("* SEARCH")
            .unwrap()
            .trim(),
        "* SEARCH 1"
    );
    let r = c.command("UID STORE 2 -FLAGS (\\Seen)").unwrap();
    assert!(r.is_ok());
    assert!(!graph_is_read(&env, &graph_at, &ids[1]).await);
    let counters = env.ctl.counters(Some(&env.upn)).await.unwrap();
    assert_eq!(counters.imap.store, 3);
    assert_eq!(counters.requests["imap_store"], 3);
}

#[tokio::test]
async fn injected_faults_answer_as_exchange_does() {
    let env = env().await;
    env.deliver(1).await;
    let at = imap_token(&env, &env.upn).await;
    let fault = async |v: Value| env.ctl.add_fault_json(&v).await;
    let mut c = session(&env, &env.upn, &at);
    assert!(c.command("SELECT INBOX").unwrap().is_ok());
    // NO on one command, then back to normal.
    fault(json!({"kind": "imap_no", "mailbox": env.upn, "endpoints": ["imap_fetch"], "count": 1}))
        .await
        .unwrap();
    let r = c.command("UID FETCH 1 FLAGS").unwrap();
    assert_eq!(r.tagged.as_deref(), Some("NO Server Unavailable. 15"));
    assert!(c.command("UID FETCH 1 FLAGS").unwrap().is_ok());
    // Throttled: Exchange's words with the suggested backoff.
    fault(json!({"kind": "throttle", "retry_after": 2.5, "mailbox": env.upn, "endpoints": ["imap"], "count": 1}))
        .await
        .unwrap();
    let r = c.command("UID SEARCH UNSEEN").unwrap();
    assert_eq!(
        r.tagged.as_deref(),
        Some("NO Request is throttled. Suggested Backoff Time: 2500 milliseconds")
    );
    // Slow: the answer comes after the latency.
    fault(json!({"kind": "latency", "ms": 300, "mailbox": env.upn, "endpoints": ["imap_search"], "count": 1}))
        .await
        .unwrap();
    let started = Instant::now();
    assert!(c.command("UID SEARCH ALL").unwrap().is_ok());
    assert!(started.elapsed() >= Duration::from_millis(300));
    // BYE: the server closes the connection.
    fault(json!({"kind": "imap_bye", "mailbox": env.upn, "count": 1}))
        .await
        .unwrap();
    let r = c.command("NOOP").unwrap();
    assert_eq!(r.tagged, None);
    assert_eq!(
        r.find("* BYE").unwrap().trim(),
        "* BYE Connection is closed. 13"
    );
    // Reset: closed without a word.
    let mut c = session(&env, &env.upn, &at);
    fault(json!({"kind": "reset", "mailbox": env.upn, "endpoints": ["imap"], "count": 1}))
        .await
        .unwrap();
    let r = c.command("NOOP").unwrap();
    assert_eq!(r.tagged, None);
    assert!(r.untagged.is_empty(), "{r:?}");
    // AUTHENTICATE itself can fail.
    fault(json!({"kind": "imap_no", "text": "AUTHENTICATE failed.", "mailbox": env.upn, "endpoints": ["imap_authenticate"], "count": 1}))
        .await
        .unwrap();
    let mut c = connect(&env);
    assert_eq!(
        c.authenticate_xoauth2(&env.upn, &at)
            .unwrap()
            .tagged
            .as_deref(),
        FAILED
    );
    session(&env, &env.upn, &at);
    // A Graph-only fault is not used up by IMAP.
    fault(json!({"kind": "status", "status": 503, "mailbox": env.upn, "count": 1}))
        .await
        .unwrap();
    let mut c = session(&env, &env.upn, &at);
    assert!(c.command("SELECT INBOX").unwrap().is_ok());
    assert_eq!(
        env.ctl.counters(None).await.unwrap().imap.authenticate_ok,
        4
    );
}

#[tokio::test]
async fn a_mailbox_takes_a_bounded_number_of_connections() {
    let env = env_with(SimOptions {
        imap: ImapOptions {
            max_connections_per_mailbox: 2,
            ..ImapOptions::default()
        },
        ..SimOptions::default()
    })
    .await;
    let at = imap_token(&env, &env.upn).await;
    let mut first = session(&env, &env.upn, &at);
    let _second = session(&env, &env.upn, &at);
    let mut third = connect(&env);
    let r = third.authenticate_xoauth2(&env.upn, &at).unwrap();
    assert_eq!(
        r.tagged.as_deref(),
        Some("NO [LIMIT] AUTHENTICATE failed: too many concurrent connections to this mailbox.")
    );
    let counters = env.ctl.counters(Some(&env.upn)).await.unwrap();
    assert_eq!(counters.imap.refused, 1);
    assert_eq!(counters.imap.open, 2);
    assert_eq!(counters.imap.max_connections_per_mailbox, 2);
    assert!(first.command("LOGOUT").unwrap().is_ok());
    drop(first);
    crate::support::eventually_true(|| async {
        env.ctl.counters(Some(&env.upn)).await.unwrap().imap.open == 1
    })
    .await;
    let r = third.authenticate_xoauth2(&env.upn, &at).unwrap();
    assert_eq!(r.tagged.as_deref(), Some("OK AUTHENTICATE completed."));
}

#[tokio::test]
async fn imap_over_tls_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let env = env_with(SimOptions {
        imap: ImapOptions {
            tls_listen: Some("127.0.0.1:0".parse().unwrap()),
            tls: Some(inboxd::sim::TlsFiles {
                cert_pem: cert,
                key_pem: key,
            }),
            ..ImapOptions::default()
        },
        ..SimOptions::default()
    })
    .await;
    let addr = env.sim.imaps_addr().unwrap();
    assert_eq!(env.ctl.imap_addrs().await.unwrap().tls, Some(addr));
    assert_eq!(
        env.ctl.imap_addrs().await.unwrap().plain,
        env.sim.imap_addr()
    );
    let at = imap_token(&env, &env.upn).await;
    let mut c = ImapClient::connect_tls(addr, &ck.cert.pem(), "localhost").unwrap();
    assert!(c.greeting.starts_with("* OK The Microsoft Exchange IMAP4"));
    let r = c.authenticate_xoauth2(&env.upn, &at).unwrap();
    assert_eq!(r.tagged.as_deref(), Some("OK AUTHENTICATE completed."));
    // A client that does not trust the certificate gets no session.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    assert!(ImapClient::connect_tls(addr, &other.cert.pem(), "localhost").is_err());
    // Asking for TLS without a certificate is refused at start, saying what is missing.
    let e = inboxd::sim::spawn(SimOptions {
        imap: ImapOptions {
            tls_listen: Some("127.0.0.1:0".parse().unwrap()),
            ..ImapOptions::default()
        },
        ..SimOptions::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("--imap-tls-cert"), "{e}");
}

#[tokio::test]
async fn introspection_says_what_a_token_is() {
    let env = env().await;
    let introspect = |token: String, basic: Option<(String, String)>| {
        let mut req = env
            .http
            .post(format!("{}/_sim/introspect", env.url))
            .form(&[("token", token)]);
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        req.send()
    };
    let imap = imap_token(&env, &env.upn).await;
    let r = introspect(imap.clone(), None).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["active"], true);
    assert_eq!(v["aud"], "https://outlook.office.com");
    assert_eq!(v["scope"], IMAP_SCOPE);
    assert_eq!(v["username"], env.upn.as_str());
    assert_eq!(v["client_id"], env.app.client_id.as_str());
    assert_eq!(v["token_type"], "Bearer");
    let now = chrono::Utc::now().timestamp();
    let exp = v["exp"].as_i64().unwrap();
    assert!(exp > now + 3000 && exp <= now + 3600, "{v}");
    assert!(!v["sub"].as_str().unwrap().is_empty());
    // A Graph token is active, for Graph.
    let graph = env
        .ctl
        .mint_tokens(&env.upn, &env.app.client_id, None)
        .await
        .unwrap()
        .access_token;
    let v: Value = introspect(graph, None).await.unwrap().json().await.unwrap();
    assert_eq!(v["aud"], "https://graph.microsoft.com");
    assert_eq!(
        v["scope"],
        "https://graph.microsoft.com/Mail.ReadWrite.Shared"
    );
    // Client authentication: a registered app's credentials, or none; wrong ones are refused.
    let good = Some((env.app.client_id.clone(), env.app.client_secret.clone()));
    assert_eq!(introspect(imap.clone(), good).await.unwrap().status(), 200);
    let bad = Some((env.app.client_id.clone(), "wrong".to_owned()));
    assert_eq!(introspect(imap.clone(), bad).await.unwrap().status(), 401);
    // Not a token, or expired: inactive.
    let v: Value = introspect("garbage".into(), None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v, json!({"active": false}));
    env.ctl.advance_clock(3600.0).await.unwrap();
    let v: Value = introspect(imap, None).await.unwrap().json().await.unwrap();
    assert_eq!(v, json!({"active": false}));
    let r = env
        .http
        .post(format!("{}/_sim/introspect", env.url))
        .form(&[("nothing", "here")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
