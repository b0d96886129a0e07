//! `/metrics`: Prometheus text from the `metrics` facade, plus gauges computed from the status board
//! at scrape time (channels by status, time since each channel's last successful poll).

use std::sync::OnceLock;

use actix_web::{HttpResponse, web};
use chrono::Utc;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::domain::ChannelStatus;
use crate::http::AppState;

/// Thresholds of `inboxd_channels_without_success`: channels whose last success is older.
const STALE_AFTER_SECS: [f64; 3] = [300.0, 900.0, 3600.0];

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
            Some(handle)
        })
        .as_ref()
}

/// Renders the metrics.
pub async fn render(state: web::Data<AppState>) -> HttpResponse {
    let board = &state.shared.board;
    for (status, count) in board.counts() {
        metrics::gauge!("inboxd_channels", "status" => status.as_str()).set(count as f64);
    }
    let now = Utc::now();
    let per_channel = (board.len() as u64) <= state.per_channel_metrics_max;
    let mut extra = String::new();
    if per_channel {
        extra.push_str("# HELP inboxd_channel_seconds_since_last_success Seconds since the channel's last successful poll (-1: never).\n");
        extra.push_str("# TYPE inboxd_channel_seconds_since_last_success gauge\n");
    }
    let (_, rows) = board.page(
        |row| row.enabled && row.status != ChannelStatus::Disabled,
        0,
        usize::MAX,
    );
    let mut min_secret_days: Option<i64> = None;
    let mut max_since = 0.0f64;
    let mut stale = [0usize; STALE_AFTER_SECS.len()];
    for row in &rows {
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
        }
    }
    metrics::gauge!("inboxd_seconds_since_last_success_max").set(max_since);
    for (threshold, count) in STALE_AFTER_SECS.iter().zip(stale) {
        metrics::gauge!("inboxd_channels_without_success", "for_more_than_secs" => format!("{threshold}")).set(count as f64);
    }
    if let Some(days) = min_secret_days {
        metrics::gauge!("inboxd_client_secret_days_left_min").set(days as f64);
    }
    let mut text = recorder().map(|h| h.render()).unwrap_or_default();
    text.push_str(&extra);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}
