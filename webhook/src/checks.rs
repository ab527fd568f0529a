//! Reporting deployments on GitHub as check runs, from the durable outbox.
//!
//! State changes put rows in `check_run_outbox` in the same transaction as the change itself.
//! This worker sends them in order per deployment — create (queued), in progress, completed —
//! and deletes each once GitHub has it. When GitHub cannot be reached, the row waits and is tried
//! again with growing delays: deployments never wait for GitHub.

use crate::app::{GithubApp, GithubError};
use crate::connection::Github;
use db::{CheckUpdate, DbError};
use platform::Timestamp;
use platform::model::{Deployment, DeploymentState, DeploymentTarget};
use platform::settings::SitesSettings;
use serde_json::{Value, json};
use std::time::Duration;

/// Tries before an update is given up (with delays growing to five minutes: about a day).
const MAX_ATTEMPTS: u32 = 300;
const IDLE: Duration = Duration::from_millis(500);
/// Log lines shown in the check run of a failed deployment.
const FAILURE_LINES: u32 = 30;

/// Runs forever.
pub async fn run(github: Github, sites: SitesSettings) {
    loop {
        let worked = match step(&github, &sites).await {
            Ok(n) => n > 0,
            Err(e) => {
                tracing::error!("check-run outbox: {e}");
                false
            }
        };
        if !worked {
            tokio::time::sleep(IDLE).await;
        }
    }
}

/// Sends what is due; returns how many updates were handled.
pub async fn step(github: &Github, sites: &SitesSettings) -> Result<usize, DbError> {
    let db = github.db();
    let due = db.due_check_updates(20).await?;
    let Some(app) = github.app() else {
        return Ok(0);
    };
    for update in &due {
        let Some((deployment, repo)) = db.deployment_with_repository(&update.deployment_id).await? else {
            db.drop_check_updates(&update.deployment_id).await?;
            continue;
        };
        let Some(sha) = deployment.commit_sha.as_ref() else {
            // A check run belongs to a commit: wait until the build knows which it is.
            if deployment.state.is_terminal() {
                db.drop_check_updates(&deployment.id).await?;
            } else {
                db.check_update_postponed(update, Timestamp::from_millis(Timestamp::now().millis() + 1000))
                    .await?;
            }
            continue;
        };
        let result = send(
            github,
            &app,
            sites,
            update,
            &deployment,
            sha.as_str(),
            repo.installation_id,
            &repo.full_name,
        )
        .await;
        match result {
            Ok(created) => db.check_update_sent(update, created).await?,
            Err(e) if e.is_permanent() || update.attempts + 1 >= MAX_ATTEMPTS => {
                tracing::warn!(deployment = %deployment.id, "giving up on the check run: {e}");
                db.drop_check_updates(&deployment.id).await?;
            }
            Err(e) => {
                let delay = 2u64.saturating_pow(update.attempts.min(16)).min(300);
                tracing::info!(deployment = %deployment.id, "check run not sent (retrying in {delay}s): {e}");
                let next = Timestamp::from_millis(Timestamp::now().millis() + (delay * 1000) as i64);
                db.check_update_failed(update, &e.to_string(), next).await?;
            }
        }
    }
    Ok(due.len())
}

#[allow(clippy::too_many_arguments)]
async fn send(
    github: &Github,
    app: &GithubApp,
    sites: &SitesSettings,
    update: &CheckUpdate,
    d: &Deployment,
    sha: &str,
    installation: u64,
    repo: &str,
) -> Result<Option<u64>, GithubError> {
    let details_url = format!("{}/deployments/{}", github.public_url(), d.id);
    let mut body = json!({
        "name": format!("CloudRunr ({})", d.project_slug),
        "details_url": details_url,
        "external_id": d.id.as_str(),
    });
    let site = sites.deployment_url(d);
    match update.status.as_str() {
        "queued" => {
            body["status"] = "queued".into();
            body["output"] = json!({ "title": "Queued", "summary": format!("Waiting to build {}.", short(sha)) });
        }
        "in_progress" => {
            body["status"] = "in_progress".into();
            if let Some(at) = d.started_at {
                body["started_at"] = at.to_rfc3339().into();
            }
            body["output"] = json!({ "title": "Building", "summary": format!("Building {}: [follow the log]({details_url}).", short(sha)) });
        }
        _ => {
            body["status"] = "completed".into();
            body["conclusion"] = conclusion(d.state).into();
            body["completed_at"] = d.finished_at.unwrap_or_else(Timestamp::now).to_rfc3339().into();
            body["output"] = completed_output(github, d, site.as_deref(), &details_url).await;
        }
    }
    match d.check_run_id {
        None => {
            body["head_sha"] = sha.into();
            app.create_check_run(installation, repo, &body).await.map(Some)
        }
        Some(id) => app.update_check_run(installation, repo, id, &body).await.map(|()| None),
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

fn conclusion(state: DeploymentState) -> &'static str {
    match state {
        DeploymentState::Ready => "success",
        DeploymentState::Canceled => "cancelled",
        DeploymentState::TimedOut => "timed_out",
        _ => "failure",
    }
}

async fn completed_output(github: &Github, d: &Deployment, site: Option<&str>, details_url: &str) -> Value {
    match d.state {
        DeploymentState::Ready => {
            let what = if d.target == DeploymentTarget::Production {
                "Deployed to production"
            } else {
                "Preview deployed"
            };
            let summary = match site {
                Some(url) => format!("{what}: {url}\n\n[Deployment details]({details_url})"),
                None => format!("{what}.\n\n[Deployment details]({details_url})"),
            };
            json!({ "title": what, "summary": summary })
        }
        DeploymentState::Canceled => {
            json!({ "title": "Canceled", "summary": format!("The build was canceled. [Details]({details_url})") })
        }
        _ => {
            let title = if d.state == DeploymentState::TimedOut {
                "Timed out"
            } else {
                "Build failed"
            };
            let error = d.error.clone().unwrap_or_else(|| "the build failed".into());
            let lines = github
                .db()
                .last_log_lines(&d.id, FAILURE_LINES)
                .await
                .unwrap_or_default();
            let log: String = lines.iter().map(|l| format!("{}\n", l.text)).collect();
            json!({
                "title": title,
                "summary": format!("{error}\n\n[Full log]({details_url})"),
                "text": format!("Last lines of the log:\n\n```\n{}```", log.replace("```", "'''")),
            })
        }
    }
}
