//! GitHub, from a CloudRunr user's side: which App is connected, installing and linking it,
//! the repositories a user can deploy, and (for admins) connecting the App and the webhook
//! deliveries.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{CurrentUser, OptionalJson, Query};
use axum::extract::State;
use axum::response::IntoResponse;
use platform::model::User;
use serde::Deserialize;
use serde_json::json;
use webhook::connection::ConnectionError;

fn connection_error(e: ConnectionError) -> ApiError {
    match e {
        ConnectionError::NotConnected => ApiError::conflict(
            "github_not_connected",
            "no GitHub App is connected yet; an administrator connects one first",
        ),
        ConnectionError::Github(e) => {
            ApiError::new(axum::http::StatusCode::BAD_GATEWAY, "github_unavailable", e.to_string())
        }
        other => ApiError::internal(other),
    }
}

fn require_admin(user: &User) -> ApiResult<()> {
    if user.is_admin {
        Ok(())
    } else {
        Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "forbidden",
            "only an administrator can do this",
        ))
    }
}

/// The App and the installations (with their repositories) linked to the user.
pub async fn status(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> ApiResult<impl IntoResponse> {
    let app = match state.github.app() {
        Some(app) => {
            let slug = app.slug().await.ok();
            json!({ "app_id": app.app_id(), "slug": slug, "configured_by_environment": state.github.configured_by_environment() })
        }
        None => serde_json::Value::Null,
    };
    let mut installations = Vec::new();
    for i in state.db.installations_of(&user.id).await? {
        let repos = state.db.repositories_of(i.id).await?;
        installations.push(json!({
            "id": i.id,
            "account": i.account_login,
            "account_type": i.account_type,
            "suspended": i.suspended,
            "repositories": repos.iter().map(|r| json!({
                "id": r.id, "full_name": r.full_name, "private": r.private, "default_branch": r.default_branch,
            })).collect::<Vec<_>>(),
        }));
    }
    Ok(axum::Json(
        json!({ "connected": !app.is_null(), "app": app, "installations": installations }),
    ))
}

/// Where the user installs the App on more repositories (GitHub brings them back linked).
pub async fn install_url(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<impl IntoResponse> {
    let url = state.github.install_url(&user.id).await.map_err(connection_error)?;
    Ok(axum::Json(json!({ "url": url })))
}

/// Where the user authorizes the App to link installations they already have.
pub async fn authorize_url(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<impl IntoResponse> {
    let url = state.github.authorize_url(&user.id).map_err(connection_error)?;
    Ok(axum::Json(json!({ "url": url })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConnectRequest {
    /// Create the App in this organization instead of the admin's account.
    organization: Option<String>,
}

/// Starts the manifest flow: a link the admin opens in their browser.
pub async fn connect(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    OptionalJson(req): OptionalJson<ConnectRequest>,
) -> ApiResult<impl IntoResponse> {
    require_admin(&user)?;
    if state.github.configured_by_environment() {
        return Err(ApiError::conflict(
            "github_configured_by_environment",
            "the GitHub App is configured by the server's environment (CLOUDRUNR_GITHUB_*)",
        ));
    }
    if let Some(org) = &req.organization
        && (org.is_empty() || org.len() > 39 || !org.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        return Err(ApiError::invalid(
            "invalid_organization",
            "not a GitHub organization name",
        ));
    }
    let url = state.github.connect_url(&user.id, req.organization.as_deref());
    Ok(axum::Json(json!({ "url": url, "manifest": state.github.manifest() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    limit: Option<u32>,
}

/// Recent webhook deliveries and what came of each.
pub async fn deliveries(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(q): Query<DeliveriesQuery>,
) -> ApiResult<impl IntoResponse> {
    require_admin(&user)?;
    let list = state.db.deliveries(q.limit.unwrap_or(100).clamp(1, 1000)).await?;
    let items: Vec<_> = list
        .iter()
        .map(|d| {
            json!({
                "id": d.id, "event": d.event, "action": d.action, "repository": d.repository,
                "installation_id": d.installation_id, "outcome": d.outcome, "detail": d.detail,
                "received_at": d.received_at,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "deliveries": items })))
}
