//! The simulator of Microsoft's identity platform v2.0 and Graph mail API, with a control API under
//! `/_sim/` to provision tenants, apps, users and mail, inject faults and read counters.
//!
//! Login and Graph share one origin: point both `cloud.login_url` and `cloud.graph_url` at
//! [`SimHandle::url`]. Start it in-process with [`spawn`] (tests, benches, `inboxd demo`) or serve it
//! until ctrl-c with [`run`] (`inboxd sim`). Drive it with [`client::SimClient`].

pub mod client;
mod control;
mod counters;
mod faults;
mod grants;
mod graph;
mod identity;
pub mod imap;
mod mailgen;
mod state;
mod throttle;
mod util;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::web::{self, Data};
use actix_web::{App, HttpResponse, HttpServer};

pub use faults::{FaultKind, FaultScope, FaultSpec};
pub use imap::{ImapAddrs, ImapOptions};

/// Certificate and key (PEM files) for serving HTTPS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
}

/// How to run the simulator.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Address to bind; port 0 picks a free port. Default `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// actix worker threads. Default 1.
    pub workers: usize,
    /// Serve HTTPS with these files instead of HTTP.
    pub tls: Option<TlsFiles>,
    /// `expires_in` of access tokens. Default 3599.
    pub access_token_lifetime_secs: u64,
    /// Authorization code lifetime. Default 600 (10 minutes).
    pub auth_code_lifetime_secs: u64,
    /// Concurrent requests per (app, mailbox). Default 4.
    pub mailbox_concurrency: usize,
    /// Requests per (app, mailbox) per 10 minutes. Default 10,000.
    pub mailbox_requests_per_10_min: u32,
    /// `Retry-After` seconds on concurrency throttling. Default 1.
    pub concurrency_retry_after_secs: f64,
    /// Largest accepted body on Microsoft's endpoints (larger → 413). Default 4 MiB.
    pub max_body_bytes: usize,
    /// Largest accepted body on `/_sim/` (mail delivery). Default 256 MiB.
    pub control_max_body_bytes: usize,
    /// Whether a refresh with a rotated-out refresh token revokes the whole grant (AADSTS50173 for it
    /// and every later refresh of the grant), as stricter identity providers do. Default false:
    /// Microsoft's behaviour, where the reuse succeeds and is only counted. Switchable at run time
    /// with `PUT /_sim/settings`.
    pub revoke_on_refresh_token_reuse: bool,
    /// The IMAP server: plain listener on `127.0.0.1:0` by default, TLS listener when asked for.
    pub imap: ImapOptions,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            workers: 1,
            tls: None,
            access_token_lifetime_secs: 3599,
            auth_code_lifetime_secs: 600,
            mailbox_concurrency: 4,
            mailbox_requests_per_10_min: 10_000,
            concurrency_retry_after_secs: 1.0,
            max_body_bytes: 4 * 1024 * 1024,
            control_max_body_bytes: 256 * 1024 * 1024,
            revoke_on_refresh_token_reuse: false,
            imap: ImapOptions::default(),
        }
    }
}

/// Errors starting the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(
        "cannot read TLS file {path}: {source}; pass readable PEM files to --tls-cert/--tls-key"
    )]
    TlsFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS file {0} holds no usable certificate or private key; pass PEM files")]
    TlsEmpty(PathBuf),
    #[error("TLS configuration rejected: {0}")]
    Tls(#[from] rustls::Error),
}

impl From<SimError> for std::io::Error {
    fn from(e: SimError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
    }
}

fn tls_config(files: &TlsFiles) -> Result<rustls::ServerConfig, SimError> {
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|source| SimError::TlsFile {
            path: p.clone(),
            source,
        })
    };
    let cert_pem = read(&files.cert_pem)?;
    let key_pem = read(&files.key_pem)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(SimError::TlsEmpty(files.cert_pem.clone()));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .ok()
        .flatten()
        .ok_or_else(|| SimError::TlsEmpty(files.key_pem.clone()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(cfg)
}

/// The simulator's state for `opts`: its limits and its initial run-time settings.
fn new_state(opts: &SimOptions) -> Arc<state::SimState> {
    let state = state::SimState::new(limits(opts));
    state
        .settings
        .set_revoke_on_refresh_token_reuse(opts.revoke_on_refresh_token_reuse);
    Arc::new(state)
}

fn limits(opts: &SimOptions) -> state::Limits {
    state::Limits {
        access_token_lifetime_secs: opts.access_token_lifetime_secs,
        auth_code_lifetime_secs: opts.auth_code_lifetime_secs,
        mailbox_concurrency: opts.mailbox_concurrency,
        mailbox_requests_per_10_min: opts.mailbox_requests_per_10_min,
        concurrency_retry_after_secs: opts.concurrency_retry_after_secs,
        max_body_bytes: opts.max_body_bytes,
        control_max_body_bytes: opts.control_max_body_bytes,
    }
}

async fn method_not_allowed_sts(req: actix_web::HttpRequest) -> HttpResponse {
    let allowed = if req.path().ends_with("/token") {
        "POST, OPTIONS"
    } else {
        "GET, OPTIONS"
    };
    HttpResponse::MethodNotAllowed()
        .insert_header((actix_web::http::header::ALLOW, allowed.replace(", OPTIONS", "")))
        .json(serde_json::json!({
            "error": "invalid_request",
            "error_description": format!("AADSTS900561: The endpoint only accepts {allowed} requests. Received a {} request.", req.method()),
            "error_codes": [900561],
        }))
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(serde_json::json!({
        "error": {"code": "NotFound", "message": "The requested resource does not exist on the simulator."}
    }))
}

async fn error_page(req: actix_web::HttpRequest) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<html><body>Error lookup: {}</body></html>",
            req.query_string().replace('<', "")
        ))
}

