//! The CPU floor: a bare reqwest loop on its own thread sending the same request as a poll (the GET
//! of an idle mailbox's unread list, same client settings as `startup::http_client`, same headers),
//! paced at the daemon's poll rate during the same window, so that the daemon's CPU per poll has a
//! yardstick measured on the same machine state.

use std::time::{Duration, Instant};

use anyhow::bail;
use chrono::Utc;
use inboxd::config::{self, Settings};
use inboxd::graph::{BodyContentType, GraphClient};
use inboxd::sim::client::SimClient;
use inboxd::startup::http_client;

use crate::FLOOR_MAILBOXES;
use crate::FLOOR_PREFIX;
use crate::proc::thread_cpu;
use crate::seed::{mint, record};

/// The floor: a bare reqwest loop on its own thread sending the same GET of an idle mailbox's
/// unread list, with the same client settings and headers, at the daemon's poll rate, during the
/// same window (so that both see the same machine). Answers (requests, CPU seconds of the thread).
pub(crate) fn spawn_floor(
    settings: Settings,
    sim_url: String,
    rate: f64,
    start_at: Instant,
    window: Duration,
) -> std::thread::JoinHandle<anyhow::Result<(u64, f64)>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(floor(
            &settings,
            &SimClient::new(sim_url),
            rate,
            start_at,
            window,
        ))
    })
}

async fn floor(
    settings: &Settings,
    sim: &SimClient,
    rate: f64,
    start_at: Instant,
    window: Duration,
) -> anyhow::Result<(u64, f64)> {
    let client = http_client(settings)?;
    let body = match settings.polling.body_content_type {
        config::BodyContentType::Text => BodyContentType::Text,
        config::BodyContentType::Html => BodyContentType::Html,
    };
    let prefer = match body {
        BodyContentType::Text => r#"IdType="ImmutableId", outlook.body-content-type="text""#,
        BodyContentType::Html => r#"IdType="ImmutableId", outlook.body-content-type="html""#,
    };
    let graph = GraphClient::new(
        client.clone(),
        &settings.cloud.graph_url,
        body,
        settings.polling.request_timeout,
    );
    let mut targets = Vec::new();
    for i in 0..FLOOR_MAILBOXES {
        let record = record(FLOOR_PREFIX, i)?;
        let tokens = mint(sim, FLOOR_PREFIX, i).await?;
        let url = graph.unread_url(
            &record.mailbox,
            &record.folder,
            chrono::DateTime::<Utc>::from_timestamp(0, 0).unwrap_or_default(),
            settings.polling.page_size,
        );
        targets.push((url, tokens.access_token.expose().to_owned()));
    }
    // Warm the connection up first.
    for (url, token) in &targets {
        client
            .get(url)
            .bearer_auth(token)
            .send()
            .await?
            .bytes()
            .await?;
    }
    tokio::time::sleep_until(start_at.into()).await;
    let end_at = start_at + window;
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1.0)));
    let before = thread_cpu();
    let mut requests = 0u64;
    while Instant::now() < end_at {
        pace.tick().await;
        let (url, token) = &targets[requests as usize % targets.len()];
        requests += 1;
        let response = client
            .get(url)
            .header("Prefer", prefer)
            .header(reqwest::header::ACCEPT, "application/json")
            .bearer_auth(token)
            .timeout(settings.polling.request_timeout)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("the floor request answered {}", response.status());
        }
        let bytes = response.bytes().await?;
        std::hint::black_box(bytes);
    }
    Ok((requests, thread_cpu() - before))
}
