//! The scheduler: hands queued deployments to the executor, one build per project at a time
//! and at most `max_concurrent` in all. Which ones is the database's claim (`claim_queued`):
//! accounts take turns (the one served longest ago goes first, with its oldest deployment), and
//! an account at its running cap (`CLOUDRUNR_MAX_RUNNING_BUILDS_PER_ACCOUNT`) waits, so that one
//! account's queue cannot hold everyone else's builds back.

use crate::AppState;
use platform::GitUrl;
use platform::bus::{BuildEvent, EventBody, Notice, StateChange, Watched};
use platform::executor::{BuildJob, BuildLifetime, EnvVars, ExecutionStatus, GitToken};
use platform::model::Deployment;
use platform::model::DeploymentState;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// How often the queue is looked at even without a notice (a notice may come from a process
/// that crashed before sending it).
const SWEEP: Duration = Duration::from_secs(2);

/// Puts builds this process was running before a restart back in the queue, if the executor's
/// builds did not survive the restart.
pub async fn recover(state: &AppState) {
    let BuildLifetime::Process { owner } = state.executor.lifetime() else {
        return;
    };
    match state.db.requeue_dispatched(owner.as_deref()).await {
        Ok(ids) if !ids.is_empty() => tracing::info!("requeued {} builds interrupted by a restart", ids.len()),
        Ok(_) => {}
        Err(e) => tracing::error!("cannot requeue interrupted builds: {e}"),
    }
}

/// The clone URL and a fresh installation token for a project linked to GitHub. Without a token
/// (GitHub unreachable, App gone) the build still runs — a public repository clones anyway —
/// and its log says why.
async fn github_source(
    state: &AppState,
    link: &platform::model::GithubLink,
    fallback: &GitUrl,
    notes: &mut Vec<String>,
) -> (GitUrl, Option<GitToken>) {
    let repo = match state.db.repository(link.repo_id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            notes.push(format!(
                "The GitHub App no longer reaches {}; cloning without credentials",
                link.full_name
            ));
            return (fallback.clone(), None);
        }
        Err(e) => {
            notes.push(format!(
                "Cannot look up {}: {e}; cloning without credentials",
                link.full_name
            ));
            return (fallback.clone(), None);
        }
    };
    let url = GitUrl::parse(&repo.clone_url).unwrap_or_else(|_| fallback.clone());
    let Some(app) = state.github.app() else {
        notes.push("No GitHub App is connected; cloning without credentials".into());
        return (url, None);
    };
    match app.installation_token(repo.installation_id).await {
        Ok(token) => (url, Some(GitToken(token.expose().to_owned()))),
        Err(e) => {
            notes.push(format!(
                "Could not get a GitHub token ({e}); cloning without credentials"
            ));
            (url, None)
        }
    }
}

/// Runs forever: dispatches whenever work may be available, and (for executors whose builds
/// outlive this process) notices builds that stopped without reporting.
pub async fn run(state: AppState) {
    let mut watch = state.bus.watch();
    loop {
        dispatch(&state).await;
        if state.executor.lifetime() == BuildLifetime::Independent {
            reconcile(&state).await;
        }
        let wake = async {
            loop {
                match watch.recv().await {
                    Ok(Watched::Notice(Notice::WorkAvailable)) | Err(RecvError::Lagged(_)) => return,
                    Ok(_) => {}
                    Err(RecvError::Closed) => std::future::pending::<()>().await,
                }
            }
        };
        let _ = tokio::time::timeout(SWEEP, wake).await;
    }
}

