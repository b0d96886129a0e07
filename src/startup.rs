//! Builds the daemon from validated settings: the store, the sink, the clients, the actors and the
//! HTTP server. `inboxd serve`, `inboxd demo`, the tests and the benches all go through
//! [`Application::build`], so they run the same daemon.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{App, HttpServer, web};
use anyhow::Context as _;

use crate::actors::deps::Deps;
use crate::actors::housekeeping::Housekeeper;
use crate::actors::messages::StopAll;
use crate::actors::processor::{ProcessorActor, SinkBackend};
use crate::actors::supervisor::{Arrival, ChannelSupervisor};
use crate::cluster::{Keeper, KeeperHandle, Members, Ownership};
use crate::config::{self, Settings};
use crate::control::{self, Control};
use crate::domain::secret::{AdminToken, MasterKey, WebhookSecret};
use crate::events::{EventWebhook, Events};
use crate::graph::{BodyContentType, GraphClient};
use crate::http::{self, AppState};
use crate::ingest::{Ingest, RunSettings, recovery};
use crate::oauth::OAuthClient;
use crate::rate_limit::{Limits, RateLimiters};
use crate::retry::BackoffPolicy;
use crate::sink::WebhookSink;
use crate::status::StatusBoard;
use crate::store::{FirstImport, PgOptions, Store, StoreOptions};

/// The secrets the daemon runs with (from the environment or key files).
pub struct Secrets {
    /// Encrypts the store.
    pub master_key: MasterKey,
    /// Guards the admin API and the status page.
    pub admin_token: AdminToken,
    /// Signs webhook bodies.
    pub webhook_secret: Option<WebhookSecret>,
}

/// A running daemon.
pub struct Application {
    port: u16,
    server: actix_web::dev::ServerHandle,
    serving: Option<actix_rt::task::JoinHandle<std::io::Result<()>>>,
    supervisor: Addr<ChannelSupervisor>,
    processor: Addr<ProcessorActor>,
    housekeeper: Addr<Housekeeper>,
    deps: Arc<Deps>,
    arbiters: Vec<Arbiter>,
    grace: Duration,
    /// Cluster mode: the lease keeper (stopped last: it hands the shards back).
    keeper: Option<KeeperHandle>,
}

