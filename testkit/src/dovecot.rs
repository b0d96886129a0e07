//! [`Dovecot`]: a real Dovecot IMAP server of one test's own, validating XOAUTH2 (and OAUTHBEARER)
//! tokens through an RFC 7662 introspection endpoint — the simulator's `POST /_sim/introspect` —
//! with Dovecot's OAuth2 passdb. Everything lives in a temporary directory: the configuration, the
//! runtime and state directories, the log, and one Maildir per user. It listens on 127.0.0.1 on a
//! free port, runs unprivileged (as `nobody` when the test runs as root, else as the test's user),
//! in the foreground (`dovecot -F -c <conf>`), and is stopped on drop. Dovecot penalizes an address
//! after failed authentications (its anvil delays the next ones, up to 15 s), so a test checking
//! several refusals should start a Dovecot for each.
//!
//! Needs Debian's `dovecot-imapd` (`.ci/run` installs it).

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// The Dovecot binary Debian installs.
const DOVECOT: &str = "/usr/sbin/dovecot";

/// The scope a token must carry for [`Dovecot::start`]: the IMAP scope of Exchange Online.
pub const IMAP_SCOPE: &str = "https://outlook.office.com/IMAP.AccessAsUser.All";

/// A running Dovecot, stopped on drop.
pub struct Dovecot {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    uid: u32,
    gid: u32,
}

impl std::fmt::Debug for Dovecot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dovecot")
            .field("addr", &self.addr)
            .field("dir", &self.dir.path())
            .finish()
    }
}

/// (user name, uid, group name, gid) Dovecot runs as.
fn run_as() -> anyhow::Result<(String, u32, String, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").context("cannot read /etc/passwd")?;
    let group = std::fs::read_to_string("/etc/group").context("cannot read /etc/group")?;
    let me = rustix::process::geteuid().as_raw();
    let field = |line: &str, i: usize| line.split(':').nth(i).map(str::to_owned);
    let user_line = passwd
        .lines()
        .find(|l| {
            if me == 0 {
                field(l, 0).as_deref() == Some("nobody")
            } else {
                field(l, 2).and_then(|u| u.parse::<u32>().ok()) == Some(me)
            }
        })
        .context("no user to run Dovecot as (nobody, or the test's own user) in /etc/passwd")?;
    let name = field(user_line, 0).unwrap_or_default();
    let uid: u32 = field(user_line, 2)
        .and_then(|u| u.parse().ok())
        .unwrap_or_default();
    let gid: u32 = field(user_line, 3)
        .and_then(|g| g.parse().ok())
        .unwrap_or_default();
    let group_name = group
        .lines()
        .find(|l| field(l, 2).and_then(|g| g.parse::<u32>().ok()) == Some(gid))
        .and_then(|l| field(l, 0))
        .context("the Dovecot user's group is not in /etc/group")?;
    Ok((name, uid, group_name, gid))
}

/// Gives `path` and everything under it to `uid:gid`.
fn chown_tree(path: &Path, uid: u32, gid: u32) -> anyhow::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("cannot chown {}", path.display()))?;
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Dovecot {
    /// Starts Dovecot with its OAuth2 passdb asking `introspection_url` (e.g.
    /// `http://CLIENT_ID:SECRET@127.0.0.1:PORT/_sim/introspect`; credentials in the URL are sent as
    /// HTTP Basic) about every token, accepting it when `active` is `true`, `username` is the
    /// user the client names, and its scope has [`IMAP_SCOPE`].
    pub fn start(introspection_url: &str) -> anyhow::Result<Dovecot> {
        Self::start_with_scope(introspection_url, Some(IMAP_SCOPE))
    }

    /// [`Dovecot::start`] with another required scope (`None`: any scope).
    pub fn start_with_scope(
        introspection_url: &str,
        scope: Option<&str>,
    ) -> anyhow::Result<Dovecot> {
        if !Path::new(DOVECOT).exists() {
            bail!("{DOVECOT} is missing: install Debian's dovecot-imapd (`bash .ci/run` does)");
        }
        let (user, uid, group, gid) = run_as()?;
        let dir = tempfile::tempdir()?;
        let root = dir.path().to_owned();
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        let port = free_port()?;
        let r = root.display();
        let conf = format!(
            r#"# Written by inboxd's test kit (testkit/src/dovecot.rs) for one test.
base_dir = {r}/run
state_dir = {r}/state
log_path = {r}/dovecot.log
protocols = imap
listen = 127.0.0.1
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = xoauth2 oauthbearer
auth_verbose = yes
# A refusal is answered at once (no 2 s failure delay). Dovecot's anvil still delays every later
# authentication from the same address after failures (2 s, 4 s, 8 s, up to 15 s): a test that
# checks several refusals starts one Dovecot for each (a start takes tens of milliseconds).
auth_failure_delay = 0
mail_location = maildir:{r}/mail/%u
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-reader {{
    user = {user}
  }}
  unix_listener stats-writer {{
    user = {user}
  }}
}}
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {r}/oauth2.conf
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={r}/mail/%u
}}
"#
        );
        let mut oauth2 = format!(
            "introspection_mode = post\nintrospection_url = {introspection_url}\nforce_introspection = yes\nusername_attribute = username\nactive_attribute = active\nactive_value = true\n"
        );
        if let Some(s) = scope {
            oauth2.push_str(&format!("scope = {s}\n"));
        }
        std::fs::write(root.join("dovecot.conf"), conf)?;
        std::fs::write(root.join("oauth2.conf"), oauth2)?;
        chown_tree(&root, uid, gid)?;
        let mut cmd = Command::new(DOVECOT);
        cmd.args(["-F", "-c"])
            .arg(root.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        {
            use std::os::unix::process::CommandExt as _;
            cmd.uid(uid).gid(gid);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {DOVECOT}"))?;
        let mut dovecot = Dovecot {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            uid,
            gid,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if TcpStream::connect_timeout(&dovecot.addr, Duration::from_millis(200)).is_ok() {
                return Ok(dovecot);
            }
            if let Some(status) = dovecot.child.try_wait()? {
                bail!(
                    "Dovecot exited ({status}) before listening; its log:\n{}",
                    dovecot.log()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "Dovecot did not listen on {} within 15 s; its log:\n{}",
                    dovecot.addr,
                    dovecot.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Where Dovecot listens for IMAP (plain, loopback).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Maildir of `user` (the full address the client authenticates as), created if needed.
    pub fn maildir(&self, user: &str) -> anyhow::Result<PathBuf> {
        let md = self.dir.path().join("mail").join(user);
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(md.join(sub))?;
        }
        chown_tree(&md, self.uid, self.gid)?;
        Ok(md)
    }

    /// Delivers `message` (RFC 5322 bytes) into `user`'s INBOX (a file in `Maildir/new`, written
    /// in `tmp` and renamed, as Maildir delivery goes); returns its path.
    pub fn deliver(&self, user: &str, message: &[u8]) -> anyhow::Result<PathBuf> {
        let md = self.maildir(user)?;
        let name = format!(
            "{}.{}_{}.inboxd-test",
            chrono::Utc::now().timestamp(),
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        );
        let tmp = md.join("tmp").join(&name);
        std::fs::write(&tmp, message)?;
        std::os::unix::fs::chown(&tmp, Some(self.uid), Some(self.gid))?;
        let new = md.join("new").join(&name);
        std::fs::rename(&tmp, &new)?;
        Ok(new)
    }

    /// Dovecot's log so far (authentication failures say why).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its auth, login and imap processes; SIGKILL if it lingers.
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
