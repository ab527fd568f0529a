//! Where builds run, behind [`Executor`]: a local sandboxed process or a remote task.

use crate::model::{BuildSettings, DeploymentTarget};
use crate::{BranchName, CommitSha, DeploymentId, GitUrl, ProjectId, ProjectSlug};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Project environment variables handed to a build. `Debug` shows the names only.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVars(pub BTreeMap<String, String>);

impl fmt::Debug for EnvVars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// A short-lived credential to clone with (a GitHub installation token). `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitToken(pub String);

impl fmt::Debug for GitToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GitToken([redacted])")
    }
}

/// Everything a builder needs to produce one deployment; it needs nothing else from the platform.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildJob {
    pub deployment_id: DeploymentId,
    pub project_id: ProjectId,
    pub project_slug: ProjectSlug,
    pub target: DeploymentTarget,
    pub git_url: GitUrl,
    pub branch: BranchName,
    /// Build exactly this commit; otherwise the branch's head at clone time.
    pub commit: Option<CommitSha>,
    /// Sent with git's requests only; never written to the checkout or given to the build.
    #[serde(default)]
    pub git_token: Option<GitToken>,
    /// Things the platform wants the build's log to start with (e.g. why no token was minted).
    #[serde(default)]
    pub notes: Vec<String>,
    pub settings: BuildSettings,
    pub env: EnvVars,
    #[serde(with = "duration_secs")]
    pub timeout: Duration,
    /// Sequence number of the first log line this build writes (a restarted build continues
    /// the numbering of the earlier attempt).
    pub first_seq: u64,
}

mod duration_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("the build could not be started: {0}")]
    Start(String),
    #[error("executor: {0}")]
    Backend(String),
}

/// What an executor knows of a build it started, to find it again: a process id, an ECS task
/// ARN. Stored with the deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution(pub String);

/// Whether a started build still runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutionStatus {
    Running,
    /// It stopped (or vanished) — with the reason the executor gives.
    Stopped {
        reason: String,
    },
}

#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Starts the build and returns at once, with a handle to find it again if the executor has
    /// one. The build reports progress on the log bus; from here on its deployment's state comes
    /// only from there.
    async fn start(&self, job: BuildJob) -> Result<Option<Execution>, ExecutorError>;

    /// Asks a running build to stop. The build reports `canceled` itself; cancelling a build the
    /// executor does not know is not an error.
    async fn cancel(&self, deployment: &DeploymentId, execution: Option<&Execution>) -> Result<(), ExecutorError>;

    /// Whether a build this executor started still runs (asked of builds that outlive the process,
    /// to notice ones that stopped without reporting).
    async fn status(&self, execution: &Execution) -> Result<ExecutionStatus, ExecutorError>;

    /// Whether builds keep running when this process exits.
    fn lifetime(&self) -> BuildLifetime;
}

/// What becomes of an executor's builds when its process exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildLifetime {
    /// They die with it; at the next start, the ones it had dispatched go back in the queue.
    /// `owner` is the prefix of the executions this process (on this machine) starts, when other
    /// processes dispatch builds too; `None` when every dispatched build is this process's.
    Process { owner: Option<String> },
    /// They keep running (remote tasks): the scheduler checks on them with `status`.
    Independent,
}
