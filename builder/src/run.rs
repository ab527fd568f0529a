//! The life of one build, from clone to manifest, reported on the log bus as it goes.

use crate::child::{Interrupt, RunError, Stopper, run_logged_with};
use crate::compress::Compression;
use crate::detect::{self, BuildPlan};
use crate::git::{Git, GitError, Output, Source};
use crate::logs::BuildLog;
use crate::output::{self, Limits};
use crate::quota::{BuildQuota, Exceeded, TmpProbe, open_gate};
use crate::sandbox::{Sandbox, SandboxCommand, write_passwd};
use platform::artifacts::ArtifactStore;
use platform::bus::{LogBus, StateChange};
use platform::executor::BuildJob;
use platform::model::{ArtifactSummary, DeploymentState};
use platform::settings::{BuildLimits, SandboxMode};
use platform::{CommitSha, RelPath};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// What a builder needs from its host, besides the job.
pub struct BuildContext {
    pub bus: Arc<dyn LogBus>,
    pub store: Arc<dyn ArtifactStore>,
    pub sandbox: Sandbox,
    /// Why sandboxed builds cannot run here, if they cannot.
    pub sandbox_unavailable: Option<String>,
    pub git: Git,
    /// Per-build working directories are made (and removed) under here.
    pub work_root: PathBuf,
    /// Per-project dependency caches live under here.
    pub cache_root: PathBuf,
    pub limits: BuildLimits,
    /// Where the upload's precompressed variants are made.
    pub compression: Compression,
}

/// Why a build did not produce a deployment.
enum Failure {
    Interrupted(Interrupt),
    Error(String),
}

impl From<Interrupt> for Failure {
    fn from(i: Interrupt) -> Self {
        Failure::Interrupted(i)
    }
}

impl From<RunError> for Failure {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Interrupted(i) => Failure::Interrupted(i),
            other => Failure::Error(other.to_string()),
        }
    }
}

impl From<GitError> for Failure {
    fn from(e: GitError) -> Self {
        match e {
            GitError::Run(run) => run.into(),
            other => Failure::Error(other.to_string()),
        }
    }
}

/// What the build learned so far; every state change carries all of it.
#[derive(Default)]
struct Progress {
    phases: BTreeMap<String, u64>,
    commit_sha: Option<CommitSha>,
    commit_message: Option<String>,
    commit_author: Option<String>,
    framework: Option<platform::model::Framework>,
}

impl Progress {
    fn change(&self, state: DeploymentState) -> StateChange {
        let mut c = StateChange::new(state);
        c.phases = self.phases.clone();
        c.commit_sha = self.commit_sha.clone();
        c.commit_message = self.commit_message.clone();
        c.commit_author = self.commit_author.clone();
        c.framework = self.framework;
        c
    }

    fn finish_phase(&mut self, name: &str, started: Instant) -> String {
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.phases.insert(name.to_owned(), ms);
        format_duration(ms)
    }
}

fn format_duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

/// Runs the build to its end. Never fails: every outcome, including errors, is reported on the
/// bus as a final state.
pub async fn run_build(ctx: &BuildContext, job: BuildJob, cancel: CancellationToken) {
    let mut secrets: Vec<&str> = job.env.0.values().map(String::as_str).collect();
    secrets.extend(job.git_token.as_ref().map(|t| t.0.as_str()));
    let log =
        BuildLog::new(job.deployment_id.clone(), ctx.bus.clone(), job.first_seq, &secrets).with_limits(ctx.limits.log);
    let workspace = ctx.work_root.join(job.deployment_id.as_str());
    let cache = ctx.cache_root.join(job.project_id.as_str());
    let sandboxed = matches!(ctx.sandbox.mode(), SandboxMode::Bubblewrap(_));
    let quota = BuildQuota::start(
        ctx.limits.quotas,
        sandboxed,
        job.deployment_id.as_str(),
        &workspace,
        &cache,
    )
    .await;
    let stopper = Stopper::new(cancel, job.timeout).with_quota(quota.signal());
    let mut progress = Progress::default();
    let result = build(ctx, &job, &log, &stopper, &quota, &workspace, &mut progress).await;
    quota.finish(&log).await;
    if let Err(e) = tokio::fs::remove_dir_all(&workspace).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(deployment = %job.deployment_id, "cannot remove build directory: {e}");
    }
    let change = match result {
        Ok(summary) => {
            log.system(format!(
                "Deployed {} files ({}); {} new ({}), the rest already stored",
                summary.files,
                format_bytes(summary.bytes),
                summary.new_files,
                format_bytes(summary.new_bytes)
            ))
            .await;
            let mut c = progress.change(DeploymentState::Ready);
            c.artifact = Some(summary);
            c
        }
        Err(Failure::Interrupted(Interrupt::Canceled)) => {
            log.system("Build canceled").await;
            progress.change(DeploymentState::Canceled)
        }
        Err(Failure::Interrupted(Interrupt::TimedOut)) => {
            let msg = format!(
                "The build exceeded its time limit of {}",
                format_duration(job.timeout.as_millis() as u64)
            );
            log.system(format!("Error: {msg}")).await;
            let mut c = progress.change(DeploymentState::TimedOut);
            c.error = Some(msg);
            c
        }
        Err(Failure::Interrupted(Interrupt::Quota(exceeded))) => {
            let msg = exceeded.to_string();
            log.system(format!("Error: {msg}")).await;
            let mut c = progress.change(DeploymentState::Failed);
            c.error = Some(msg);
            c
        }
        Err(Failure::Error(msg)) => {
            log.system(format!("Error: {msg}")).await;
            let mut c = progress.change(DeploymentState::Failed);
            c.error = Some(msg);
            c
        }
    };
    log.state(change).await;
}

