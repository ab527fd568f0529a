//! Build quotas: how many processes, how much memory, `/tmp`, workspace and dependency cache
//! one build may use, so that one build cannot take the machine from the server and the builds
//! beside it.
//!
//! - Processes and memory: a cgroup per build ([`cgroup`]) with `pids.max` and a memory limit
//!   without swap, joined by the step's first process before it execs the sandbox ([`entry`]).
//!   A refused fork or an OOM kill stops the whole build.
//! - `/tmp`: a tmpfs of the quota's size; a step that fails with it full fails with the quota's
//!   message ([`entry::TmpProbe`]).
//! - Workspace and cache: measured every second or more (never more than a fifth of the time
//!   goes to measuring) and once more after each step ([`disk`]); a build past either is stopped.
//!   A cache past its cap, at the start or the end of a build, is emptied.
//!
//! Without a usable cgroup (an unprivileged server, a container without the controllers),
//! processes and memory are not limited: said once in the server's log. Resource limits
//! (`RLIMIT_NPROC`, `RLIMIT_AS`) are no substitute: the first counts every process of the user
//! the server runs as, not the build's, and the second breaks runtimes that reserve address
//! space they never use (Node.js reserves many GiB).

pub mod cgroup;
pub mod disk;
pub mod entry;

use crate::logs::BuildLog;
use cgroup::{BuildCgroup, Layout};
pub use entry::{Entry, TmpProbe, open_gate};
use platform::byte_size::ByteSize;
use platform::settings::BuildQuotas;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often the cgroup's counters are read.
const CGROUP_EVERY: Duration = Duration::from_millis(200);
/// The shortest time between two measures of the workspace and cache.
const DISK_EVERY: Duration = Duration::from_secs(1);
/// A measure may take at most this share of the time between two.
const DISK_SHARE: u32 = 5;

/// A quota a build went past; its message names the limit and the variable that sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Exceeded {
    #[error("build stopped: it ran more than {0} processes and threads at once (CLOUDRUNR_BUILD_PIDS_MAX)")]
    Pids(u64),
    #[error("build stopped: it used more than {0} of memory (CLOUDRUNR_BUILD_MEMORY_MAX)")]
    Memory(ByteSize),
    #[error("build failed with /tmp full: /tmp holds at most {0} (CLOUDRUNR_BUILD_TMP_MAX)")]
    Tmp(ByteSize),
    #[error("build stopped: it put more than {0} in its workspace (CLOUDRUNR_BUILD_WORKSPACE_MAX)")]
    Workspace(ByteSize),
    #[error(
        "build stopped: it put more than {0} in the project's dependency cache (CLOUDRUNR_BUILD_CACHE_MAX); \
         the cache is emptied"
    )]
    Cache(ByteSize),
}

/// Fires once, with the first quota a build went past.
#[derive(Debug, Clone, Default)]
pub struct QuotaSignal(Arc<SignalState>);

#[derive(Debug, Default)]
struct SignalState {
    fired: CancellationToken,
    reason: OnceLock<Exceeded>,
}

impl QuotaSignal {
    pub fn trip(&self, reason: Exceeded) {
        let _ = self.0.reason.set(reason);
        self.0.fired.cancel();
    }

    /// The quota gone past, if one was.
    pub fn reason(&self) -> Option<Exceeded> {
        self.0.reason.get().copied()
    }

    /// Resolves when a quota is gone past.
    pub async fn tripped(&self) -> Exceeded {
        self.0.fired.cancelled().await;
        match self.reason() {
            Some(reason) => reason,
            // `trip` sets the reason before it fires.
            None => std::future::pending().await,
        }
    }
}

/// The quotas of one build, from its start to its end.
pub struct BuildQuota {
    quotas: BuildQuotas,
    sandboxed: bool,
    cgroup: Option<Arc<BuildCgroup>>,
    workspace: PathBuf,
    cache: PathBuf,
    signal: QuotaSignal,
    stop_watching: CancellationToken,
    watcher: Mutex<Option<JoinHandle<()>>>,
}

