//! The simulator's IMAP server: the IMAP4rev1 subset an ingesting client uses, as Exchange Online
//! answers it, over plain TCP and over TLS, serving the same mailboxes and messages as the simulated
//! Graph. [`command`] reads and tokenizes commands, [`auth`] checks SASL XOAUTH2 against the
//! simulator's identity platform, [`session`] runs a connection, [`fetch`] renders folders, FETCH
//! items and SEARCH keys, [`mime`] builds a message's RFC 5322 bytes.
//!
//! Bounded: at most [`ImapOptions::max_connections_per_mailbox`] authenticated connections per
//! mailbox (Exchange allows about 20), commands of at most 1 MiB, idle connections closed after 30
//! minutes. Counters per mailbox ([`ImapState`]) are part of `GET /_sim/counters`.

pub(crate) mod auth;
mod command;
mod fetch;
mod mime;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use serde_json::{Value, json};

use super::TlsFiles;
use super::state::SimState;

/// Exchange's limit of concurrent IMAP connections per mailbox.
pub const DEFAULT_MAX_CONNECTIONS_PER_MAILBOX: usize = 20;

/// How to run the IMAP server.
#[derive(Debug, Clone)]
pub struct ImapOptions {
    /// Plain IMAP (no TLS); port 0 picks a free port; `None`: no plain listener. Default
    /// `127.0.0.1:0`.
    pub listen: Option<SocketAddr>,
    /// IMAP over TLS (implicit TLS, as on port 993); `None` (the default): no TLS listener.
    pub tls_listen: Option<SocketAddr>,
    /// Certificate and key for `tls_listen`; without them the simulator's `tls` files are used.
    pub tls: Option<TlsFiles>,
    /// Authenticated connections per mailbox; one more is refused. Default 20.
    pub max_connections_per_mailbox: usize,
}

impl Default for ImapOptions {
    fn default() -> Self {
        Self {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            tls_listen: None,
            tls: None,
            max_connections_per_mailbox: DEFAULT_MAX_CONNECTIONS_PER_MAILBOX,
        }
    }
}

/// Where the IMAP server listens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImapAddrs {
    /// Plain IMAP.
    pub plain: Option<SocketAddr>,
    /// IMAP over TLS.
    pub tls: Option<SocketAddr>,
}

/// Counters of one mailbox (or of all).
#[derive(Debug, Default)]
pub struct ImapCounters {
    /// Connections authenticated to the mailbox.
    pub connections: AtomicU64,
    pub authenticate_ok: AtomicU64,
    pub authenticate_failed: AtomicU64,
    /// Authentications refused because the mailbox had its maximum of connections open.
    pub refused: AtomicU64,
    /// FETCH and UID FETCH commands.
    pub fetch: AtomicU64,
    /// STORE and UID STORE commands.
    pub store: AtomicU64,
}

impl ImapCounters {
    fn json(&self) -> serde_json::Map<String, Value> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let v = json!({
            "connections": get(&self.connections),
            "authenticate_ok": get(&self.authenticate_ok),
            "authenticate_failed": get(&self.authenticate_failed),
            "refused": get(&self.refused),
            "fetch": get(&self.fetch),
            "store": get(&self.store),
        });
        match v {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        }
    }
}

/// The IMAP server's share of the simulator state: its addresses, the connection cap, the open
/// connections and the counters.
#[derive(Debug, Default)]
pub struct ImapState {
    max_per_mailbox: AtomicUsize,
    /// Authenticated connections open per mailbox.
    open: DashMap<String, usize>,
    /// Connections accepted (before any authentication).
    accepted: AtomicU64,
    global: ImapCounters,
    per_mailbox: DashMap<String, Arc<ImapCounters>>,
    addrs: parking_lot::Mutex<ImapAddrs>,
}

impl ImapState {
    /// Where the server listens (nothing until it started).
    pub fn addrs(&self) -> ImapAddrs {
        *self.addrs.lock()
    }

