//! [`PgServer`]: a PostgreSQL server of one test's own (its own data directory and port on
//! loopback), for the tests that restart PostgreSQL under running nodes without disturbing the
//! shared server other tests use. Built with the machine's PostgreSQL binaries (`initdb`,
//! `pg_ctl`); as root they run as the `postgres` user, which PostgreSQL requires.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// A private PostgreSQL server, stopped (immediately) on drop.
pub struct PgServer {
    bin: PathBuf,
    data: PathBuf,
    _dir: tempfile::TempDir,
    port: u16,
    as_root: bool,
}

/// The newest installed PostgreSQL's binaries (Debian's layout, or `pg_config --bindir`).
fn bin_dir() -> anyhow::Result<PathBuf> {
    let debian = Path::new("/usr/lib/postgresql");
    if let Ok(entries) = std::fs::read_dir(debian) {
        let mut versions: Vec<(u32, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let version = e.file_name().to_str()?.parse::<u32>().ok()?;
                Some((version, e.path().join("bin")))
            })
            .filter(|(_, bin)| bin.join("initdb").exists())
            .collect();
        versions.sort();
        if let Some((_, bin)) = versions.pop() {
            return Ok(bin);
        }
    }
    let output = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .context("PostgreSQL's binaries were not found: run `bash .ci/run`, which installs them")?;
    Ok(PathBuf::from(
        String::from_utf8_lossy(&output.stdout).trim(),
    ))
}

impl PgServer {
    /// Initialises and starts a server on a free loopback port, with the superuser `inboxd`
    /// (trust authentication: loopback only, a throw-away server).
    pub fn start() -> anyhow::Result<PgServer> {
        let bin = bin_dir()?;
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let as_root = is_root();
        if as_root {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()?;
            if !status.success() {
                bail!(
                    "could not give {} to the postgres user",
                    dir.path().display()
                );
            }
        }
        let port = crate::free_port()?;
        let server = PgServer {
            bin,
            data,
            _dir: dir,
            port,
            as_root,
        };
        server.run(
            "initdb",
            &[
                "-D",
                &server.data.display().to_string(),
                "-U",
                "inboxd",
                "--auth=trust",
                "--no-sync",
            ],
        )?;
        server.pg_ctl(&["start", "-w"])?;
        Ok(server)
    }

    /// The admin URL (database `postgres`, superuser `inboxd`).
    pub fn admin_url(&self) -> String {
        format!("postgres://inboxd@127.0.0.1:{}/postgres", self.port)
    }

    /// Restarts the server (fast: open connections are cut, as in a failover).
    pub fn restart(&self) -> anyhow::Result<()> {
        self.pg_ctl(&["restart", "-m", "fast", "-w"])
    }

    fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.data.display()
        );
        let log = self.data.join("server.log").display().to_string();
        let data = self.data.display().to_string();
        let mut all = vec![
            "-D",
            data.as_str(),
            "-l",
            log.as_str(),
            "-o",
            options.as_str(),
        ];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all)
    }

    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let path = self.bin.join(program);
        let output = if self.as_root {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&path)
                .args(args)
                .output()
        } else {
            Command::new(&path).args(args).output()
        }
        .with_context(|| format!("could not run {}", path.display()))?;
        if !output.status.success() {
            bail!(
                "{program} {args:?} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }
}

/// Whether this process runs as root.
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
    }
}
