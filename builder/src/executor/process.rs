//! Builds as local `cloudrunr build` child processes, given the environment of [`RemoteBuilds`].

use super::RemoteBuilds;
use async_trait::async_trait;
use platform::DeploymentId;
use platform::bus::{BuildEvent, EventBody, LogBus, StateChange};
use platform::executor::{BuildJob, BuildLifetime, Execution, ExecutionStatus, Executor, ExecutorError};
use platform::model::DeploymentState;
use std::path::PathBuf;
use std::sync::Arc;

/// Reports that a build ended without saying how (its process died), so the deployment does not
/// stay "building" forever. Harmless if the build did report: states only move forward.
async fn report_lost(bus: &dyn LogBus, deployment: &DeploymentId, why: String) {
    let mut change = StateChange::new(DeploymentState::Failed);
    change.error = Some(why);
    let event = BuildEvent {
        deployment_id: deployment.clone(),
        body: EventBody::State(change),
    };
    if let Err(e) = bus.publish(vec![event]).await {
        tracing::error!(%deployment, "cannot report a lost build: {e}");
    }
}

/// Runs each build as a local `cloudrunr build` child process (what `cloudrunr api` does with the
/// local executor). The children die with this process; their builds are requeued at restart.
/// Several API processes may share the queue: each names its builds `process:<node>:<pid>`, with
/// `node` stable across restarts on its machine, and only requeues or signals its own.
pub struct ProcessExecutor {
    node: String,
    program: PathBuf,
    builds: RemoteBuilds,
    bus: Arc<dyn LogBus>,
    /// Variables of this process handed on to builds (AWS credentials for the artifact store).
    inherit: Vec<(String, String)>,
}

impl ProcessExecutor {
    /// `node` names this process among those sharing the queue (the same after a restart).
    pub fn new(node: String, program: PathBuf, builds: RemoteBuilds, bus: Arc<dyn LogBus>) -> Self {
        let inherit = std::env::vars()
            .filter(|(k, _)| k.starts_with("AWS_") || k == "RUST_LOG" || k == "PATH")
            .collect();
        Self {
            node,
            program,
            builds,
            bus,
            inherit,
        }
    }

    fn owner(&self) -> String {
        format!("process:{}:", self.node)
    }
}

#[async_trait]
impl Executor for ProcessExecutor {
    async fn start(&self, job: BuildJob) -> Result<Option<Execution>, ExecutorError> {
        let id = job.deployment_id.clone();
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.arg("build")
            .env_clear()
            .envs(self.inherit.iter().cloned())
            .envs(self.builds.env_for(&id))
            .stdin(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| ExecutorError::Start(format!("{}: {e}", self.program.display())))?;
        let pid = child
            .id()
            .ok_or_else(|| ExecutorError::Start("the build exited at once".into()))?;
        let bus = self.bus.clone();
        tokio::spawn(async move {
            match child.wait().await {
                Ok(status) if status.success() => {}
                Ok(status) => report_lost(&*bus, &id, format!("the build process ended unexpectedly ({status})")).await,
                Err(e) => report_lost(&*bus, &id, format!("the build process was lost: {e}")).await,
            }
        });
        Ok(Some(Execution(format!("{}{pid}", self.owner()))))
    }

    async fn cancel(&self, _: &DeploymentId, execution: Option<&Execution>) -> Result<(), ExecutorError> {
        // Another process's build (or one from before a restart) is not ours to signal: it stops
        // when it next hears from the API that a cancel was asked for.
        let owner = self.owner();
        let Some(pid) = execution
            .and_then(|e| e.0.strip_prefix(&owner))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            return Ok(());
        };
        // The build process reports `canceled` when it gets SIGTERM, after stopping its sandbox.
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        Ok(())
    }

    async fn status(&self, _: &Execution) -> Result<ExecutionStatus, ExecutorError> {
        Ok(ExecutionStatus::Running)
    }

    fn lifetime(&self) -> BuildLifetime {
        BuildLifetime::Process {
            owner: Some(self.owner()),
        }
    }
}
