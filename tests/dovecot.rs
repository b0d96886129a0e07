//! A real Dovecot validating the simulator's tokens: Dovecot's OAuth2 passdb asks the simulator's
//! RFC 7662 introspection endpoint (with the app's credentials in HTTP Basic) about each XOAUTH2
//! token. A token the identity platform issued for IMAP through the authorization-code flow opens
//! the mailbox and reads the mail delivered into Dovecot's Maildir; a Graph token (another
//! audience and scope) and an expired token are refused, and so is a token for another user.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use inboxd::sim::client::{AppRegistration, IMAP_TOKEN_SCOPE, SimClient};
use inboxd::sim::{SimOptions, spawn};
use inboxd_testkit::imap::literal_after;
use inboxd_testkit::{Dovecot, ImapClient};
use serde_json::Value;

const UPN: &str = "adele@contoso.example";
const REDIRECT: &str = "http://127.0.0.1/oauth/callback";
const SECRET: &str = "dovecot-introspection-secret";

/// Signs `UPN` in for `scope` and redeems the code: the token endpoint's JSON answer.
async fn sign_in(url: &str, tenant: &str, client_id: &str, scope: &str) -> Value {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut authorize = url::Url::parse(&format!("{url}/{tenant}/oauth2/v2.0/authorize")).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", scope)
        .append_pair("login_hint", UPN)
        .append_pair("state", "s");
    let r = http.get(authorize.as_str()).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let r = http
        .post(format!("{url}/{tenant}/oauth2/v2.0/token"))
        .form(&[
            ("client_id", client_id),
            ("client_secret", SECRET),
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn dovecot_accepts_imap_tokens_of_the_simulator_and_refuses_graph_and_expired_ones() {
    let sim = spawn(SimOptions::default()).unwrap();
    let url = sim.url();
    let ctl = SimClient::new(url.clone());
    let tenant = ctl
        .register_tenant(None, &["contoso.example"])
        .await
        .unwrap();
    let app = ctl
        .register_app(&AppRegistration {
            tenant_id: tenant.clone(),
            client_secret: Some(SECRET.into()),
            redirect_uris: vec![REDIRECT.into()],
            ..AppRegistration::default()
        })
        .await
        .unwrap();
    ctl.register_user(&tenant, UPN, &[]).await.unwrap();
    ctl.register_user(&tenant, "megan@contoso.example", &[])
        .await
        .unwrap();

    let introspection = format!(
        "http://{}:{SECRET}@{}/_sim/introspect",
        app.client_id,
        sim.addr()
    );
    let dovecot = Dovecot::start(&introspection).unwrap();
    let message = b"From: Bob Kelly <bob@fabrikam.example>\r\nTo: Adele Vance <adele@contoso.example>\r\nSubject: Delivered into Dovecot\r\nDate: Tue, 01 Dec 2026 08:00:00 +0000\r\nMessage-ID: <dovecot-1@fabrikam.example>\r\n\r\nHello from the Maildir.\r\n";
    dovecot.deliver(UPN, message).unwrap();

    // The identity platform issues an Exchange Online token for the IMAP scope.
    let imap = sign_in(&url, &tenant, &app.client_id, IMAP_TOKEN_SCOPE).await;
    assert_eq!(
        imap["scope"],
        "https://outlook.office.com/IMAP.AccessAsUser.All"
    );
    let imap_token = imap["access_token"].as_str().unwrap().to_owned();

    let mut c = ImapClient::connect(dovecot.addr()).unwrap();
    let caps = c.command("CAPABILITY").unwrap();
    assert!(
        caps.find("* CAPABILITY").unwrap().contains("AUTH=XOAUTH2"),
        "{caps:?}"
    );
    let r = c.authenticate_xoauth2(UPN, &imap_token).unwrap();
    assert!(r.is_ok(), "{r:?}\n{}", dovecot.log());
    let r = c.command("SELECT INBOX").unwrap();
    assert!(r.find("* 1 EXISTS").is_some(), "{r:?}");
    let r = c.command("UID FETCH 1:* (UID BODY.PEEK[])").unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(literal_after(&r.untagged[0], "BODY[] ").unwrap(), message);
    assert!(c.command("LOGOUT").unwrap().is_ok());

    // Continuation form (no SASL-IR) works too.
    let mut c = ImapClient::connect(dovecot.addr()).unwrap();
    let r = c.authenticate_xoauth2_continued(UPN, &imap_token).unwrap();
    assert!(r.is_ok(), "{r:?}");

    // Each refusal on a Dovecot of its own: Dovecot delays every authentication from an address
    // that failed before (up to 15 s), which would only slow the test down.
    let refused = |user: &str, token: &str| {
        let dovecot = Dovecot::start(&introspection).unwrap();
        let mut c = ImapClient::connect(dovecot.addr()).unwrap();
        let r = c.authenticate_xoauth2(user, token).unwrap();
        (r.tagged.unwrap_or_default(), dovecot.log())
    };
    // A Graph token of the same user: introspection says it is for Graph, not IMAP.
    let graph = sign_in(
        &url,
        &tenant,
        &app.client_id,
        "offline_access https://graph.microsoft.com/Mail.ReadWrite.Shared",
    )
    .await;
    let graph_token = graph["access_token"].as_str().unwrap();
    let (answer, log) = refused(UPN, graph_token);
    assert!(answer.starts_with("NO"), "{answer}");
    assert!(log.contains("Token is not valid for scope"), "{log}");
    // Adele's token does not open Megan's mailbox.
    let (answer, _) = refused("megan@contoso.example", &imap_token);
    assert!(answer.starts_with("NO"), "{answer}");
    // Past its expiry the simulator calls the token inactive, and Dovecot refuses it.
    ctl.advance_clock(3600.0).await.unwrap();
    let (answer, log) = refused(UPN, &imap_token);
    assert!(answer.starts_with("NO"), "{answer}");
    assert!(log.contains("oauth2 failed"), "{log}");
    // A fresh token (the refresh token renews it) opens the mailbox again.
    let fresh = ctl
        .mint_imap_tokens(UPN, &app.client_id)
        .await
        .unwrap()
        .access_token;
    let mut c = ImapClient::connect(dovecot.addr()).unwrap();
    assert!(c.authenticate_xoauth2(UPN, &fresh).unwrap().is_ok());
}