async fn build(
    ctx: &BuildContext,
    job: &BuildJob,
    log: &BuildLog,
    stopper: &Stopper,
    quota: &BuildQuota,
    workspace: &Path,
    progress: &mut Progress,
) -> Result<ArtifactSummary, Failure> {
    log.state(progress.change(DeploymentState::Cloning)).await;
    for note in &job.notes {
        log.system(note).await;
    }
    if job.first_seq > 1 {
        log.system("An earlier attempt of this build was interrupted (the platform restarted); building again")
            .await;
    }
    if let Some(why) = &ctx.sandbox_unavailable {
        return Err(Failure::Error(why.clone()));
    }
    let src = workspace.join("src");
    let passwd = workspace.join("passwd");
    let cache = ctx.cache_root.join(job.project_id.as_str());
    prepare_dirs(workspace, &src, &passwd, &cache)
        .await
        .map_err(|e| Failure::Error(format!("cannot prepare the build: {e}")))?;
    quota.admit_cache(log).await;

    // Cloning
    let started = Instant::now();
    match &job.commit {
        Some(sha) => {
            log.system(format!(
                "Cloning {} (branch {}, commit {})",
                job.git_url,
                job.branch,
                sha.short()
            ))
            .await
        }
        None => {
            log.system(format!("Cloning {} (branch {})", job.git_url, job.branch))
                .await
        }
    }
    let token = job
        .git_token
        .as_ref()
        .map(|t| platform::settings::Secret::new(t.0.clone()));
    let source = Source {
        url: &job.git_url,
        branch: &job.branch,
        commit: job.commit.as_ref(),
        token: token.as_ref(),
    };
    let checkout = ctx.git.checkout(&source, &src, Output::Log(log), stopper).await?;
    let took = progress.finish_phase("cloning", started);
    log.system(format!(
        "Cloned commit {} \"{}\" in {took}",
        checkout.sha.short(),
        checkout.subject
    ))
    .await;
    progress.commit_sha = Some(checkout.sha);
    progress.commit_message = Some(checkout.subject);
    progress.commit_author = Some(checkout.author);

    // Detection: from here on, the checkout is the build's (untrusted) territory. Never run git
    // in it again, and never follow a symlink out of it.
    let root_dir = &job.settings.root_dir;
    if !output::is_real_dir(&src, root_dir) {
        return Err(Failure::Error(format!(
            "the root directory {:?} does not exist in the repository",
            root_dir.as_str()
        )));
    }
    let plan = detect::plan(&root_dir.under(&src), &job.settings).map_err(|e| Failure::Error(e.to_string()))?;
    for reason in &plan.reasons {
        log.system(reason).await;
    }
    progress.framework = Some(plan.framework);
    let env = build_env(job);
    // The steps' one way to the network; it stops when dropped, with the build.
    if let Some(warning) = ctx.sandbox.network_warning() {
        log.system(warning).await;
    }
    let egress = ctx
        .sandbox
        .start_egress()
        .map_err(|e| Failure::Error(format!("cannot start the build's network proxy: {e}")))?;
    let egress = egress.as_ref();

    // Installing
    log.state(progress.change(DeploymentState::Installing)).await;
    if let Some(install) = &plan.install_command {
        let started = Instant::now();
        log.system(format!("Running \"{install}\"")).await;
        run_step(
            ctx, &src, &cache, &passwd, root_dir, install, &env, egress, log, stopper, quota, "install",
        )
        .await?;
        let took = progress.finish_phase("installing", started);
        log.system(format!("Installed dependencies in {took}")).await;
    }

    // Building
    log.state(progress.change(DeploymentState::Building)).await;
    if let Some(build) = &plan.build_command {
        let started = Instant::now();
        log.system(format!("Running \"{build}\"")).await;
        run_step(
            ctx, &src, &cache, &passwd, root_dir, build, &env, egress, log, stopper, quota, "build",
        )
        .await?;
        let took = progress.finish_phase("building", started);
        log.system(format!("Build completed in {took}")).await;
    }

    // Nothing of the build runs any more.
    quota.stop_watching().await;

    // Uploading
    log.state(progress.change(DeploymentState::Uploading)).await;
    let started = Instant::now();
    let out_rel = find_output(&src, root_dir, &plan)?;
    log.system(format!("Uploading the output directory \"{}\"", display_rel(&out_rel)))
        .await;
    let limits = Limits {
        max_files: ctx.limits.max_output_files,
        max_bytes: ctx.limits.max_output_bytes,
    };
    let out_dir = out_rel.under(&src);
    let upload = output::store_output(
        &out_dir,
        &job.deployment_id,
        plan.spa,
        limits,
        &*ctx.store,
        &ctx.compression,
        log,
    );
    let summary = stopper
        .guard(upload)
        .await?
        .map_err(|e| Failure::Error(e.to_string()))?;
    if summary.files == 0 {
        return Err(Failure::Error(format!(
            "the output directory \"{}\" is empty",
            display_rel(&out_rel)
        )));
    }
    let took = progress.finish_phase("uploading", started);
    log.system(format!("Uploaded in {took}")).await;
    Ok(summary)
}

