//! The one table of inboxd's Prometheus metrics: every family's name, type, unit, labels and help.
//!
//! Conventions (<https://prometheus.io/docs/practices/naming/>): base units in the name (`_seconds`,
//! `_bytes`), `_total` on counters, points in time as `_timestamp_seconds` (Unix time; the series is
//! absent when there is no such time, never a sentinel), no alert thresholds in labels (alerts compute
//! them from raw values), and counters with a known label set exported at zero from the start so
//! `rate()` and `increase()` work from the first scrape.
//!
//! [`describe_all`] gives each family of the `metrics` registry its HELP; the scrape-time families that
//! `/metrics` writes itself (per-channel series, absent-able timestamps) take theirs from [`family`].
//! A tidy test checks that every metric name used in `src/` is listed here.

use std::time::Duration;

/// The Prometheus type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// Only goes up (resets on restart).
    Counter,
    /// A current value.
    Gauge,
    /// Observations in buckets (`_bucket`, `_sum`, `_count`).
    Histogram,
}

impl Type {
    /// The word in a `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Type::Counter => "counter",
            Type::Gauge => "gauge",
            Type::Histogram => "histogram",
        }
    }
}

/// Where a family's samples come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The `metrics` facade's registry (`counter!`, `gauge!`, `histogram!` in the code).
    Registry,
    /// Written by `/metrics` at scrape time from the status board (may be absent).
    Scrape,
}

/// One metric family.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// The full name, unit included.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Type,
    /// The base unit (`seconds`, `bytes`) or "" for a count or an info metric.
    pub unit: &'static str,
    /// Each label with its known values; an empty list of values means open-ended (ids, versions).
    pub labels: &'static [(&'static str, &'static [&'static str])],
    /// Whether [`zero_counters`] exports it at zero at start, for every combination of its labels'
    /// values. Off for families that exist only in some modes (they are zeroed where the mode starts).
    pub zero_at_start: bool,
    /// Where its samples come from.
    pub source: Source,
    /// The HELP text.
    pub help: &'static str,
}

/// Graph endpoints as the `endpoint` label names them.
pub const GRAPH_ENDPOINTS: &[&str] = &["messages", "delta", "batch", "attachments", "message"];
/// HTTP answers by class as the `status_class` label names them; `error` is no HTTP answer at all
/// (a transport failure or a timeout) or a status outside 2xx/4xx/5xx.
pub const STATUS_CLASSES: &[&str] = &["2xx", "4xx", "429", "5xx", "error"];
/// OAuth grants as the `grant` label names them.
pub const TOKEN_GRANTS: &[&str] = &["authorization_code", "refresh_token"];
/// Outcomes as an `outcome` label names them.
const OK_FAILED: &[&str] = &["ok", "failed"];
/// The kinds of PostgreSQL round trips counted by `inboxd_store_transactions_total`.
pub const STORE_TRANSACTION_KINDS: &[&str] = &["read", "write", "lease"];

/// Buckets of the request-duration histograms: 5 ms to 30 s (the HTTP timeouts' range).
pub const REQUEST_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets of `inboxd_poll_lateness_seconds`.
pub const LATENESS_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
];

const fn registry(
    name: &'static str,
    kind: Type,
    unit: &'static str,
    labels: &'static [(&'static str, &'static [&'static str])],
    help: &'static str,
) -> Family {
    Family {
        name,
        kind,
        unit,
        labels,
        zero_at_start: matches!(kind, Type::Counter),
        source: Source::Registry,
        help,
    }
}

const fn scrape(
    name: &'static str,
    unit: &'static str,
    labels: &'static [(&'static str, &'static [&'static str])],
    help: &'static str,
) -> Family {
    Family {
        name,
        kind: Type::Gauge,
        unit,
        labels,
        zero_at_start: false,
        source: Source::Scrape,
        help,
    }
}

/// The per-channel labels: `channel_id` always, `mailbox` when `server.metrics_mailbox_label` is on.
const CHANNEL_LABELS: &[(&str, &[&str])] = &[("channel_id", &[]), ("mailbox", &[])];

