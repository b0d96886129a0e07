//! Processes around a test or bench: `inboxd sim` as a child process (so that its memory and CPU
//! are not counted as the daemon's) and this process's resident memory.

use std::path::Path;

use anyhow::Context as _;

/// The resident memory of this process, in bytes (Linux; 0 elsewhere).
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or(0, |kib| kib * 1024)
}

/// `inboxd sim` running as a child process (so that its memory and CPU are not counted as the
/// daemon's). Killed on drop.
pub struct SimProcess {
    child: std::process::Child,
    /// The simulator's origin.
    pub url: String,
    /// Its plain IMAP listener (`inboxd sim imap listening on ADDR`, its second line).
    pub imap: std::net::SocketAddr,
}

impl SimProcess {
    /// Starts `binary sim --listen 127.0.0.1:0 --workers 1` and reads its URL from its first line
    /// and its IMAP address from the second.
    pub fn start(binary: &Path) -> anyhow::Result<SimProcess> {
        use std::io::BufRead as _;
        let mut child = std::process::Command::new(binary)
            .args(["sim", "--listen", "127.0.0.1:0", "--workers", "1"])
            .env("RUST_LOG", "error")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("could not start `{} sim`", binary.display()))?;
        let stdout = child.stdout.take().context("the simulator has no stdout")?;
        let mut reader = std::io::BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let url = line
            .trim()
            .strip_prefix("inboxd sim listening on ")
            .with_context(|| format!("unexpected first line from the simulator: {line:?}"))?
            .to_owned();
        line.clear();
        reader.read_line(&mut line)?;
        let imap = line
            .trim()
            .strip_prefix("inboxd sim imap listening on ")
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("unexpected second line from the simulator: {line:?}"))?;
        // Keep draining its stdout so that it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
        Ok(SimProcess { child, url, imap })
    }

    /// The process id (to read its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