/// Fails deployments whose build stopped (or vanished) without saying how it ended, with the
/// reason the executor gives. Reported on the bus like any state change, so followers see it.
async fn reconcile(state: &AppState) {
    let in_flight = match state.db.executions_in_flight().await {
        Ok(list) => list,
        Err(e) => return tracing::error!("scheduler cannot list running builds: {e}"),
    };
    for (id, execution) in in_flight {
        match state.executor.status(&execution).await {
            Ok(ExecutionStatus::Running) => {}
            Ok(ExecutionStatus::Stopped { reason }) => {
                // Stopped because it was asked to: that is the cancel the user is waiting for.
                let asked = matches!(state.db.deployment(&id).await, Ok(Some(d)) if d.cancel_requested);
                let change = if asked {
                    StateChange::new(DeploymentState::Canceled)
                } else {
                    tracing::warn!(deployment = %id, "the build stopped without finishing: {reason}");
                    let mut change = StateChange::new(DeploymentState::Failed);
                    change.error = Some(format!("the build stopped without finishing: {reason}"));
                    change
                };
                let event = BuildEvent {
                    deployment_id: id.clone(),
                    body: EventBody::State(change),
                };
                if let Err(e) = state.bus.publish(vec![event]).await {
                    tracing::error!(deployment = %id, "cannot report the stopped build: {e}");
                }
            }
            Err(e) => tracing::warn!(deployment = %id, "cannot check on the build: {e}"),
        }
    }
}

async fn dispatch(state: &AppState) {
    let running = match state.db.running_count().await {
        Ok(n) => n,
        Err(e) => return tracing::error!("scheduler cannot read the queue: {e}"),
    };
    let free = (state.max_concurrent_builds as u64).saturating_sub(running);
    let claimed = match state.db.claim_queued(free).await {
        Ok(c) => c,
        Err(e) => return tracing::error!("scheduler cannot claim deployments: {e}"),
    };
    for d in claimed {
        if let Err(why) = start(state, &d).await {
            tracing::error!(deployment = %d.id, "cannot start the build: {why}");
            if let Err(e) = state.db.fail_dispatch(&d.id, &why).await {
                tracing::error!(deployment = %d.id, "cannot record the failure: {e}");
            }
            state.notify(Notice::WorkAvailable).await;
        }
    }
}

/// Everything the build of `d` needs, from its project as it is now (with a fresh installation
/// token for a GitHub repository). Remote builds ask for this through the internal API.
pub async fn job_for(state: &AppState, d: &Deployment) -> Result<BuildJob, String> {
    let project = state
        .db
        .project(&d.project_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the project is gone")?;
    let sealed = state.db.project_env(&project.id).await.map_err(|e| e.to_string())?;
    let mut env = std::collections::BTreeMap::new();
    for (key, value) in sealed.0 {
        let value = state
            .sealer
            .open(&value)
            .map_err(|e| format!("environment variable {key}: {e}"))?;
        env.insert(key, value.expose().to_owned());
    }
    let first_seq = state.db.last_log_seq(&d.id).await.map_err(|e| e.to_string())? + 1;
    let mut notes = Vec::new();
    let (git_url, git_token) = match &project.github {
        Some(link) => github_source(state, link, &project.git_url, &mut notes).await,
        None => (project.git_url.clone(), None),
    };
    Ok(BuildJob {
        deployment_id: d.id.clone(),
        project_id: project.id,
        project_slug: project.slug,
        target: d.target,
        git_url,
        branch: d.branch.clone(),
        commit: d.commit_sha.clone(),
        git_token,
        notes,
        settings: project.build,
        env: EnvVars(env),
        timeout: state.build_timeout,
        first_seq,
    })
}

async fn start(state: &AppState, d: &Deployment) -> Result<(), String> {
    let job = job_for(state, d).await?;
    if let Some(execution) = state.executor.start(job).await.map_err(|e| e.to_string())? {
        state
            .db
            .set_execution(&d.id, &execution)
            .await
            .map_err(|e| e.to_string())?;
    }
    // A cancel that arrived between the claim and the start found nothing to stop.
    if let Ok(Some(now)) = state.db.deployment(&d.id).await
        && now.cancel_requested
    {
        let execution = state.db.execution(&d.id).await.ok().flatten();
        let _ = state.executor.cancel(&d.id, execution.as_ref()).await;
    }
    Ok(())
}