impl BuildQuota {
    /// Makes the build's cgroup and starts watching. `sandboxed`: its steps run in bubblewrap,
    /// which sizes `/tmp`. Never fails: what cannot be enforced here is logged once per process.
    pub async fn start(quotas: BuildQuotas, sandboxed: bool, name: &str, workspace: &Path, cache: &Path) -> Self {
        let cgroup_name = cgroup::build_cgroup_name(name);
        let made = tokio::task::spawn_blocking(move || {
            let layout = own_layout()?;
            static SWEPT: Once = Once::new();
            SWEPT.call_once(|| cgroup::sweep_stale(&layout));
            BuildCgroup::create(&layout, &cgroup_name, quotas.pids_max, quotas.memory_max)
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        let cgroup = match made {
            Ok((cg, partial)) => {
                if let Some(partial) = partial {
                    warn_once(&format!("build quotas: {partial}"));
                }
                Some(Arc::new(cg))
            }
            Err(why) => {
                warn_once(&format!(
                    "build quotas: processes (CLOUDRUNR_BUILD_PIDS_MAX) and memory (CLOUDRUNR_BUILD_MEMORY_MAX) \
                     are not enforced: {why}"
                ));
                None
            }
        };
        if !sandboxed {
            static NO_TMP: Once = Once::new();
            NO_TMP.call_once(|| {
                tracing::warn!(
                    "build quotas: /tmp (CLOUDRUNR_BUILD_TMP_MAX) is not enforced without the sandbox: builds share this machine's /tmp"
                )
            });
        }
        let quota = Self {
            quotas,
            sandboxed,
            cgroup,
            workspace: workspace.to_owned(),
            cache: cache.to_owned(),
            signal: QuotaSignal::default(),
            stop_watching: CancellationToken::new(),
            watcher: Mutex::new(None),
        };
        let watcher = tokio::spawn(watch(quota.checks(), quota.signal.clone(), quota.stop_watching.clone()));
        *quota.watcher.lock().unwrap_or_else(|e| e.into_inner()) = Some(watcher);
        quota
    }

    /// Fires when the build goes past a quota (see [`crate::child::Stopper::with_quota`]).
    pub fn signal(&self) -> QuotaSignal {
        self.signal.clone()
    }

    /// How the build's sandboxed steps enter the quotas.
    pub fn entry(&self) -> Entry {
        Entry {
            procs: self.cgroup.as_ref().map(|c| c.procs_files()).unwrap_or_default(),
            tmp_size: self.sandboxed.then_some(self.quotas.tmp_max.bytes()),
            gate: self.sandboxed,
        }
    }

    /// The size of the sandbox's `/tmp`.
    pub fn tmp_max(&self) -> ByteSize {
        self.quotas.tmp_max
    }

    /// Checks every quota now (after a step: an OOM kill may have ended it before the watcher
    /// looked). A quota gone past stops the build for good.
    pub async fn check_now(&self) -> Option<Exceeded> {
        if let Some(reason) = self.signal.reason() {
            return Some(reason);
        }
        let checks = self.checks();
        let found = tokio::task::spawn_blocking(move || checks.cgroup().or_else(|| checks.disk()))
            .await
            .ok()
            .flatten();
        if let Some(reason) = found {
            self.signal.trip(reason);
        }
        found
    }

    /// Empties the project's cache when it is past its cap, before the build uses it.
    pub async fn admit_cache(&self, log: &BuildLog) {
        let (cache, cap) = (self.cache.clone(), self.quotas.cache_max);
        if let Some(used) = empty_if_over(cache, cap).await {
            log.system(format!(
                "The dependency cache holds {}, past its cap of {cap} (CLOUDRUNR_BUILD_CACHE_MAX): starting with an empty cache",
                ByteSize::new(used).map_or_else(|| "0 B".to_owned(), |b| b.to_string())
            ))
            .await;
        }
    }

    /// Stops watching: nothing of the build runs any more (its steps are over).
    pub async fn stop_watching(&self) {
        self.stop_watching.cancel();
        let watcher = self.watcher.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(watcher) = watcher {
            let _ = watcher.await;
        }
    }

    /// Ends the quotas: the watcher stops, what is left in the cgroup is killed and the cgroup
    /// removed; a cache past its cap is emptied, with a line in the log.
    pub async fn finish(&self, log: &BuildLog) {
        self.stop_watching().await;
        if let Some(cg) = self.cgroup.clone() {
            let _ = tokio::task::spawn_blocking(move || cg.remove()).await;
        }
        let (cache, cap) = (self.cache.clone(), self.quotas.cache_max);
        let emptied = empty_if_over(cache, cap).await;
        if emptied.is_some() && self.signal.reason() != Some(Exceeded::Cache(cap)) {
            log.system(format!(
                "The dependency cache is past its cap of {cap} (CLOUDRUNR_BUILD_CACHE_MAX): it is emptied, not kept"
            ))
            .await;
        }
    }

    fn checks(&self) -> Checks {
        Checks {
            cgroup: self.cgroup.clone(),
            workspace: self.workspace.clone(),
            cache: self.cache.clone(),
            quotas: self.quotas,
        }
    }
}

/// What the watcher (and [`BuildQuota::check_now`]) looks at; all of it blocking.
#[derive(Clone)]
struct Checks {
    cgroup: Option<Arc<BuildCgroup>>,
    workspace: PathBuf,
    cache: PathBuf,
    quotas: BuildQuotas,
}

impl Checks {
    fn cgroup(&self) -> Option<Exceeded> {
        self.cgroup.as_ref().and_then(|c| c.exceeded())
    }

    fn disk(&self) -> Option<Exceeded> {
        over(&self.workspace, self.quotas.workspace_max, Exceeded::Workspace)
            .or_else(|| over(&self.cache, self.quotas.cache_max, Exceeded::Cache))
    }

    fn kill(&self) {
        if let Some(cg) = &self.cgroup {
            cg.kill_all();
        }
    }
}

fn over(dir: &Path, max: ByteSize, exceeded: fn(ByteSize) -> Exceeded) -> Option<Exceeded> {
    (disk::usage(dir, max.bytes()) > max.bytes()).then(|| exceeded(max))
}

/// Reads the cgroup's counters often and measures the disk as often as it may, until a quota
/// is gone past (then trips the signal and kills the build's processes) or it is told to stop.
async fn watch(checks: Checks, signal: QuotaSignal, stop: CancellationToken) {
    let mut next_disk = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(CGROUP_EVERY) => {}
        }
        let mut found = checks.cgroup();
        if found.is_none() && tokio::time::Instant::now() >= next_disk {
            let started = tokio::time::Instant::now();
            let disk = checks.clone();
            found = tokio::task::spawn_blocking(move || disk.disk()).await.ok().flatten();
            next_disk = tokio::time::Instant::now() + DISK_EVERY.max(started.elapsed() * DISK_SHARE);
        }
        if let Some(reason) = found {
            signal.trip(reason);
            let checks = checks.clone();
            let _ = tokio::task::spawn_blocking(move || checks.kill()).await;
            return;
        }
    }
}

