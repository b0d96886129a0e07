//! Refresh-token reuse: a refresh with a token already rotated out by an earlier refresh is counted
//! (Microsoft accepts it) and, with revoke-on-reuse, kills the grant as stricter providers do; a
//! latency fault on the token endpoint freezes refreshes, the window in which clients reuse tokens.

use std::time::{Duration, Instant};

use inboxd::sim::SimOptions;
use inboxd::sim::client::SimSettings;
use serde_json::{Value, json};

use crate::support::*;

async fn rotated(e: &Env, rt: &str) -> String {
    let r = e.refresh(rt).await;
    assert_eq!(r.status(), 200, "refresh: {:?}", r.text().await);
    let v: Value = r.json().await.unwrap();
    v["refresh_token"].as_str().unwrap().to_owned()
}

async fn reuse_count(e: &Env, mailbox: Option<&str>) -> u64 {
    e.ctl.counters(mailbox).await.unwrap().refresh_token_reuse
}

#[tokio::test]
async fn reusing_a_rotated_out_refresh_token_is_counted_and_still_works_by_default() {
    let e = env().await;
    let (_, rt1) = e.tokens().await;
    let rt2 = rotated(&e, &rt1).await;
    assert_eq!(reuse_count(&e, None).await, 0, "a first use is no reuse");

    // Microsoft keeps the old token valid: the reuse succeeds, and is counted.
    let again = rotated(&e, &rt1).await;
    assert_ne!(again, rt2, "every refresh issues a new refresh token");
    assert_eq!(reuse_count(&e, None).await, 1);
    assert_eq!(reuse_count(&e, Some(UPN)).await, 1, "scoped to the user");
    assert_eq!(reuse_count(&e, Some("nobody@contoso.example")).await, 0);
    let raw: Value = e
        .http
        .get(format!("{}/_sim/counters", e.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(raw["refresh_token_reuse"], 1);

    // Following the chain is no reuse; both branches of the fork stay usable.
    let rt3 = rotated(&e, &rt2).await;
    rotated(&e, &rt3).await;
    rotated(&e, &again).await;
    assert_eq!(reuse_count(&e, None).await, 1);
}

#[tokio::test]
async fn two_concurrent_refreshes_with_one_token_count_one_reuse() {
    let e = env().await;
    let (_, rt) = e.tokens().await;
    let (a, b) = tokio::join!(e.refresh(&rt), e.refresh(&rt));
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    assert_eq!(reuse_count(&e, None).await, 1);
}

#[tokio::test]
async fn a_failed_refresh_does_not_rotate_the_token_out() {
    let e = env().await;
    let (_, rt) = e.tokens().await;
    // Asking for a scope never consented fails (65001) and issues nothing.
    let r = e
        .token(&[
            ("client_id", e.app.client_id.as_str()),
            ("client_secret", e.app.client_secret.as_str()),
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
            ("scope", "Mail.Read User.Read"),
        ])
        .await;
    sts_error(r, 400, "invalid_grant", 65001).await;
    rotated(&e, &rt).await;
    assert_eq!(reuse_count(&e, None).await, 0);
}

#[tokio::test]
async fn with_revoke_on_reuse_a_reused_refresh_token_kills_the_whole_grant() {
    let e = env().await;
    let on = e.ctl.set_revoke_on_refresh_token_reuse(true).await.unwrap();
    assert!(on.revoke_on_refresh_token_reuse);
    let (_, rt1) = e.tokens().await;
    let rt2 = rotated(&e, &rt1).await;

    // The reuse itself is refused with Microsoft's revoked-grant error...
    let v = sts_error(e.refresh(&rt1).await, 400, "invalid_grant", 50173).await;
    assert_eq!(v["suberror"], "bad_token");
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("revoked, a fresh auth token is needed"),
        "{v}"
    );
    // ...and so is every later refresh of the grant, with the newest token too.
    sts_error(e.refresh(&rt2).await, 400, "invalid_grant", 50173).await;
    sts_error(e.refresh(&rt1).await, 400, "invalid_grant", 50173).await;
    assert_eq!(
        reuse_count(&e, Some(UPN)).await,
        2,
        "rt1 twice; rt2 was never rotated out"
    );

    // A new authorization is a new grant.
    let (_, fresh) = e.tokens().await;
    rotated(&e, &fresh).await;
}

#[tokio::test]
async fn revoke_on_reuse_can_start_on_and_be_switched_off_at_run_time() {
    let e = env_with(SimOptions {
        revoke_on_refresh_token_reuse: true,
        ..SimOptions::default()
    })
    .await;
    assert!(
        e.ctl
            .settings()
            .await
            .unwrap()
            .revoke_on_refresh_token_reuse
    );
    let (_, rt) = e.tokens().await;
    rotated(&e, &rt).await;
    sts_error(e.refresh(&rt).await, 400, "invalid_grant", 50173).await;

    let off = e
        .ctl
        .put_settings(&SimSettings {
            revoke_on_refresh_token_reuse: false,
        })
        .await
        .unwrap();
    assert!(!off.revoke_on_refresh_token_reuse);
    // A grant revoked stays revoked; new grants follow Microsoft again.
    sts_error(e.refresh(&rt).await, 400, "invalid_grant", 50173).await;
    let (_, rt) = e.tokens().await;
    rotated(&e, &rt).await;
    rotated(&e, &rt).await;
}

#[tokio::test]
async fn settings_keep_absent_fields_and_refuse_unknown_ones() {
    let e = env().await;
    let url = format!("{}/_sim/settings", e.url);
    let v: Value = e.http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(v, json!({"revoke_on_refresh_token_reuse": false}));
    e.ctl.set_revoke_on_refresh_token_reuse(true).await.unwrap();
    let r = e.http.put(&url).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["revoke_on_refresh_token_reuse"], true);
    let r = e
        .http
        .put(&url)
        .json(&json!({"revoke_on_refresh_token_reused": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a misspelt setting is refused");
    assert!(
        e.ctl
            .settings()
            .await
            .unwrap()
            .revoke_on_refresh_token_reuse
    );
}

#[tokio::test]
async fn resetting_counters_zeroes_reuse_but_a_rotated_out_token_stays_rotated_out() {
    let e = env().await;
    let (_, rt) = e.tokens().await;
    rotated(&e, &rt).await;
    rotated(&e, &rt).await;
    assert_eq!(reuse_count(&e, None).await, 1);
    e.ctl.reset_counters().await.unwrap();
    assert_eq!(reuse_count(&e, None).await, 0);
    assert_eq!(reuse_count(&e, Some(UPN)).await, 0);
    rotated(&e, &rt).await;
    assert_eq!(reuse_count(&e, None).await, 1);
}

#[tokio::test]
async fn a_frozen_token_endpoint_holds_a_refresh_for_seconds_and_a_retry_meanwhile_is_a_reuse() {
    let e = env().await;
    let (at, rt) = e.tokens().await;
    e.ctl
        .add_fault_json(&json!({"kind": "latency", "ms": 3000, "endpoints": ["token"], "count": 1}))
        .await
        .unwrap();
    let started = Instant::now();
    let held = e.refresh(&rt);
    let impatient = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Graph still answers at once while the identity platform is frozen.
        let t = Instant::now();
        assert_eq!(e.get(&at, &e.inbox_path().await).await.status(), 200);
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        // A client that gives up and retries with the same token wins the race.
        e.refresh(&rt).await
    };
    let (held, retried) = tokio::join!(held, impatient);
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(retried.status(), 200);
    assert_eq!(held.status(), 200, "Microsoft accepts the late refresh");
    assert_eq!(
        reuse_count(&e, Some(UPN)).await,
        1,
        "the refresh that was held finished second, with a token already rotated out"
    );
}
