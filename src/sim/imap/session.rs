//! One IMAP connection: the greeting, then command after command until LOGOUT, a `BYE` (a fault,
//! a changed UIDVALIDITY, an idle timeout) or the client leaving. States: not authenticated →
//! authenticated (a mailbox, after AUTHENTICATE XOAUTH2) → selected (a folder). Every command goes
//! through the injected faults first; the mailbox's messages are the ones Graph serves, so `\Seen`
//! set here is `isRead: true` there (and moves the message's change version for delta) and the
//! other way round.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, AsyncWriteExt, BufStream};

use super::command::{ReadError, Tok, read_command, read_line, string, tokenize};
use super::fetch::{self, SeqSet};
use super::{ImapState, OpenGuard, auth, mime};
use crate::sim::counters::Endpoint;
use crate::sim::faults::{FaultKind, Target};
use crate::sim::state::{Mailbox, Message, SimState};

/// A connection idle this long is closed (Exchange's autologout is about 30 minutes).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// What the server answers to CAPABILITY (before and after authentication).
const CAPABILITIES: &str =
    "IMAP4 IMAP4rev1 AUTH=XOAUTH2 SASL-IR ID UNSELECT CHILDREN NAMESPACE LITERAL+";

/// The Suggested Backoff Time of a throttle fault without `retry_after`, in milliseconds.
const DEFAULT_BACKOFF_MS: u64 = 299_000;

struct Authed {
    mailbox: Arc<Mailbox>,
    upn: String,
    client_id: String,
    tenant_id: String,
    _open: OpenGuard,
}

struct Selected {
    folder: String,
    read_only: bool,
    validity: u32,
    /// The UIDs the client knows, in message-number order.
    known: Vec<u32>,
}

/// What to do after a command.
enum Flow {
    Continue,
    /// Close the connection (after what was written).
    Close,
}

struct Session<S> {
    state: Arc<SimState>,
    io: BufStream<S>,
    auth: Option<Authed>,
    selected: Option<Selected>,
}

/// Serves one connection until it ends.
pub async fn serve<S>(state: Arc<SimState>, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut s = Session {
        state,
        io: BufStream::new(stream),
        auth: None,
        selected: None,
    };
    let greeting = format!(
        "* OK The Microsoft Exchange IMAP4 service is ready. [{}]\r\n",
        crate::sim::identity::random_token(24)
    );
    if s.io.write_all(greeting.as_bytes()).await.is_err() || s.io.flush().await.is_err() {
        return;
    }
    loop {
        let command = match tokio::time::timeout(IDLE_TIMEOUT, read_command(&mut s.io)).await {
            Err(_) => {
                let _ = s.bye("Connection closed. 14").await;
                return;
            }
            Ok(Err(ReadError::Closed)) => return,
            Ok(Err(ReadError::TooLong)) => {
                let _ = s.bye("Command line too long.").await;
                return;
            }
            Ok(Ok(c)) => c,
        };
        let flow = s.command(&command).await;
        if s.io.flush().await.is_err() {
            return;
        }
        if let Flow::Close = flow {
            let _ = s.io.shutdown().await;
            return;
        }
    }
}

