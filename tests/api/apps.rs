//! Apps as first-class records (issue 16): one credential per (tenant, client id) shared by every
//! channel of the app, rotated in one call; certificates (client assertions) as well as secrets;
//! an expired secret and an expired certificate each block with their own remedy.

use std::time::Duration;

use chrono::Utc;
use inboxd::sim::client::AppRegistration;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{REDIRECT, World, world_with};

/// How many times the simulator saw each of the app's credentials authenticate a token request.
async fn uses(world: &World, client_id: &str) -> Vec<(String, u64)> {
    let app = world.sim_client.app_credentials(client_id).await.unwrap();
    let mut out = Vec::new();
    for kind in ["secrets", "certificates"] {
        for c in app[kind].as_array().into_iter().flatten() {
            out.push((
                c["label"].as_str().unwrap().to_owned(),
                c["uses"].as_u64().unwrap(),
            ));
        }
    }
    out
}

async fn uses_of(world: &World, client_id: &str, label: &str) -> u64 {
    uses(world, client_id)
        .await
        .into_iter()
        .find(|(l, _)| l == label)
        .map(|(_, n)| n)
        .unwrap_or(0)
}

/// A tenant with one app (first secret `secret`) and `users` mailboxes in it.
async fn tenant_with_app(world: &World, domain: &str, users: usize) -> (String, String, String) {
    let tenant = world
        .sim_client
        .register_tenant(None, &[domain])
        .await
        .unwrap();
    let app = world
        .sim_client
        .register_app(&AppRegistration {
            tenant_id: tenant.clone(),
            redirect_uris: vec![REDIRECT.to_owned()],
            ..AppRegistration::default()
        })
        .await
        .unwrap();
    for i in 0..users {
        world
            .sim_client
            .register_user(&tenant, &format!("u{i}@{domain}"), &[])
            .await
            .unwrap();
    }
    (tenant, app.client_id, app.client_secret)
}

async fn authorize_all(world: &World, ids: &[String]) {
    for id in ids {
        let (status, page) = world.daemon.authorize(id).await.unwrap();
        assert_eq!(status, 200, "{page}");
    }
    for id in ids {
        world
            .wait_status(id, "active", Duration::from_secs(20))
            .await;
    }
}

async fn rotate(world: &World, tenant: &str, client_id: &str, body: Value) -> (u16, Value) {
    world
        .daemon
        .api(
            Method::PUT,
            &format!("/api/apps/{tenant}/{client_id}/credential"),
            Some(body),
        )
        .await
        .unwrap()
}

/// Every channel refreshes its token each cycle (60 s tokens inside the 300 s margin), so each
/// uses the app's credential every two seconds; the tenant's token budget (60 a minute by
/// default) is raised so a hundred channels of one tenant can.
async fn refreshing_world() -> World {
    let options = inboxd::sim::SimOptions {
        access_token_lifetime_secs: 60,
        ..Default::default()
    };
    world_with(
        options,
        2,
        &[(
            "INBOXD_LIMITS__TOKEN_REQUESTS_PER_TENANT_PER_MIN",
            "12000".to_owned(),
        )],
    )
    .await
}

