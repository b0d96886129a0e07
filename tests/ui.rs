//! The status page over HTTP, without a browser (tests/browser/run.sh drives a real one): login and
//! sessions (random, expiring, ended by logout), CSRF and the same-origin check on every form, each
//! action reaching the supervisor, escaping, no secret in any page, and paging that stays fast with
//! 100,000 channels.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use chrono::Utc;
use inboxd::domain::{ChannelId, ChannelStatus, ClientId, Folder, Mailbox, TenantId};
use inboxd::sim::client::SimClient;
use inboxd::sim::{self, SimHandle, SimOptions};
use inboxd::status::ChannelView;
use inboxd_testkit::TestDaemon;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, ORIGIN, REFERER, SET_COOKIE};

const SECRET: &str = "Sim8Q~known-client-secret-for-the-ui-test-0001";

fn simulator() -> SimHandle {
    sim::spawn(SimOptions {
        workers: 1,
        ..SimOptions::default()
    })
    .unwrap()
}

/// Logs in; answers the `Cookie` header value and the raw `Set-Cookie`.
async fn login(daemon: &TestDaemon) -> (String, String) {
    login_from(daemon, &daemon.base).await
}

/// Logs in from a page of `origin` (the daemon's public origin).
async fn login_from(daemon: &TestDaemon, origin: &str) -> (String, String) {
    let res = daemon
        .http
        .post(format!("{}/login", daemon.base))
        .header(ORIGIN, origin)
        .form(&[("token", daemon.token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/");
    let set = res.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    let pair = set.split(';').next().unwrap().trim().to_owned();
    (pair, set)
}

async fn get(daemon: &TestDaemon, cookie: &str, path: &str) -> (StatusCode, String) {
    let res = daemon
        .http
        .get(format!("{}{path}", daemon.base))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    (res.status(), res.text().await.unwrap())
}

/// A form POST from the daemon's own page (its `Origin`), as a browser sends it.
async fn post(
    daemon: &TestDaemon,
    cookie: Option<&str>,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    post_from(daemon, Some(&daemon.base), cookie, path, form).await
}

/// A form POST with `origin` as its `Origin` header (none: no `Origin`).
async fn post_from(
    daemon: &TestDaemon,
    origin: Option<&str>,
    cookie: Option<&str>,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = daemon
        .http
        .post(format!("{}{path}", daemon.base))
        .form(form);
    if let Some(origin) = origin {
        req = req.header(ORIGIN, origin);
    }
    if let Some(cookie) = cookie {
        req = req.header(COOKIE, cookie);
    }
    req.send().await.unwrap()
}

fn csrf_of(page: &str) -> String {
    let start = page
        .find("name=\"csrf\" value=\"")
        .expect("the page has no CSRF field")
        + "name=\"csrf\" value=\"".len();
    page[start..].split('"').next().unwrap().to_owned()
}

fn location(res: &reqwest::Response) -> String {
    res.headers()[LOCATION].to_str().unwrap().to_owned()
}

#[actix_web::test]
async fn login_page_session_cookie_and_logout() {
    let sim = simulator();
    let dir = tempfile::tempdir().unwrap();
    let daemon = TestDaemon::start(dir.path(), &sim.url(), 600, &[])
        .await
        .unwrap();

    // Not logged in: the login form, 200, and nothing else.
    let res = daemon
        .http
        .get(format!("{}/", daemon.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    let page = res.text().await.unwrap();
    assert!(page.contains("id=\"login\""), "{page}");
    assert!(!page.contains("id=\"channels\""));

    // A wrong token: 401 with the form again, and no cookie.
    let res = post(
        &daemon,
        None,
        "/login",
        &[("token", "wrong-token-wrong-token")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers().get(SET_COOKIE).is_none());
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("That is not the admin token")
    );

    // The right token: a session cookie that is not the token.
    let (cookie, set) = login(&daemon).await;
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    assert!(
        !set.contains("Secure"),
        "http public URL, yet Secure: {set}"
    );
    assert!(
        !set.contains(&daemon.token),
        "the cookie carries the token: {set}"
    );
    let (status, page) = get(&daemon, &cookie, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("id=\"channels\""));
    assert!(!page.contains(&daemon.token));

    assert!(set.contains("Path=/"), "{set}");
    assert!(set.contains("Max-Age="), "{set}");

    // The session does not open the API: that takes the bearer token.
    let (status, _) = get(&daemon, &cookie, "/api/channels").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Logout needs the CSRF token, then removes the cookie.
    let res = post(&daemon, Some(&cookie), "/logout", &[("csrf", "nope")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = post(
        &daemon,
        Some(&cookie),
        "/logout",
        &[("csrf", &csrf_of(&page))],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/login");
    let removal = res.headers()[SET_COOKIE].to_str().unwrap();
    assert!(removal.starts_with("inboxd_session=;"), "{removal}");
    assert!(removal.contains("Max-Age=0"), "{removal}");

    // Logout ended the session on the server: a copy of the old cookie opens nothing.
    let (status, page) = get(&daemon, &cookie, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("id=\"login\""),
        "the old cookie still opens the page"
    );
    assert!(!page.contains("id=\"channels\""));

    daemon.stop().await.unwrap();
    sim.stop();
}

#[actix_web::test]
async fn the_cookie_is_secure_when_the_public_url_is_https() {
    let sim = simulator();
    let dir = tempfile::tempdir().unwrap();
    let daemon = TestDaemon::start(
        dir.path(),
        &sim.url(),
        600,
        &[(
            "INBOXD_SERVER__PUBLIC_URL",
            "https://inboxd.example.com".to_owned(),
        )],
    )
    .await
    .unwrap();
    let (_, set) = login_from(&daemon, "https://inboxd.example.com").await;
    assert!(set.contains("Secure"), "{set}");
    daemon.stop().await.unwrap();
    sim.stop();
}

#[actix_web::test]
async fn every_action_checks_session_and_csrf_and_reaches_the_supervisor() {
    let sim = simulator();
    let dir = tempfile::tempdir().unwrap();
    let daemon = TestDaemon::start(dir.path(), &sim.url(), 600, &[])
        .await
        .unwrap();
    let client = SimClient::new(sim.url());
    let redirect = format!("{}/oauth/callback", daemon.base);
    let account = client
        .provision("desk@contoso.example", &[redirect.as_str()])
        .await
        .unwrap();
    let (cookie, _) = login(&daemon).await;
    let (_, page) = get(&daemon, &cookie, "/").await;
    let csrf = csrf_of(&page);
    assert!(
        page.contains(&redirect),
        "the add form does not show the redirect URI"
    );

    let add = [
        ("csrf", csrf.as_str()),
        ("name", "<script>alert('x')</script> & co"),
        ("mailbox", "desk@contoso.example"),
        ("tenant_id", account.tenant_id.as_str()),
        ("client_id", account.app.client_id.as_str()),
        ("client_secret", SECRET),
        ("client_secret_expires_at", "2031-05-01"),
        ("folder", ""),
        ("first_import", "new"),
    ];
    // No session: 401 and nothing added. Wrong CSRF: 403 and nothing added.
    let res = post(&daemon, None, "/ui/channels", &add).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let mut forged = add;
    forged[0] = ("csrf", "0000");
    let res = post(&daemon, Some(&cookie), "/ui/channels", &forged).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let (_, listed) = daemon
        .api(reqwest::Method::GET, "/api/channels", None)
        .await
        .unwrap();
    assert_eq!(listed["total"], 0, "a refused form added a channel");

    // A field error is a readable page, not a 500.
    let mut bad = add;
    bad[2] = ("mailbox", "not-an-address");
    let res = post(&daemon, Some(&cookie), "/ui/channels", &bad).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let text = res.text().await.unwrap();
    assert!(text.contains("mailbox"), "{text}");
    assert!(!text.contains(SECRET));

    // Add.
    let res = post(&daemon, Some(&cookie), "/ui/channels", &add).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let to = location(&res);
    let id = to
        .strip_prefix("/?channel=")
        .and_then(|rest| rest.strip_suffix("&done=added"))
        .unwrap_or_else(|| panic!("unexpected redirect {to}"))
        .to_owned();
    let (status, detail) = get(&daemon, &cookie, &to).await;
    assert_eq!(status, StatusCode::OK);
    assert!(detail.contains("data-status=\"awaiting_authorization\""));
    assert!(
        detail.contains("&lt;script&gt;alert('x')&lt;/script&gt; &amp; co"),
        "the name is not shown escaped"
    );
    assert!(
        !detail.contains("<script>alert"),
        "the name was not escaped"
    );
    assert!(!detail.contains(SECRET), "the page shows the client secret");
    assert!(detail.contains(">Authorize</button>"));
    // The form chooses the transport too; the app is known now, so no secret is needed.
    assert!(page.contains("name=\"transport\""), "a transport choice");
    let imap = [
        ("csrf", csrf.as_str()),
        ("mailbox", "imap@contoso.example"),
        ("tenant_id", account.tenant_id.as_str()),
        ("client_id", account.app.client_id.as_str()),
        ("transport", "imap"),
    ];
    let res = post(&daemon, Some(&cookie), "/ui/channels", &imap).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let imap_id = location(&res)
        .strip_prefix("/?channel=")
        .and_then(|rest| rest.strip_suffix("&done=added"))
        .unwrap()
        .to_owned();
    assert_eq!(daemon.channel(&imap_id).await.unwrap()["transport"], "imap");
    daemon
        .api(
            reqwest::Method::DELETE,
            &format!("/api/channels/{imap_id}"),
            None,
        )
        .await
        .unwrap();

    let channel = format!("/ui/channels/{id}");
    let csrf_only = [("csrf", csrf.as_str())];

    // Authorize: a redirect to the simulator's sign-in.
    let res = post(
        &daemon,
        Some(&cookie),
        &format!("{channel}/authorize"),
        &csrf_only,
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(location(&res).starts_with(&sim.url()), "{}", location(&res));

    // Disable, enable.
    let res = post(
        &daemon,
        Some(&cookie),
        &format!("{channel}/disable"),
        &csrf_only,
    )
    .await;
    assert_eq!(location(&res), format!("/?channel={id}&done=disabled"));
    assert_eq!(daemon.channel(&id).await.unwrap()["enabled"], false);
    let res = post(
        &daemon,
        Some(&cookie),
        &format!("{channel}/enable"),
        &csrf_only,
    )
    .await;
    assert_eq!(location(&res), format!("/?channel={id}&done=enabled"));
    assert_eq!(daemon.channel(&id).await.unwrap()["enabled"], true);

    // Update secret: the expiry changes; the value shows nowhere.
    let new_secret = "Sim8Q~a-brand-new-secret-value-for-the-ui-test-02";
    let res = post(
        &daemon,
        Some(&cookie),
        &format!("{channel}/secret"),
        &[
            ("csrf", csrf.as_str()),
            ("client_secret", new_secret),
            ("client_secret_expires_at", "2032-02-29"),
        ],
    )
    .await;
    assert_eq!(location(&res), format!("/?channel={id}&done=secret"));
    let shown = daemon.channel(&id).await.unwrap();
    assert!(
        shown["client_secret_expires_at"]
            .as_str()
            .unwrap()
            .starts_with("2032-02-29"),
        "{shown}"
    );
    let (_, detail) = get(&daemon, &cookie, &format!("/?channel={id}")).await;
    assert!(!detail.contains(new_secret) && !detail.contains(SECRET));

    // Poll now answers with a notice (the channel is not authorized: the supervisor says so or
    // accepts; either way a page, never a 500).
    let res = post(
        &daemon,
        Some(&cookie),
        &format!("{channel}/poll"),
        &csrf_only,
    )
    .await;
    assert!(
        res.status() == StatusCode::SEE_OTHER || res.status().is_client_error(),
        "poll answered {}",
        res.status()
    );

    // Quarantine view and replay.
    let (status, quarantine) = get(&daemon, &cookie, &format!("{channel}/quarantine")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(quarantine.contains("Nothing is quarantined"));
    let res = post(
        &daemon,
        Some(&cookie),
        &format!("{channel}/quarantine/replay"),
        &csrf_only,
    )
    .await;
    assert_eq!(
        location(&res),
        format!("/?channel={id}&done=replayed&replayed=0")
    );

    // Remove asks first, then removes.
    let res = post(
        &daemon,
        Some(&cookie),
        &format!("{channel}/remove"),
        &csrf_only,
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("confirm-remove"));
    assert_eq!(daemon.channel(&id).await.unwrap()["id"], id.as_str());
    let res = post(
        &daemon,
        Some(&cookie),
        &format!("{channel}/remove"),
        &[("csrf", csrf.as_str()), ("confirm", "yes")],
    )
    .await;
    assert_eq!(location(&res), "/?done=removed");
    let (status, _) = daemon
        .api(reqwest::Method::GET, &format!("/api/channels/{id}"), None)
        .await
        .unwrap();
    assert_eq!(status, 404);

    daemon.stop().await.unwrap();
    sim.stop();
}

#[actix_web::test]
async fn every_page_including_the_callbacks_carries_the_one_strict_csp() {
    let sim = simulator();
    let dir = tempfile::tempdir().unwrap();
    let daemon = TestDaemon::start(dir.path(), &sim.url(), 600, &[])
        .await
        .unwrap();
    let (cookie, _) = login(&daemon).await;
    let mut policies = Vec::new();
    for (path, with_cookie) in [
        ("/", false),
        ("/", true),
        ("/oauth/callback", false),
        ("/oauth/callback?state=forged&code=x", false),
        ("/ui/channels/not-an-id/quarantine", true),
    ] {
        let mut req = daemon.http.get(format!("{}{path}", daemon.base));
        if with_cookie {
            req = req.header(COOKIE, &cookie);
        }
        let res = req.send().await.unwrap();
        let csp = res.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        let page = res.text().await.unwrap();
        assert!(page.contains("href=\"/ui/app.css\""), "{path}: {page}");
        assert!(!page.contains("<style"), "{path} has an inline style");
        policies.push((path, csp));
    }
    let (_, first) = &policies[0];
    assert!(
        first.contains("default-src 'none'") && !first.contains("unsafe"),
        "{first}"
    );
    for (path, csp) in &policies {
        assert_eq!(csp, first, "{path} has another policy");
    }
    daemon.stop().await.unwrap();
    sim.stop();
}

/// Adds a channel through the API (it waits for authorization; nothing calls Microsoft).
async fn some_channel(daemon: &TestDaemon) -> String {
    daemon
        .add_channel(
            "6f1c2a3b-4d5e-4f60-8a71-92b3c4d5e6f7",
            "0a1b2c3d-4e5f-4061-8273-9485a6b7c8d9",
            SECRET,
            "desk@contoso.example",
        )
        .await
        .unwrap()
}

async fn enabled(daemon: &TestDaemon, id: &str) -> bool {
    daemon.channel(id).await.unwrap()["enabled"] == true
}

#[actix_web::test]
async fn a_form_from_another_origin_is_refused_even_with_the_right_cookie_and_csrf_token() {
    let sim = simulator();
    let dir = tempfile::tempdir().unwrap();
    let daemon = TestDaemon::start(dir.path(), &sim.url(), 600, &[])
        .await
        .unwrap();
    let id = some_channel(&daemon).await;
    let (cookie, _) = login(&daemon).await;
    let (_, page) = get(&daemon, &cookie, "/").await;
    let csrf = csrf_of(&page);
    let disable = format!("/ui/channels/{id}/disable");

    // Another site's form (its Origin), a sandboxed one (`null`), and a tool that sends neither
    // Origin nor Referer: 403, and the channel stays enabled.
    for origin in [Some("https://evil.example"), Some("null"), None] {
        let res = post_from(
            &daemon,
            origin,
            Some(&cookie),
            &disable,
            &[("csrf", csrf.as_str())],
        )
        .await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "Origin {origin:?}");
        let text = res.text().await.unwrap();
        assert!(text.contains("did not come from"), "{text}");
        assert!(enabled(&daemon, &id).await, "Origin {origin:?} disabled it");
    }
    // A Referer of another site without Origin: refused too.
    let res = daemon
        .http
        .post(format!("{}{disable}", daemon.base))
        .header(COOKIE, &cookie)
        .header(REFERER, "https://evil.example/page")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // Logging in from another site is refused as well, and sets no cookie.
    let res = post_from(
        &daemon,
        Some("https://evil.example"),
        None,
        "/login",
        &[("token", daemon.token.as_str())],
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.headers().get(SET_COOKIE).is_none());
    assert!(enabled(&daemon, &id).await);

    // The daemon's own page (by Origin, or by Referer alone) is let through.
    let res = daemon
        .http
        .post(format!("{}{disable}", daemon.base))
        .header(COOKIE, &cookie)
        .header(REFERER, format!("{}/?channel={id}", daemon.base))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(!enabled(&daemon, &id).await);

    daemon.stop().await.unwrap();
    sim.stop();
}

#[actix_web::test]
async fn two_logins_get_different_sessions_and_one_sessions_csrf_token_does_not_work_in_another() {
    let sim = simulator();
    let dir = tempfile::tempdir().unwrap();
    let daemon = TestDaemon::start(dir.path(), &sim.url(), 600, &[])
        .await
        .unwrap();
    let id = some_channel(&daemon).await;
    let (first, _) = login(&daemon).await;
    let (second, _) = login(&daemon).await;
    assert_ne!(first, second, "two logins got the same session cookie");
    let (_, first_page) = get(&daemon, &first, "/").await;
    let (_, second_page) = get(&daemon, &second, "/").await;
    let first_csrf = csrf_of(&first_page);
    assert_ne!(first_csrf, csrf_of(&second_page));
    // The CSRF token is the session's own: stable while the session lives.
    let (_, again) = get(&daemon, &first, "/").await;
    assert_eq!(csrf_of(&again), first_csrf);

    // The first session's token in a form of the second: 403, nothing changes.
    let res = post(
        &daemon,
        Some(&second),
        &format!("/ui/channels/{id}/disable"),
        &[("csrf", first_csrf.as_str())],
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(enabled(&daemon, &id).await);

    // Logging out the first leaves the second working.
    let res = post(&daemon, Some(&first), "/logout", &[("csrf", &first_csrf)]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let (_, page) = get(&daemon, &second, "/").await;
    assert!(
        page.contains("id=\"channels\""),
        "logout ended another session"
    );
    let (_, page) = get(&daemon, &first, "/").await;
    assert!(page.contains("id=\"login\""));

    daemon.stop().await.unwrap();
    sim.stop();
}

#[actix_web::test]
async fn a_session_ends_after_its_idle_time() {
    let sim = simulator();
    let dir = tempfile::tempdir().unwrap();
    let daemon = TestDaemon::start(
        dir.path(),
        &sim.url(),
        600,
        &[("INBOXD_SERVER__SESSION_IDLE_SECS", "1".to_owned())],
    )
    .await
    .unwrap();
    let id = some_channel(&daemon).await;
    let (cookie, _) = login(&daemon).await;
    let (_, page) = get(&daemon, &cookie, "/").await;
    assert!(page.contains("id=\"channels\""));
    let csrf = csrf_of(&page);
    actix_rt::time::sleep(Duration::from_millis(1300)).await;
    let (_, page) = get(&daemon, &cookie, "/").await;
    assert!(
        page.contains("id=\"login\""),
        "an idle session still opens the page"
    );
    let res = post(
        &daemon,
        Some(&cookie),
        &format!("/ui/channels/{id}/disable"),
        &[("csrf", csrf.as_str())],
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(enabled(&daemon, &id).await);
    daemon.stop().await.unwrap();
    sim.stop();
}

#[actix_web::test]
async fn a_session_ends_at_its_absolute_age_even_while_in_use() {
    let sim = simulator();
    let dir = tempfile::tempdir().unwrap();
    let daemon = TestDaemon::start(
        dir.path(),
        &sim.url(),
        600,
        &[("INBOXD_SERVER__SESSION_MAX_AGE_SECS", "2".to_owned())],
    )
    .await
    .unwrap();
    let (cookie, set) = login(&daemon).await;
    assert!(set.contains("Max-Age=2"), "{set}");
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        let (_, page) = get(&daemon, &cookie, "/").await;
        assert!(page.contains("id=\"channels\""), "the session ended early");
        actix_rt::time::sleep(Duration::from_millis(300)).await;
    }
    actix_rt::time::sleep(Duration::from_millis(800)).await;
    let (_, page) = get(&daemon, &cookie, "/").await;
    assert!(
        page.contains("id=\"login\""),
        "the session outlived its maximum age"
    );
    daemon.stop().await.unwrap();
    sim.stop();
}

fn view(i: usize) -> ChannelView {
    let status = ChannelStatus::ALL[i % ChannelStatus::ALL.len()];
    ChannelView {
        id: ChannelId::generate(),
        name: format!("channel {i:06}").into(),
        tenant_id: TenantId::parse("6f1c2a3b-4d5e-4f60-8a71-92b3c4d5e6f7").unwrap(),
        client_id: ClientId::parse("0a1b2c3d-4e5f-4061-8273-9485a6b7c8d9").unwrap(),
        mailbox: Mailbox::parse(&format!("box{i:06}@contoso.example")).unwrap(),
        folder: Folder::inbox(),
        poll_mode: None,
        transport: inboxd::domain::Transport::Graph,
        enabled: status != ChannelStatus::Disabled,
        status,
        last_error: None,
        warning: None,
        node: None,
        last_poll_at: Some(Utc::now()),
        last_success_at: Some(Utc::now()),
        next_poll_at: Some(Utc::now() + chrono::Duration::seconds(60)),
        credential_expiry: Some((
            inboxd::domain::CredentialKind::Secret,
            Utc::now() + chrono::Duration::days(i as i64 % 400),
        )),
        attempts: 0,
        messages_today: 0,
        messages_day: None,
        created_at: Utc::now(),
    }
}

#[actix_web::test]
async fn a_hundred_thousand_channels_are_paged_on_the_server() {
    let sim = simulator();
    let dir = tempfile::tempdir().unwrap();
    let daemon = TestDaemon::start(dir.path(), &sim.url(), 600, &[])
        .await
        .unwrap();
    let board = &daemon.app().unwrap().board();
    for i in 0..100_000 {
        board.put(view(i));
    }
    let (cookie, _) = login(&daemon).await;

    let started = Instant::now();
    let (status, page) = get(&daemon, &cookie, "/").await;
    let first_page = started.elapsed();
    eprintln!("the first page of 100,000 channels took {first_page:?}");
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("Showing 1–100 of 100000 matching channels."),
        "{}",
        &page[..2000]
    );
    assert_eq!(page.matches("<tr data-channel-id=").count(), 100);
    assert!(page.contains("channel 000000") && page.contains("channel 000099"));
    assert!(page.contains("page 1 of 1000"));
    assert!(page.contains(">active 16667<"), "the counts are wrong");

    let (_, last) = get(&daemon, &cookie, "/?page=1000").await;
    assert!(last.contains("channel 099999") && last.contains("Showing 99901–100000"));
    assert!(!last.contains("rel=\"next\""));

    let (_, blocked) = get(&daemon, &cookie, "/?status=blocked&q=box0000").await;
    // box000005, box000011, … among box000000–box000099: 16 of them are blocked.
    assert!(
        blocked.contains("Showing 1–16 of 16 matching"),
        "{}",
        &blocked[..3000]
    );
    assert_eq!(blocked.matches("data-status=\"blocked\"").count(), 16);

    // One pass over the board per request: generous for a debug build on a shared machine.
    assert!(
        first_page < Duration::from_secs(5),
        "the first page of 100,000 channels took {first_page:?}"
    );
    daemon.stop().await.unwrap();
    sim.stop();
}

/// A failure as the board shows it.
fn failing(code: &str, remedy: &str) -> inboxd::store::LastError {
    inboxd::store::LastError {
        source: inboxd::store::ErrorSource::IdentityPlatform,
        code: code.to_owned(),
        message: format!("{code} happened"),
        remedy: remedy.to_owned(),
        at: Utc::now() - chrono::Duration::minutes(5),
        trace_id: None,
        correlation_id: None,
    }
}

#[actix_web::test]
async fn the_first_screen_groups_the_channels_in_trouble_and_a_bulk_action_serves_a_group() {
    let sim = simulator();
    let dir = tempfile::tempdir().unwrap();
    let daemon = TestDaemon::start(dir.path(), &sim.url(), 600, &[])
        .await
        .unwrap();
    let tenant = "6f1c2a3b-4d5e-4f60-8a71-92b3c4d5e6f7";
    let client = "0a1b2c3d-4e5f-4061-8273-9485a6b7c8d9";
    let mut ids = Vec::new();
    for i in 0..9 {
        let id = daemon
            .add_channel(tenant, client, SECRET, &format!("care{i}@contoso.example"))
            .await
            .unwrap();
        ids.push(ChannelId::parse(&id).unwrap());
    }
    // Three ways of failing, and one channel that heals on its own; two stay healthy-ish.
    let board = daemon.app().unwrap().board();
    let set = |id: ChannelId, status: ChannelStatus, error: Option<inboxd::store::LastError>| {
        board.update(id, |row| {
            row.status = status;
            row.last_error = error.map(Box::new);
        });
    };
    for id in &ids[0..3] {
        set(
            *id,
            ChannelStatus::NeedsReauthorization,
            Some(failing("AADSTS70008", "Sign in again: the grant expired.")),
        );
    }
    for id in &ids[3..5] {
        set(
            *id,
            ChannelStatus::Blocked,
            Some(failing(
                "AADSTS53003",
                "Ask the tenant's admin to exclude the app from the Conditional Access policy.",
            )),
        );
    }
    set(
        ids[5],
        ChannelStatus::Blocked,
        Some(failing(
            "AADSTS7000222",
            "Make a new client secret and update the channel.",
        )),
    );
    set(
        ids[6],
        ChannelStatus::BackingOff,
        Some(failing(
            "ApplicationThrottled",
            "Nothing: inboxd retries on its own.",
        )),
    );
    board.update(ids[6], |row| row.attempts = 4);
    set(ids[7], ChannelStatus::Active, None);
    set(ids[8], ChannelStatus::Active, None);

    // An app whose secret expires in five days is named on the first screen with how to rotate it.
    let soon = (Utc::now() + chrono::Duration::days(5)).to_rfc3339();
    let (status, app) = daemon
        .api(
            reqwest::Method::POST,
            "/api/apps",
            Some(serde_json::json!({
                "tenant_id": "contoso.example",
                "client_id": "11111111-2222-4333-8444-555555555555",
                "client_secret": "expiring-secret-value",
                "client_secret_expires_at": soon,
            })),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{app}");
    assert!(
        app["warning"].as_str().unwrap().contains("expires in"),
        "{app}"
    );

    let (cookie, _) = login(&daemon).await;
    let (status, page) = get(&daemon, &cookie, "/").await;
    assert_eq!(status, StatusCode::OK);
    let expiring = &page[page
        .find("id=\"expiring\"")
        .expect("an expiring-credentials card")..];
    assert!(
        expiring.contains("contoso.example/11111111-2222-4333-8444-555555555555")
            && expiring.contains("inboxd app rotate"),
        "{expiring}"
    );
    assert!(!page.contains("expiring-secret-value"));
    // The groups come first, most urgent first, each once with its count and its one remedy.
    let problems = page
        .find("id=\"problems\"")
        .expect("a Needs attention section");
    assert!(
        problems < page.find("id=\"channels\"").unwrap(),
        "before the table"
    );
    let order: Vec<usize> = [
        "data-code=\"AADSTS53003\"",
        "data-code=\"AADSTS7000222\"",
        "data-code=\"AADSTS70008\"",
        "data-code=\"ApplicationThrottled\"",
    ]
    .iter()
    .map(|needle| {
        page.find(needle)
            .unwrap_or_else(|| panic!("no group {needle}"))
    })
    .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "blocked, then needs re-authorization, then the calm group: {order:?}"
    );
    assert!(
        page.contains("data-code=\"AADSTS70008\" data-count=\"3\""),
        "{page}"
    );
    assert!(page.contains("data-code=\"AADSTS53003\" data-count=\"2\""));
    assert_eq!(
        page.matches("Sign in again: the grant expired.").count(),
        1,
        "one remedy per group"
    );
    assert!(page.contains("Ask the tenant&#39;s admin") || page.contains("Ask the tenant's admin"));
    assert!(page.contains("class=\"group calm\""), "backing off is calm");
    assert!(
        page.contains("retrying on its own, 4 attempts so far"),
        "a self-healing group says how long it has tried"
    );
    // A wrong secret's primary action is the secret, not a sign-in.
    let secret_group = &page[order[1]..order[2]];
    assert!(
        secret_group.contains("Update the app&#39;s secret")
            || secret_group.contains("Update the app's secret"),
        "{secret_group}"
    );
    // Conditional Access is an admin's fix outside inboxd: try again, not a new sign-in.
    let policy_group = &page[order[0]..order[1]];
    assert!(policy_group.contains("Try all again"), "{policy_group}");

    // One bulk action makes sign-in links for the whole group.
    let csrf = csrf_of(&page);
    let res = post(
        &daemon,
        Some(&cookie),
        "/ui/bulk",
        &[
            ("csrf", &csrf),
            ("status", "needs_reauthorization"),
            ("code", "AADSTS70008"),
            ("action", "reauthorize"),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let links = res.text().await.unwrap();
    assert_eq!(links.matches("/sign-in/").count(), 3, "{links}");
    for id in &ids[0..3] {
        assert!(links.contains(&id.to_string()));
    }
    assert!(
        !links.contains(&ids[3].to_string()),
        "only the group's channels"
    );

    // Without the session's CSRF token, nothing happens.
    let refused = post(
        &daemon,
        Some(&cookie),
        "/ui/bulk",
        &[
            ("csrf", "wrong"),
            ("status", "blocked"),
            ("code", "AADSTS53003"),
            ("action", "disable"),
        ],
    )
    .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(daemon.channel(&ids[3].to_string()).await.unwrap()["enabled"] == true);

    // A channel's details say how many of its messages are quarantined.
    let ingest = daemon.app().unwrap().ingest();
    ingest
        .ledger
        .record_failures(
            ids[0],
            &[
                ("m-1".to_owned(), "refused".to_owned()),
                ("m-2".to_owned(), "refused".to_owned()),
            ],
            1,
            Utc::now(),
        )
        .unwrap();
    let (_, detail) = get(&daemon, &cookie, &format!("/?channel={}", ids[0])).await;
    assert!(detail.contains("Quarantine: 2 messages"), "{detail}");
    let (_, other) = get(&daemon, &cookie, &format!("/?channel={}", ids[1])).await;
    assert!(other.contains("View quarantine") && other.contains("data-count=\"0\""));

    // Disable a group: both of its channels, nothing else.
    let res = post(
        &daemon,
        Some(&cookie),
        "/ui/bulk",
        &[
            ("csrf", &csrf),
            ("status", "blocked"),
            ("code", "AADSTS53003"),
            ("action", "disable"),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    for id in &ids[3..5] {
        assert_eq!(
            daemon.channel(&id.to_string()).await.unwrap()["enabled"],
            false
        );
    }
    assert_eq!(
        daemon.channel(&ids[5].to_string()).await.unwrap()["enabled"],
        true
    );

    // A selection from the table (check boxes): enable two disabled channels, nothing else.
    let (_, page) = get(&daemon, &cookie, "/").await;
    assert!(
        page.contains("form=\"bulk-selection\""),
        "check boxes in the table"
    );
    let (a, b) = (ids[3].to_string(), ids[4].to_string());
    let res = post(
        &daemon,
        Some(&cookie),
        "/ui/bulk",
        &[
            ("csrf", &csrf),
            ("ids", &a),
            ("ids", &b),
            ("action", "enable"),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    for id in [&a, &b] {
        assert_eq!(daemon.channel(id).await.unwrap()["enabled"], true);
    }
    // Removing asks first: the first step removes nothing and names what the second would.
    let res = post(
        &daemon,
        Some(&cookie),
        "/ui/bulk",
        &[
            ("csrf", &csrf),
            ("ids", &a),
            ("ids", &b),
            ("action", "remove"),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let confirm = res.text().await.unwrap();
    assert!(confirm.contains("Remove 2 channels?"), "{confirm}");
    assert!(
        daemon
            .channel(&a)
            .await
            .is_ok_and(|c| c["id"] == a.as_str())
    );
    let res = post(
        &daemon,
        Some(&cookie),
        "/ui/bulk",
        &[
            ("csrf", &csrf),
            ("ids", &a),
            ("ids", &b),
            ("action", "remove"),
            ("confirm", "yes"),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    for id in [&a, &b] {
        let (status, _) = daemon
            .api(reqwest::Method::GET, &format!("/api/channels/{id}"), None)
            .await
            .unwrap();
        assert_eq!(status, 404, "{id} removed");
    }
    assert_eq!(
        daemon.channel(&ids[5].to_string()).await.unwrap()["enabled"],
        true,
        "nothing else"
    );
    // A selection naming a channel that does not exist changes nothing.
    let res = post(
        &daemon,
        Some(&cookie),
        "/ui/bulk",
        &[
            ("csrf", &csrf),
            ("ids", &ids[6].to_string()),
            ("ids", "00000000-0000-4000-8000-000000000000"),
            ("action", "disable"),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        daemon.channel(&ids[6].to_string()).await.unwrap()["enabled"],
        true
    );
    daemon.stop().await.unwrap();
    sim.stop();
}
