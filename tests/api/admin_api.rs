use serde_json::json;

use crate::helpers::world;

#[actix_rt::test]
async fn the_api_refuses_missing_and_wrong_tokens() {
    let world = world(60, &[]).await;
    let url = format!("{}/api/channels", world.daemon.base);
    let none = world.daemon.http.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let body: serde_json::Value = none.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let wrong = world
        .daemon
        .http
        .get(&url)
        .bearer_auth("not-the-token-at-all")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    // After the per-minute budget of failures (10), the address is refused outright.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(
            world
                .daemon
                .http
                .get(&url)
                .bearer_auth("wrong")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert!(statuses.contains(&429), "{statuses:?}");
}

#[actix_rt::test]
async fn bad_input_gets_a_clear_error_naming_the_field_and_changes_nothing() {
    let world = world(60, &[]).await;
    let good = json!({
        "tenant_id": "contoso.example",
        "client_id": "00000000-0000-0000-0000-000000000001",
        "client_secret": "value",
        "mailbox": "support@contoso.example",
    });
    let cases = [
        (
            "tenant_id",
            json!("common"),
            "invalid_tenant_id",
            "multi-tenant alias",
        ),
        (
            "tenant_id",
            json!("not a tenant"),
            "invalid_tenant_id",
            "tenant id",
        ),
        (
            "client_id",
            json!("my-app"),
            "invalid_client_id",
            "Application (client) ID",
        ),
        ("mailbox", json!("nobody"), "invalid_mailbox", "mailbox"),
        ("folder", json!("My Folder"), "invalid_folder", "folder"),
        // A blank secret is no secret: for an app inboxd does not know yet, one is needed.
        (
            "client_secret",
            json!("  "),
            "missing_credential",
            "client secret",
        ),
        (
            "client_certificate",
            json!("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"),
            "invalid_client_certificate",
            "client_certificate",
        ),
        (
            "client_secret_expires_at",
            json!("next tuesday"),
            "invalid_date",
            "YYYY-MM-DD",
        ),
        (
            "first_import",
            json!("everything"),
            "invalid_first_import",
            "last_days",
        ),
    ];
    for (field, value, code, words) in cases {
        let mut body = good.clone();
        if field == "client_certificate" {
            // One credential at a time: a certificate instead of the secret.
            body.as_object_mut().unwrap().remove("client_secret");
        }
        body[field] = value;
        let (status, answer) = world
            .daemon
            .api(reqwest::Method::POST, "/api/channels", Some(body))
            .await
            .unwrap();
        assert_eq!(status, 400, "{field}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{field}: {answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(words),
            "{field}: {answer}"
        );
    }
    let mut unknown = good.clone();
    unknown["colour"] = json!("blue");
    let (status, answer) = world
        .daemon
        .api(reqwest::Method::POST, "/api/channels", Some(unknown))
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{answer}"
    );
    let big = json!({"tenant_id": "x".repeat(200_000)});
    let (status, _) = world
        .daemon
        .api(reqwest::Method::POST, "/api/channels", Some(big))
        .await
        .unwrap();
    assert_eq!(status, 413);
    let raw = world
        .daemon
        .http
        .post(format!("{}/api/channels", world.daemon.base))
        .bearer_auth(&world.daemon.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let (status, answer) = world
        .daemon
        .api(reqwest::Method::GET, "/api/channels/not-an-id", None)
        .await
        .unwrap();
    assert_eq!(status, 400, "{answer}");
    let (status, _) = world
        .daemon
        .api(
            reqwest::Method::GET,
            "/api/channels/00000000-0000-4000-8000-000000000000",
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 404);
    // Nothing was added by any of it.
    let (_, list) = world
        .daemon
        .api(reqwest::Method::GET, "/api/channels", None)
        .await
        .unwrap();
    assert_eq!(list["total"], 0);
}

#[actix_rt::test]
async fn the_api_never_returns_the_secret() {
    let world = world(60, &[]).await;
    let mailbox = world.mailbox("s@contoso.example").await;
    let id = world.add(&mailbox).await;
    for path in ["/api/channels".to_owned(), format!("/api/channels/{id}")] {
        let (_, body) = world
            .daemon
            .api(reqwest::Method::GET, &path, None)
            .await
            .unwrap();
        assert!(
            !body.to_string().contains(&mailbox.secret),
            "{path} returned the secret"
        );
    }
    let metrics = world
        .daemon
        .http
        .get(format!("{}/metrics", world.daemon.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains(&mailbox.secret));
    assert!(metrics.contains("inboxd_channels"), "{metrics}");
    let health = world
        .daemon
        .http
        .get(format!("{}/healthz", world.daemon.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

/// Random callback queries and random admin JSON bodies: a client's mistake never gets a 5xx.
#[actix_rt::test]
async fn random_input_never_gets_a_server_error() {
    use proptest::strategy::{Strategy as _, ValueTree as _};
    let world = world(60, &[]).await;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let query =
        proptest::collection::vec(("(state|code|error|error_description|x|)", ".{0,40}"), 0..5);
    for _ in 0..150 {
        let pairs = query.new_tree(&mut runner).unwrap().current();
        let url = reqwest::Url::parse_with_params(
            &format!("{}/oauth/callback", world.daemon.base),
            &pairs,
        )
        .unwrap();
        let status = world
            .daemon
            .http
            .get(url.clone())
            .send()
            .await
            .unwrap()
            .status();
        assert!(
            status.is_client_error() || status.is_success(),
            "{url} answered {status}"
        );
    }
    let body = proptest::collection::hash_map(
        "(tenant_id|client_id|client_secret|mailbox|folder|name|enabled|first_import|client_secret_expires_at|[a-z]{1,5})",
        proptest::prop_oneof![
            ".{0,30}".prop_map(serde_json::Value::String),
            proptest::prelude::any::<i64>().prop_map(|n| json!(n)),
            proptest::prelude::any::<bool>().prop_map(serde_json::Value::Bool),
            proptest::strategy::Just(serde_json::Value::Null),
        ],
        0..8,
    );
    for _ in 0..150 {
        let map = body.new_tree(&mut runner).unwrap().current();
        let value = serde_json::Value::Object(map.into_iter().collect());
        for (method, path) in [
            (reqwest::Method::POST, "/api/channels".to_owned()),
            (
                reqwest::Method::PATCH,
                "/api/channels/00000000-0000-4000-8000-000000000000".to_owned(),
            ),
        ] {
            let (status, answer) = world
                .daemon
                .api(method, &path, Some(value.clone()))
                .await
                .unwrap();
            assert!(
                status < 500,
                "{path} with {value} answered {status}: {answer}"
            );
        }
    }
}

/// The OpenAPI document is served without a token, and every operation it lists is one the
/// running daemon routes (none falls through to "no such API endpoint").
#[actix_rt::test]
async fn the_openapi_document_is_served_and_every_operation_in_it_is_routed() {
    let world = world(600, &[]).await;
    let response = world
        .daemon
        .http
        .get(format!("{}/api/openapi.json", world.daemon.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let doc: serde_json::Value = response.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let id = world
        .daemon
        .add_channel(
            "contoso.example",
            "00000000-0000-0000-0000-000000000001",
            "value",
            "support@contoso.example",
        )
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 8, "{paths:?}");
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (status, body) = world
                .daemon
                .api(method.clone(), &path.replace("{id}", &id), None)
                .await
                .unwrap();
            let unrouted = body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("no such API endpoint"));
            assert!(
                !unrouted && status != 405,
                "{method} {path} is in the document but not routed: {status} {body}"
            );
        }
    }
}
