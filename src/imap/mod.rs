//! The IMAP mail client, the second transport beside Graph (`src/graph/`): one connection per
//! cycle (TLS on 993, or plain for a loopback test server named by an explicit `imap://` URL),
//! SASL XOAUTH2 with the channel's access token (a shared mailbox is reached with the delegate's
//! token and the shared address as `user=`), `SELECT` of the folder (UIDVALIDITY, UIDNEXT),
//! `UID SEARCH`, `UID FETCH … BODY.PEEK[]` (never sets `\Seen`), `UID STORE +FLAGS.SILENT
//! (\Seen)` and `LOGOUT`. At most `max_connections_per_mailbox` connections per mailbox at once.
//! Errors are [`ImapError`], with the policy the cycle asks for. `mime` maps a fetched message to
//! the same [`MailItem`](crate::domain::MailItem) as Graph's.

mod error;
pub mod mime;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_imap::imap_proto::{Response, Status};
use chrono::{DateTime, Utc};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use error::{ImapError, codes, suggested_backoff};

use crate::domain::Mailbox;

/// Where the IMAP server is: host, port, and whether TLS is spoken from the first byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapEndpoint {
    /// The host name (also the name the certificate must carry).
    pub host: String,
    /// The port (993 for `imaps`).
    pub port: u16,
    /// TLS from the first byte (`imaps://`); plain only for an explicit `imap://`.
    pub tls: bool,
}

impl ImapEndpoint {
    /// The endpoint of an Exchange Online host: TLS on 993.
    pub fn tls(host: &str) -> Self {
        ImapEndpoint {
            host: host.to_owned(),
            port: 993,
            tls: true,
        }
    }

    /// Parses `imaps://host[:port]` (TLS, default port 993) or `imap://host[:port]` (plain,
    /// default 143: a test server on loopback, never Microsoft).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (tls, rest) = if let Some(rest) = text.strip_prefix("imaps://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("imap://") {
            (false, rest)
        } else {
            return Err(format!(
                "{text:?} is not an IMAP URL: write imaps://host[:port] (TLS, port 993 by default) or imap://host[:port] for a plain test server"
            ));
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
            return Err(format!(
                "{text:?} must name only a host and an optional port, e.g. imaps://outlook.office365.com:993"
            ));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                let port: u16 = port
                    .parse()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("{text:?}: the port must be 1 to 65535"))?;
                (host, port)
            }
            _ => (rest, if tls { 993 } else { 143 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{text:?} names no host"));
        }
        Ok(ImapEndpoint {
            host: host.to_owned(),
            port,
            tls,
        })
    }

    /// `host:port`, as errors name it.
    pub fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The URL form, as [`parse`](Self::parse) reads it.
    pub fn url(&self) -> String {
        format!(
            "{}://{}:{}",
            if self.tls { "imaps" } else { "imap" },
            self.host,
            self.port
        )
    }
}

/// The XOAUTH2 initial response: `user=<mailbox>^Aauth=Bearer <token>^A^A` (before base64).
pub fn xoauth2_response(user: &str, token: &str) -> String {
    format!("user={user}\x01auth=Bearer {token}\x01\x01")
}

/// Answers the server's XOAUTH2 challenges: the credentials first; to a second challenge (the
/// error details a server may send before its `NO`) an empty response, as the mechanism asks.
struct XOAuth2<'a> {
    user: &'a str,
    token: &'a str,
    sent: bool,
}

impl async_imap::Authenticator for &mut XOAuth2<'_> {
    type Response = String;

    fn process(&mut self, _challenge: &[u8]) -> String {
        if self.sent {
            return String::new();
        }
        self.sent = true;
        xoauth2_response(self.user, self.token)
    }
}

/// A plain or TLS connection.
#[derive(Debug)]
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The IMAP client shared by every channel: the server, the TLS trust, the timeout and the
/// per-mailbox connection cap. Cheap to clone.
#[derive(Clone)]
pub struct ImapClient {
    endpoint: Arc<ImapEndpoint>,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
    max_per_mailbox: usize,
    /// One semaphore per mailbox (lower-case address), created on first use.
    caps: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
    /// Commands sent (the bench's requests per poll).
    commands: Arc<std::sync::atomic::AtomicU64>,
    /// Deliver the HTML body rather than plain text (`polling.body_content_type`).
    html_body: bool,
}

