//! The embedded executor: builds run in this process's tasks, their commands in bubblewrap.

use crate::compress::Compression;
use crate::git::Git;
use crate::run::{BuildContext, run_build};
use crate::sandbox::Sandbox;
use async_trait::async_trait;
use platform::artifacts::ArtifactStore;
use platform::bus::{BuildEvent, EventBody, LogBus, StateChange};
use platform::executor::{BuildJob, BuildLifetime, Execution, ExecutionStatus, Executor, ExecutorError};
use platform::model::DeploymentState;
use platform::settings::BuildLimits;
use platform::{DeploymentId, GitHostPolicy};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

pub struct LocalExecutor {
    ctx: Arc<BuildContext>,
    running: Arc<Mutex<HashMap<DeploymentId, CancellationToken>>>,
}

pub struct LocalExecutorConfig {
    pub bus: Arc<dyn LogBus>,
    pub store: Arc<dyn ArtifactStore>,
    pub git: GitHostPolicy,
    pub limits: BuildLimits,
    /// Build workspaces and dependency caches go under here (`builds/`, `cache/`).
    pub data_dir: PathBuf,
    /// Where uploads make their precompressed variants: for builds inside a server, a helper
    /// process ([`Compression::this_program`]).
    pub compression: Compression,
}

impl LocalExecutor {
    /// Checks the sandbox once; when it cannot run, every build fails with the reason.
    pub async fn new(cfg: LocalExecutorConfig) -> Self {
        let sandbox = match crate::egress::Egress::this_program(cfg.git.egress().clone()) {
            Ok(egress) => Sandbox::new(cfg.limits.sandbox.clone()).with_egress(egress),
            Err(e) => {
                tracing::error!("builds get no network: cannot find this program to bridge it with: {e}");
                Sandbox::new(cfg.limits.sandbox.clone())
            }
        };
        let sandbox_unavailable = match sandbox.probe().await {
            Ok(()) => None,
            Err(e) => {
                tracing::error!("{e}");
                Some(e.to_string())
            }
        };
        let ctx = BuildContext {
            bus: cfg.bus,
            store: cfg.store,
            sandbox,
            sandbox_unavailable,
            git: Git::new(cfg.git),
            work_root: cfg.data_dir.join("builds"),
            cache_root: cfg.data_dir.join("cache"),
            limits: cfg.limits,
            compression: cfg.compression,
        };
        Self {
            ctx: Arc::new(ctx),
            running: Arc::default(),
        }
    }

    /// Why builds cannot run here, if they cannot.
    pub fn unavailable_reason(&self) -> Option<&str> {
        self.ctx.sandbox_unavailable.as_deref()
    }
}

#[async_trait]
impl Executor for LocalExecutor {
    async fn start(&self, job: BuildJob) -> Result<Option<Execution>, ExecutorError> {
        let token = CancellationToken::new();
        let id = job.deployment_id.clone();
        self.running
            .lock()
            .expect("executor lock")
            .insert(id.clone(), token.clone());
        let ctx = self.ctx.clone();
        let running = self.running.clone();
        tokio::spawn(async move {
            let bus = ctx.bus.clone();
            let build = tokio::spawn(async move { run_build(&ctx, job, token).await });
            if let Err(e) = build.await {
                // A bug in the builder must still end the deployment, not leave it building.
                tracing::error!(deployment = %id, "build task failed: {e}");
                let mut change = StateChange::new(DeploymentState::Failed);
                change.error = Some("internal error in the builder".into());
                let event = BuildEvent {
                    deployment_id: id.clone(),
                    body: EventBody::State(change),
                };
                if let Err(e) = bus.publish(vec![event]).await {
                    tracing::error!(deployment = %id, "cannot report the failure: {e}");
                }
            }
            running.lock().expect("executor lock").remove(&id);
        });
        Ok(None)
    }

    async fn cancel(&self, deployment: &DeploymentId, _: Option<&Execution>) -> Result<(), ExecutorError> {
        if let Some(token) = self.running.lock().expect("executor lock").get(deployment) {
            token.cancel();
        }
        Ok(())
    }

    /// Builds in this process are never asked after: they cannot outlive it.
    async fn status(&self, _: &Execution) -> Result<ExecutionStatus, ExecutorError> {
        Ok(ExecutionStatus::Running)
    }

    fn lifetime(&self) -> BuildLifetime {
        BuildLifetime::Process { owner: None }
    }
}
