//! A raw IMAP client for tests: plain or TLS (trusting one PEM certificate), blocking, with a read
//! timeout so a test never hangs. It sends commands with its own tags and collects every response
//! up to the tagged one, literals included, so a test can check the server's exact words.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// The answer to one command.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Untagged responses and continuations, each with its literals, CRLFs kept.
    pub untagged: Vec<Vec<u8>>,
    /// The tagged line without its tag (`OK FETCH completed.`); `None` when the server closed the
    /// connection first (after a `BYE`, say).
    pub tagged: Option<String>,
}

impl Reply {
    /// Whether the tagged status is `OK`.
    pub fn is_ok(&self) -> bool {
        self.tagged.as_deref().is_some_and(|t| t.starts_with("OK"))
    }

    /// The untagged responses as (lossy) text.
    pub fn text(&self) -> Vec<String> {
        self.untagged
            .iter()
            .map(|u| String::from_utf8_lossy(u).into_owned())
            .collect()
    }

    /// The untagged response starting with `prefix` (e.g. `* SEARCH`).
    pub fn find(&self, prefix: &str) -> Option<String> {
        self.text().into_iter().find(|t| t.starts_with(prefix))
    }
}

/// One connection to an IMAP server.
pub struct ImapClient {
    io: BufReader<Box<dyn Stream>>,
    next_tag: u32,
    /// The server's greeting line.
    pub greeting: String,
}

impl std::fmt::Debug for ImapClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapClient")
            .field("greeting", &self.greeting)
            .finish()
    }
}

const TIMEOUT: Duration = Duration::from_secs(20);

impl ImapClient {
    /// Connects over plain TCP and reads the greeting.
    pub fn connect(addr: SocketAddr) -> anyhow::Result<ImapClient> {
        let tcp = TcpStream::connect_timeout(&addr, TIMEOUT)
            .with_context(|| format!("cannot connect to IMAP at {addr}"))?;
        tcp.set_read_timeout(Some(TIMEOUT))?;
        Self::start(Box::new(tcp))
    }

    /// Connects over TLS (implicit, as on port 993), trusting only `ca_pem`, for `server_name`.
    pub fn connect_tls(
        addr: SocketAddr,
        ca_pem: &str,
        server_name: &str,
    ) -> anyhow::Result<ImapClient> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
            roots.add(cert?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(server_name.to_owned())?;
        let conn = rustls::ClientConnection::new(Arc::new(config), name)?;
        let tcp = TcpStream::connect_timeout(&addr, TIMEOUT)
            .with_context(|| format!("cannot connect to IMAPS at {addr}"))?;
        tcp.set_read_timeout(Some(TIMEOUT))?;
        Self::start(Box::new(rustls::StreamOwned::new(conn, tcp)))
    }

    fn start(stream: Box<dyn Stream>) -> anyhow::Result<ImapClient> {
        let mut client = ImapClient {
            io: BufReader::new(stream),
            next_tag: 1,
            greeting: String::new(),
        };
        let greeting = client
            .read_response()?
            .context("the server closed the connection before its greeting")?;
        client.greeting = String::from_utf8_lossy(&greeting).trim_end().to_owned();
        Ok(client)
    }

