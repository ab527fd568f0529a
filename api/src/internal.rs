//! The internal API of builds running away from the platform (`cloudrunr build` processes, ECS
//! tasks): each reads its own job and reports its own events, with the per-deployment token it
//! was started with. Nothing else is reachable with that token.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::scheduler::job_for;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use platform::DeploymentId;
use platform::bus::BuildEvent;
use serde_json::json;

/// Most a batch of events may weigh.
const MAX_EVENTS_BODY: usize = 8 * 1024 * 1024;

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/internal/builds/{id}/job", get(job))
        .route(
            "/internal/builds/{id}/events",
            post(events).layer(axum::extract::DefaultBodyLimit::max(MAX_EVENTS_BODY)),
        )
        .with_state(state)
}

/// The deployment the request's build token names, if it is `id`.
fn authorize(state: &AppState, headers: &HeaderMap, id: &str) -> ApiResult<DeploymentId> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::unauthorized("a build token is required"))?;
    match state.build_tokens.verify(token.trim()) {
        Some(d) if d.as_str() == id => Ok(d),
        Some(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the token is for another deployment",
        )),
        None => Err(ApiError::unauthorized("the build token is invalid or expired")),
    }
}

async fn job(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = authorize(&state, &headers, &id)?;
    let d = state
        .db
        .deployment(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("deployment"))?;
    if d.state.is_terminal() {
        return Err(ApiError::conflict(
            "finished",
            format!("the deployment is already {}", d.state),
        ));
    }
    let job = job_for(&state, &d).await.map_err(ApiError::internal)?;
    Ok(axum::Json(job))
}

async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let id = authorize(&state, &headers, &id)?;
    let events: Vec<BuildEvent> =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?;
    // A build speaks for its own deployment only.
    if events.iter().any(|e| e.deployment_id != id) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "events of another deployment",
        ));
    }
    if !events.is_empty() {
        state.bus.publish(events).await.map_err(ApiError::internal)?;
    }
    // The build learns here that it is to stop (the API process that received the cancel may not
    // be the one that started it).
    let cancel_requested = state.db.deployment(&id).await?.is_some_and(|d| d.cancel_requested);
    Ok(axum::Json(json!({ "cancel_requested": cancel_requested })))
}