#[actix_rt::test]
async fn rotating_an_apps_secret_once_moves_all_its_channels_to_it() {
    const CHANNELS: usize = 100;
    let world = refreshing_world().await;
    let (tenant, client_id, old_secret) = tenant_with_app(&world, "rotate.example", CHANNELS).await;

    // The first channel records the app with its secret; the others find it (the same secret
    // again, or none at all).
    let mut ids = Vec::new();
    for i in 0..CHANNELS {
        let mut body = json!({
            "tenant_id": tenant,
            "client_id": client_id,
            "mailbox": format!("u{i}@rotate.example"),
        });
        if i % 2 == 0 {
            body["client_secret"] = json!(old_secret);
        }
        let (status, channel) = world
            .daemon
            .api(Method::POST, "/api/channels", Some(body))
            .await
            .unwrap();
        assert_eq!(status, 201, "{channel}");
        assert_eq!(channel["app_id"], format!("{tenant}/{client_id}"));
        assert!(channel.get("client_secret").is_none());
        ids.push(channel["id"].as_str().unwrap().to_owned());
    }
    // Another secret with a channel would silently rotate a hundred channels: refused, and it
    // changes nothing.
    let (status, refused) = world
        .daemon
        .api(
            Method::POST,
            "/api/channels",
            Some(json!({
                "tenant_id": tenant, "client_id": client_id,
                "client_secret": "a-different-secret", "mailbox": "u0@rotate.example",
                "folder": "archive",
            })),
        )
        .await
        .unwrap();
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("inboxd app rotate"),
        "{refused}"
    );
    authorize_all(&world, &ids).await;

    let (status, apps) = world
        .daemon
        .api(Method::GET, "/api/apps", None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let app = apps
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["client_id"] == client_id.as_str())
        .unwrap();
    assert_eq!(app["channels"], CHANNELS);
    assert_eq!(app["credential_kind"], "secret");
    assert!(!apps.to_string().contains(&old_secret), "{apps}");

    // Azure holds both secrets for a while; inboxd is told once.
    let new_secret = "Sim8Q~the-rotated-secret-value";
    let new_label = world
        .sim_client
        .add_app_credential(&client_id, &json!({"client_secret": new_secret}))
        .await
        .unwrap();
    // The app's first secret: the one every channel used so far.
    let old_label =
        world.sim_client.app_credentials(&client_id).await.unwrap()["secrets"][0]["label"]
            .as_str()
            .unwrap()
            .to_owned();
    assert!(uses_of(&world, &client_id, &old_label).await >= CHANNELS as u64);
    let (status, rotated) = rotate(
        &world,
        &tenant,
        &client_id,
        json!({"client_secret": new_secret, "client_secret_expires_at": "2031-01-31"}),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["app"]["channels"], CHANNELS);
    assert_eq!(rotated["retried"], 0, "every channel was active");
    assert!(!rotated.to_string().contains(new_secret));
    // Requests already on their way may still carry the old secret; none after them.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let old_uses = uses_of(&world, &client_id, &old_label).await;
    let new_before = uses_of(&world, &client_id, &new_label).await;
    inboxd_testkit::eventually(
        Duration::from_secs(30),
        "every channel's next token request uses the new secret",
        || async {
            let new = uses_of(&world, &client_id, &new_label).await;
            Ok(new >= new_before + CHANNELS as u64)
        },
    )
    .await
    .unwrap();
    assert_eq!(
        uses_of(&world, &client_id, &old_label).await,
        old_uses,
        "no token request used the old secret after the rotation"
    );
    // The old secret is deleted in Azure: nothing notices.
    world
        .sim_client
        .update_app(&client_id, &json!({"client_secret": new_secret}))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    for id in &ids {
        let channel = world.daemon.channel(id).await.unwrap();
        assert_eq!(channel["status"], "active", "{channel}");
        assert!(
            channel["client_secret_expires_at"]
                .as_str()
                .unwrap()
                .starts_with("2031-01-31")
        );
    }
}

#[actix_rt::test]
async fn an_expired_secret_blocks_with_its_remedy_and_one_rotation_brings_the_channels_back() {
    let world = refreshing_world().await;
    let (tenant, client_id, secret) = tenant_with_app(&world, "expired.example", 3).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            world
                .daemon
                .add_channel(
                    &tenant,
                    &client_id,
                    &secret,
                    &format!("u{i}@expired.example"),
                )
                .await
                .unwrap(),
        );
    }
    authorize_all(&world, &ids).await;

    // The secret lapses in Azure: Microsoft answers AADSTS7000222 at the next refresh.
    world
        .sim_client
        .update_app(
            &client_id,
            &json!({"secret_expires_at": (Utc::now() - chrono::Duration::minutes(1)).to_rfc3339()}),
        )
        .await
        .unwrap();
    for id in &ids {
        let blocked = world
            .wait_status(id, "blocked", Duration::from_secs(20))
            .await;
        assert_eq!(blocked["last_error"]["code"], "AADSTS7000222", "{blocked}");
        let remedy = blocked["last_error"]["remedy"].as_str().unwrap();
        assert!(remedy.contains("New client secret"), "{remedy}");
        assert!(remedy.contains("inboxd app rotate"), "{remedy}");
    }

    let new_secret = "Sim8Q~after-the-expiry";
    world
        .sim_client
        .add_app_credential(&client_id, &json!({"client_secret": new_secret}))
        .await
        .unwrap();
    let (status, rotated) = rotate(
        &world,
        &tenant,
        &client_id,
        json!({"client_secret": new_secret}),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["retried"], 3, "{rotated}");
    for id in &ids {
        world
            .wait_status(id, "active", Duration::from_secs(20))
            .await;
    }
}