/// Every metric family inboxd exports.
pub const FAMILIES: &[Family] = &[
    // Build and process.
    Family {
        zero_at_start: false,
        ..registry(
            "inboxd_build_info",
            Type::Gauge,
            "",
            &[("version", &[]), ("git_sha", &[])],
            "Always 1; the labels name the running build (git_sha \"unknown\" when the build did not record it).",
        )
    },
    // Polling.
    registry(
        "inboxd_polls_total",
        Type::Counter,
        "",
        &[],
        "Polls of a channel's folder started.",
    ),
    registry(
        "inboxd_poll_lateness_seconds",
        Type::Histogram,
        "seconds",
        &[],
        "How late each poll started after its scheduled time.",
    ),
    registry(
        "inboxd_channel_events_total",
        Type::Counter,
        "",
        &[(
            "kind",
            &[
                "channel.status_changed",
                "channel.sign_in_failed",
                "channel.authorized",
            ],
        )],
        "Channel events (status changes, failed and completed sign-ins), by kind.",
    ),
    registry(
        "inboxd_channel_restarts_total",
        Type::Counter,
        "",
        &[],
        "Channel actors restarted by the supervisor after they stopped unexpectedly.",
    ),
    registry(
        "inboxd_throttle_waits_total",
        Type::Counter,
        "",
        &[],
        "Waits imposed by Microsoft (429 or Retry-After) before a channel's next request.",
    ),
    registry(
        "inboxd_throttle_floors_total",
        Type::Counter,
        "",
        &[],
        "Retry-After floors recorded for a mailbox (kept across edits and restarts).",
    ),
    registry(
        "inboxd_rate_limit_waits_total",
        Type::Counter,
        "",
        &[],
        "Waits for inboxd's own per-mailbox or per-app request budget before a Graph request.",
    ),
    registry(
        "inboxd_delta_resyncs_total",
        Type::Counter,
        "",
        &[],
        "Delta rounds restarted from scratch because Graph no longer knew the delta link.",
    ),
    registry(
        "inboxd_backfilled_messages_total",
        Type::Counter,
        "",
        &[],
        "Messages delivered by a backfill (first import of past mail).",
    ),
    // Mail.
    registry(
        "inboxd_messages_delivered_total",
        Type::Counter,
        "",
        &[],
        "Messages the sink accepted.",
    ),
    registry(
        "inboxd_sink_failures_total",
        Type::Counter,
        "",
        &[],
        "Messages the sink refused (they stay unread and are retried).",
    ),
    registry(
        "inboxd_messages_quarantined_total",
        Type::Counter,
        "",
        &[],
        "Messages set aside because they could not be read or delivered (see the channel's quarantine).",
    ),
    // Microsoft Graph and the identity platform.
    registry(
        "inboxd_graph_requests_total",
        Type::Counter,
        "",
        &[
            ("endpoint", GRAPH_ENDPOINTS),
            ("status_class", STATUS_CLASSES),
        ],
        "Requests sent to Microsoft Graph, by endpoint and answer (status_class error: no HTTP answer).",
    ),
    registry(
        "inboxd_graph_request_duration_seconds",
        Type::Histogram,
        "seconds",
        &[("endpoint", GRAPH_ENDPOINTS)],
        "Time from sending a Graph request to its whole answer (or its failure).",
    ),
    registry(
        "inboxd_token_requests_total",
        Type::Counter,
        "",
        &[("grant", TOKEN_GRANTS), ("status_class", STATUS_CLASSES)],
        "Token requests sent to the Microsoft identity platform, by grant and answer (status_class error: no HTTP answer).",
    ),
    registry(
        "inboxd_token_request_duration_seconds",
        Type::Histogram,
        "seconds",
        &[],
        "Time from sending a token request to the identity platform to its whole answer (or its failure).",
    ),
    registry(
        "inboxd_token_refreshes_total",
        Type::Counter,
        "",
        &[("outcome", OK_FAILED)],
        "Access-token refreshes of channels, by outcome.",
    ),
    // Store.
    registry(
        "inboxd_ledger_pruned_total",
        Type::Counter,
        "",
        &[],
        "Delivery-ledger entries removed after store.ledger_retention_days.",
    ),
    registry(
        "inboxd_store_recoveries_total",
        Type::Counter,
        "",
        &[("outcome", OK_FAILED)],
        "Attempts to reopen the store after it refused writes, by outcome.",
    ),
    Family {
        zero_at_start: false,
        ..registry(
            "inboxd_store_transactions_total",
            Type::Counter,
            "",
            &[("engine", &["postgres"]), ("kind", STORE_TRANSACTION_KINDS)],
            "Round trips of the store engine with its database, by kind (PostgreSQL engine only).",
        )
    },
    // Admin surface.
    registry(
        "inboxd_admin_auth_failures_total",
        Type::Counter,
        "",
        &[],
        "Admin API and status-page requests with a wrong admin token.",
    ),
    registry(
        "inboxd_admin_auth_blocked_total",
        Type::Counter,
        "",
        &[],
        "Admin requests refused because their address failed too often (server.admin_login_failures_per_min).",
    ),
    // Cluster.
    Family {
        zero_at_start: false,
        ..registry(
            "inboxd_cluster_shards_claimed_total",
            Type::Counter,
            "",
            &[],
            "Shards this node claimed (cluster mode).",
        )
    },
    Family {
        zero_at_start: false,
        ..registry(
            "inboxd_cluster_shards_lost_total",
            Type::Counter,
            "",
            &[],
            "Shards this node lost or gave up (cluster mode).",
        )
    },
    registry(
        "inboxd_cluster_shards_held",
        Type::Gauge,
        "",
        &[],
        "Shards this node holds (cluster mode).",
    ),
    registry(
        "inboxd_cluster_nodes_live",
        Type::Gauge,
        "",
        &[],
        "Nodes with a live membership row (cluster mode).",
    ),
    // Channels, computed at scrape time from this node's channels.
    registry(
        "inboxd_channels",
        Type::Gauge,
        "",
        &[("status", &[])],
        "This node's channels by status.",
    ),
    registry(
        "inboxd_channels_failing",
        Type::Gauge,
        "",
        &[("source", &[])],
        "This node's enabled channels not active whose last error came from this source.",
    ),
    registry(
        "inboxd_messages_quarantined",
        Type::Gauge,
        "",
        &[],
        "Messages quarantined across this node's channels (failed retry.max_delivery_attempts times; kept unread until an operator replays them).",
    ),
    scrape(
        "inboxd_channels_last_success_oldest_timestamp_seconds",
        "seconds",
        &[],
        "Oldest last successful poll among this node's enabled channels that succeeded at least once (Unix time; absent when none has).",
    ),
    scrape(
        "inboxd_client_secret_expiry_earliest_timestamp_seconds",
        "seconds",
        &[],
        "Earliest expiry of an app credential (client secret or certificate) among this node's enabled channels (Unix time; absent when no expiry is known).",
    ),
    scrape(
        "inboxd_channel_last_success_timestamp_seconds",
        "seconds",
        CHANNEL_LABELS,
        "The channel's last successful poll (Unix time; absent when it never succeeded). Only up to server.per_channel_metrics_max channels.",
    ),
    scrape(
        "inboxd_channel_quarantined_messages",
        "",
        CHANNEL_LABELS,
        "The channel's quarantined messages (absent when none). Only up to server.per_channel_metrics_max channels.",
    ),
    scrape(
        "inboxd_channel_client_secret_expiry_timestamp_seconds",
        "seconds",
        CHANNEL_LABELS,
        "When the channel's app credential (client secret or certificate) expires (Unix time; absent when unknown). Only up to server.per_channel_metrics_max channels.",
    ),
];