    /// Counts one event globally and, when given, for `mailbox`.
    fn counted(&self, mailbox: Option<&str>, which: impl Fn(&ImapCounters) -> &AtomicU64) {
        which(&self.global).fetch_add(1, Ordering::Relaxed);
        if let Some(m) = mailbox {
            let row = self.per_mailbox.entry(m.to_owned()).or_default().clone();
            which(&row).fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counters as `/_sim/counters` shows them, globally or for one mailbox.
    pub fn snapshot(&self, mailbox: Option<&str>) -> Value {
        let mut out = match mailbox {
            None => {
                let mut m = self.global.json();
                m.insert(
                    "accepted".into(),
                    self.accepted.load(Ordering::Relaxed).into(),
                );
                m.insert(
                    "open".into(),
                    self.open.iter().map(|e| *e.value()).sum::<usize>().into(),
                );
                m
            }
            Some(addr) => {
                let mut m = self
                    .per_mailbox
                    .get(addr)
                    .map(|c| c.json())
                    .unwrap_or_else(|| ImapCounters::default().json());
                m.insert(
                    "open".into(),
                    self.open.get(addr).map_or(0, |o| *o.value()).into(),
                );
                m
            }
        };
        out.insert(
            "max_connections_per_mailbox".into(),
            self.max_per_mailbox.load(Ordering::Relaxed).into(),
        );
        Value::Object(out)
    }

    /// Zeroes the counters (open connections stay counted: they are still open).
    pub fn reset(&self) {
        for c in [
            &self.global.connections,
            &self.global.authenticate_ok,
            &self.global.authenticate_failed,
            &self.global.refused,
            &self.global.fetch,
            &self.global.store,
            &self.accepted,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        self.per_mailbox.clear();
    }
}

/// An authenticated connection's place under its mailbox's cap; released on drop.
struct OpenGuard {
    state: Arc<SimState>,
    mailbox: String,
}

impl OpenGuard {
    fn try_open(state: &Arc<SimState>, mailbox: &str) -> Option<OpenGuard> {
        let max = state.imap.max_per_mailbox.load(Ordering::Relaxed);
        let mut open = state.imap.open.entry(mailbox.to_owned()).or_insert(0);
        if *open >= max {
            return None;
        }
        *open += 1;
        drop(open);
        state.imap.counted(Some(mailbox), |c| &c.connections);
        Some(OpenGuard {
            state: state.clone(),
            mailbox: mailbox.to_owned(),
        })
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        if let Some(mut open) = self.state.imap.open.get_mut(&self.mailbox) {
            *open = open.saturating_sub(1);
        }
    }
}

/// Binds the IMAP listeners of `opts` and serves them on the current actix System until it stops.
/// `tls` is the rustls configuration for `opts.tls_listen`.
pub(crate) fn start(
    opts: &ImapOptions,
    state: &Arc<SimState>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<ImapAddrs> {
    state
        .imap
        .max_per_mailbox
        .store(opts.max_connections_per_mailbox, Ordering::Relaxed);
    let mut addrs = ImapAddrs::default();
    if let Some(listen) = opts.listen {
        let listener = bind(listen)?;
        addrs.plain = Some(listener.local_addr()?);
        actix_rt::spawn(accept_loop(listener, state.clone(), None));
    }
    if let Some(listen) = opts.tls_listen {
        let Some(cfg) = tls else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "IMAP over TLS needs a certificate: pass --imap-tls-cert/--imap-tls-key or --tls-cert/--tls-key",
            ));
        };
        let listener = bind(listen)?;
        addrs.tls = Some(listener.local_addr()?);
        let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
        actix_rt::spawn(accept_loop(listener, state.clone(), Some(acceptor)));
    }
    *state.imap.addrs.lock() = addrs;
    Ok(addrs)
}

fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let std = std::net::TcpListener::bind(addr)?;
    std.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(std)
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    state: Arc<SimState>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "IMAP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        state.imap.accepted.fetch_add(1, Ordering::Relaxed);
        let state = state.clone();
        let tls = tls.clone();
        actix_rt::spawn(async move {
            let _ = tcp.set_nodelay(true);
            match tls {
                None => session::serve(state, tcp).await,
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(
                        std::time::Duration::from_secs(30),
                        acceptor.accept(tcp),
                    )
                    .await;
                    if let Ok(Ok(stream)) = handshake {
                        session::serve(state, stream).await;
                    }
                }
            }
        });
    }
}
