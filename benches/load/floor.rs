//! The CPU floor: a bare reqwest loop on its own thread sending the same request as a poll (the GET
//! of an idle mailbox's unread list, or in delta mode of its stored delta link; same client
//! settings as `startup::http_client`, same headers),
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
/// same window (so that both see the same machine). Answers (requests, CPU seconds of the thread,
/// response body bytes: the bytes of an idle poll, since it is the same request).
pub(crate) fn spawn_floor(
    settings: Settings,
    sim_url: String,
    rate: f64,
    start_at: Instant,
    window: Duration,
) -> std::thread::JoinHandle<anyhow::Result<(u64, f64, u64)>> {
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

/// The floor's pacing alone: the same `tokio::time::interval` at the same rate on a thread of its
/// own, sending nothing, during the same window. Its CPU is what the floor's timer wake-ups cost,
/// and is taken off the floor's, so that the yardstick is the request's own cost whatever the
/// pacing (the daemon pays its own timer wake-ups inside its CPU per poll). Answers (ticks, CPU
/// seconds of the thread).
pub(crate) fn spawn_pacer(
    rate: f64,
    start_at: Instant,
    window: Duration,
) -> std::thread::JoinHandle<anyhow::Result<(u64, f64)>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            tokio::time::sleep_until(start_at.into()).await;
            let end_at = start_at + window;
            let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1.0)));
            let before = thread_cpu();
            let mut ticks = 0u64;
            while Instant::now() < end_at {
                pace.tick().await;
                ticks = std::hint::black_box(ticks + 1);
            }
            Ok((ticks, thread_cpu() - before))
        })
    })
}

async fn floor(
    settings: &Settings,
    sim: &SimClient,
    rate: f64,
    start_at: Instant,
    window: Duration,
) -> anyhow::Result<(u64, f64, u64)> {
    let client = http_client(settings)?;
    let body = match settings.polling.body_content_type {
        config::BodyContentType::Text => BodyContentType::Text,
        config::BodyContentType::Html => BodyContentType::Html,
    };
    let delta = settings.polling.mode == inboxd::domain::PollMode::Delta;
    let prefer = match body {
        BodyContentType::Text => r#"IdType="ImmutableId", outlook.body-content-type="text""#,
        BodyContentType::Html => r#"IdType="ImmutableId", outlook.body-content-type="html""#,
    };
    let prefer = if delta {
        format!("{prefer}, odata.maxpagesize={}", settings.polling.page_size)
    } else {
        prefer.to_owned()
    };
    let graph = GraphClient::new(
        client.clone(),
        &settings.cloud.graph_url,
        body,
        settings.polling.request_timeout,
    );
    let mut targets = Vec::new();
    for i in 0..FLOOR_MAILBOXES {
        let record = record(FLOOR_PREFIX, i, "graph")?;
        let tokens = mint(sim, FLOOR_PREFIX, i, "graph").await?;
        let since = chrono::DateTime::<Utc>::from_timestamp(0, 0).unwrap_or_default();
        let token = tokens.access_token.expose().to_owned();
        let url = if delta {
            // An idle channel in delta mode GETs its stored delta link: run the first round to
            // the end and use the link it ends with.
            let mut url = graph.delta_url(&record.mailbox, &record.folder, since);
            loop {
                let page = graph
                    .delta_page(&token, &url, settings.polling.page_size)
                    .await
                    .map_err(|e| anyhow::anyhow!("the floor's first delta round failed: {e}"))?;
                match (page.next_link, page.delta_link) {
                    (Some(next), _) => url = next,
                    (None, Some(link)) => break link,
                    (None, None) => bail!("a delta round ended without a delta link"),
                }
            }
        } else {
            graph.unread_url(
                &record.mailbox,
                &record.folder,
                since,
                settings.polling.page_size,
            )
        };
        targets.push((url, token));
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
    let mut bytes_read = 0u64;
    while Instant::now() < end_at {
        pace.tick().await;
        let (url, token) = &targets[requests as usize % targets.len()];
        requests += 1;
        let response = client
            .get(url)
            .header("Prefer", prefer.as_str())
            .header(reqwest::header::ACCEPT, "application/json")
            .bearer_auth(token)
            .timeout(settings.polling.request_timeout)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("the floor request answered {}", response.status());
        }
        let bytes = response.bytes().await?;
        bytes_read += bytes.len() as u64;
        std::hint::black_box(bytes);
    }
    Ok((requests, thread_cpu() - before, bytes_read))
}
