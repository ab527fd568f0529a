//! Deployments: trigger, list, inspect, cancel, promote.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{CurrentUser, OptionalJson, Query};
use crate::projects::owned;
use crate::views::DeploymentView;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use db::{DbError, NewDeployment};
use platform::bus::Notice;
use platform::model::{Deployment, DeploymentState, DeploymentTarget, DeploymentTrigger, Project, User};
use platform::{BranchName, CommitSha, DeploymentId};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateDeployment {
    pub branch: Option<String>,
    pub commit: Option<String>,
}

pub async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(slug): Path<String>,
    OptionalJson(req): OptionalJson<CreateDeployment>,
) -> ApiResult<impl IntoResponse> {
    let project = owned(&state, &user, &slug).await?;
    let deployment = create_deployment(&state, &project, req).await?;
    let view = DeploymentView::new(&deployment, project.production_deployment_id.as_ref(), &state.sites);
    Ok((StatusCode::ACCEPTED, axum::Json(json!({ "deployment": view }))))
}

/// Queues a deployment of the project (the API and the dashboard both come here). Past the
/// account's queue cap it is refused (429 `too_many_queued_builds`) and nothing is created.
pub async fn create_deployment(state: &AppState, project: &Project, req: CreateDeployment) -> ApiResult<Deployment> {
    let branch = match req.branch.as_deref() {
        Some(b) => BranchName::parse(b).map_err(|e| ApiError::invalid("invalid_branch", e.to_string()))?,
        None => project.branch.clone(),
    };
    let commit = req
        .commit
        .as_deref()
        .map(CommitSha::parse)
        .transpose()
        .map_err(|e| ApiError::invalid("invalid_commit", e.to_string()))?;
    let target = if branch == project.branch {
        DeploymentTarget::Production
    } else {
        DeploymentTarget::Preview
    };
    let deployment = state
        .db
        .queue_deployment(NewDeployment {
            project: project.id.clone(),
            target,
            branch,
            commit,
            commit_message: None,
            commit_author: None,
            trigger: DeploymentTrigger::Api,
        })
        .await
        .map_err(|e| match e {
            DbError::QueueFull { queued, limit } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_queued_builds",
                format!(
                    "your account already has {queued} deployments waiting to build (at most {limit}); \
                     deploy again once some of them have started, or cancel some"
                ),
            ),
            other => other.into(),
        })?;
    state.notify(Notice::WorkAvailable).await;
    Ok(deployment)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<u32>,
}

pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(slug): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<impl IntoResponse> {
    let project = owned(&state, &user, &slug).await?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let deployments = state.db.list_deployments(&project.id, limit).await?;
    let views: Vec<DeploymentView> = deployments
        .iter()
        .map(|d| DeploymentView::new(d, project.production_deployment_id.as_ref(), &state.sites))
        .collect();
    Ok(axum::Json(json!({ "deployments": views })))
}

/// The user's deployment with this id (404 for anyone else's) and what the project's site
/// currently serves.
pub async fn owned_deployment(
    state: &AppState,
    user: &User,
    id: &str,
) -> ApiResult<(Deployment, Option<DeploymentId>)> {
    let id = DeploymentId::parse(id).map_err(|_| ApiError::not_found("deployment"))?;
    let d = state
        .db
        .owned_deployment(&user.id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("deployment"))?;
    let production = state.production_of(&d.project_id).await?;
    Ok((d, production))
}

pub async fn get(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let (d, production) = owned_deployment(&state, &user, &id).await?;
    Ok(axum::Json(
        json!({ "deployment": DeploymentView::new(&d, production.as_ref(), &state.sites) }),
    ))
}

/// Cancels a queued deployment at once (200), or asks the executor to stop a running build
/// (202: the build reports `canceled` when its processes are gone).
pub async fn cancel(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let (d, production) = owned_deployment(&state, &user, &id).await?;
    let (canceled_now, d) = cancel_deployment(&state, d).await?;
    let status = if canceled_now {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((
        status,
        axum::Json(json!({ "deployment": DeploymentView::new(&d, production.as_ref(), &state.sites) })),
    ))
}

/// Cancels a queued deployment at once (`true`), or asks the executor to stop a running build
/// (`false`: the build reports `canceled` when its processes are gone).
pub async fn cancel_deployment(state: &AppState, d: Deployment) -> ApiResult<(bool, Deployment)> {
    if d.state.is_terminal() {
        return Err(ApiError::conflict(
            "not_cancelable",
            format!("the deployment is already {}", d.state),
        ));
    }
    let canceled_now = state.db.cancel_queued(&d.id).await?;
    if !canceled_now {
        state.db.request_cancel(&d.id).await?;
        let execution = state.db.execution(&d.id).await?;
        state
            .executor
            .cancel(&d.id, execution.as_ref())
            .await
            .map_err(ApiError::internal)?;
    }
    let d = state
        .db
        .deployment(&d.id)
        .await?
        .ok_or_else(|| ApiError::not_found("deployment"))?;
    Ok((canceled_now, d))
}

/// Points the project's site at this (ready) deployment: rollback and roll-forward without a
/// rebuild. The site serves it by the time this returns.
pub async fn promote(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let (d, _) = owned_deployment(&state, &user, &id).await?;
    promote_deployment(&state, &d).await?;
    Ok(axum::Json(
        json!({ "deployment": DeploymentView::new(&d, Some(&d.id), &state.sites) }),
    ))
}

pub async fn promote_deployment(state: &AppState, d: &Deployment) -> ApiResult<()> {
    if d.state != DeploymentState::Ready {
        return Err(ApiError::conflict(
            "not_ready",
            format!("only a ready deployment can serve the site; this one is {}", d.state),
        ));
    }
    if state.store.get_manifest(&d.id).await?.is_none() {
        return Err(ApiError::conflict(
            "artifacts_missing",
            "the files of this deployment are no longer stored",
        ));
    }
    state.db.set_production(&d.project_id, &d.id).await?;
    state
        .notify(Notice::RoutesChanged {
            project_id: d.project_id.clone(),
        })
        .await;
    Ok(())
}