/// Empties `cache` when it takes more than `cap`; returns what it took then.
async fn empty_if_over(cache: PathBuf, cap: ByteSize) -> Option<u64> {
    tokio::task::spawn_blocking(move || {
        let used = disk::usage(&cache, cap.bytes());
        if used <= cap.bytes() {
            return None;
        }
        // Emptied, not removed: the build about to start binds it into its sandbox.
        if let Err(e) = std::fs::remove_dir_all(&cache).and_then(|()| std::fs::create_dir_all(&cache)) {
            tracing::warn!("cannot empty the dependency cache {}: {e}", cache.display());
        }
        Some(used)
    })
    .await
    .ok()
    .flatten()
}

/// This process's cgroups, found once.
fn own_layout() -> Result<Layout, String> {
    static LAYOUT: OnceLock<Result<Layout, String>> = OnceLock::new();
    LAYOUT
        .get_or_init(|| {
            let cgroups =
                std::fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
            let mounts =
                std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
            Ok(cgroup::locate(
                &cgroup::parse_mountinfo(&mounts),
                &cgroup::parse_proc_cgroup(&cgroups),
            ))
        })
        .clone()
}

fn warn_once(message: &str) {
    static WARNED: Once = Once::new();
    WARNED.call_once(|| tracing::warn!("{message}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_limit_and_its_variable() {
        assert_eq!(
            Exceeded::Memory(ByteSize::mib(512)).to_string(),
            "build stopped: it used more than 512 MiB of memory (CLOUDRUNR_BUILD_MEMORY_MAX)"
        );
        assert_eq!(
            Exceeded::Pids(512).to_string(),
            "build stopped: it ran more than 512 processes and threads at once (CLOUDRUNR_BUILD_PIDS_MAX)"
        );
        assert!(
            Exceeded::Tmp(ByteSize::gib(1))
                .to_string()
                .contains("1 GiB (CLOUDRUNR_BUILD_TMP_MAX)")
        );
        assert!(
            Exceeded::Workspace(ByteSize::gib(4))
                .to_string()
                .contains("4 GiB in its workspace (CLOUDRUNR_BUILD_WORKSPACE_MAX)")
        );
        assert!(
            Exceeded::Cache(ByteSize::gib(2))
                .to_string()
                .contains("(CLOUDRUNR_BUILD_CACHE_MAX)")
        );
    }

    #[tokio::test]
    async fn the_signal_fires_once_with_the_first_reason() {
        let signal = QuotaSignal::default();
        assert_eq!(signal.reason(), None);
        let waiting = tokio::spawn({
            let signal = signal.clone();
            async move { signal.tripped().await }
        });
        signal.trip(Exceeded::Pids(8));
        signal.trip(Exceeded::Memory(ByteSize::mib(1)));
        assert_eq!(waiting.await.unwrap(), Exceeded::Pids(8));
        assert_eq!(signal.reason(), Some(Exceeded::Pids(8)));
    }

    #[test]
    fn disk_checks_compare_against_each_cap() {
        let dir = tempfile::tempdir().unwrap();
        let (workspace, cache) = (dir.path().join("ws"), dir.path().join("cache"));
        std::fs::create_dir_all(&workspace).unwrap();
        std::fs::create_dir_all(&cache).unwrap();
        let checks = Checks {
            cgroup: None,
            workspace: workspace.clone(),
            cache: cache.clone(),
            quotas: BuildQuotas {
                workspace_max: ByteSize::mib(1),
                cache_max: ByteSize::mib(1),
                ..BuildQuotas::default()
            },
        };
        assert_eq!(checks.disk(), None);
        std::fs::write(cache.join("big"), vec![1u8; 2 << 20]).unwrap();
        assert_eq!(checks.disk(), Some(Exceeded::Cache(ByteSize::mib(1))));
        std::fs::write(workspace.join("big"), vec![1u8; 2 << 20]).unwrap();
        assert_eq!(
            checks.disk(),
            Some(Exceeded::Workspace(ByteSize::mib(1))),
            "the workspace first"
        );
    }

    #[tokio::test]
    async fn a_cache_past_its_cap_is_emptied_and_one_within_it_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        std::fs::create_dir_all(cache.join("npm")).unwrap();
        std::fs::write(cache.join("npm/small"), vec![1u8; 100 << 10]).unwrap();
        assert_eq!(empty_if_over(cache.clone(), ByteSize::mib(1)).await, None);
        assert!(cache.join("npm/small").exists());
        std::fs::write(cache.join("npm/big"), vec![1u8; 2 << 20]).unwrap();
        assert!(
            empty_if_over(cache.clone(), ByteSize::mib(1))
                .await
                .is_some_and(|u| u > 1 << 20)
        );
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 0);
    }
}
