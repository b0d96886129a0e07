use std::time::{Duration, Instant};

use chrono::Utc;
use inboxd::domain::ChannelId;
use inboxd::domain::secret::PkceVerifier;
use inboxd::store::{PendingAuthorization, Store, StoreOptions};
use serde_json::json;

use crate::helpers::{REDIRECT, world, world_with};

/// The state and the callback's base of a fresh authorization link, without following it.
async fn start_link(world: &crate::helpers::World, id: &str) -> (String, String) {
    let (status, start) = world
        .daemon
        .api(
            reqwest::Method::POST,
            &format!("/api/channels/{id}/authorize"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{start}");
    let url = url::Url::parse(start["authorization_url"].as_str().unwrap()).unwrap();
    let state = url
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    (state, format!("{}/oauth/callback", world.daemon.base))
}

async fn get_page(world: &crate::helpers::World, url: &str) -> (u16, String) {
    let response = world.daemon.http.get(url).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[actix_rt::test]
async fn the_full_flow_authorizes_the_channel_and_polls_within_a_second() {
    // Arrange
    let world = world(60, &[]).await;
    let mailbox = world.mailbox("support@contoso.example").await;
    let id = world.add(&mailbox).await;
    let channel = world.daemon.channel(&id).await.unwrap();
    assert_eq!(channel["status"], "awaiting_authorization");
    assert!(
        channel["redirect_uri"]
            .as_str()
            .unwrap()
            .ends_with("/oauth/callback")
    );
    assert!(channel.get("client_secret").is_none());

    // Act
    let (status, start) = world
        .daemon
        .api(
            reqwest::Method::POST,
            &format!("/api/channels/{id}/authorize"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let link = url::Url::parse(start["authorization_url"].as_str().unwrap()).unwrap();
    let query: std::collections::HashMap<_, _> = link.query_pairs().into_owned().collect();
    assert_eq!(
        link.path(),
        format!("/{}/oauth2/v2.0/authorize", mailbox.tenant)
    );
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["login_hint"], mailbox.upn);
    assert!(
        query["scope"].contains("offline_access")
            && query["scope"].contains("Mail.ReadWrite.Shared")
    );
    let signin = world.daemon.http.get(link.as_str()).send().await.unwrap();
    let location = signin.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{}/oauth/callback?", world.daemon.base)),
        "{location}"
    );
    let authorized_at = Instant::now();
    let (status, page) = get_page(&world, &location).await;

    // Assert
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Channel authorized"), "{page}");
    let mut first_request = None;
    while authorized_at.elapsed() < Duration::from_secs(1) {
        if world.polls(&mailbox.upn).await > 0 {
            first_request = Some(authorized_at.elapsed());
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        first_request.is_some(),
        "no Graph request within a second of the callback"
    );
    world
        .wait_status(&id, "active", Duration::from_secs(2))
        .await;
}

#[actix_rt::test]
async fn a_forged_state_is_refused_and_changes_nothing() {
    let world = world(60, &[]).await;
    let mailbox = world.mailbox("a@contoso.example").await;
    let id = world.add(&mailbox).await;
    let (status, page) = get_page(
        &world,
        &format!(
            "{}/oauth/callback?state=forged-state&code=abc",
            world.daemon.base
        ),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        page.contains("cannot be used") && page.contains("StateUnknown"),
        "{page}"
    );
    let (status, page) = get_page(
        &world,
        &format!("{}/oauth/callback?code=abc", world.daemon.base),
    )
    .await;
    assert_eq!(status, 400, "{page}");
    assert_eq!(
        world.daemon.channel(&id).await.unwrap()["status"],
        "awaiting_authorization"
    );
    assert_eq!(
        world.total_requests("token").await,
        0,
        "a forged callback reached the token endpoint"
    );
}

#[actix_rt::test]
async fn a_replayed_callback_is_refused_and_the_channel_stays_active() {
    let world = world(60, &[]).await;
    let mailbox = world.mailbox("b@contoso.example").await;
    let id = world.add(&mailbox).await;
    let (state, callback) = start_link(&world, &id).await;
    let link = format!("{callback}?state={state}&code=");
    // Follow the real sign-in once.
    let (status, start) = world
        .daemon
        .api(
            reqwest::Method::POST,
            &format!("/api/channels/{id}/authorize"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let signin = world
        .daemon
        .http
        .get(start["authorization_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let location = signin.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(get_page(&world, &location).await.0, 200);
    world
        .wait_status(&id, "active", Duration::from_secs(3))
        .await;
    let tokens_before = world.total_requests("token").await;

    let (status, page) = get_page(&world, &location).await;

    assert_eq!(status, 400);
    assert!(
        page.contains("already used") && page.contains("StateReused"),
        "{page}"
    );
    assert_eq!(
        world.total_requests("token").await,
        tokens_before,
        "a replayed code was redeemed"
    );
    assert_eq!(world.daemon.channel(&id).await.unwrap()["status"], "active");
    // The unused first link is still single-use and unrelated: an empty code is refused.
    let (status, page) = get_page(&world, &link).await;
    assert_eq!(status, 400);
    assert!(
        page.contains(inboxd::http::callback::EMPTY_CODE_MESSAGE),
        "{page}"
    );
}

#[actix_rt::test]
async fn an_expired_state_is_refused() {
    let world = world(60, &[]).await;
    let mailbox = world.mailbox("c@contoso.example").await;
    let id = world.add(&mailbox).await;
    let store = world.daemon.app().unwrap().ingest().store.clone();
    let now = Utc::now();
    let pending = PendingAuthorization {
        channel_id: ChannelId::parse(&id).unwrap(),
        verifier: PkceVerifier::new("v".repeat(43)).unwrap(),
        redirect_uri: REDIRECT.to_owned(),
        created_at: now - chrono::Duration::minutes(11),
        expires_at: now - chrono::Duration::minutes(1),
    };
    store.put_pending("an-old-state-value", &pending).unwrap();

    let (status, page) = get_page(
        &world,
        &format!(
            "{}/oauth/callback?state=an-old-state-value&code=abc",
            world.daemon.base
        ),
    )
    .await;

    assert_eq!(status, 400);
    assert!(
        page.contains("older than 10 minutes") && page.contains("StateExpired"),
        "{page}"
    );
    assert_eq!(
        world.daemon.channel(&id).await.unwrap()["status"],
        "awaiting_authorization"
    );
}

#[actix_rt::test]
async fn an_empty_code_shows_the_message_and_the_way_to_reauthorize() {
    let world = world(60, &[]).await;
    let mailbox = world.mailbox("d@contoso.example").await;
    let id = world.add(&mailbox).await;
    let (state, callback) = start_link(&world, &id).await;

    let (status, page) = get_page(
        &world,
        &format!("{callback}?state={state}&code=&extra=ignored"),
    )
    .await;

    assert_eq!(status, 400);
    assert!(
        page.contains(
            "Authorization code should not be empty or null for generating the access token"
        ),
        "{page}"
    );
    assert!(page.contains("Update auth info"), "{page}");
    assert_eq!(
        world.daemon.channel(&id).await.unwrap()["status"],
        "awaiting_authorization"
    );
}

#[actix_rt::test]
async fn an_access_denied_redirect_is_shown_with_its_remedy() {
    let world = world(60, &[]).await;
    let mailbox = world.mailbox("e@contoso.example").await;
    let id = world.add(&mailbox).await;
    let (state, callback) = start_link(&world, &id).await;
    let description = "AADSTS65004: User declined to consent to access the app.\r\nTrace ID: 0000-trace\r\nCorrelation ID: 1111-corr\r\nTimestamp: 2026-01-01 00:00:00Z";
    let url = reqwest::Url::parse_with_params(
        &callback,
        &[
            ("state", state.as_str()),
            ("error", "access_denied"),
            ("error_description", description),
            ("error_subcode", "cancel"),
        ],
    )
    .unwrap();

    let (status, page) = get_page(&world, url.as_str()).await;

    assert_eq!(status, 400);
    assert!(page.contains("AADSTS65004"), "{page}");
    assert!(
        page.contains("0000-trace") && page.contains("1111-corr"),
        "{page}"
    );
    assert!(page.contains("What to do"), "{page}");
    assert!(!page.contains("Timestamp:"), "{page}");
    assert_eq!(
        world.daemon.channel(&id).await.unwrap()["status"],
        "awaiting_authorization"
    );
}

#[actix_rt::test]
async fn conditional_access_on_the_redirect_is_shown_with_its_remedy() {
    let world = world(60, &[]).await;
    let mailbox = world.mailbox("f@contoso.example").await;
    let id = world.add(&mailbox).await;
    world.fault(json!({"kind": "aadsts", "code": 53003, "tenant": mailbox.tenant, "endpoints": ["authorize"]})).await;

    let (status, page) = world.daemon.authorize(&id).await.unwrap();

    assert_eq!(status, 400);
    assert!(page.contains("AADSTS53003"), "{page}");
    assert!(page.contains("Conditional Access"), "{page}");
    assert!(page.contains("Trace ID"), "{page}");
}

/// Every cycle refreshes: the simulator's access tokens live shorter than the refresh margin.
fn short_tokens() -> inboxd::sim::SimOptions {
    inboxd::sim::SimOptions {
        access_token_lifetime_secs: 60,
        ..inboxd::sim::SimOptions::default()
    }
}

async fn refresh_failure(
    code: serde_json::Value,
    expected_status: &str,
    expected_code: &str,
    remedy_words: &str,
) {
    let world = world_with(short_tokens(), 60, &[]).await;
    let (id, mailbox) = world.active_channel("g@contoso.example").await;
    let mut spec = code;
    spec["tenant"] = json!(mailbox.tenant);
    world.fault(spec).await;

    world.poll_now(&id).await;
    let channel = world
        .daemon
        .wait_channel(&id, Duration::from_secs(5), |c| {
            c["status"] == expected_status
        })
        .await
        .unwrap();

    let error = &channel["last_error"];
    assert_eq!(error["code"], expected_code, "{channel:#}");
    assert_eq!(error["source"], "identity_platform");
    assert!(
        error["remedy"].as_str().unwrap().contains(remedy_words),
        "{channel:#}"
    );
    // Nothing is lost: the grant and the configuration stay in the store.
    let shared = world.daemon.app().unwrap().ingest();
    let channel_id = ChannelId::parse(&id).unwrap();
    assert!(shared.store.get_tokens(channel_id).unwrap().is_some());
    assert!(shared.store.get_channel(channel_id).unwrap().is_some());
    // A refused grant is not hammered (a "Poll now" that raced the first cycle may add one try).
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    let tokens = world.total_requests("token").await;
    actix_rt::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(world.total_requests("token").await, tokens);
}

#[actix_rt::test]
async fn conditional_access_on_a_refresh_blocks_the_channel_with_the_remedy() {
    refresh_failure(
        json!({"kind": "aadsts", "code": 53003, "endpoints": ["token"]}),
        "blocked",
        "AADSTS53003",
        "Conditional Access",
    )
    .await;
}

#[actix_rt::test]
async fn an_expired_secret_blocks_the_channel_and_says_to_make_a_new_one() {
    refresh_failure(
        json!({"kind": "expired_secret", "endpoints": ["token"]}),
        "blocked",
        "AADSTS7000222",
        "secret",
    )
    .await;
}

#[actix_rt::test]
async fn an_expired_grant_asks_for_reauthorization() {
    refresh_failure(
        json!({"kind": "aadsts", "code": 70008, "endpoints": ["token"]}),
        "needs_reauthorization",
        "AADSTS70008",
        "authoriz",
    )
    .await;
}

#[actix_rt::test]
async fn a_revoked_grant_asks_for_reauthorization_and_reauthorizing_recovers() {
    let world = world_with(short_tokens(), 60, &[]).await;
    let (id, mailbox) = world.active_channel("h@contoso.example").await;
    world.sim_client.revoke_grants(&mailbox.upn).await.unwrap();

    world.poll_now(&id).await;
    let channel = world
        .wait_status(&id, "needs_reauthorization", Duration::from_secs(5))
        .await;
    assert_eq!(channel["last_error"]["code"], "AADSTS50173", "{channel:#}");

    // "Update auth info": a new authorization brings the channel back.
    let (status, page) = world.daemon.authorize(&id).await.unwrap();
    assert_eq!(status, 200, "{page}");
    let channel = world
        .wait_status(&id, "active", Duration::from_secs(5))
        .await;
    assert!(channel["last_error"].is_null());
}

#[actix_rt::test]
async fn a_rotated_secret_unblocks_the_channel_without_losing_mail() {
    let world = world_with(short_tokens(), 60, &[]).await;
    let (id, mailbox) = world.active_channel("i@contoso.example").await;
    let fault = world
        .fault(json!({"kind": "expired_secret", "tenant": mailbox.tenant, "endpoints": ["token"]}))
        .await;
    world.poll_now(&id).await;
    world
        .wait_status(&id, "blocked", Duration::from_secs(5))
        .await;
    world
        .sim_client
        .deliver(&mailbox.upn, &inboxd::sim::client::Delivery::generated(3))
        .await
        .unwrap();

    // The admin makes a new secret in Azure and updates the channel.
    world.sim_client.remove_fault(fault).await.unwrap();
    let (status, body) = world
        .daemon
        .api(
            reqwest::Method::PATCH,
            &format!("/api/channels/{id}"),
            Some(
                json!({"client_secret": mailbox.secret, "client_secret_expires_at": "2099-12-31"}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");

    world
        .wait_status(&id, "active", Duration::from_secs(5))
        .await;
    crate::helpers::until(
        Duration::from_secs(5),
        "the 3 messages in the sink",
        || async { world.daemon.sink_lines().unwrap().len() == 3 },
    )
    .await;
}

#[actix_rt::test]
async fn an_identity_platform_outage_backs_off_and_recovers_without_losing_the_grant() {
    let world = world_with(short_tokens(), 60, &[]).await;
    let (id, mailbox) = world.active_channel("j@contoso.example").await;
    world.fault(json!({"kind": "down", "tenant": mailbox.tenant, "endpoints": ["token"], "duration_ms": 1500})).await;

    world.poll_now(&id).await;
    let channel = world
        .wait_status(&id, "backing_off", Duration::from_secs(5))
        .await;
    assert_eq!(channel["last_error"]["source"], "identity_platform");

    // No operator: the backoff retries until the outage ends.
    world
        .wait_status(&id, "active", Duration::from_secs(15))
        .await;
}

#[actix_rt::test]
async fn the_rotated_refresh_token_survives_a_restart_and_is_the_one_used_next() {
    // Arrange: every cycle refreshes.
    let sim = inboxd::sim::spawn(short_tokens()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let extra: [(&str, String); 0] = [];
    let daemon = inboxd_testkit::TestDaemon::start(dir.path(), &sim.url(), 2, &extra)
        .await
        .unwrap();
    let key = daemon.master_key.clone();
    let world = crate::helpers::World {
        daemon,
        sim_client: inboxd::sim::client::SimClient::new(sim.url()),
        sim_url: sim.url(),
        dir,
        _sim: sim,
    };
    let (id, _) = world.active_channel("k@contoso.example").await;
    let channel_id = ChannelId::parse(&id).unwrap();
    let shared = world.daemon.app().unwrap().ingest();
    crate::helpers::until(Duration::from_secs(5), "a refresh", || async {
        shared
            .stats
            .refreshes
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    })
    .await;
    drop(shared);
    let crate::helpers::World {
        daemon,
        sim_client,
        sim_url,
        dir,
        _sim,
    } = world;

    // Act: stop right after the refresh, read what was persisted.
    daemon.stop().await.unwrap();
    let store = Store::open(
        &dir.path().join("store"),
        key.clone(),
        StoreOptions::default(),
    )
    .unwrap();
    let before = store.get_tokens(channel_id).unwrap().unwrap();
    drop(store);
    let daemon =
        inboxd_testkit::TestDaemon::start_with_key(dir.path(), &sim_url, 2, &extra, key.clone())
            .await
            .unwrap();
    let shared = daemon.app().unwrap().ingest();
    crate::helpers::until(
        Duration::from_secs(5),
        "a refresh after the restart",
        || async {
            shared
                .stats
                .refreshes
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 1
        },
    )
    .await;
    drop(shared);
    daemon.stop().await.unwrap();

    // Assert: the restarted daemon refreshed with the persisted token and persisted the next one.
    let store = Store::open(&dir.path().join("store"), key, StoreOptions::default()).unwrap();
    let after = store.get_tokens(channel_id).unwrap().unwrap();
    assert_ne!(
        before.refresh_token, after.refresh_token,
        "the rotated refresh token was not persisted"
    );
    assert!(after.obtained_at > before.obtained_at);
    let channel = store.get_channel(channel_id).unwrap().unwrap();
    assert_eq!(
        channel.status,
        inboxd::domain::ChannelStatus::Active,
        "{:?}",
        channel.last_error
    );
    let counters = sim_client.counters(None).await.unwrap();
    assert!(
        counters.requests.get("token").copied().unwrap_or(0) >= 3,
        "code + a refresh per run"
    );
}

#[actix_rt::test]
async fn an_access_token_revoked_mid_life_refreshes_once_then_asks_for_reauthorization() {
    // Regression: a 401 on a live-looking token used to leave the channel polling with a dead token.
    let world = world(60, &[]).await;
    let (id, mailbox) = world.active_channel("mid@contoso.example").await;
    crate::helpers::until(Duration::from_secs(3), "the first poll", || async {
        world.polls(&mailbox.upn).await >= 1
    })
    .await;
    // The grant is revoked and Graph refuses the (not yet expired) access token.
    world.sim_client.revoke_grants(&mailbox.upn).await.unwrap();
    world.fault(json!({"kind": "status", "status": 401, "code": "InvalidAuthenticationToken", "mailbox": mailbox.upn})).await;
    let tokens_before = world.total_requests("token").await;

    world.poll_now(&id).await;
    let channel = world
        .wait_status(&id, "needs_reauthorization", Duration::from_secs(5))
        .await;

    assert_eq!(channel["last_error"]["code"], "AADSTS50173", "{channel:#}");
    assert_eq!(
        world.total_requests("token").await,
        tokens_before + 1,
        "one refresh after the 401"
    );
    let lists = world.polls(&mailbox.upn).await;
    world.poll_now(&id).await;
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let channel = world.daemon.channel(&id).await.unwrap();
    assert_eq!(channel["status"], "needs_reauthorization", "{channel:#}");
    assert!(world.polls(&mailbox.upn).await <= lists + 1);
}

#[actix_rt::test]
async fn a_secret_expiring_soon_warns_and_an_expired_one_blocks_with_the_remedy() {
    let world = world(60, &[]).await;
    let (id, mailbox) = world.active_channel("exp@contoso.example").await;
    let soon = (Utc::now() + chrono::Duration::days(10))
        .format("%Y-%m-%d")
        .to_string();
    let (status, channel) = world
        .daemon
        .api(
            reqwest::Method::PATCH,
            &format!("/api/channels/{id}"),
            Some(json!({"client_secret_expires_at": soon})),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{channel}");
    assert!(
        channel["secret_warning"]
            .as_str()
            .unwrap()
            .contains("expires in"),
        "{channel:#}"
    );
    assert!(
        (9..=10).contains(&channel["client_secret_days_left"].as_i64().unwrap()),
        "{channel:#}"
    );
    world
        .wait_status(&id, "active", Duration::from_secs(3))
        .await;

    let past = (Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    let (status, _) = world
        .daemon
        .api(
            reqwest::Method::PATCH,
            &format!("/api/channels/{id}"),
            Some(json!({"client_secret_expires_at": past})),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let channel = world
        .wait_status(&id, "blocked", Duration::from_secs(3))
        .await;
    assert_eq!(
        channel["last_error"]["code"], "SecretExpired",
        "{channel:#}"
    );
    assert!(
        channel["last_error"]["remedy"]
            .as_str()
            .unwrap()
            .contains("secret"),
        "{channel:#}"
    );
    // A new secret with a new date brings it back.
    let (status, _) = world
        .daemon
        .api(
            reqwest::Method::PATCH,
            &format!("/api/channels/{id}"),
            Some(
                json!({"client_secret": mailbox.secret, "client_secret_expires_at": "2099-01-01"}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    world
        .wait_status(&id, "active", Duration::from_secs(5))
        .await;
}

/// A minimal, standards-following OAuth2 server at Microsoft's paths: no `ext_expires_in`, no
/// `id_token`, no `scope`, `token_type` in lower case, an error body without `error_codes`.
#[actix_rt::test]
async fn any_standards_following_server_at_microsofts_paths_works() {
    use actix_web::{App, HttpResponse, HttpServer, web};
    async fn token(form: web::Form<std::collections::HashMap<String, String>>) -> HttpResponse {
        match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") if form.get("code").map(String::as_str) == Some("good") => HttpResponse::Ok()
                .json(json!({"access_token": "at-1", "token_type": "bearer", "expires_in": 3600, "refresh_token": "rt-1"})),
            _ => HttpResponse::BadRequest().json(json!({"error": "invalid_grant", "error_description": "AADSTS70008: The code has expired."})),
        }
    }
    let server =
        HttpServer::new(|| App::new().route("/{tenant}/oauth2/v2.0/token", web::post().to(token)))
            .workers(1)
            .disable_signals()
            .bind(("127.0.0.1", 0))
            .unwrap();
    let port = server.addrs()[0].port();
    actix_rt::spawn(server.run());
    let oauth = inboxd::oauth::OAuthClient::new(
        reqwest::Client::new(),
        &inboxd::domain::HttpUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
        "https://graph.microsoft.com",
        "http://127.0.0.1/oauth/callback",
        Duration::from_secs(5),
    );
    let tenant = inboxd::domain::TenantId::parse("contoso.com").unwrap();
    let client = inboxd::domain::ClientId::parse("00000000-0000-0000-0000-000000000001").unwrap();
    let credential = inboxd::domain::AppCredential::Secret {
        secret: inboxd::domain::secret::ClientSecret::new("s").unwrap(),
        expires_at: None,
    };
    let app = inboxd::oauth::AppCredentials {
        tenant: &tenant,
        client_id: &client,
        credential: &credential,
    };
    let verifier = PkceVerifier::new("v".repeat(43)).unwrap();

    let grant = oauth.redeem_code(app, "good", &verifier).await.unwrap();
    assert_eq!(grant.access_token.expose(), "at-1");
    assert_eq!(grant.refresh_token.unwrap().expose(), "rt-1");
    assert!(
        grant.scope.contains("Mail.ReadWrite.Shared"),
        "missing scope means the requested scopes"
    );

    let err = oauth
        .redeem_code(app, "stale", &verifier)
        .await
        .unwrap_err();
    assert_eq!(err.classify().code(), "AADSTS70008");
    assert_eq!(
        err.status(),
        inboxd::domain::ChannelStatus::NeedsReauthorization
    );
}

#[actix_rt::test]
async fn two_refreshes_of_one_channel_never_overlap() {
    // Every cycle refreshes, and each refresh takes 300 ms at the token endpoint.
    let world = world_with(short_tokens(), 60, &[]).await;
    let (id, mailbox) = world.active_channel("serial@contoso.example").await;
    world
        .fault(
            json!({"kind": "latency", "ms": 300, "tenant": mailbox.tenant, "endpoints": ["token"]}),
        )
        .await;
    actix_rt::time::sleep(Duration::from_millis(400)).await;
    let before = world.total_requests("token").await;
    let started = Instant::now();

    // Twenty "Poll now" in a burst: overlapping cycles would refresh twenty times at once.
    for _ in 0..20 {
        world.poll_now(&id).await;
    }
    actix_rt::time::sleep(Duration::from_millis(1200)).await;

    let refreshes = world.total_requests("token").await - before;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    assert!(refreshes >= 1, "no refresh at all");
    assert!(
        refreshes <= elapsed_ms / 300 + 1,
        "{refreshes} refreshes in {elapsed_ms} ms: they overlapped"
    );
    world
        .wait_status(&id, "active", Duration::from_secs(5))
        .await;
}

/// An event webhook receiver: keeps every body it is sent.
async fn event_receiver() -> (
    String,
    std::sync::Arc<parking_lot::Mutex<Vec<serde_json::Value>>>,
) {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let seen = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let data = web::Data::new(std::sync::Arc::clone(&seen));
    let server = HttpServer::new(move || {
        App::new().app_data(data.clone()).route(
                "/events",
                web::post().to(
                    |body: web::Bytes,
                     seen: web::Data<
                        std::sync::Arc<parking_lot::Mutex<Vec<serde_json::Value>>>,
                    >| async move {
                        let event: serde_json::Value =
                            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                        seen.lock().push(event);
                        HttpResponse::Ok().finish()
                    },
                ),
            )
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let url = format!("http://127.0.0.1:{}/events", server.addrs()[0].port());
    actix_rt::spawn(server.run());
    (url, seen)
}

#[actix_rt::test]
async fn a_denied_sign_in_is_on_the_channel_and_in_the_event_webhook_within_a_second() {
    let (url, seen) = event_receiver().await;
    let world = world(60, &[("INBOXD_PROCESSOR__EVENT_WEBHOOK_URL", url)]).await;
    let mailbox = world.mailbox("denied@contoso.example").await;
    let id = world.add(&mailbox).await;
    let (state, callback) = start_link(&world, &id).await;
    let description = "AADSTS65004: User declined to consent to access the app.\r\nTrace ID: 2222-trace\r\nCorrelation ID: 3333-corr";
    let url = reqwest::Url::parse_with_params(
        &callback,
        &[
            ("state", state.as_str()),
            ("error", "access_denied"),
            ("error_description", description),
        ],
    )
    .unwrap();

    let started = Instant::now();
    let (status, _) = get_page(&world, url.as_str()).await;
    assert_eq!(status, 400);

    // On the channel, at once: whoever sent the link sees why it failed and what to do.
    let channel = world.daemon.channel(&id).await.unwrap();
    assert_eq!(channel["status"], "awaiting_authorization");
    assert_eq!(channel["last_error"]["code"], "AADSTS65004", "{channel}");
    assert_eq!(channel["last_error"]["trace_id"], "2222-trace");
    assert!(!channel["last_error"]["remedy"].as_str().unwrap().is_empty());

    // In the event webhook within a second, with the channel, the code and the remedy.
    let event = loop {
        if let Some(event) = seen
            .lock()
            .iter()
            .find(|e| e["kind"] == "channel.sign_in_failed")
            .cloned()
        {
            break event;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "no sign_in_failed event within a second: {:?}",
            seen.lock()
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(event["channel_id"], id.as_str());
    assert_eq!(event["mailbox"], mailbox.upn.as_str());
    assert_eq!(event["code"], "AADSTS65004");
    assert_eq!(event["correlation_id"], "3333-corr");
    assert!(event["id"].as_str().is_some_and(|i| !i.is_empty()));

    // And in the channel's history.
    let (status, history) = world
        .daemon
        .api(
            reqwest::Method::GET,
            &format!("/api/channels/{id}/events"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        history["events"][0]["kind"], "channel.sign_in_failed",
        "{history}"
    );
}

#[actix_rt::test]
async fn a_channel_s_status_changes_are_events_in_its_history() {
    let (url, seen) = event_receiver().await;
    let world = world(1, &[("INBOXD_PROCESSOR__EVENT_WEBHOOK_URL", url)]).await;
    let mailbox = world.mailbox("changes@contoso.example").await;
    let id = world.add(&mailbox).await;
    let (status, _) = world.daemon.authorize(&id).await.unwrap();
    assert_eq!(status, 200);
    world
        .daemon
        .wait_channel(&id, Duration::from_secs(10), |c| c["status"] == "active")
        .await
        .unwrap();
    let (status, _) = world
        .daemon
        .api(
            reqwest::Method::POST,
            &format!("/api/channels/{id}/disable"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200);

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, history) = world
            .daemon
            .api(
                reqwest::Method::GET,
                &format!("/api/channels/{id}/events"),
                None,
            )
            .await
            .unwrap();
        let kinds: Vec<(String, String)> = history["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["kind"].as_str().unwrap_or_default().to_owned(),
                    e["status"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let authorized = kinds.iter().any(|(k, _)| k == "channel.authorized");
        let disabled = kinds
            .first()
            .is_some_and(|(k, s)| k == "channel.status_changed" && s == "disabled");
        if authorized && disabled && seen.lock().len() >= kinds.len() {
            break;
        }
        assert!(Instant::now() < deadline, "history: {kinds:?}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test]
async fn a_sign_in_invitation_works_once_for_days_and_can_be_revoked() {
    let world = world(1, &[]).await;
    let mailbox = world.mailbox("owner@contoso.example").await;
    let id = world.add(&mailbox).await;

    // The admin makes a link for the mailbox's owner, valid for two days.
    let (status, invitation) = world
        .daemon
        .api(
            reqwest::Method::POST,
            &format!("/api/channels/{id}/invitations"),
            Some(json!({"valid_hours": 48})),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{invitation}");
    let url = invitation["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&world.daemon.base), "{url}");
    let expires: chrono::DateTime<Utc> =
        invitation["expires_at"].as_str().unwrap().parse().unwrap();
    let hours = (expires - Utc::now()).num_minutes() as f64 / 60.0;
    assert!((47.9..=48.0).contains(&hours), "{hours} hours");

    // The owner opens it: on to Microsoft's sign-in, and back to an authorized channel.
    let opened = world.daemon.http.get(&url).send().await.unwrap();
    assert_eq!(opened.status(), 303);
    let signin_url = opened.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        signin_url.contains("/oauth2/v2.0/authorize"),
        "{signin_url}"
    );
    let signin = world.daemon.http.get(&signin_url).send().await.unwrap();
    let callback = signin.headers()["location"].to_str().unwrap().to_owned();
    let (status, _) = get_page(&world, &callback).await;
    assert_eq!(status, 200);
    world
        .daemon
        .wait_channel(&id, Duration::from_secs(10), |c| c["status"] == "active")
        .await
        .unwrap();

    // It works once.
    let again = world.daemon.http.get(&url).send().await.unwrap();
    assert_eq!(again.status(), 410);
    assert!(again.text().await.unwrap().contains("used already"));

    // Another link, revoked before it is opened, does not work; revoking twice says so.
    let (_, second) = world
        .daemon
        .api(
            reqwest::Method::POST,
            &format!("/api/channels/{id}/invitations"),
            None,
        )
        .await
        .unwrap();
    let invitation_id = second["id"].as_str().unwrap();
    let (status, _) = world
        .daemon
        .api(
            reqwest::Method::DELETE,
            &format!("/api/invitations/{invitation_id}"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 204);
    let revoked = world
        .daemon
        .http
        .get(second["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 410);
    assert!(revoked.text().await.unwrap().contains("revoked"));
    let (status, _) = world
        .daemon
        .api(
            reqwest::Method::DELETE,
            &format!("/api/invitations/{invitation_id}"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 404);

    // A guessed link is not known; a validity past the limit is refused with the limit.
    let guessed = world
        .daemon
        .http
        .get(format!(
            "{}/sign-in/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            world.daemon.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(guessed.status(), 404);
    let (status, refused) = world
        .daemon
        .api(
            reqwest::Method::POST,
            &format!("/api/channels/{id}/invitations"),
            Some(json!({"valid_hours": 10000})),
        )
        .await
        .unwrap();
    assert!(status == 400 || status == 422, "{status} {refused}");
    assert!(refused.to_string().contains("72 hours"), "{refused}");
}
