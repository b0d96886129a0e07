//! The admin surface as an attacker meets it: the API takes the bearer token only (a status page
//! cookie, which another site's form could carry, is refused), and the failed-attempt limit blocks
//! an address before any comparison, so guessing stops even at the right token.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, ORIGIN, RETRY_AFTER, SET_COOKIE};

use crate::helpers::world;

/// Logs in to the status page from its own origin; answers the `Cookie` header value.
async fn session_cookie(world: &crate::helpers::World) -> String {
    let daemon = &world.daemon;
    let res = daemon
        .http
        .post(format!("{}/login", daemon.base))
        .header(ORIGIN, &daemon.base)
        .form(&[("token", daemon.token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let set = res.headers()[SET_COOKIE].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

#[actix_rt::test]
async fn a_cross_origin_form_post_with_the_status_page_cookie_does_not_reach_the_api() {
    let world = world(60, &[]).await;
    let mailbox = world.mailbox("csrf@contoso.example").await;
    let id = world.add(&mailbox).await;
    let cookie = session_cookie(&world).await;
    let daemon = &world.daemon;
    // What a page on another site can make a logged-in browser send: a form POST with the cookie.
    let res = daemon
        .http
        .post(format!("{}/api/channels/{id}/disable", daemon.base))
        .header(COOKIE, &cookie)
        .header(ORIGIN, "https://evil.example")
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    // Even from the daemon's own origin, the cookie alone opens no API endpoint.
    for (method, path) in [
        (reqwest::Method::GET, "/api/channels".to_owned()),
        (reqwest::Method::POST, format!("/api/channels/{id}/disable")),
        (reqwest::Method::DELETE, format!("/api/channels/{id}")),
    ] {
        let res = daemon
            .http
            .request(method.clone(), format!("{}{path}", daemon.base))
            .header(COOKIE, &cookie)
            .header(ORIGIN, &daemon.base)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    let channel = daemon.channel(&id).await.unwrap();
    assert_eq!(
        channel["enabled"], true,
        "the channel was changed: {channel}"
    );
}

/// A client whose requests come from `address` (another loopback address than the tests').
fn client_from(address: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(address.parse::<IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn list_status(client: &reqwest::Client, base: &str, token: &str) -> reqwest::Response {
    client
        .get(format!("{base}/api/channels"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[actix_rt::test]
async fn a_blocked_address_is_refused_even_with_the_right_token_and_another_address_is_not() {
    let world = world(60, &[]).await;
    let daemon = &world.daemon;
    let attacker = client_from("127.0.0.2");
    // The budget is 10 failures per minute; the 10th spends it.
    for attempt in 1..=10 {
        let res = list_status(&attacker, &daemon.base, "a-wrong-guess").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    let res = list_status(&attacker, &daemon.base, "a-wrong-guess").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // The right token from the blocked address: still 429, with when to come back.
    let res = list_status(&attacker, &daemon.base, &daemon.token).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = res.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=6).contains(&retry_after), "Retry-After {retry_after}");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_attempts", "{body}");
    // The status page login shares the limit.
    let res = attacker
        .post(format!("{}/login", daemon.base))
        .header(ORIGIN, &daemon.base)
        .form(&[("token", daemon.token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().get(SET_COOKIE).is_none());
    // Another address is not affected.
    let res = list_status(&client_from("127.0.0.3"), &daemon.base, &daemon.token).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[actix_rt::test]
async fn the_block_of_an_address_expires() {
    // 60 failures a minute: a spent budget allows one more attempt after a second.
    let world = world(
        60,
        &[(
            "INBOXD_SERVER__ADMIN_LOGIN_FAILURES_PER_MIN",
            "60".to_owned(),
        )],
    )
    .await;
    let daemon = &world.daemon;
    let attacker = client_from("127.0.0.4");
    let mut statuses = Vec::new();
    for _ in 0..61 {
        statuses.push(
            list_status(&attacker, &daemon.base, "a-wrong-guess")
                .await
                .status(),
        );
    }
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS));
    let res = list_status(&attacker, &daemon.base, &daemon.token).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = res.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(wait, 1);
    actix_rt::time::sleep(Duration::from_millis(1100)).await;
    let res = list_status(&attacker, &daemon.base, &daemon.token).await;
    assert_eq!(res.status(), StatusCode::OK, "the block did not expire");
}
