//! `/metrics`: Prometheus text from the `metrics` facade, plus gauges computed from the status board
//! at scrape time (channels by status, time since each channel's last successful poll, failing
//! channels by error source, client secrets close to expiry). `docs/alerts.yml` alerts on them.

use std::sync::OnceLock;

use actix_web::{HttpResponse, web};
use chrono::Utc;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::control::ErrorSource;
use crate::domain::ChannelStatus;
use crate::http::AppState;

/// Thresholds of `inboxd_channels_without_success`: channels whose last success is older.
const STALE_AFTER_SECS: [f64; 4] = [300.0, 600.0, 900.0, 3600.0];

/// Thresholds of `inboxd_channels_client_secret_expiring`: secrets expiring within this many days.
const SECRET_WITHIN_DAYS: [i64; 3] = [7, 14, 30];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once; later calls return the same handle.
pub fn recorder() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let lateness = [
                0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("inboxd_poll_lateness_seconds".to_owned()),
                    &lateness,
                )
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
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

/// Renders the metrics.
pub async fn render(state: web::Data<AppState>) -> HttpResponse {
    let board = state.control.board();
    // This node's channels only: in cluster mode the others' poll times are known to their nodes
    // (an idle poll writes nothing to the database), and each node's /metrics covers its shards.
    let (_, mine) = board.page(|row| state.control.runs_here(row.id), 0, usize::MAX);
    for status in ChannelStatus::ALL {
        let count = mine.iter().filter(|row| row.status == status).count();
        metrics::gauge!("inboxd_channels", "status" => status.as_str()).set(count as f64);
    }
    let now = Utc::now();
    let per_channel = (mine.len() as u64) <= state.per_channel_metrics_max;
    let mut extra = String::new();
    if per_channel {
        extra.push_str("# HELP inboxd_channel_seconds_since_last_success Seconds since the channel's last successful poll (-1: never).\n");
        extra.push_str("# TYPE inboxd_channel_seconds_since_last_success gauge\n");
    }
    let mut secret_series = String::new();
    if per_channel {
        secret_series.push_str("# HELP inboxd_channel_client_secret_days_left Whole days until the channel's client secret expires (negative: expired); only channels whose expiry is known.\n");
        secret_series.push_str("# TYPE inboxd_channel_client_secret_days_left gauge\n");
    }
    let rows: Vec<_> = mine
        .into_iter()
        .filter(|row| row.enabled && row.status != ChannelStatus::Disabled)
        .collect();
    let mut min_secret_days: Option<i64> = None;
    let mut max_since = 0.0f64;
    let mut stale = [0usize; STALE_AFTER_SECS.len()];
    let mut expiring = [0usize; SECRET_WITHIN_DAYS.len()];
    let mut failing = [0usize; ErrorSource::ALL.len()];
    for row in &rows {
        if row.status != ChannelStatus::Active
            && let Some(error) = &row.last_error
            && let Some(i) = ErrorSource::ALL.iter().position(|s| *s == error.source)
        {
            failing[i] += 1;
        }
        let since = row
            .last_success_at
            .map(|at| (now - at).num_milliseconds() as f64 / 1000.0);
        if per_channel {
            extra.push_str(&format!(
                "inboxd_channel_seconds_since_last_success{{channel_id=\"{}\",mailbox=\"{}\"}} {}\n",
                row.id,
                row.mailbox.replace(['"', '\\', '\n'], "_"),
                since.unwrap_or(-1.0)
            ));
        }
        if let Some(since) = since {
            max_since = max_since.max(since);
            for (threshold, count) in STALE_AFTER_SECS.iter().zip(stale.iter_mut()) {
                if since > *threshold {
                    *count += 1;
                }
            }
        }
        if let Some(days) = row.secret_days_left(now) {
            min_secret_days = Some(min_secret_days.map_or(days, |d: i64| d.min(days)));
            for (within, count) in SECRET_WITHIN_DAYS.iter().zip(expiring.iter_mut()) {
                if days < *within {
                    *count += 1;
                }
            }
            if per_channel {
                secret_series.push_str(&format!(
                    "inboxd_channel_client_secret_days_left{{channel_id=\"{}\",mailbox=\"{}\"}} {days}\n",
                    row.id,
                    row.mailbox.replace(['"', '\\', '\n'], "_"),
                ));
            }
        }
    }
    for (within, count) in SECRET_WITHIN_DAYS.iter().zip(expiring) {
        metrics::gauge!("inboxd_channels_client_secret_expiring", "within_days" => within.to_string())
            .set(count as f64);
    }
    for (source, count) in ErrorSource::ALL.iter().zip(failing) {
        metrics::gauge!("inboxd_channels_failing", "source" => source.as_str()).set(count as f64);
    }
    metrics::gauge!("inboxd_seconds_since_last_success_max").set(max_since);
    for (threshold, count) in STALE_AFTER_SECS.iter().zip(stale) {
        metrics::gauge!("inboxd_channels_without_success", "for_more_than_secs" => format!("{threshold}")).set(count as f64);
    }
    // With no known expiry the gauge reads a year, rather than keeping a stale value.
    metrics::gauge!("inboxd_client_secret_days_left_min")
        .set(min_secret_days.unwrap_or(365) as f64);
    let mut text = recorder().map(|h| h.render()).unwrap_or_default();
    text.push_str(&extra);
    if per_channel {
        text.push_str(&secret_series);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}
