//! The HTTP API under `/api`: accounts and tokens, projects, deployments, build logs, and the
//! scheduler that hands queued deployments to the executor.
//!
//! Every route answers JSON (or Server-Sent Events for live logs); every error is an
//! [`ApiError`]. Ownership is checked in the queries themselves: a user who does not own a
//! project gets 404 for it and everything under it.

mod auth;
mod dashboard;
mod deployments;
pub mod domains;
mod error;
mod extract;
mod github;
mod internal;
mod logs;
mod projects;
pub mod ratelimit;
pub mod scheduler;
mod views;

pub use auth::SessionKeys;
pub use error::ApiError;

use axum::Router;
use axum::routing::{get, post};
use builder::git::Git;
use db::Database;
use platform::artifacts::ArtifactStore;
use platform::bus::{LogBus, Notice};
use platform::executor::Executor;
use platform::settings::SitesSettings;
use platform::{DeploymentId, GitHostPolicy, ProjectId};
use std::sync::Arc;
use std::time::Duration;

/// The machine-readable description of every route.
pub const OPENAPI: &str = include_str!("../openapi.json");

#[derive(Clone)]
pub struct AppState(Arc<Services>);

/// What the API needs, chosen by the binary from configuration.
pub struct Services {
    pub db: Database,
    pub bus: Arc<dyn LogBus>,
    pub executor: Arc<dyn Executor>,
    pub store: Arc<dyn ArtifactStore>,
    pub sessions: SessionKeys,
    /// Seals environment values at rest.
    pub sealer: platform::crypto::SecretBox,
    pub github: webhook::Github,
    pub sites: SitesSettings,
    pub git_policy: GitHostPolicy,
    pub git: Git,
    pub build_timeout: Duration,
    pub max_concurrent_builds: usize,
    pub login_limiter: ratelimit::LoginLimiter,
    /// Peers whose `X-Forwarded-For` names the client (log-in throttling counts by client).
    pub trusted_proxies: platform::proxies::TrustedProxies,
    /// Per-deployment credentials of builds that run away from the platform.
    pub build_tokens: platform::build_token::BuildTokens,
    /// Custom domains: public addresses and the resolver verification asks.
    pub domains: platform::settings::DomainSettings,
    /// Each account's budget of DNS checks (custom-domain verification).
    pub domain_checks: domains::CheckLimiter,
}

impl std::ops::Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}

impl AppState {
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }

    /// The deployment the project's site serves.
    pub async fn production_of(&self, project: &ProjectId) -> Result<Option<DeploymentId>, ApiError> {
        Ok(self.db.route(project).await?.and_then(|r| r.production))
    }

    /// Sends a notice; failing to is logged, never fatal (the listeners re-read on their own).
    pub async fn notify(&self, notice: Notice) {
        if let Err(e) = self.bus.notify(notice).await {
            tracing::warn!("cannot send a notice: {e}");
        }
    }
}

/// The routes under `/api`, with JSON answers for unknown paths and methods.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/openapi.json", get(openapi))
        .route("/auth/signup", post(auth::signup))
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/password", post(auth::password))
        .route("/me", get(auth::me))
        .route("/tokens", post(auth::create_token).get(auth::list_tokens))
        .route("/tokens/{id}", axum::routing::delete(auth::delete_token))
        .route("/projects", post(projects::create).get(projects::list))
        .route(
            "/projects/{slug}",
            get(projects::get).patch(projects::patch).delete(projects::delete),
        )
        .route(
            "/projects/{slug}/deployments",
            post(deployments::create).get(deployments::list),
        )
        .route("/projects/{slug}/domains", post(domains::create).get(domains::list))
        .route(
            "/projects/{slug}/domains/{name}",
            get(domains::get).delete(domains::delete),
        )
        .route("/projects/{slug}/domains/{name}/verify", post(domains::verify))
        .route("/deployments/{id}", get(deployments::get))
        .route("/deployments/{id}/cancel", post(deployments::cancel))
        .route("/deployments/{id}/promote", post(deployments::promote))
        .route("/deployments/{id}/logs", get(logs::page))
        .route("/deployments/{id}/logs/stream", get(logs::stream))
        .route("/github", get(github::status))
        .route("/github/install-url", get(github::install_url))
        .route("/github/authorize-url", get(github::authorize_url))
        .route("/admin/github/connect", post(github::connect))
        .route("/admin/webhook-deliveries", get(github::deliveries))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .with_state(state.clone());
    Router::new()
        .nest("/api", api)
        .merge(internal::routes(state.clone()))
        .merge(dashboard::routes(state))
        .fallback(dashboard::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(1024 * 1024))
}

async fn openapi() -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn not_found() -> ApiError {
    ApiError::new(axum::http::StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}