#[actix_rt::test]
async fn a_certificate_signs_in_and_its_expiry_or_absence_in_azure_blocks_with_its_own_remedy() {
    let world = refreshing_world().await;
    let (tenant, client_id, _) = tenant_with_app(&world, "cert.example", 1).await;
    let (cert, key) =
        inboxd_testkit::certificate("inboxd-cert", Utc::now() + chrono::Duration::days(200))
            .unwrap();
    // Azure holds the certificate's public part; inboxd holds it with its private key.
    let label = world
        .sim_client
        .add_app_credential(&client_id, &json!({"certificate_pem": cert}))
        .await
        .unwrap();
    let pem = format!("{cert}{key}");
    let (status, channel) = world
        .daemon
        .api(
            Method::POST,
            "/api/channels",
            Some(json!({
                "tenant_id": tenant, "client_id": client_id,
                "client_certificate": pem, "mailbox": "u0@cert.example",
            })),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{channel}");
    let id = channel["id"].as_str().unwrap().to_owned();
    assert_eq!(channel["credential_kind"], "certificate");
    authorize_all(&world, std::slice::from_ref(&id)).await;
    let (_, app) = world
        .daemon
        .api(
            Method::GET,
            &format!("/api/apps/{tenant}/{client_id}"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(app["credential_kind"], "certificate");
    assert_eq!(
        format!("cert:{}", app["thumbprint"].as_str().unwrap()),
        label
    );
    assert!(!app.to_string().contains("PRIVATE KEY"), "{app}");
    inboxd_testkit::eventually(
        Duration::from_secs(10),
        "refreshes with the certificate",
        || async { Ok(uses_of(&world, &client_id, &label).await >= 2) },
    )
    .await
    .unwrap();

    // A certificate that was never uploaded to the app: Microsoft refuses its assertions.
    let (stranger, stranger_key) =
        inboxd_testkit::certificate("stranger", Utc::now() + chrono::Duration::days(30)).unwrap();
    let (status, rotated) = rotate(
        &world,
        &tenant,
        &client_id,
        json!({"client_certificate": format!("{stranger}{stranger_key}")}),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let blocked = world
        .wait_status(&id, "blocked", Duration::from_secs(20))
        .await;
    assert_eq!(blocked["last_error"]["code"], "AADSTS700027", "{blocked}");
    assert!(
        blocked["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("The key was not found"),
        "{blocked}"
    );

    // A certificate about to expire, uploaded: the channel comes back, then blocks at its expiry
    // with the certificate's remedy (not the secret's).
    let (short, short_key) =
        inboxd_testkit::certificate("short", Utc::now() + chrono::Duration::seconds(8)).unwrap();
    world
        .sim_client
        .add_app_credential(&client_id, &json!({"certificate_pem": short}))
        .await
        .unwrap();
    let (status, rotated) = rotate(
        &world,
        &tenant,
        &client_id,
        json!({"client_certificate": format!("{short}{short_key}")}),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["retried"], 1, "{rotated}");
    world
        .wait_status(&id, "active", Duration::from_secs(20))
        .await;
    let expired = world
        .wait_status(&id, "blocked", Duration::from_secs(30))
        .await;
    assert_eq!(
        expired["last_error"]["code"], "CertificateExpired",
        "{expired}"
    );
    let remedy = expired["last_error"]["remedy"].as_str().unwrap();
    assert!(remedy.contains("Upload certificate"), "{remedy}");
    assert!(!remedy.contains("New client secret"), "{remedy}");

    // An expired certificate is refused when it is given, and changes nothing.
    let (status, refused) = rotate(
        &world,
        &tenant,
        &client_id,
        json!({"client_certificate": format!("{short}{short_key}")}),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["code"], "invalid_client_certificate");
}
