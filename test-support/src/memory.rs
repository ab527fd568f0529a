//! What a running server uses, read from `/proc` (Linux): to check that a request's memory stays
//! bounded while it runs.

use crate::Platform;

impl Platform {
    /// The process id of the `cloudrunr serve` process (or of the API, when components run apart).
    pub fn server_pid(&self) -> u32 {
        self.child.id()
    }
}

/// The resident set size of process `pid` in bytes (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process's /proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kib * 1024
}