async fn prepare_dirs(workspace: &Path, src: &Path, passwd: &Path, cache: &Path) -> std::io::Result<()> {
    // A directory left by an interrupted earlier attempt is stale.
    match tokio::fs::remove_dir_all(workspace).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    tokio::fs::create_dir_all(workspace).await?;
    tokio::fs::create_dir_all(cache).await?;
    let passwd = passwd.to_path_buf();
    tokio::task::spawn_blocking(move || write_passwd(&passwd))
        .await
        .map_err(std::io::Error::other)??;
    // `git init` creates `src` itself.
    let _ = src;
    Ok(())
}

/// The job's variables plus what the platform tells every build about itself.
fn build_env(job: &BuildJob) -> BTreeMap<String, String> {
    let mut env = job.env.0.clone();
    env.insert("CLOUDRUNR".into(), "1".into());
    env.insert("CLOUDRUNR_DEPLOYMENT_ID".into(), job.deployment_id.to_string());
    env.insert("CLOUDRUNR_PROJECT".into(), job.project_slug.to_string());
    env.insert("CLOUDRUNR_GIT_BRANCH".into(), job.branch.to_string());
    env.insert("CLOUDRUNR_TARGET".into(), job.target.to_string());
    env
}

#[allow(clippy::too_many_arguments)]
async fn run_step(
    ctx: &BuildContext,
    src: &Path,
    cache: &Path,
    passwd: &Path,
    root_dir: &RelPath,
    script: &str,
    env: &BTreeMap<String, String>,
    egress: Option<&crate::egress::EgressProxy>,
    log: &BuildLog,
    stopper: &Stopper,
    quota: &BuildQuota,
    what: &str,
) -> Result<(), Failure> {
    let entry = quota.entry();
    let sandboxed = SandboxCommand {
        workspace: src,
        cache,
        workdir: root_dir.as_str(),
        passwd,
        script,
        env,
        egress,
    };
    let cmd = ctx.sandbox.command_in(&sandboxed, &entry);
    // The sandbox's /tmp, opened before the step's code runs and held until it is over.
    let tmp: std::sync::OnceLock<TmpProbe> = std::sync::OnceLock::new();
    let run = run_logged_with(cmd, log, stopper, |pid, stdin| {
        let (tmp, tmp_size) = (&tmp, entry.tmp_size);
        async move {
            if let Some(size) = tmp_size
                && let Some(probe) = open_gate(pid, stdin, size).await
            {
                let _ = tmp.set(probe);
            }
        }
    });
    let status = crate::egress::with_notices(run, egress, log).await;
    // A quota gone past says more than the exit status it caused (an OOM kill's 137, say).
    if let Some(exceeded) = quota.check_now().await {
        return Err(Failure::Interrupted(Interrupt::Quota(exceeded)));
    }
    let status = status?;
    if status.success() {
        return Ok(());
    }
    if tmp.get().is_some_and(TmpProbe::is_full) {
        return Err(Failure::Error(Exceeded::Tmp(quota.tmp_max()).to_string()));
    }
    Err(Failure::Error(match status.code() {
        Some(code) => format!("the {what} command exited with code {code}"),
        None => format!("the {what} command was killed by a signal"),
    }))
}

/// The first output candidate that exists as a real directory.
fn find_output(src: &Path, root_dir: &RelPath, plan: &BuildPlan) -> Result<RelPath, Failure> {
    for candidate in &plan.output_candidates {
        let rel = root_dir.join(candidate);
        if output::is_real_dir(src, &rel) {
            return Ok(rel);
        }
    }
    let tried: Vec<String> = plan
        .output_candidates
        .iter()
        .map(|c| format!("\"{}\"", display_rel(c)))
        .collect();
    Err(Failure::Error(format!(
        "no output directory found after the build (looked for {}); set the project's output directory",
        tried.join(", ")
    )))
}

fn display_rel(p: &RelPath) -> &str {
    if p.is_root() { "." } else { p.as_str() }
}

fn format_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MB", n as f64 / (1 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
