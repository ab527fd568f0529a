//! The GitHub App: CloudRunr as GitHub sees it.
//!
//! - [`signature`] and [`events`]: webhook deliveries, verified before anything is parsed, and
//!   the payloads the platform acts on;
//! - [`deliveries`]: `POST /webhooks/github` — record each delivery once, queue deployments;
//! - [`app`]: the App as a client of GitHub's API (tokens, repositories, check runs);
//! - [`connection`]: which App the platform is (from the environment or the manifest flow), and
//!   the signed `state` of GitHub's browser redirects;
//! - [`pages`]: where GitHub sends browsers back to (manifest flow, installation, OAuth);
//! - [`checks`]: the worker that reports deployments as check runs.

pub mod app;
pub mod checks;
pub mod connection;
pub mod deliveries;
pub mod events;
pub mod pages;
pub mod signature;

pub use connection::Github;

use axum::Router;
use axum::routing::{get, post};

/// The routes GitHub (and browsers coming back from it) call.
pub fn router(deliveries: deliveries::Deliveries) -> Router {
    let pages = Router::new()
        .route("/github/connect", get(pages::connect))
        .route("/github/app-created", get(pages::app_created))
        .route("/github/setup", get(pages::setup))
        .with_state(deliveries.github.clone());
    Router::new()
        // The handler reads the body stream itself, verifying as it goes and refusing past
        // `signature::MAX_PAYLOAD_BYTES`.
        .route("/webhooks/github", post(deliveries::receive))
        .with_state(deliveries)
        .merge(pages)
}