/// The family named `name`.
pub fn family(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.name == name)
}

/// The `# HELP` and `# TYPE` lines of a family `/metrics` writes itself.
pub fn header(family: &Family) -> String {
    format!(
        "# HELP {name} {help}\n# TYPE {name} {kind}\n",
        name = family.name,
        help = family.help.replace('\\', "\\\\").replace('\n', "\\n"),
        kind = family.kind.as_str()
    )
}

/// Gives every registry family its HELP text (the exporter writes `# HELP` only for described ones).
pub fn describe_all() {
    for family in FAMILIES.iter().filter(|f| f.source == Source::Registry) {
        let unit = match family.unit {
            "seconds" => Some(metrics::Unit::Seconds),
            "bytes" => Some(metrics::Unit::Bytes),
            _ => None,
        };
        match (family.kind, unit) {
            (Type::Counter, Some(unit)) => {
                metrics::describe_counter!(family.name, unit, family.help);
            }
            (Type::Counter, None) => metrics::describe_counter!(family.name, family.help),
            (Type::Gauge, Some(unit)) => metrics::describe_gauge!(family.name, unit, family.help),
            (Type::Gauge, None) => metrics::describe_gauge!(family.name, family.help),
            (Type::Histogram, Some(unit)) => {
                metrics::describe_histogram!(family.name, unit, family.help);
            }
            (Type::Histogram, None) => metrics::describe_histogram!(family.name, family.help),
        }
    }
}