/// Builds the one HTTP client every Microsoft call shares. It follows no redirects (a token request
/// that is redirected must fail, not leak), and keeps enough idle connections for the global cap.
pub fn http_client(settings: &Settings) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(settings.limits.global_concurrency.max(1))
        .tcp_nodelay(true)
        .user_agent(concat!("inboxd/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("Failed to build the HTTP client")
}

fn first_import(policy: config::FirstImport) -> FirstImport {
    match policy {
        config::FirstImport::All => FirstImport::AllUnread,
        config::FirstImport::New => FirstImport::OnlyNew,
        config::FirstImport::LastDays(days) => FirstImport::LastDays(days),
    }
}

/// Opens the sled store, waiting up to two seconds for its lock: a previous holder that is shutting
/// down (a restarted service, an earlier handle of this process) releases it a moment after it
/// stopped. A lock still held after that is refused with the store's own explanation.
fn open_sled_waiting_for_lock(
    path: &std::path::Path,
    key: crate::domain::secret::MasterKey,
    options: StoreOptions,
) -> Result<Store, crate::store::StoreError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match Store::open(path, key.clone(), options.clone()) {
            Err(err)
                if err.kind() == crate::store::StoreErrorKind::Locked
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// A file-size limit (RLIMIT_FSIZE, `ulimit -f`, systemd's `LimitFSIZE=`) makes the kernel send
/// SIGXFSZ, whose default action kills the process: under `Restart=on-failure` a crash loop.
/// Opens the store of `store.engine`: sled at `store.path`, or PostgreSQL at `store.postgres_url`
/// with a fresh node id (`<cluster.node_name>-<8 random hex>`). Blocking.
pub fn open_store(
    settings: &Settings,
    master_key: crate::domain::secret::MasterKey,
) -> anyhow::Result<Store> {
    match settings.store.engine {
        config::StoreEngine::Sled => open_sled_waiting_for_lock(
            &settings.store.path,
            master_key,
            StoreOptions {
                cache_capacity_bytes: settings.store.cache_capacity_bytes,
                flush_every_ms: Some(
                    u64::try_from(settings.store.flush_every.as_millis())
                        .unwrap_or(500)
                        .max(1),
                ),
                // The start reads every channel with `load_channels`, which adopts them.
                adopt_legacy_secrets_at_open: false,
            },
        )
        .with_context(|| {
            format!(
                "Failed to open the store at {}",
                settings.store.path.display()
            )
        }),
        config::StoreEngine::Postgres => {
            let url = settings.store.postgres_url.as_ref().context(
                "store.engine = \"postgres\" needs store.postgres_url (INBOXD_STORE__POSTGRES_URL)",
            )?;
            let node_id = settings.cluster.new_node_id();
            let store = Store::open_postgres(
                url.expose(),
                master_key,
                PgOptions {
                    pool: settings.store.postgres_pool,
                    node_id: node_id.clone(),
                },
            )
            .with_context(|| {
                format!("Failed to open the store in PostgreSQL at {}", url.shown())
            })?;
            tracing::info!(database = %url.shown(), node = %node_id, "The store is in PostgreSQL.");
            Ok(store)
        }
    }
}

/// Ignored, the write fails with EFBIG instead, which the store and the sinks treat as a full disk
/// (back off, keep everything, resume when space returns).
#[allow(unsafe_code)]
pub fn ignore_file_size_signal() -> std::io::Result<()> {
    // SAFETY: `signal` with `SIG_IGN` installs no handler code of ours and touches no memory we
    // own; it only sets the disposition of one signal for the process, which nothing else here
    // sets.
    let previous = unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    if previous == libc::SIG_ERR {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl Application {
    /// Builds and starts everything; the HTTP server listens when this returns.
    /// Must run inside an actix `System`.
    pub async fn build(settings: Settings, secrets: Secrets) -> anyhow::Result<Application> {
        let _ = http::metrics::recorder();
        let started = Instant::now();
        ignore_file_size_signal().context("Failed to ignore SIGXFSZ")?;
        // Owner-only files, whoever creates them (the store's engine makes files of its own).
        crate::store::restrict_umask();
        // Listen first: a port in use fails the start before anything else was opened or started.
        let listener = std::net::TcpListener::bind(settings.server.listen)
            .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
            .with_context(|| {
                format!(
                    "Failed to listen on {} (server.listen)",
                    settings.server.listen
                )
            })?;
        let phase = Instant::now();
        let store = open_store(&settings, secrets.master_key)?;
        let store_open = phase.elapsed();
        // Cluster mode (a PostgreSQL store): this node's share of the shards, and the fence every
        // run-time write of a channel carries.
        let coordination = store.coordination();
        let ownership = coordination.as_ref().map(|coordination| {
            let ownership = Arc::new(Ownership::new(
                coordination.node_id(),
                settings.cluster.lease,
            ));
            store.set_fencer(ownership.fencer());
            ownership
        });
        let client = http_client(&settings)?;
        let backoff = BackoffPolicy {
            initial: settings.retry.initial_backoff,
            max: settings.retry.max_backoff,
            multiplier: settings.retry.multiplier,
            randomization_factor: settings.retry.randomization_factor,
        };
        let ledger = crate::ingest::Ledger::new(store.clone());
        // The event webhook is signed with the mail webhook's secret.
        let event_secret = secrets.webhook_secret.clone();
        let phase = Instant::now();
        let backend = match &settings.processor.sink {
            config::Sink::Jsonl { path } => {
                let file = Arc::new(Mutex::new(
                    recovery::open_jsonl(&ledger, path).with_context(|| {
                        format!("Failed to open the JSONL sink {}", path.display())
                    })?,
                ));
                let hook = Arc::clone(&file);
                store.on_reopen(Box::new(move |store| {
                    recovery::rerecord_tail(&crate::ingest::Ledger::new(store.clone()), &hook)
                }));
                SinkBackend::Jsonl(file)
            }
            config::Sink::Postgres => SinkBackend::Postgres,
            config::Sink::Webhook { url } => SinkBackend::Webhook(
                Arc::new(WebhookSink::new(
                    client.clone(),
                    url.clone(),
                    secrets.webhook_secret,
                    settings.processor.webhook_timeout,
                    settings.processor.webhook_max_attempts,
                    backoff,
                )),
                32,
            ),
        };
        let sink_recovery = phase.elapsed();
        let processor_actor =
            ProcessorActor::new(ledger, backend, settings.processor.queue_capacity);
        let processor = processor_actor.handle();
        let processor_addr = processor_actor.start();
        let body = match settings.polling.body_content_type {
            config::BodyContentType::Text => BodyContentType::Text,
            config::BodyContentType::Html => BodyContentType::Html,
        };
        let timeout = settings.polling.request_timeout;
        let redirect_uri = settings.server.redirect_uri();
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(1, 64);
        // One HTTP client (connection pool) per arbiter: a connection is driven by the thread that
        // opened it, so sharing one pool across arbiters would wake another thread on every request.
        let mut graphs = Vec::with_capacity(cores);
        let mut oauths = Vec::with_capacity(cores);
        for lane in 0..cores {
            let lane_client = if lane == 0 {
                client.clone()
            } else {
                http_client(&settings)?
            };
            graphs.push(GraphClient::new(
                lane_client.clone(),
                &settings.cloud.graph_url,
                body,
                timeout,
            ));
            oauths.push(
                OAuthClient::new(
                    lane_client,
                    &settings.cloud.login_url,
                    settings.cloud.graph_scope_host(),
                    &redirect_uri,
                    timeout,
                )
                .with_imap_scope_host(settings.cloud.name.imap_scope_host()),
            );
        }
        let limits = Limits {
            mailbox_requests_per_10_min: settings.limits.mailbox_requests_per_10_min.get(),
            mailbox_concurrency: u32::try_from(settings.limits.mailbox_concurrency).unwrap_or(4),
            app_requests_per_sec: settings.limits.app_requests_per_sec.get(),
            global_concurrency: u32::try_from(settings.limits.global_concurrency).unwrap_or(512),
            token_requests_per_tenant_per_min: settings
                .limits
                .token_requests_per_tenant_per_min
                .get(),
        };
        let run = RunSettings {
            interval: settings.polling.interval,
            jitter: settings.polling.jitter,
            page_size: settings.polling.page_size,
            max_messages_per_poll: settings.polling.max_messages_per_poll,
            token_refresh_margin: settings.retry.token_refresh_margin,
            token_refresh_jitter: settings.retry.token_refresh_jitter,
            backoff,
            max_delivery_attempts: settings.retry.max_delivery_attempts,
            max_attachment_bytes: settings.processor.max_attachment_bytes,
            mode: settings.polling.mode,
        };
        let imap = crate::imap::ImapClient::new(
            settings.cloud.imap.clone(),
            timeout,
            settings.limits.imap_connections_per_mailbox,
        )
        .with_html_body(body == crate::graph::BodyContentType::Html);
        let mut ingest = Ingest::new(
            store.clone(),
            graphs,
            oauths,
            RateLimiters::new(limits),
            run,
        )
        .with_imap(imap);
        if let Some(ownership) = &ownership {
            ingest = ingest.in_cluster(Arc::clone(ownership));
        }
        let mut events = Events::new(store.clone(), settings.processor.event_history);
        if let Some(url) = &settings.processor.event_webhook_url {
            events = events.with_webhook(
                client.clone(),
                EventWebhook {
                    url: url.to_string(),
                    secret: event_secret,
                    timeout: settings.processor.webhook_timeout,
                },
            );
        }
        ingest = ingest.with_events(events);
        let ingest = Arc::new(ingest);
        // The app directory (the expiring apps' index: small) is read on a thread of its own while
        // this one lists the channels.
        let apps_reading = {
            let ingest = Arc::clone(&ingest);
            std::thread::Builder::new()
                .name("inboxd-apps".into())
                .spawn(move || {
                    let begun = Instant::now();
                    ingest.apps.reload().map(|()| begun.elapsed())
                })
                .context("Failed to start reading the apps")?
        };
        // Each channel's quarantined messages, counted off the start-up path (one ledger scan).
        let ledger = ingest.ledger.clone();
        std::thread::Builder::new()
            .name("inboxd-quarantine-count".into())
            .spawn(move || {
                if let Err(err) = ledger.load_quarantine_counts() {
                    tracing::warn!(error = %err, "Could not count the quarantined messages; listings show only those quarantined from now on.");
                }
            })
            .context("Failed to start the quarantine count")?;
        let phase = Instant::now();
        let channels = store
            // Every core decodes (the scan has a thread too, and reads less than a decoder).
            .load_channels_with(cores.max(1), Arrival::of)
            .context("Failed to read the channels from the store");
        let channel_listing = phase.elapsed();
        // Joined before anything is returned, so the thread never outlives a failed start.
        let apps_read = apps_reading
            .join()
            .map_err(|_| anyhow::anyhow!("The thread reading the apps panicked"))?
            .context("Failed to read the apps from the store")?;
        let (channels, secrets_adopted) = channels?;
        if secrets_adopted > 0 {
            // The apps just made from channel records were not there when the apps were read.
            ingest
                .apps
                .reload()
                .context("Failed to read the apps from the store")?;
        }
        // The `Retry-After` floors a previous run received hold after the restart too.
        let phase = Instant::now();
        let floors = ingest
            .load_floors()
            .context("Failed to read the throttling floors from the store")?;
        let floors_read = phase.elapsed();
        if floors > 0 {
            tracing::info!(
                mailboxes = floors,
                "Mailboxes still throttled by Microsoft from before the restart: no request before their Retry-After."
            );
        }
        let deps = Arc::new(Deps {
            ingest,
            processor,
            board: Arc::new(StatusBoard::with_capacity(channels.len())),
            coordination: coordination.clone(),
        });
        let arbiters: Vec<Arbiter> = (0..cores).map(|_| Arbiter::new()).collect();
        for (lane, arbiter) in arbiters.iter().enumerate() {
            arbiter.spawn_fn(move || crate::ingest::set_lane(lane));
        }
        let handles = arbiters.iter().map(Arbiter::handle).collect();
        let count = channels.len();
        let supervisor = ChannelSupervisor::new(Arc::clone(&deps), handles, channels).start();
        let housekeeper = Housekeeper::new(store.clone(), settings.store.ledger_retention).start();
        let control = Control::new(
            supervisor.clone(),
            Arc::clone(&deps.ingest),
            Arc::clone(&deps.board),
            control::Settings {
                redirect_uri: settings.server.redirect_uri(),
                authorization_ttl: chrono::Duration::minutes(10),
                default_first_import: first_import(settings.polling.first_import),
                public_url: settings.server.public_url.base().to_owned(),
                invitation_ttl: chrono::Duration::from_std(settings.server.sign_in_link_ttl)
                    .unwrap_or_else(|_| chrono::Duration::hours(72)),
            },
        );
        let state = web::Data::new(AppState::new(
            control,
            &secrets.admin_token,
            &settings.server,
        ));
        let max_body = settings.server.max_body_bytes;
        let server =
            HttpServer::new(move || App::new().configure(http::configure(state.clone(), max_body)))
                .workers(2)
                .disable_signals()
                .shutdown_timeout(settings.server.shutdown_grace.as_secs().max(1))
                .listen(listener)
                .with_context(|| {
                    format!(
                        "Failed to listen on {} (server.listen)",
                        settings.server.listen
                    )
                })?;
        let port = server.addrs().first().map(|a| a.port()).unwrap_or(0);
        // Cluster mode: take this node's share now (the first round runs before this returns),
        // then keep it on the keeper's own thread.
        let keeper = match (coordination, ownership) {
            (Some(coordination), Some(ownership)) => {
                let address = settings.server.public_url.to_string();
                let members: Arc<dyn Members> = Arc::new(supervisor.clone());
                let keeper = Keeper::new(coordination, ownership, members, address);
                Some(
                    actix_web::rt::task::spawn_blocking(move || keeper.start())
                        .await
                        .context("The lease keeper could not start")?
                        .context("The lease keeper's thread could not start")?,
                )
            }
            _ => None,
        };
        let server = server.run();
        let handle = server.handle();
        let serving = actix_rt::spawn(server);
        // Where the start's time went (the channel actors start on from here: the supervisor logs
        // "Channels scheduled." with its own time once every one was handed to its arbiter).
        let ms = |d: Duration| d.as_millis() as u64;
        tracing::info!(
            port,
            channels = count,
            redirect_uri = %settings.server.redirect_uri(),
            elapsed_ms = ms(started.elapsed()),
            store_open_ms = ms(store_open),
            sink_recovery_ms = ms(sink_recovery),
            apps_ms = ms(apps_read),
            channel_listing_ms = ms(channel_listing),
            floors_ms = ms(floors_read),
            "inboxd is running."
        );
        Ok(Application {
            port,
            server: handle,
            serving: Some(serving),
            supervisor,
            processor: processor_addr,
            housekeeper,
            deps,
            arbiters,
            grace: settings.server.shutdown_grace,
            keeper,
        })
    }

    /// The port the HTTP server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The supervisor, for control messages.
    pub fn supervisor(&self) -> Addr<ChannelSupervisor> {
        self.supervisor.clone()
    }

    /// The ingestion context (store, ledger, limiters, counters).
    pub fn ingest(&self) -> Arc<Ingest> {
        Arc::clone(&self.deps.ingest)
    }

    /// The status board (every channel's view).
    pub fn board(&self) -> Arc<StatusBoard> {
        Arc::clone(&self.deps.board)
    }

    /// Serves until SIGINT or SIGTERM, then shuts down gracefully; a second signal exits at once.
    pub async fn run_until_stopped(mut self, mut signals: StopSignals) -> anyhow::Result<()> {
        signals.next().await;
        tracing::info!(
            grace_secs = self.grace.as_secs(),
            "Shutting down: no new polls; in-flight work may finish."
        );
        actix_rt::spawn(async move {
            signals.next().await;
            tracing::warn!("Second signal: exiting at once.");
            std::process::exit(130);
        });
        self.stop_channels().await;
        self.server.stop(true).await;
        if let Some(serving) = self.serving.take() {
            let _ = serving.await;
        }
        self.finish().await
    }

    /// Stops everything (for tests, benches and the demo): channels, server, store.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop_channels().await;
        self.server.stop(true).await;
        if let Some(serving) = self.serving.take() {
            let _ = serving.await;
        }
        self.finish().await
    }

    async fn stop_channels(&self) {
        let _ = self.supervisor.send(StopAll).await;
        let deadline = Instant::now() + self.grace;
        while self.deps.ingest.stats.live_channels.load(Ordering::Relaxed) > 0
            && Instant::now() < deadline
        {
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(&mut self) -> anyhow::Result<()> {
        if let Some(keeper) = self.keeper.take() {
            // Hand every shard back so that the other nodes take them at once, not after the TTL.
            let _ = actix_web::rt::task::spawn_blocking(move || keeper.stop()).await;
        }
        // The supervisor and the processor hold the store: end them so it closes with the process.
        let _ = self
            .supervisor
            .send(crate::actors::messages::Terminate)
            .await;
        let _ = self
            .processor
            .send(crate::actors::messages::Terminate)
            .await;
        let _ = self
            .housekeeper
            .send(crate::actors::messages::Terminate)
            .await;
        // A rotated refresh token whose write failed earlier gets one more try.
        let store = self.deps.ingest.store.clone();
        let ingest = Arc::clone(&self.deps.ingest);
        let _ =
            actix_web::rt::task::spawn_blocking(move || ingest.runtimes.save_unsaved(&store)).await;
        self.deps
            .ingest
            .store
            .flush_async()
            .await
            .context("Failed to flush the store on shutdown")?;
        for arbiter in self.arbiters.drain(..) {
            arbiter.stop();
            let _ = arbiter.join();
        }
        tracing::info!("inboxd stopped.");
        Ok(())
    }
}

/// SIGINT and SIGTERM, listened for by `inboxd serve` before it builds the daemon: a signal that
/// arrives while the daemon starts (its port already answers) still shuts it down gracefully
/// instead of killing it. Only `serve` listens: the demo and the tests keep the default actions.
pub struct StopSignals {
    term: Option<tokio::signal::unix::Signal>,
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    /// Starts listening (call inside the actix system, before [`Application::build`]).
    pub fn listen() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        StopSignals {
            term: signal(SignalKind::terminate()).ok(),
            interrupt: signal(SignalKind::interrupt()).ok(),
        }
    }

    /// Waits for the next SIGINT or SIGTERM.
    async fn next(&mut self) {
        async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
            match signal {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            () = recv(&mut self.term) => {}
            () = recv(&mut self.interrupt) => {}
        }
    }
}
