//! The daemon under measurement, in its own thread with its own actix system (as `inboxd serve`
//! runs it), built by `Application::build` with a fresh random admin token; and its settings.

use std::path::Path;
use std::sync::Arc;

use actix::Addr;
use anyhow::{Context as _, anyhow};
use inboxd::actors::supervisor::ChannelSupervisor;
use inboxd::config::Settings;
use inboxd::domain::secret::{AdminToken, MasterKey};
use inboxd::ingest::Ingest as Shared;
use inboxd::startup::{Application, Secrets};
use inboxd::status::StatusBoard;
use inboxd_testkit::{daemon_env, free_port};

/// A daemon the bench started; [`Daemon::stop`] ends it and waits until its store is closed.
pub(crate) struct Daemon {
    /// Its ingestion context (the counters the bench reads).
    pub(crate) shared: Arc<Shared>,
    /// Its supervisor (the hot-adds send `AddChannel` to it).
    pub(crate) supervisor: Addr<ChannelSupervisor>,
    /// Its status board (the restart reads each channel's last poll from it).
    pub(crate) board: Arc<StatusBoard>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

/// The settings of a bench daemon with its store in `dir`: the test kit's environment, a 30 s
/// shutdown grace, 512 concurrent requests at most, the poll mode `mode`, and the simulator's IMAP
/// server at `imap_url` for channels on the IMAP transport.
pub(crate) fn settings_for(
    dir: &Path,
    sim_url: &str,
    interval: u64,
    mode: &str,
    imap_url: Option<&str>,
) -> anyhow::Result<Settings> {
    let mut extra = vec![
        ("INBOXD_SERVER__SHUTDOWN_GRACE_SECS", "30".to_owned()),
        ("INBOXD_LIMITS__GLOBAL_CONCURRENCY", "512".to_owned()),
        ("INBOXD_POLLING__MODE", mode.to_owned()),
    ];
    if let Some(url) = imap_url {
        extra.push(("INBOXD_CLOUD__IMAP_URL", url.to_owned()));
    }
    let env = daemon_env(dir, free_port()?, sim_url, interval, &extra);
    Settings::load(None, &env).map_err(|e| anyhow!("{e}"))
}

impl Daemon {
    pub(crate) async fn start(settings: Settings, key: MasterKey) -> anyhow::Result<Daemon> {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("daemon".into())
            .spawn(move || {
                actix_rt::System::new().block_on(async move {
                    let secrets = Secrets {
                        master_key: key,
                        admin_token: AdminToken::generate(),
                        webhook_secret: None,
                    };
                    let app = match Application::build(settings, secrets).await {
                        Ok(app) => app,
                        Err(err) => {
                            let _ = ready_tx.send(Err(err));
                            return Ok(());
                        }
                    };
                    let _ = ready_tx.send(Ok((app.ingest(), app.supervisor(), app.board())));
                    let _ = stop_rx.await;
                    app.stop().await
                })
            })?;
        let (shared, supervisor, board) = ready_rx.await.context("the daemon thread died")??;
        Ok(Daemon {
            shared,
            supervisor,
            board,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Stops the daemon and waits until its store is closed.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        let thread = self.thread.take();
        let stop = self.stop.take();
        drop(self);
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        if let Some(thread) = thread {
            tokio::task::spawn_blocking(move || thread.join())
                .await?
                .map_err(|_| anyhow!("the daemon thread panicked"))??;
        }
        Ok(())
    }
}