fn endpoint_of(name: &str, sub: Option<&str>) -> Endpoint {
    let name = if name == "UID" {
        sub.unwrap_or("")
    } else {
        name
    };
    match name {
        "AUTHENTICATE" | "LOGIN" => Endpoint::ImapAuthenticate,
        "SELECT" | "EXAMINE" | "STATUS" => Endpoint::ImapSelect,
        "LIST" | "LSUB" => Endpoint::ImapList,
        "SEARCH" => Endpoint::ImapSearch,
        "FETCH" => Endpoint::ImapFetch,
        "STORE" => Endpoint::ImapStore,
        _ => Endpoint::ImapOther,
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S>
where
    BufStream<S>: AsyncBufRead,
{
    fn imap(&self) -> &ImapState {
        &self.state.imap
    }

    async fn write(&mut self, bytes: &[u8]) -> Flow {
        if self.io.write_all(bytes).await.is_err() {
            return Flow::Close;
        }
        Flow::Continue
    }

    async fn tagged(&mut self, tag: &str, status: &str, text: &str) -> Flow {
        self.write(format!("{tag} {status} {text}\r\n").as_bytes())
            .await
    }

    async fn bye(&mut self, text: &str) -> Flow {
        let _ = self.write(format!("* BYE {text}\r\n").as_bytes()).await;
        let _ = self.io.flush().await;
        Flow::Close
    }

    /// The injected faults for this command: `None` to go on, or how the command ended.
    async fn faults(
        &mut self,
        tag: &str,
        endpoint: Endpoint,
        mailbox: Option<&str>,
    ) -> Option<Flow> {
        let (user, client, tenant) = match &self.auth {
            Some(a) => (
                Some(a.upn.clone()),
                Some(a.client_id.clone()),
                Some(a.tenant_id.clone()),
            ),
            None => (None, None, None),
        };
        let verdict = self.state.faults.check(
            &Target {
                endpoint,
                tenant: tenant.as_deref(),
                client_id: client.as_deref(),
                mailbox,
                user: user.as_deref(),
                in_batch: false,
            },
            self.state.now_ms(),
            FaultKind::on_imap,
        );
        if verdict.latency_ms > 0 {
            let _ = self.io.flush().await;
            tokio::time::sleep(Duration::from_millis(verdict.latency_ms)).await;
        }
        match verdict.fault? {
            FaultKind::ImapNo { text } => Some(
                self.tagged(
                    tag,
                    "NO",
                    text.as_deref().unwrap_or("Server Unavailable. 15"),
                )
                .await,
            ),
            FaultKind::ImapBye { text } => Some(
                self.bye(text.as_deref().unwrap_or("Connection is closed. 13"))
                    .await,
            ),
            FaultKind::Throttle { retry_after } => {
                let ms = retry_after.map_or(DEFAULT_BACKOFF_MS, |s| (s.max(0.0) * 1000.0) as u64);
                let text =
                    format!("Request is throttled. Suggested Backoff Time: {ms} milliseconds");
                Some(self.tagged(tag, "NO", &text).await)
            }
            FaultKind::Reset => Some(Flow::Close),
            _ => None,
        }
    }

    async fn command(&mut self, raw: &[u8]) -> Flow {
        let toks = match tokenize(raw) {
            Ok(t) => t,
            Err(_) => {
                let tag = raw
                    .split(|b| *b == b' ')
                    .next()
                    .map(|t| String::from_utf8_lossy(t).into_owned())
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(|| "*".into());
                return self.tagged(&tag, "BAD", "Command Error. 10").await;
            }
        };
        let (Some(Tok::Atom(tag)), Some(Tok::Atom(name))) = (toks.first(), toks.get(1)) else {
            let tag = toks
                .first()
                .and_then(Tok::as_astring)
                .unwrap_or("*")
                .to_owned();
            return self.tagged(&tag, "BAD", "Command Error. 10").await;
        };
        let tag = tag.clone();
        let name = name.to_ascii_uppercase();
        let args: Vec<Tok> = toks.get(2..).unwrap_or_default().to_vec();
        let sub = (name == "UID")
            .then(|| {
                args.first()
                    .and_then(Tok::as_astring)
                    .map(str::to_ascii_uppercase)
            })
            .flatten();
        let endpoint = endpoint_of(&name, sub.as_deref());
        let mailbox = self.auth.as_ref().map(|a| a.mailbox.address.clone());
        if name != "AUTHENTICATE" {
            self.state.counters.hit(endpoint, mailbox.as_deref());
        }
        if name != "AUTHENTICATE"
            && let Some(flow) = self.faults(&tag, endpoint, mailbox.as_deref()).await
        {
            return flow;
        }
        match name.as_str() {
            "CAPABILITY" => {
                let line = format!("* CAPABILITY {CAPABILITIES}\r\n");
                let _ = self.write(line.as_bytes()).await;
                self.tagged(&tag, "OK", "CAPABILITY completed.").await
            }
            "NOOP" | "CHECK" => {
                if let Flow::Close = self.sync().await {
                    return Flow::Close;
                }
                self.tagged(&tag, "OK", &format!("{name} completed.")).await
            }
            "LOGOUT" => {
                let _ = self
                    .write(b"* BYE Microsoft Exchange Server IMAP4 server signing off.\r\n")
                    .await;
                let _ = self.tagged(&tag, "OK", "LOGOUT completed.").await;
                Flow::Close
            }
            "ID" => {
                let _ = self.write(b"* ID NIL\r\n").await;
                self.tagged(&tag, "OK", "ID completed.").await
            }
            "LOGIN" => self.tagged(&tag, "NO", "LOGIN failed.").await,
            "AUTHENTICATE" => self.authenticate(&tag, &args).await,
            _ if self.auth.is_none() => {
                self.tagged(&tag, "BAD", "Command received in Invalid state.")
                    .await
            }
            "NAMESPACE" => {
                let _ = self.write(b"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n").await;
                self.tagged(&tag, "OK", "NAMESPACE completed.").await
            }
            "LIST" | "LSUB" => self.list(&tag, &name, &args).await,
            "STATUS" => self.status(&tag, &args).await,
            "SELECT" | "EXAMINE" => self.select(&tag, name == "EXAMINE", &args).await,
            _ if self.selected.is_none() => {
                self.tagged(&tag, "BAD", "Command received in Invalid state.")
                    .await
            }
            "CLOSE" | "UNSELECT" => {
                self.selected = None;
                self.tagged(&tag, "OK", &format!("{name} completed.")).await
            }
            "FETCH" => self.fetch(&tag, false, &args).await,
            "STORE" => self.store(&tag, false, &args).await,
            "SEARCH" => self.search(&tag, false, &args).await,
            "UID" => {
                let rest = args.get(1..).unwrap_or_default().to_vec();
                match sub.as_deref() {
                    Some("FETCH") => self.fetch(&tag, true, &rest).await,
                    Some("STORE") => self.store(&tag, true, &rest).await,
                    Some("SEARCH") => self.search(&tag, true, &rest).await,
                    _ => self.tagged(&tag, "BAD", "Command Argument Error. 11").await,
                }
            }
            _ => self.tagged(&tag, "BAD", "Command Error. 10").await,
        }
    }

    async fn authenticate(&mut self, tag: &str, args: &[Tok]) -> Flow {
        if self.auth.is_some() {
            return self
                .tagged(tag, "BAD", "Command received in Invalid state.")
                .await;
        }
        let Some(mech) = args.first().and_then(Tok::as_astring) else {
            return self.tagged(tag, "BAD", "Command Argument Error. 11").await;
        };
        if !mech.eq_ignore_ascii_case("XOAUTH2") {
            return self.tagged(tag, "NO", "AUTHENTICATE failed.").await;
        }
        let response = match args.get(1).and_then(Tok::as_astring) {
            Some("=") => String::new(),
            Some(ir) => ir.to_owned(),
            None => {
                // No initial response (SASL-IR unused): an empty continuation asks for it.
                if let Flow::Close = self.write(b"+ \r\n").await {
                    return Flow::Close;
                }
                if self.io.flush().await.is_err() {
                    return Flow::Close;
                }
                match tokio::time::timeout(IDLE_TIMEOUT, read_line(&mut self.io)).await {
                    Ok(Ok(line)) => String::from_utf8_lossy(&line).into_owned(),
                    Ok(Err(_)) => return Flow::Close,
                    Err(_) => return self.bye("Connection closed. 14").await,
                }
            }
        };
        if response == "*" {
            return self.tagged(tag, "BAD", "AUTHENTICATE aborted.").await;
        }
        let decoded = auth::decode(&response);
        let user = decoded.as_ref().ok().map(|x| x.user.clone());
        let known = user
            .as_deref()
            .and_then(|u| self.state.mailbox(u))
            .map(|m| m.address.clone());
        self.state
            .counters
            .hit(Endpoint::ImapAuthenticate, known.as_deref());
        if let Some(flow) = self
            .faults(tag, Endpoint::ImapAuthenticate, user.as_deref())
            .await
        {
            return flow;
        }
        let checked = decoded.and_then(|x| auth::check(&self.state, &x).map(|c| (x, c)));
        let (x, claims) = match checked {
            Ok(ok) => ok,
            Err(reason) => {
                tracing::debug!(reason = reason.name(), user = ?user, "IMAP AUTHENTICATE failed");
                self.imap()
                    .counted(known.as_deref(), |c| &c.authenticate_failed);
                return self.tagged(tag, "NO", "AUTHENTICATE failed.").await;
            }
        };
        let Some(mailbox) = self.state.mailbox(&x.user) else {
            return self.tagged(tag, "NO", "AUTHENTICATE failed.").await;
        };
        let Some(open) = OpenGuard::try_open(&self.state, &mailbox.address) else {
            self.imap().counted(Some(&mailbox.address), |c| &c.refused);
            return self
                .tagged(
                    tag,
                    "NO",
                    "[LIMIT] AUTHENTICATE failed: too many concurrent connections to this mailbox.",
                )
                .await;
        };
        self.imap()
            .counted(Some(&mailbox.address), |c| &c.authenticate_ok);
        self.auth = Some(Authed {
            mailbox,
            upn: claims.upn,
            client_id: claims.cid,
            tenant_id: claims.tid,
            _open: open,
        });
        self.tagged(tag, "OK", "AUTHENTICATE completed.").await
    }

    fn mailbox(&self) -> Option<Arc<Mailbox>> {
        self.auth.as_ref().map(|a| a.mailbox.clone())
    }

    /// The folder keys the mailbox's live messages lie in.
    fn folder_keys(mailbox: &Mailbox) -> Vec<String> {
        let data = mailbox.data.lock();
        let mut keys: Vec<String> = Vec::new();
        for m in data.messages.iter().filter(|m| !m.deleted) {
            if !keys.contains(&m.folder) {
                keys.push(m.folder.clone());
            }
        }
        keys
    }

    async fn list(&mut self, tag: &str, name: &str, args: &[Tok]) -> Flow {
        let (Some(reference), Some(pattern)) = (
            args.first().and_then(Tok::as_astring),
            args.get(1).and_then(Tok::as_astring),
        ) else {
            return self.tagged(tag, "BAD", "Command Argument Error. 11").await;
        };
        let Some(mailbox) = self.mailbox() else {
            return Flow::Close;
        };
        let mut out = Vec::new();
        if pattern.is_empty() {
            out.extend_from_slice(format!("* {name} (\\Noselect) \"/\" \"\"\r\n").as_bytes());
        } else {
            let full = format!("{reference}{pattern}");
            for (_, folder, attr) in fetch::folders(&Self::folder_keys(&mailbox)) {
                if fetch::list_matches(&full, &folder) {
                    let attrs = if attr.is_empty() {
                        "\\HasNoChildren".to_owned()
                    } else {
                        format!("\\HasNoChildren {attr}")
                    };
                    out.extend_from_slice(format!("* {name} ({attrs}) \"/\" ").as_bytes());
                    out.extend(string(&folder));
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
        let _ = self.write(&out).await;
        self.tagged(tag, "OK", &format!("{name} completed.")).await
    }

    /// The live messages of `folder`, ordered by UID.
    fn messages_of(mailbox: &Mailbox, folder: &str) -> Vec<Message> {
        let data = mailbox.data.lock();
        let mut v: Vec<Message> = data
            .messages
            .iter()
            .filter(|m| !m.deleted && m.folder == folder)
            .cloned()
            .collect();
        v.sort_by_key(|m| m.uid);
        v
    }

    async fn status(&mut self, tag: &str, args: &[Tok]) -> Flow {
        let (Some(name), Some(Tok::List(items))) =
            (args.first().and_then(Tok::as_astring), args.get(1))
        else {
            return self.tagged(tag, "BAD", "Command Argument Error. 11").await;
        };
        let Some(mailbox) = self.mailbox() else {
            return Flow::Close;
        };
        let Some(key) = fetch::folder_key(name, &Self::folder_keys(&mailbox)) else {
            return self
                .tagged(
                    tag,
                    "NO",
                    "The specified folder could not be found in the store.",
                )
                .await;
        };
        let uids = mailbox.data.lock().folder_uids(mailbox.tag, &key);
        let msgs = Self::messages_of(&mailbox, &key);
        let mut parts = Vec::new();
        for item in items {
            let Some(item) = item.as_astring().map(str::to_ascii_uppercase) else {
                return self.tagged(tag, "BAD", "Command Argument Error. 11").await;
            };
            let value = match item.as_str() {
                "MESSAGES" => msgs.len() as u64,
                "RECENT" => 0,
                "UNSEEN" => msgs.iter().filter(|m| !m.is_read).count() as u64,
                "UIDNEXT" => u64::from(uids.next),
                "UIDVALIDITY" => u64::from(uids.validity),
                _ => return self.tagged(tag, "BAD", "Command Argument Error. 11").await,
            };
            parts.push(format!("{item} {value}"));
        }
        let mut line = b"* STATUS ".to_vec();
        line.extend(string(name));
        line.extend_from_slice(format!(" ({})\r\n", parts.join(" ")).as_bytes());
        let _ = self.write(&line).await;
        self.tagged(tag, "OK", "STATUS completed.").await
    }

    async fn select(&mut self, tag: &str, read_only: bool, args: &[Tok]) -> Flow {
        let command = if read_only { "EXAMINE" } else { "SELECT" };
        self.selected = None;
        let Some(name) = args.first().and_then(Tok::as_astring) else {
            return self.tagged(tag, "BAD", "Command Argument Error. 11").await;
        };
        let Some(mailbox) = self.mailbox() else {
            return Flow::Close;
        };
        let Some(key) = fetch::folder_key(name, &Self::folder_keys(&mailbox)) else {
            return self
                .tagged(
                    tag,
                    "NO",
                    "The specified folder could not be found in the store.",
                )
                .await;
        };
        let uids = mailbox.data.lock().folder_uids(mailbox.tag, &key);
        let msgs = Self::messages_of(&mailbox, &key);
        let mut out = String::new();
        out.push_str("* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft $MDNSent)\r\n");
        out.push_str("* OK [PERMANENTFLAGS (\\Seen \\Flagged)] Permanent flags\r\n");
        out.push_str(&format!("* {} EXISTS\r\n* 0 RECENT\r\n", msgs.len()));
        if let Some(first) = msgs.iter().position(|m| !m.is_read) {
            out.push_str(&format!(
                "* OK [UNSEEN {}] Is the first unseen message\r\n",
                first + 1
            ));
        }
        out.push_str(&format!(
            "* OK [UIDVALIDITY {}] UIDVALIDITY value\r\n* OK [UIDNEXT {}] The next unique identifier value\r\n",
            uids.validity, uids.next
        ));
        let _ = self.write(out.as_bytes()).await;
        self.selected = Some(Selected {
            folder: key,
            read_only,
            validity: uids.validity,
            known: msgs.iter().map(|m| m.uid).collect(),
        });
        let mode = if read_only { "READ-ONLY" } else { "READ-WRITE" };
        self.tagged(tag, "OK", &format!("[{mode}] {command} completed."))
            .await
    }

    /// Tells the client what changed in the selected folder since it last heard: `EXPUNGE` for
    /// messages gone (deleted or moved away), `EXISTS` for new ones. A changed UIDVALIDITY ends
    /// the connection (`BYE`): the client must select the folder again and start over.
    async fn sync(&mut self) -> Flow {
        let Some(mailbox) = self.mailbox() else {
            return Flow::Continue;
        };
        let Some(sel) = self.selected.as_mut() else {
            return Flow::Continue;
        };
        let validity = mailbox
            .data
            .lock()
            .folder_uids(mailbox.tag, &sel.folder)
            .validity;
        if validity != sel.validity {
            return self
                .bye("UIDVALIDITY of the selected folder changed; select it again.")
                .await;
        }
        let current: Vec<u32> = Self::messages_of(&mailbox, &sel.folder)
            .iter()
            .map(|m| m.uid)
            .collect();
        let mut out = String::new();
        let mut i = sel.known.len();
        while i > 0 {
            i -= 1;
            if let Some(uid) = sel.known.get(i)
                && current.binary_search(uid).is_err()
            {
                sel.known.remove(i);
                out.push_str(&format!("* {} EXPUNGE\r\n", i + 1));
            }
        }
        let last = sel.known.last().copied().unwrap_or(0);
        let before = sel.known.len();
        sel.known
            .extend(current.iter().copied().filter(|u| *u > last));
        if sel.known.len() != before {
            out.push_str(&format!("* {} EXISTS\r\n", sel.known.len()));
        }
        self.write(out.as_bytes()).await
    }

    /// The selected folder's messages the client knows, with their message numbers, that `set`
    /// names (UIDs when `by_uid`, message numbers otherwise).
    fn targets(&self, set: &str, by_uid: bool) -> Option<Vec<(usize, Message)>> {
        let mailbox = self.mailbox()?;
        let sel = self.selected.as_ref()?;
        let largest = if by_uid {
            sel.known.last().copied().unwrap_or(0)
        } else {
            u32::try_from(sel.known.len()).unwrap_or(u32::MAX)
        };
        let set = SeqSet::parse(set, largest)?;
        let msgs = Self::messages_of(&mailbox, &sel.folder);
        Some(
            sel.known
                .iter()
                .enumerate()
                .filter(|(i, uid)| {
                    if by_uid {
                        set.contains(**uid)
                    } else {
                        u32::try_from(i + 1).is_ok_and(|n| set.contains(n))
                    }
                })
                .filter_map(|(i, uid)| {
                    let idx = msgs.binary_search_by_key(uid, |m| m.uid).ok()?;
                    msgs.get(idx).map(|m| (i + 1, m.clone()))
                })
                .collect(),
        )
    }

    /// Changes the messages `seqs` as `f` says, moving their change version (and the mailbox's) as a
    /// Graph PATCH does, when `f` changed something; returns the messages as they are now.
    fn change(&self, seqs: &[u64], f: impl Fn(&mut Message) -> bool) -> Vec<Message> {
        let Some(mailbox) = self.mailbox() else {
            return Vec::new();
        };
        let now = self.state.now();
        let mut data = mailbox.data.lock();
        let mut out = Vec::with_capacity(seqs.len());
        for seq in seqs {
            let version = data.version + 1;
            let Some(m) = data.find_mut(*seq) else {
                continue;
            };
            if f(m) {
                m.changed_version = version;
                m.last_modified = now;
                out.push(m.clone());
                data.version = version;
            } else {
                out.push(m.clone());
            }
        }
        out
    }

    async fn fetch(&mut self, tag: &str, by_uid: bool, args: &[Tok]) -> Flow {
        if let Flow::Close = self.sync().await {
            return Flow::Close;
        }
        let (Some(set), Some(items)) = (
            args.first().and_then(Tok::as_astring),
            args.get(1).and_then(fetch::parse_items),
        ) else {
            return self.tagged(tag, "BAD", "Command Argument Error. 11").await;
        };
        let Some(targets) = self.targets(set, by_uid) else {
            return self.tagged(tag, "BAD", "Command Argument Error. 11").await;
        };
        let mailbox = self.auth.as_ref().map(|a| a.mailbox.address.clone());
        self.imap().counted(mailbox.as_deref(), |c| &c.fetch);
        let read_only = self.selected.as_ref().is_some_and(|s| s.read_only);
        let mut messages: Vec<(usize, Message)> = targets;
        if fetch::sets_seen(&items) && !read_only {
            let seqs: Vec<u64> = messages
                .iter()
                .filter(|(_, m)| !m.is_read)
                .map(|(_, m)| m.seq)
                .collect();
            let changed = self.change(&seqs, |m| {
                let was = m.is_read;
                m.is_read = true;
                !was
            });
            for (_, m) in messages.iter_mut() {
                if let Some(c) = changed.iter().find(|c| c.seq == m.seq) {
                    *m = c.clone();
                }
            }
        }
        for (msn, m) in &messages {
            let raw = mime::render(m);
            let line = fetch::render(*msn, m, &raw, &items, by_uid);
            if let Flow::Close = self.write(&line).await {
                return Flow::Close;
            }
        }
        self.tagged(tag, "OK", "FETCH completed.").await
    }

    async fn store(&mut self, tag: &str, by_uid: bool, args: &[Tok]) -> Flow {
        if let Flow::Close = self.sync().await {
            return Flow::Close;
        }
        let (Some(set), Some(op), Some(flags)) = (
            args.first().and_then(Tok::as_astring),
            args.get(1).and_then(Tok::as_astring),
            args.get(2),
        ) else {
            return self.tagged(tag, "BAD", "Command Argument Error. 11").await;
        };
        let op = op.to_ascii_uppercase();
        let (op, silent) = match op.strip_suffix(".SILENT") {
            Some(o) => (o.to_owned(), true),
            None => (op, false),
        };
        let flags: Vec<String> = match flags {
            Tok::List(l) => l
                .iter()
                .filter_map(Tok::as_astring)
                .map(str::to_ascii_lowercase)
                .collect(),
            other => other
                .as_astring()
                .map(|s| vec![s.to_ascii_lowercase()])
                .unwrap_or_default(),
        };
        if !matches!(op.as_str(), "FLAGS" | "+FLAGS" | "-FLAGS") {
            return self.tagged(tag, "BAD", "Command Argument Error. 11").await;
        }
        if self.selected.as_ref().is_some_and(|s| s.read_only) {
            return self
                .tagged(tag, "NO", "Command received in Invalid state.")
                .await;
        }
        let Some(targets) = self.targets(set, by_uid) else {
            return self.tagged(tag, "BAD", "Command Argument Error. 11").await;
        };
        let mailbox = self.auth.as_ref().map(|a| a.mailbox.address.clone());
        self.imap().counted(mailbox.as_deref(), |c| &c.store);
        let seen = flags.iter().any(|f| f == "\\seen");
        let flagged = flags.iter().any(|f| f == "\\flagged");
        let seqs: Vec<u64> = targets.iter().map(|(_, m)| m.seq).collect();
        let changed = self.change(&seqs, |m| {
            let (want_seen, want_flagged) = match op.as_str() {
                "+FLAGS" => (m.is_read || seen, fetch::is_flagged(m) || flagged),
                "-FLAGS" => (m.is_read && !seen, fetch::is_flagged(m) && !flagged),
                _ => (seen, flagged),
            };
            let mut did = false;
            if want_seen != m.is_read {
                m.is_read = want_seen;
                did = true;
            }
            if want_flagged != fetch::is_flagged(m) {
                let status = if want_flagged {
                    "flagged"
                } else {
                    "notFlagged"
                };
                m.flag = Some(serde_json::json!({"flagStatus": status}));
                did = true;
            }
            did
        });
        if !silent {
            for (msn, m) in &targets {
                if let Some(now) = changed.iter().find(|c| c.seq == m.seq) {
                    let uid = if by_uid {
                        format!("UID {} ", now.uid)
                    } else {
                        String::new()
                    };
                    let line = format!("* {msn} FETCH ({uid}FLAGS {})\r\n", fetch::flags(now));
                    if let Flow::Close = self.write(line.as_bytes()).await {
                        return Flow::Close;
                    }
                }
            }
        }
        self.tagged(tag, "OK", "STORE completed.").await
    }

    async fn search(&mut self, tag: &str, by_uid: bool, args: &[Tok]) -> Flow {
        if let Flow::Close = self.sync().await {
            return Flow::Close;
        }
        let Some(keys) = fetch::parse_search(args) else {
            return self.tagged(tag, "BAD", "Command Argument Error. 11").await;
        };
        let Some(targets) = self.targets("1:*", false) else {
            return self.tagged(tag, "OK", "SEARCH completed.").await;
        };
        let max_uid = targets.last().map_or(0, |(_, m)| m.uid);
        let max_msn = u32::try_from(targets.len()).unwrap_or(u32::MAX);
        let hits: Vec<String> = targets
            .iter()
            .filter(|(msn, m)| {
                let msn = u32::try_from(*msn).unwrap_or(u32::MAX);
                keys.iter()
                    .all(|k| fetch::matches(k, m, msn, max_uid, max_msn))
            })
            .map(|(msn, m)| {
                if by_uid {
                    m.uid.to_string()
                } else {
                    msn.to_string()
                }
            })
            .collect();
        let line = if hits.is_empty() {
            "* SEARCH\r\n".to_owned()
        } else {
            format!("* SEARCH {}\r\n", hits.join(" "))
        };
        let _ = self.write(line.as_bytes()).await;
        self.tagged(tag, "OK", "SEARCH completed.").await
    }
}