/// Every combination of the known values of `labels`.
fn label_sets(labels: &[(&'static str, &'static [&'static str])]) -> Vec<Vec<metrics::Label>> {
    let mut sets: Vec<Vec<metrics::Label>> = vec![Vec::new()];
    for (name, values) in labels {
        let mut next = Vec::with_capacity(sets.len() * values.len());
        for set in &sets {
            for value in *values {
                let mut extended = set.clone();
                extended.push(metrics::Label::new(*name, *value));
                next.push(extended);
            }
        }
        sets = next;
    }
    sets
}

/// Exports the counter `name` at zero for every combination of its labels' known values (a counter
/// with an open-ended label is left alone).
pub fn zero(name: &str) {
    let Some(family) = family(name) else {
        return;
    };
    if family.kind != Type::Counter || family.labels.iter().any(|(_, v)| v.is_empty()) {
        return;
    }
    for labels in label_sets(family.labels) {
        metrics::counter!(family.name, labels).increment(0);
    }
}

/// Exports the counters marked [`Family::zero_at_start`] at zero, and `inboxd_build_info`.
pub fn zero_counters() {
    for family in FAMILIES.iter().filter(|f| f.zero_at_start) {
        zero(family.name);
    }
    metrics::gauge!(
        "inboxd_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "git_sha" => option_env!("INBOXD_GIT_SHA").unwrap_or("unknown"),
    )
    .set(1.0);
}

/// The `status_class` of an HTTP status.
pub fn status_class(status: u16) -> &'static str {
    match status {
        429 => "429",
        200..=299 => "2xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "error",
    }
}

/// Counts one Graph request to `endpoint` (one of [`GRAPH_ENDPOINTS`]) and records its duration;
/// `status` is `None` when no HTTP answer came.
pub fn graph_request(endpoint: &'static str, status: Option<u16>, elapsed: Duration) {
    let class = status.map_or("error", status_class);
    metrics::counter!("inboxd_graph_requests_total", "endpoint" => endpoint, "status_class" => class)
        .increment(1);
    metrics::histogram!("inboxd_graph_request_duration_seconds", "endpoint" => endpoint)
        .record(elapsed.as_secs_f64());
}

/// Counts one token request of `grant` (one of [`TOKEN_GRANTS`]) and records its duration; `status`
/// is `None` when no HTTP answer came.
pub fn token_request(grant: &'static str, status: Option<u16>, elapsed: Duration) {
    let class = status.map_or("error", status_class);
    metrics::counter!("inboxd_token_requests_total", "grant" => grant, "status_class" => class)
        .increment(1);
    metrics::histogram!("inboxd_token_request_duration_seconds").record(elapsed.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_conventions() {
        let mut seen = std::collections::HashSet::new();
        for family in FAMILIES {
            assert!(seen.insert(family.name), "{} listed twice", family.name);
            assert!(family.name.starts_with("inboxd_"), "{}", family.name);
            assert!(!family.help.is_empty(), "{} has no help", family.name);
            assert_eq!(
                family.kind == Type::Counter,
                family.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                family.name
            );
            if !family.unit.is_empty() {
                assert!(
                    family.name.ends_with(&format!("_{}", family.unit))
                        || family.name.ends_with(&format!("_{}_total", family.unit)),
                    "{}: the unit {} ends the name",
                    family.name,
                    family.unit
                );
            }
            for word in ["_days", "_since_", "_ms", "_millis", "_minutes"] {
                assert!(
                    !family.name.contains(word),
                    "{}: base units only",
                    family.name
                );
            }
        }
    }

    #[test]
    fn status_classes_cover_every_status() {
        assert_eq!(status_class(200), "2xx");
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(404), "4xx");
        assert_eq!(status_class(429), "429");
        assert_eq!(status_class(503), "5xx");
        assert_eq!(status_class(302), "error");
        for status in 0..1000 {
            assert!(STATUS_CLASSES.contains(&status_class(status)));
        }
    }

    #[test]
    fn label_sets_are_the_cartesian_product() {
        let sets = label_sets(&[("a", &["1", "2"]), ("b", &["x", "y", "z"])]);
        assert_eq!(sets.len(), 6);
        assert!(label_sets(&[]).len() == 1);
    }
}
