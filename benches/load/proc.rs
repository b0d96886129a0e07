//! What the bench reads of processes from Linux's /proc: CPU time (utime + stime) of this process,
//! of the calling thread and of another process (the simulator), and this process's resident memory.

use anyhow::Context as _;
use inboxd_testkit::SimProcess;

/// Linux reports process times in USER_HZ, which is 100 on every architecture.
const USER_HZ: f64 = 100.0;

/// utime + stime in seconds from a `/proc/.../stat` file.
fn cpu_secs_of(stat: &str) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(stat).with_context(|| format!("reading {stat}"))?;
    let after = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unexpected stat format")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Field 3 (state) is index 0, so utime (14) and stime (15) are 11 and 12.
    let utime: f64 = fields.get(11).context("no utime")?.parse()?;
    let stime: f64 = fields.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) / USER_HZ)
}

pub(crate) fn process_cpu() -> f64 {
    cpu_secs_of("/proc/self/stat").unwrap_or(0.0)
}

/// The CPU of the calling thread (the bench driver's own work).
pub(crate) fn thread_cpu() -> f64 {
    cpu_secs_of("/proc/thread-self/stat").unwrap_or(0.0)
}

fn pid_cpu(pid: u32) -> f64 {
    cpu_secs_of(&format!("/proc/{pid}/stat")).unwrap_or(0.0)
}

/// Resident memory of this process in KiB.
pub(crate) fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The simulator's CPU seconds so far.
pub(crate) fn sim_cpu(sim: &SimProcess) -> f64 {
    pid_cpu(sim.pid())
}