    /// Reads one response: a line and, for every literal it announces, the literal and the rest.
    /// `None` at the end of the stream.
    pub fn read_response(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        let mut out = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = self.io.read_until(b'\n', &mut line)?;
            if n == 0 {
                return Ok(if out.is_empty() { None } else { Some(out) });
            }
            out.extend_from_slice(&line);
            let trimmed = line.strip_suffix(b"\r\n").unwrap_or(&line);
            let literal = trimmed
                .strip_suffix(b"}")
                .and_then(|b| b.iter().rposition(|c| *c == b'{').map(|i| &b[i + 1..]))
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| d.parse::<usize>().ok());
            match literal {
                Some(len) => {
                    let mut buf = vec![0u8; len];
                    self.io.read_exact(&mut buf)?;
                    out.extend_from_slice(&buf);
                }
                None => return Ok(Some(out)),
            }
        }
    }

    fn tag(&mut self) -> String {
        let t = format!("t{}", self.next_tag);
        self.next_tag += 1;
        t
    }

    /// Sends raw bytes (a command line or an answer to a continuation).
    pub fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let w = self.io.get_mut();
        w.write_all(bytes)?;
        w.flush()?;
        Ok(())
    }

    /// Reads responses up to the one tagged `tag`.
    pub fn read_until_tagged(&mut self, tag: &str) -> anyhow::Result<Reply> {
        self.read_until_tagged_answering(tag, false)
    }

    /// Reads responses up to the one tagged `tag`; with `answer_continuations`, a `+` (an XOAUTH2
    /// server's error challenge, as Dovecot and Gmail send) gets the empty response that ends the
    /// exchange.
    fn read_until_tagged_answering(
        &mut self,
        tag: &str,
        answer_continuations: bool,
    ) -> anyhow::Result<Reply> {
        let mut untagged = Vec::new();
        let prefix = format!("{tag} ");
        loop {
            let Some(resp) = self.read_response()? else {
                return Ok(Reply {
                    untagged,
                    tagged: None,
                });
            };
            if resp.starts_with(prefix.as_bytes()) {
                let text = String::from_utf8_lossy(&resp[prefix.len()..])
                    .trim_end()
                    .to_owned();
                return Ok(Reply {
                    untagged,
                    tagged: Some(text),
                });
            }
            if answer_continuations && resp.starts_with(b"+") {
                self.send_raw(b"\r\n")?;
            }
            untagged.push(resp);
        }
    }

    /// Sends `command` (without tag or CRLF) and reads its answer.
    pub fn command(&mut self, command: &str) -> anyhow::Result<Reply> {
        let tag = self.tag();
        self.send_raw(format!("{tag} {command}\r\n").as_bytes())?;
        self.read_until_tagged(&tag)
    }

    /// `AUTHENTICATE XOAUTH2` with the initial response on the command line (SASL-IR).
    pub fn authenticate_xoauth2(&mut self, user: &str, token: &str) -> anyhow::Result<Reply> {
        let ir = xoauth2(user, token);
        let tag = self.tag();
        self.send_raw(format!("{tag} AUTHENTICATE XOAUTH2 {ir}\r\n").as_bytes())?;
        self.read_until_tagged_answering(&tag, true)
    }

    /// `AUTHENTICATE XOAUTH2` without SASL-IR: waits for the server's `+` and sends the response.
    pub fn authenticate_xoauth2_continued(
        &mut self,
        user: &str,
        token: &str,
    ) -> anyhow::Result<Reply> {
        let tag = self.tag();
        self.send_raw(format!("{tag} AUTHENTICATE XOAUTH2\r\n").as_bytes())?;
        let Some(cont) = self.read_response()? else {
            bail!("the server closed the connection instead of asking for the response");
        };
        if !cont.starts_with(b"+") {
            bail!(
                "expected a continuation, got {:?}",
                String::from_utf8_lossy(&cont)
            );
        }
        self.send_raw(format!("{}\r\n", xoauth2(user, token)).as_bytes())?;
        self.read_until_tagged_answering(&tag, true)
    }
}

/// The SASL XOAUTH2 initial response, base64-encoded.
pub fn xoauth2(user: &str, token: &str) -> String {
    inboxd::sim::client::xoauth2(user, token)
}

/// The literal of an untagged FETCH response that follows `item` (e.g. `BODY[] `): its bytes.
pub fn literal_after(response: &[u8], item: &str) -> Option<Vec<u8>> {
    let at = response
        .windows(item.len())
        .position(|w| w.eq_ignore_ascii_case(item.as_bytes()))?;
    let rest = &response[at + item.len()..];
    let open = rest.iter().position(|b| *b == b'{')?;
    let close = rest.iter().position(|b| *b == b'}')?;
    let len: usize = std::str::from_utf8(&rest[open + 1..close])
        .ok()?
        .parse()
        .ok()?;
    let start = close + 3;
    rest.get(start..start + len).map(<[u8]>::to_vec)
}