fn configure(cfg: &mut web::ServiceConfig, state: Arc<state::SimState>) {
    cfg.app_data(Data::new(state))
        .service(web::scope("/_sim").configure(control::routes))
        .service(web::resource("/v1.0/{tail:.*}").to(graph::handle))
        .service(
            web::resource("/{tenant}/oauth2/v2.0/authorize")
                .route(web::get().to(identity::authorize))
                .default_service(web::to(method_not_allowed_sts)),
        )
        .service(
            web::resource("/{tenant}/oauth2/v2.0/token")
                .route(web::post().to(identity::token))
                .default_service(web::to(method_not_allowed_sts)),
        )
        .service(
            web::resource("/{tenant}/v2.0/.well-known/openid-configuration")
                .route(web::get().to(identity::openid_configuration))
                .default_service(web::to(method_not_allowed_sts)),
        )
        .service(
            web::resource("/{tenant}/discovery/v2.0/keys")
                .route(web::get().to(identity::keys))
                .default_service(web::to(method_not_allowed_sts)),
        )
        .service(web::resource("/error").to(error_page))
        .default_service(web::to(not_found));
}

type Started = (actix_web::dev::Server, SocketAddr, ImapAddrs);

fn build(
    opts: &SimOptions,
    state: Arc<state::SimState>,
    signals: bool,
) -> std::io::Result<Started> {
    let st = state.clone();
    let mut server = HttpServer::new(move || App::new().configure(|c| configure(c, st.clone())))
        .workers(opts.workers.max(1))
        .shutdown_timeout(1)
        .keep_alive(std::time::Duration::from_secs(75))
        .client_request_timeout(std::time::Duration::from_secs(30))
        .max_connection_rate(4096)
        .backlog(4096);
    if !signals {
        server = server.disable_signals();
    }
    server = match &opts.tls {
        Some(files) => server.bind_rustls_0_23(opts.listen, tls_config(files)?)?,
        None => server.bind(opts.listen)?,
    };
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other("simulator bound no address"))?;
    let imap_tls = match (
        opts.imap.tls_listen,
        opts.imap.tls.as_ref().or(opts.tls.as_ref()),
    ) {
        (Some(_), Some(files)) => Some(Arc::new(tls_config(files)?)),
        _ => None,
    };
    let imap = imap::start(&opts.imap, &state, imap_tls)?;
    Ok((server.run(), addr, imap))
}

fn url_of(addr: SocketAddr, tls: bool) -> String {
    format!("{}://{addr}", if tls { "https" } else { "http" })
}

/// A running simulator. Dropping it stops the server.
pub struct SimHandle {
    addr: SocketAddr,
    url: String,
    imap: ImapAddrs,
    server: Option<actix_web::dev::ServerHandle>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle").field("url", &self.url).finish()
    }
}

impl SimHandle {
    /// The origin, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The plain IMAP listener's address (`SimOptions::imap.listen`; on by default).
    pub fn imap_addr(&self) -> Option<SocketAddr> {
        self.imap.plain
    }

    /// The IMAP-over-TLS listener's address (`SimOptions::imap.tls_listen`).
    pub fn imaps_addr(&self) -> Option<SocketAddr> {
        self.imap.tls
    }

    /// A control-API client for this simulator (plain HTTP; for HTTPS build one with
    /// [`client::SimClient::with_http`] and a client that trusts the certificate).
    pub fn client(&self) -> client::SimClient {
        client::SimClient::new(self.url.clone())
    }

    /// Stops the server and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(server) = self.server.take() {
            // The stop command is sent when `stop` is called; the returned future only waits for it.
            drop(server.stop(false));
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts the simulator on its own thread with its own actix System; returns once it is bound.
pub fn spawn(opts: SimOptions) -> std::io::Result<SimHandle> {
    type Bound = (SocketAddr, ImapAddrs, actix_web::dev::ServerHandle);
    let (tx, rx) = std::sync::mpsc::channel::<std::io::Result<Bound>>();
    let tls = opts.tls.is_some();
    let thread = std::thread::Builder::new()
        .name("inboxd-sim".into())
        .spawn(move || {
            let system = actix_rt::System::new();
            let state = new_state(&opts);
            let started = system.block_on(async { build(&opts, state, false) });
            match started {
                Ok((server, addr, imap)) => {
                    let _ = tx.send(Ok((addr, imap, server.handle())));
                    let _ = system.block_on(server);
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        })?;
    let (addr, imap, server) = rx
        .recv()
        .map_err(|_| std::io::Error::other("simulator thread ended before binding"))??;
    Ok(SimHandle {
        addr,
        url: url_of(addr, tls),
        imap,
        server: Some(server),
        thread: Some(thread),
    })
}

/// Serves the simulator until ctrl-c (`inboxd sim`). Prints `inboxd sim listening on URL` as the
/// first line on stdout once bound, then `inboxd sim imap listening on ADDR` and `inboxd sim imaps
/// listening on ADDR` for the IMAP listeners it has. Must run inside an actix System
/// (`#[actix_web::main]`).
pub async fn run(opts: SimOptions) -> std::io::Result<()> {
    let state = new_state(&opts);
    let (server, addr, imap) = build(&opts, state, true)?;
    let url = url_of(addr, opts.tls.is_some());
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "inboxd sim listening on {url}")?;
        if let Some(a) = imap.plain {
            writeln!(out, "inboxd sim imap listening on {a}")?;
        }
        if let Some(a) = imap.tls {
            writeln!(out, "inboxd sim imaps listening on {a}")?;
        }
        out.flush()?;
    }
    tracing::info!(%url, "simulator listening");
    server.await
}
