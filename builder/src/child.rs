//! Child processes of a build: their output goes to the build log, and on cancel or timeout
//! the whole process tree is killed.

use crate::logs::BuildLog;
use crate::quota::{Exceeded, QuotaSignal};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use platform::model::LogStream;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::process::{ChildStdin, Command};
use tokio_util::sync::CancellationToken;

/// Why a build stopped before it was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    Canceled,
    TimedOut,
    /// It went past one of its quotas (see [`crate::quota`]).
    Quota(Exceeded),
}

/// Fires when the build is canceled, its deadline passes or it goes past a quota.
#[derive(Clone)]
pub struct Stopper {
    cancel: CancellationToken,
    deadline: tokio::time::Instant,
    quota: QuotaSignal,
}

impl Stopper {
    pub fn new(cancel: CancellationToken, timeout: Duration) -> Self {
        Self {
            cancel,
            deadline: tokio::time::Instant::now() + timeout,
            quota: QuotaSignal::default(),
        }
    }

    /// Stops also when `quota` fires.
    pub fn with_quota(mut self, quota: QuotaSignal) -> Self {
        self.quota = quota;
        self
    }

    pub async fn stopped(&self) -> Interrupt {
        tokio::select! {
            () = self.cancel.cancelled() => Interrupt::Canceled,
            () = tokio::time::sleep_until(self.deadline) => Interrupt::TimedOut,
            reason = self.quota.tripped() => Interrupt::Quota(reason),
        }
    }

    /// Runs `fut` unless the build is stopped first.
    pub async fn guard<T>(&self, fut: impl Future<Output = T>) -> Result<T, Interrupt> {
        tokio::select! {
            reason = self.stopped() => Err(reason),
            v = fut => Ok(v),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("interrupted")]
    Interrupted(Interrupt),
    #[error("could not start {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
}

/// Runs `cmd` (which must be its own process group) with its stdout and stderr logged line by
/// line. Returns its exit status; on interrupt, kills its process group first.
pub async fn run_logged(cmd: Command, log: &BuildLog, stopper: &Stopper) -> Result<ExitStatus, RunError> {
    run_logged_with(cmd, log, stopper, |_, _| async {}).await
}

/// [`run_logged`], with `started` run once the process exists (given its pid and stdin, when
/// piped), while its output is already being followed: it may hold the process at a gate.
pub async fn run_logged_with<F, Fut>(
    mut cmd: Command,
    log: &BuildLog,
    stopper: &Stopper,
    started: F,
) -> Result<ExitStatus, RunError>
where
    F: FnOnce(Option<u32>, Option<ChildStdin>) -> Fut,
    Fut: Future<Output = ()>,
{
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| RunError::Spawn {
        program: program.clone(),
        source,
    })?;
    let mut started = std::pin::pin!(started(child.id(), child.stdin.take()));
    let mut started_done = false;
    let pgid = child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let follow_out = async {
        if let Some(out) = stdout {
            log.follow(LogStream::Stdout, out).await;
        }
    };
    let follow_err = async {
        if let Some(err) = stderr {
            log.follow(LogStream::Stderr, err).await;
        }
    };
    // The output is read while the process runs and to its very end: lines printed just before
    // exit are never lost.
    let mut readers = std::pin::pin!(async { tokio::join!(follow_out, follow_err) });
    let mut readers_done = false;
    let outcome = loop {
        tokio::select! {
            _ = &mut readers, if !readers_done => readers_done = true,
            () = &mut started, if !started_done => started_done = true,
            status = child.wait() => break Ok(status),
            reason = stopper.stopped() => break Err(reason),
        }
    };
    // Whatever the outcome, nothing of the tree may outlive the step: a sandboxed tree dies with
    // its namespace, an unsandboxed one with its process group.
    kill_group(pgid);
    if !readers_done {
        // A process that escaped its group could hold the pipes open forever.
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut readers).await;
    }
    match outcome {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(source)) => Err(RunError::Spawn { program, source }),
        Err(reason) => {
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            Err(RunError::Interrupted(reason))
        }
    }
}

fn kill_group(pgid: Option<Pid>) {
    if let Some(pgid) = pgid {
        // ESRCH (already gone) is the normal case.
        let _ = killpg(pgid, Signal::SIGKILL);
    }
}