impl std::fmt::Debug for ImapClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapClient")
            .field("endpoint", &self.endpoint.url())
            .field("timeout", &self.timeout)
            .field("max_per_mailbox", &self.max_per_mailbox)
            .finish()
    }
}

fn tls_config(extra_roots_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_roots_pem {
        let mut reader = std::io::BufReader::new(pem);
        for cert in rustls_pemfile::certs(&mut reader) {
            let cert = cert.map_err(|e| format!("a certificate of the CA file: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("a certificate of the CA file: {e}"))?;
        }
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .map_err(|e| e.to_string())
}

impl ImapClient {
    /// A client of `endpoint` trusting the public web PKI (Exchange Online's certificates), with
    /// `timeout` per command and at most `max_per_mailbox` connections per mailbox.
    pub fn new(endpoint: ImapEndpoint, timeout: Duration, max_per_mailbox: usize) -> Self {
        // The built-in roots always make a configuration; an error here could only come from the
        // crypto provider, and then TLS fails at connect with that error.
        let tls = tls_config(None).unwrap_or_else(|_| {
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map(|b| {
                b.with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            })
            .unwrap_or_else(|_| {
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            })
        });
        ImapClient {
            endpoint: Arc::new(endpoint),
            tls: Arc::new(tls),
            timeout,
            max_per_mailbox: max_per_mailbox.max(1),
            caps: Arc::new(Mutex::new(HashMap::new())),
            commands: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            html_body: false,
        }
    }

    /// The same client delivering the HTML body (`true`) or plain text.
    pub fn with_html_body(mut self, html: bool) -> Self {
        self.html_body = html;
        self
    }

    /// Whether the HTML body is delivered rather than plain text.
    pub fn html_body(&self) -> bool {
        self.html_body
    }

    /// The same client also trusting the CA certificates in `pem` (a private test server).
    pub fn with_extra_roots(mut self, pem: &[u8]) -> Result<Self, String> {
        self.tls = Arc::new(tls_config(Some(pem))?);
        Ok(self)
    }

    /// The server.
    pub fn endpoint(&self) -> &ImapEndpoint {
        &self.endpoint
    }

    /// IMAP commands sent so far (every client clone counts into the same total).
    pub fn commands_sent(&self) -> u64 {
        self.commands.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn cap(&self, mailbox: &Mailbox) -> Arc<Semaphore> {
        let key = mailbox.as_str().to_ascii_lowercase();
        match self.caps.lock() {
            Ok(mut caps) => Arc::clone(
                caps.entry(key)
                    .or_insert_with(|| Arc::new(Semaphore::new(self.max_per_mailbox))),
            ),
            // A poisoned map (a panic elsewhere): no cap rather than no mail.
            Err(_) => Arc::new(Semaphore::new(self.max_per_mailbox)),
        }
    }

    async fn timed<T, F>(&self, work: F) -> Result<T, ImapError>
    where
        F: std::future::Future<Output = Result<T, ImapError>>,
    {
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or(Err(ImapError::Timeout(self.timeout)))
    }

    /// Connects (waiting for one of the mailbox's connection slots), signs in with XOAUTH2 as
    /// `user` (the mailbox, also a shared one) with `token`, and selects `folder`.
    pub async fn open(
        &self,
        user: &Mailbox,
        token: &str,
        folder: &str,
    ) -> Result<ImapSession, ImapError> {
        let permit = self
            .cap(user)
            .acquire_owned()
            .await
            .map_err(|_| ImapError::Protocol {
                text: "the connection cap was closed".to_owned(),
            })?;
        let server = self.endpoint.server();
        let stream = self.timed(self.connect(&server)).await?;
        let mut client = async_imap::Client::new(stream);
        // The greeting: `* OK` to go on; `* BYE` when the server refuses connections.
        let greeting = self
            .timed(async {
                client
                    .read_response()
                    .await
                    .map_err(|e| io_error(&server, &e))
            })
            .await?;
        match greeting.as_ref().map(|g| g.parsed()) {
            Some(Response::Data {
                status: Status::Ok | Status::PreAuth,
                ..
            }) => {}
            Some(Response::Data {
                status: Status::Bye,
                outcome,
            }) => {
                return Err(ImapError::Bye {
                    text: outcome.information.as_deref().unwrap_or("BYE").to_owned(),
                });
            }
            Some(_) => {
                return Err(ImapError::Protocol {
                    text: "the server's greeting is not * OK".to_owned(),
                });
            }
            None => {
                return Err(ImapError::Bye {
                    text: "the server closed the connection before its greeting".to_owned(),
                });
            }
        }
        self.count(1);
        let mut auth = XOAuth2 {
            user: user.as_str(),
            token,
            sent: false,
        };
        let session = self
            .timed(async {
                client
                    .authenticate("XOAUTH2", &mut auth)
                    .await
                    .map_err(|(err, _)| match err {
                        async_imap::error::Error::No(text)
                        | async_imap::error::Error::Bad(text) => {
                            let text = refusal_text(&text);
                            if text.to_ascii_lowercase().contains("throttl") {
                                ImapError::from_refusal(&text)
                            } else {
                                ImapError::AuthenticateFailed { text }
                            }
                        }
                        other => command_error(&server, other),
                    })
            })
            .await?;
        let mut session = ImapSession {
            session,
            client: self.clone(),
            server,
            uid_validity: 0,
            uid_next: None,
            _permit: permit,
        };
        session.select(&imap_folder(folder)).await?;
        Ok(session)
    }

    async fn connect(&self, server: &str) -> Result<Stream, ImapError> {
        let tcp = TcpStream::connect((self.endpoint.host.as_str(), self.endpoint.port))
            .await
            .map_err(|e| ImapError::Connect {
                server: server.to_owned(),
                detail: e.to_string(),
            })?;
        let _ = tcp.set_nodelay(true);
        if !self.endpoint.tls {
            return Ok(Stream::Plain(tcp));
        }
        let name =
            rustls::pki_types::ServerName::try_from(self.endpoint.host.clone()).map_err(|e| {
                ImapError::Tls {
                    server: server.to_owned(),
                    detail: format!("{:?} is not a host name: {e}", self.endpoint.host),
                }
            })?;
        let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls))
            .connect(name, tcp)
            .await
            .map_err(|e| ImapError::Tls {
                server: server.to_owned(),
                detail: e.to_string(),
            })?;
        Ok(Stream::Tls(Box::new(tls)))
    }

    fn count(&self, n: u64) {
        self.commands
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The IMAP name of a channel's folder: Graph's well-known `inbox` is IMAP's `INBOX`; any other
/// folder is used as written (its IMAP path, e.g. `Support/Tickets`).
pub fn imap_folder(folder: &str) -> String {
    if folder.eq_ignore_ascii_case("inbox") {
        "INBOX".to_owned()
    } else {
        folder.to_owned()
    }
}

/// async-imap writes a refusal as `code: …, info: Some("text")`: the server's words.
fn refusal_text(raw: &str) -> String {
    raw.split_once("info: Some(\"")
        .and_then(|(_, rest)| rest.rsplit_once("\")"))
        .map(|(text, _)| text.replace("\\\"", "\""))
        .unwrap_or_else(|| raw.to_owned())
}

fn io_error(server: &str, err: &std::io::Error) -> ImapError {
    match err.kind() {
        std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::ConnectionAborted
        | std::io::ErrorKind::BrokenPipe => ImapError::Bye {
            text: format!("the connection to {server} was closed: {err}"),
        },
        _ => ImapError::Connect {
            server: server.to_owned(),
            detail: err.to_string(),
        },
    }
}

fn command_error(server: &str, err: async_imap::error::Error) -> ImapError {
    use async_imap::error::Error;
    match err {
        Error::No(text) | Error::Bad(text) => ImapError::from_refusal(&refusal_text(&text)),
        Error::ConnectionLost => ImapError::Bye {
            text: format!("the connection to {server} was closed"),
        },
        Error::Io(io) => io_error(server, &io),
        other => ImapError::Protocol {
            text: other.to_string(),
        },
    }
}

/// One fetched message.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Its UID.
    pub uid: u32,
    /// Whether it carries `\Seen` already.
    pub seen: bool,
    /// The server's INTERNALDATE (when it received the message).
    pub internal_date: Option<DateTime<Utc>>,
    /// The whole message (RFC 5322), as `BODY.PEEK[]` returned it.
    pub raw: Vec<u8>,
}

/// A signed-in connection with the channel's folder selected. Close it with
/// [`logout`](Self::logout); dropped, it just closes the socket.
pub struct ImapSession {
    session: async_imap::Session<Stream>,
    client: ImapClient,
    server: String,
    /// The folder's UIDVALIDITY.
    pub uid_validity: u32,
    /// The folder's UIDNEXT, if the server said.
    pub uid_next: Option<u32>,
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for ImapSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapSession")
            .field("server", &self.server)
            .field("uid_validity", &self.uid_validity)
            .field("uid_next", &self.uid_next)
            .finish()
    }
}

/// A UID set in IMAP syntax (`1:3,7,9:10`), from UIDs in any order.
pub fn uid_set(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut iter = sorted.into_iter().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end.wrapping_add(1))) {
            end = iter.next().unwrap_or(end);
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        });
    }
    parts.join(",")
}

