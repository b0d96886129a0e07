//! `/metrics`: Prometheus text from the `metrics` facade, plus families computed from the status board
//! at scrape time (channels by status and by failing error source, each channel's last successful poll
//! and client-secret expiry as Unix timestamps, and their extremes). The families, their units and
//! HELP texts are listed once, in [`crate::telemetry::metrics`]; `docs/alerts.yml` alerts on them.

use std::sync::OnceLock;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::control::ErrorSource;
use crate::domain::ChannelStatus;
use crate::http::AppState;
use crate::status::ChannelView;
use crate::telemetry::metrics::{self as table, LATENESS_BUCKETS, REQUEST_BUCKETS};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once, describes every family and exports the counters at
/// zero; later calls return the same handle.
pub fn recorder() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("inboxd_poll_lateness_seconds".to_owned()),
                    LATENESS_BUCKETS,
                )
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full("inboxd_graph_request_duration_seconds".to_owned()),
                    REQUEST_BUCKETS,
                )
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full("inboxd_token_request_duration_seconds".to_owned()),
                    REQUEST_BUCKETS,
                )
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            table::describe_all();
            table::zero_counters();
            // Histograms keep their samples until upkeep folds them in: without it memory grows
            // whenever /metrics is not scraped.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("inboxd-metrics-upkeep".to_owned())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .ok()?;
            Some(handle)
        })
        .as_ref()
}

/// A label value as Prometheus' text format needs it escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A Unix timestamp in seconds, with milliseconds.
fn unix_seconds(at: DateTime<Utc>) -> f64 {
    at.timestamp_millis() as f64 / 1000.0
}

/// Per-channel series of one family, written by hand so that a removed channel's series goes away.
struct PerChannel {
    name: &'static str,
    lines: String,
}

impl PerChannel {
    fn new(name: &'static str) -> Self {
        PerChannel {
            name,
            lines: String::new(),
        }
    }

    fn push(&mut self, channel_id: &str, mailbox: Option<&str>, value: f64) {
        let mailbox = mailbox
            .map(|m| format!(",mailbox=\"{}\"", escape(m)))
            .unwrap_or_default();
        self.lines.push_str(&format!(
            "{}{{channel_id=\"{}\"{mailbox}}} {value}\n",
            self.name,
            escape(channel_id)
        ));
    }
}

/// Writes a family's HELP and TYPE lines and its samples (nothing at all when it has no sample).
fn write_family(out: &mut String, name: &str, samples: &str) {
    if samples.is_empty() {
        return;
    }
    if let Some(family) = table::family(name) {
        out.push_str(&table::header(family));
    }
    out.push_str(samples);
}

/// Renders the metrics. The status board is read in place (no copy, no sort): a first pass counts
/// and finds the extremes, a second writes the per-channel series when there are few enough
/// channels for them. A scrape at 100,000 channels therefore allocates only its text.
pub async fn render(state: web::Data<AppState>) -> HttpResponse {
    let board = state.control.board();
    // This node's channels only: in cluster mode the others' poll times are known to their nodes
    // (an idle poll writes nothing to the database), and each node's /metrics covers its shards.
    let mine = |row: &ChannelView| state.control.runs_here(row.id);
    // Enabled channels that are not disabled: those the failing and timestamp families are about.
    let watched = |row: &ChannelView| row.enabled && row.status != ChannelStatus::Disabled;
    let mut by_status = [0usize; ChannelStatus::ALL.len()];
    let mut quarantined_total: u64 = 0;
    let mut oldest_success: Option<DateTime<Utc>> = None;
    let mut earliest_expiry: Option<DateTime<Utc>> = None;
    let mut failing = [0usize; ErrorSource::ALL.len()];
    let mut count = 0u64;
    board.for_each(|row| {
        if !mine(row) {
            return;
        }
        count += 1;
        if let Some(i) = ChannelStatus::ALL.iter().position(|s| *s == row.status) {
            by_status[i] += 1;
        }
        if !watched(row) {
            return;
        }
        if row.status != ChannelStatus::Active
            && let Some(error) = &row.last_error
            && let Some(i) = ErrorSource::ALL.iter().position(|s| *s == error.source)
        {
            failing[i] += 1;
        }
        quarantined_total += u64::from(state.control.quarantine_count(row.id));
        if let Some(at) = row.last_success_at {
            oldest_success = Some(oldest_success.map_or(at, |o| o.min(at)));
        }
        if let Some(at) = row.credential_expires_at() {
            earliest_expiry = Some(earliest_expiry.map_or(at, |e| e.min(at)));
        }
    });
    for (status, count) in ChannelStatus::ALL.iter().zip(by_status) {
        metrics::gauge!("inboxd_channels", "status" => status.as_str()).set(count as f64);
    }
    let mut last_success = PerChannel::new("inboxd_channel_last_success_timestamp_seconds");
    let mut secret_expiry =
        PerChannel::new("inboxd_channel_client_secret_expiry_timestamp_seconds");
    let mut quarantined = PerChannel::new("inboxd_channel_quarantined_messages");
    if count <= state.per_channel_metrics_max {
        let with_mailbox = state.metrics_mailbox_label;
        board.for_each(|row| {
            if !mine(row) || !watched(row) {
                return;
            }
            let id = row.id.to_string();
            let mailbox = with_mailbox.then_some(row.mailbox.as_str());
            if let Some(at) = row.last_success_at {
                last_success.push(&id, mailbox, unix_seconds(at));
            }
            if let Some(at) = row.credential_expires_at() {
                secret_expiry.push(&id, mailbox, unix_seconds(at));
            }
            let held = state.control.quarantine_count(row.id);
            if held > 0 {
                quarantined.push(&id, mailbox, f64::from(held));
            }
        });
    }
    metrics::gauge!("inboxd_messages_quarantined").set(quarantined_total as f64);
    for (source, count) in ErrorSource::ALL.iter().zip(failing) {
        metrics::gauge!("inboxd_channels_failing", "source" => source.as_str()).set(count as f64);
    }
    let mut text = recorder().map(|h| h.render()).unwrap_or_default();
    let single = |name: &str, at: Option<DateTime<Utc>>| {
        at.map(|at| format!("{name} {}\n", unix_seconds(at)))
            .unwrap_or_default()
    };
    for (name, samples) in [
        (
            "inboxd_channels_last_success_oldest_timestamp_seconds",
            single(
                "inboxd_channels_last_success_oldest_timestamp_seconds",
                oldest_success,
            ),
        ),
        (
            "inboxd_client_secret_expiry_earliest_timestamp_seconds",
            single(
                "inboxd_client_secret_expiry_earliest_timestamp_seconds",
                earliest_expiry,
            ),
        ),
        (last_success.name, last_success.lines),
        (quarantined.name, quarantined.lines),
        (secret_expiry.name, secret_expiry.lines),
    ] {
        write_family(&mut text, name, &samples);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}
