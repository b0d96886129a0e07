//! `/metrics` by Prometheus' conventions (issue 16): HELP and TYPE on every family, counters at zero
//! from the start, Graph and token requests by endpoint and status class with their latency
//! histograms, timestamps instead of sentinels, no thresholds in labels, the mailbox label opt-in.
//! With `INBOXD_METRICS_SCRAPE=FILE` the scrape is written to FILE, for `promtool check metrics`
//! (`.ci/run` does that).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use inboxd::sim::client::Delivery;
use inboxd::telemetry::metrics::{FAMILIES, Source};

use crate::helpers::{World, until, world};

async fn scrape(world: &World) -> String {
    world
        .daemon
        .http
        .get(format!("{}/metrics", world.daemon.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the first sample of `name` whose labels include every pair of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (label_text, value) = if let Some(inner) = rest.strip_prefix('{') {
            let (inner, value) = inner.split_once("} ")?;
            (inner, value)
        } else {
            ("", rest.strip_prefix(' ')?)
        };
        labels
            .iter()
            .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse::<f64>().ok())
            .flatten()
    })
}

/// Checks the exposition: every sample's family has one HELP and one TYPE line before its samples.
fn families(text: &str) -> BTreeMap<String, String> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeSet<String> = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_owned();
            assert!(helps.insert(name.clone()), "two HELP lines for {name}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(helps.contains(name), "TYPE without HELP for {name}");
            let previous = types.insert(name.to_owned(), kind.to_owned());
            assert!(previous.is_none(), "two TYPE lines for {name}");
        } else {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|s| name.strip_suffix(s))
                .find(|base| types.get(*base).is_some_and(|t| t == "histogram"))
                .unwrap_or(name);
            assert!(types.contains_key(family), "{name} has no TYPE before it");
            let value = line.rsplit(' ').next().unwrap();
            assert!(
                value.parse::<f64>().is_ok_and(|v| v >= 0.0),
                "a negative or unreadable value (a sentinel?): {line}"
            );
        }
    }
    types
}

#[actix_rt::test]
async fn metrics_follow_the_prometheus_conventions() {
    let world = world(1, &[]).await;
    let (id, mailbox) = world.active_channel("metrics@contoso.example").await;
    let delivered = world
        .sim_client
        .deliver(&mailbox.upn, &Delivery::generated(3))
        .await
        .unwrap();
    until(Duration::from_secs(10), "the mail in the sink", || async {
        world.daemon.sink_lines().unwrap().len() >= delivered.count
    })
    .await;
    until(Duration::from_secs(10), "the mail marked read", || async {
        world
            .sim_client
            .mailbox_state(&mailbox.upn)
            .await
            .unwrap()
            .unread
            == 0
    })
    .await;
    // The per-channel timestamp appears once the poll that marked the mail read has ended.
    until(
        Duration::from_secs(10),
        "a last-success timestamp",
        || async {
            let text = scrape(&world).await;
            sample(
                &text,
                "inboxd_channel_last_success_timestamp_seconds",
                &[("channel_id", &id)],
            )
            .is_some()
        },
    )
    .await;
    let text = scrape(&world).await;
    if let Some(path) = std::env::var_os("INBOXD_METRICS_SCRAPE") {
        std::fs::write(path, &text).unwrap();
    }

    let types = families(&text);
    for family in FAMILIES
        .iter()
        .filter(|f| f.source == Source::Registry && f.zero_at_start)
    {
        assert_eq!(
            types.get(family.name).map(String::as_str),
            Some(family.kind.as_str()),
            "{} is not exported from the start",
            family.name
        );
    }
    for name in types.keys() {
        assert!(
            FAMILIES.iter().any(|f| f.name == name),
            "{name} is exported but not in the table"
        );
    }
    // Counters at zero for every known label combination, e.g. an answer class never seen.
    assert_eq!(
        sample(
            &text,
            "inboxd_graph_requests_total",
            &[("endpoint", "attachments"), ("status_class", "5xx")]
        ),
        Some(0.0)
    );
    for (endpoint, class) in [("batch", "2xx"), ("delta", "2xx")] {
        let count = sample(
            &text,
            "inboxd_graph_requests_total",
            &[("endpoint", endpoint), ("status_class", class)],
        );
        assert!(
            count.is_some_and(|c| c >= 1.0),
            "{endpoint} {class}: {count:?}"
        );
    }
    let tokens = sample(
        &text,
        "inboxd_token_requests_total",
        &[("grant", "authorization_code"), ("status_class", "2xx")],
    );
    assert!(tokens.is_some_and(|c| c >= 1.0), "{tokens:?}");
    assert_eq!(types["inboxd_graph_request_duration_seconds"], "histogram");
    assert_eq!(types["inboxd_token_request_duration_seconds"], "histogram");
    let batch_latency = sample(
        &text,
        "inboxd_graph_request_duration_seconds_count",
        &[("endpoint", "batch")],
    );
    assert!(batch_latency.is_some_and(|c| c >= 1.0), "{batch_latency:?}");
    assert!(
        sample(
            &text,
            "inboxd_graph_request_duration_seconds_bucket",
            &[("endpoint", "delta"), ("le", "30")]
        )
        .is_some(),
        "the buckets reach 30 s"
    );
    assert_eq!(
        sample(
            &text,
            "inboxd_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    // Timestamps, not ages; and no mailbox address unless asked for.
    let now = chrono::Utc::now().timestamp() as f64;
    let last = sample(
        &text,
        "inboxd_channel_last_success_timestamp_seconds",
        &[("channel_id", &id)],
    )
    .unwrap();
    assert!(
        (now - last).abs() < 60.0,
        "{last} is not a recent Unix time"
    );
    let oldest = sample(
        &text,
        "inboxd_channels_last_success_oldest_timestamp_seconds",
        &[],
    )
    .unwrap();
    assert!(oldest <= last);
    assert!(
        !text.contains(&mailbox.upn),
        "a mailbox address in /metrics"
    );
    for label in ["within_days=", "for_more_than_secs="] {
        assert!(!text.contains(label), "a threshold in a label: {label}");
    }
    for name in types.keys() {
        assert!(
            !name.contains("_days") && !name.contains("seconds_since"),
            "{name}: base units and timestamps only"
        );
    }
}

#[actix_rt::test]
async fn the_mailbox_label_is_opt_in() {
    let world = world(
        1,
        &[("INBOXD_SERVER__METRICS_MAILBOX_LABEL", "true".to_owned())],
    )
    .await;
    let (id, mailbox) = world.active_channel("labelled@contoso.example").await;
    until(Duration::from_secs(10), "a labelled series", || async {
        let text = scrape(&world).await;
        sample(
            &text,
            "inboxd_channel_last_success_timestamp_seconds",
            &[("channel_id", &id), ("mailbox", &mailbox.upn)],
        )
        .is_some()
    })
    .await;
}