/// An INTERNALDATE (`17-Jul-1996 02:44:25 -0700`, the day possibly space-padded).
pub fn parse_internal_date(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(text.trim(), "%d-%b-%Y %H:%M:%S %z")
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

impl ImapSession {
    /// Sends `command` and reads every answer up to its tagged status, handing each untagged one
    /// to `on_answer`: `OK` ends it; `NO`/`BAD`, and a `BYE` or a closed connection before the
    /// status, are errors (never an empty answer taken for "nothing there").
    async fn run(
        &mut self,
        command: &str,
        mut on_answer: impl FnMut(&async_imap::imap_proto::Response<'_>) + Send,
    ) -> Result<(), ImapError> {
        use async_imap::imap_proto::{Response, Status};
        self.client.count(1);
        let client = self.client.clone();
        let server = self.server.clone();
        let session = &mut self.session;
        client
            .timed(async move {
                let tag = session
                    .run_command(command)
                    .await
                    .map_err(|e| command_error(&server, e))?;
                loop {
                    let Some(response) = session
                        .read_response()
                        .await
                        .map_err(|e| io_error(&server, &e))?
                    else {
                        return Err(ImapError::Bye {
                            text: format!(
                                "the connection to {server} closed before the command finished"
                            ),
                        });
                    };
                    match response.parsed() {
                        Response::Done {
                            tag: done,
                            status,
                            outcome,
                        } if *done == tag => {
                            let text = outcome.information.as_deref().unwrap_or("").to_owned();
                            return match status {
                                Status::Ok => Ok(()),
                                _ => Err(ImapError::from_refusal(&text)),
                            };
                        }
                        Response::Data {
                            status: Status::Bye,
                            outcome,
                        } => {
                            return Err(ImapError::Bye {
                                text: outcome.information.as_deref().unwrap_or("BYE").to_owned(),
                            });
                        }
                        other => on_answer(other),
                    }
                }
            })
            .await
    }

    /// `SELECT <folder>`: its UIDVALIDITY and UIDNEXT.
    async fn select(&mut self, folder: &str) -> Result<(), ImapError> {
        use async_imap::imap_proto::{Response, ResponseCode};
        let quoted = format!("\"{}\"", folder.replace('\\', "\\\\").replace('"', "\\\""));
        let (mut validity, mut next) = (0u32, None);
        let selected = self
            .run(&format!("SELECT {quoted}"), |answer| {
                if let Response::Data { outcome, .. } = answer {
                    match outcome.code {
                        Some(ResponseCode::UidValidity(v)) => validity = v,
                        Some(ResponseCode::UidNext(n)) => next = Some(n),
                        _ => {}
                    }
                }
            })
            .await;
        match selected {
            Ok(()) => {}
            Err(ImapError::Protocol { text }) => {
                return Err(ImapError::Folder {
                    folder: folder.to_owned(),
                    text,
                });
            }
            Err(other) => return Err(other),
        }
        self.uid_validity = validity;
        self.uid_next = next;
        if self.uid_validity == 0 {
            return Err(ImapError::Protocol {
                text: format!("SELECT {folder} gave no UIDVALIDITY"),
            });
        }
        Ok(())
    }

    /// `UID SEARCH <query>`: the UIDs, ascending.
    pub async fn uid_search(&mut self, query: &str) -> Result<Vec<u32>, ImapError> {
        use async_imap::imap_proto::{MailboxDatum, Response};
        let mut uids: Vec<u32> = Vec::new();
        self.run(&format!("UID SEARCH {query}"), |answer| {
            if let Response::MailboxData(MailboxDatum::Search(found)) = answer {
                uids.extend(found.iter().copied());
            }
        })
        .await?;
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    /// `UID FETCH <uids> (UID FLAGS INTERNALDATE BODY.PEEK[])`: the messages, which keep their
    /// flags (`BODY.PEEK` never sets `\Seen`). A UID the server no longer has is left out.
    pub async fn fetch(&mut self, uids: &[u32]) -> Result<Vec<Fetched>, ImapError> {
        use async_imap::imap_proto::{AttributeValue, Response};
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let mut fetched = Vec::with_capacity(uids.len());
        let command = format!(
            "UID FETCH {} (UID FLAGS INTERNALDATE BODY.PEEK[])",
            uid_set(uids)
        );
        self.run(&command, |answer| {
            let Response::Fetch(_, attributes) = answer else {
                return;
            };
            let (mut uid, mut seen, mut date, mut raw) = (None, false, None, None);
            for attribute in attributes {
                match attribute {
                    AttributeValue::Uid(u) => uid = Some(*u),
                    AttributeValue::Flags(flags) => {
                        seen = flags.iter().any(|f| f.eq_ignore_ascii_case("\\Seen"));
                    }
                    AttributeValue::InternalDate(text) => date = parse_internal_date(text),
                    AttributeValue::BodySection {
                        data: Some(data), ..
                    }
                    | AttributeValue::Rfc822(Some(data)) => raw = Some(data.to_vec()),
                    _ => {}
                }
            }
            // A FETCH without the body is a flag change the server reported on its own.
            if let (Some(uid), Some(raw)) = (uid, raw) {
                fetched.push(Fetched {
                    uid,
                    seen,
                    internal_date: date,
                    raw,
                });
            }
        })
        .await?;
        Ok(fetched)
    }

    /// `UID STORE <uids> +FLAGS.SILENT (\Seen)`: marks the messages read.
    pub async fn mark_seen(&mut self, uids: &[u32]) -> Result<(), ImapError> {
        if uids.is_empty() {
            return Ok(());
        }
        self.run(
            &format!("UID STORE {} +FLAGS.SILENT (\\Seen)", uid_set(uids)),
            |_| {},
        )
        .await?;
        Ok(())
    }

    /// `LOGOUT`, then the connection closes. A server that closes first is fine.
    pub async fn logout(mut self) {
        let _ = self.run("LOGOUT", |_| {}).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use base64::Engine as _;

    use super::*;

    #[test]
    fn the_xoauth2_response_is_microsofts_example() {
        // The example of Microsoft's IMAP/POP/SMTP OAuth article, base64-encoded.
        let response = xoauth2_response(
            "test@contoso.onmicrosoft.com",
            "EwBAAl3BAAUFFpUAo7J3Ve0bjLBWZWCclRC3EoAA",
        );
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(response),
            "dXNlcj10ZXN0QGNvbnRvc28ub25taWNyb3NvZnQuY29tAWF1dGg9QmVhcmVyIEV3QkFBbDNCQUFVRkZwVUFvN0ozVmUwYmpMQldaV0NjbFJDM0VvQUEBAQ=="
        );
    }

    #[test]
    fn endpoints_parse_with_clear_errors() {
        assert_eq!(
            ImapEndpoint::parse("imaps://outlook.office365.com").unwrap(),
            ImapEndpoint::tls("outlook.office365.com")
        );
        let plain = ImapEndpoint::parse("imap://127.0.0.1:1143").unwrap();
        assert_eq!((plain.port, plain.tls), (1143, false));
        assert_eq!(plain.url(), "imap://127.0.0.1:1143");
        assert!(
            ImapEndpoint::parse("https://outlook.office365.com")
                .unwrap_err()
                .contains("imaps://host")
        );
        assert!(ImapEndpoint::parse("imaps://host:0").is_err());
        assert!(ImapEndpoint::parse("imaps://u@host").is_err());
    }

    #[actix_rt::test]
    async fn tls_is_verified_an_untrusted_certificate_is_a_tls_error_and_a_trusted_one_signs_in() {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
        let sim = crate::sim::spawn(crate::sim::SimOptions {
            imap: crate::sim::ImapOptions {
                tls_listen: Some("127.0.0.1:0".parse().unwrap()),
                tls: Some(crate::sim::TlsFiles {
                    cert_pem: cert,
                    key_pem: key,
                }),
                ..crate::sim::ImapOptions::default()
            },
            ..crate::sim::SimOptions::default()
        })
        .unwrap();
        let port = sim.imaps_addr().unwrap().port();
        let ctl = crate::sim::client::SimClient::new(sim.url());
        let upn = "tls@tls.example";
        let provisioned = ctl.provision(upn, &["http://127.0.0.1/cb"]).await.unwrap();
        let token = ctl
            .mint_imap_tokens(upn, &provisioned.app.client_id)
            .await
            .unwrap()
            .access_token;
        let mailbox = Mailbox::parse(upn).unwrap();
        let endpoint = ImapEndpoint::parse(&format!("imaps://localhost:{port}")).unwrap();
        // The public roots do not vouch for a self-signed certificate: a TLS error, not a sign-in.
        let public = ImapClient::new(endpoint.clone(), Duration::from_secs(5), 1);
        let err = public.open(&mailbox, &token, "inbox").await.unwrap_err();
        assert_eq!(err.code(), codes::TLS, "{err}");
        assert!(
            err.is_retriable(),
            "inboxd backs off and tries again: {err}"
        );
        // Trusting it (a private CA), the client signs in over TLS and selects the inbox.
        let trusting = ImapClient::new(endpoint, Duration::from_secs(5), 1)
            .with_extra_roots(ck.cert.pem().as_bytes())
            .unwrap();
        let session = trusting.open(&mailbox, &token, "inbox").await.unwrap();
        assert!(session.uid_validity > 0);
        session.logout().await;
        // A refused sign-in is AUTHENTICATE failed, asking for a fresh token.
        let err = trusting
            .open(&mailbox, "not-a-token", "inbox")
            .await
            .unwrap_err();
        assert!(err.needs_token_refresh(), "{err}");
    }

    #[actix_rt::test]
    async fn a_mailbox_gets_no_more_connections_than_its_cap() {
        let sim = crate::sim::spawn(crate::sim::SimOptions::default()).unwrap();
        let ctl = crate::sim::client::SimClient::new(sim.url());
        let upn = "cap@cap.example";
        let provisioned = ctl.provision(upn, &["http://127.0.0.1/cb"]).await.unwrap();
        let token = ctl
            .mint_imap_tokens(upn, &provisioned.app.client_id)
            .await
            .unwrap()
            .access_token;
        let mailbox = Mailbox::parse(upn).unwrap();
        let endpoint =
            ImapEndpoint::parse(&format!("imap://{}", sim.imap_addr().unwrap())).unwrap();
        let client = ImapClient::new(endpoint, Duration::from_secs(5), 1);
        let first = client.open(&mailbox, &token, "inbox").await.unwrap();
        // A second cycle on the same mailbox waits for the first one's connection to close.
        let waiting = tokio::time::timeout(
            Duration::from_millis(300),
            client.open(&mailbox, &token, "inbox"),
        )
        .await;
        assert!(waiting.is_err(), "a second connection opened past the cap");
        first.logout().await;
        let second = tokio::time::timeout(
            Duration::from_secs(5),
            client.open(&mailbox, &token, "inbox"),
        )
        .await
        .unwrap()
        .unwrap();
        second.logout().await;
        // Six commands went out for the two sessions that opened (AUTHENTICATE, SELECT, LOGOUT).
        assert_eq!(client.commands_sent(), 6);
    }

    #[test]
    fn uid_sets_are_ranges() {
        assert_eq!(uid_set(&[5, 1, 2, 3, 9, 10, 7]), "1:3,5,7,9:10");
        assert_eq!(uid_set(&[4]), "4");
        assert_eq!(uid_set(&[]), "");
    }

    #[test]
    fn folders_map_to_imap_names_and_refusals_keep_the_servers_words() {
        assert_eq!(imap_folder("Inbox"), "INBOX");
        assert_eq!(imap_folder("Support/Tickets"), "Support/Tickets");
        assert_eq!(
            refusal_text("code: None, info: Some(\"AUTHENTICATE failed.\")"),
            "AUTHENTICATE failed."
        );
    }
}
