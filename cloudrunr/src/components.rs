//! Each component on its own: `cloudrunr api|webhook|router|log-consumer|migrate`. They share a
//! database, an artifact store and the Kafka log bus; `serve` runs them all in one process.

use crate::backends::{self, Bus};
use crate::config::Config;
use crate::server;
use anyhow::Context;
use axum::extract::{Request, State};
use axum::http::uri::Authority;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use db::Database;
use platform::artifacts::ArtifactStore;
use platform::bus::LogBus;
use platform::executor::Executor;
use platform::settings::{Settings, SitesSettings};
use std::sync::Arc;
use std::time::Duration;

/// How often a component running apart re-reads a GitHub App connected through another one.
const APP_REFRESH: Duration = Duration::from_secs(10);

/// The GitHub App handle (from the environment, or as connected through the manifest flow).
pub async fn github(settings: &Settings, db: &Database) -> anyhow::Result<webhook::Github> {
    let sealer = platform::crypto::SecretBox::new(&settings.secret_key)?;
    webhook::Github::load(
        db.clone(),
        sealer,
        settings.github.clone(),
        &settings.public_url,
        &settings.jwt_secret,
    )
    .await
    .context("cannot load the GitHub App")
}

/// The API's state; the scheduler is started with it.
pub async fn api_state(
    settings: &Settings,
    db: Database,
    bus: Arc<dyn LogBus>,
    store: Arc<dyn ArtifactStore>,
    executor: Arc<dyn Executor>,
    github: webhook::Github,
) -> anyhow::Result<api::AppState> {
    let state = api::AppState::new(api::Services {
        db,
        bus,
        sealer: platform::crypto::SecretBox::new(&settings.secret_key)?,
        github,
        executor,
        store,
        sessions: api::SessionKeys::new(&settings.jwt_secret),
        sites: settings.sites.clone(),
        git_policy: settings.git.clone(),
        git: builder::git::Git::new(settings.git.clone()),
        build_timeout: settings.build.timeout,
        max_concurrent_builds: settings.build.max_concurrent,
        login_limiter: api::ratelimit::LoginLimiter::new(&settings.accounts),
        trusted_proxies: settings.accounts.trusted_proxies.clone(),
        build_tokens: platform::build_token::BuildTokens::new(&settings.secret_key),
        domains: settings.domains.clone(),
        domain_checks: api::domains::CheckLimiter::default(),
    });
    api::scheduler::recover(&state).await;
    tokio::spawn(api::scheduler::run(state.clone()));
    Ok(state)
}

/// The webhook receiver and GitHub pages; the check-run outbox is worked from here.
pub fn webhook_routes(settings: &Settings, github: &webhook::Github, bus: Arc<dyn LogBus>) -> axum::Router {
    tokio::spawn(webhook::checks::run(github.clone(), settings.sites.clone()));
    webhook::router(webhook::deliveries::Deliveries::new(
        github.clone(),
        bus,
        &settings.data_dir,
    ))
}

/// The sites, kept current from the bus's notices, read through an in-memory cache.
pub async fn sites(settings: &Settings, db: &Database, store: Arc<dyn ArtifactStore>) -> router::Sites {
    let budget = settings.router_cache_bytes;
    let store: Arc<dyn ArtifactStore> = if budget == 0 {
        store
    } else {
        Arc::new(router::cache::CachedStore::new(
            store,
            budget,
            (budget / 16).min(8 << 20),
        ))
    };
    let sites = router::Sites::new(db.clone(), store);
    if let Err(e) = sites.load().await {
        tracing::error!("some sites could not be loaded: {e}");
    }
    sites
}

/// `cloudrunr api`: the JSON API, the dashboard, the internal build API and the scheduler.
pub async fn api(config: Config) -> anyhow::Result<()> {
    let (listener, bound) = server::bind(config.listen).await?;
    let settings = config.settings(bound)?;
    let db = backends::database(&settings).await?;
    let store = backends::artifact_store(&settings).await?;
    let bus = Bus::open_shared(&settings, "api").await?.dyn_bus();
    let executor = backends::executor(&settings, bus.clone(), store.clone(), false).await?;
    let github = github(&settings, &db).await?;
    github.spawn_refresh(APP_REFRESH);
    let state = api_state(&settings, db, bus, store, executor, github).await?;
    println!("cloudrunr api listening on http://{bound}");
    server::run(listener, api::router(state), &settings.connections).await
}

/// `cloudrunr webhook`: GitHub's deliveries and the App's pages; check runs go out from here.
pub async fn webhook(config: Config) -> anyhow::Result<()> {
    let (listener, bound) = server::bind(config.listen).await?;
    let settings = config.settings(bound)?;
    let db = backends::database(&settings).await?;
    let bus = Bus::open_shared(&settings, "webhook").await?.dyn_bus();
    let github = github(&settings, &db).await?;
    github.spawn_refresh(APP_REFRESH);
    let app = webhook_routes(&settings, &github, bus);
    println!("cloudrunr webhook listening on http://{bound}");
    server::run(listener, app, &settings.connections).await
}

/// `cloudrunr router`: serves the sites, for any Host under the sites domain.
pub async fn router(config: Config) -> anyhow::Result<()> {
    let (listener, bound) = server::bind(config.listen).await?;
    let tls_listener = crate::tls::bind(config.tls.tls_listen).await?;
    let settings = config.settings_with_tls(bound, tls_listener.as_ref().map(|(_, at)| *at))?;
    let db = backends::database(&settings).await?;
    let store = backends::artifact_store(&settings).await?;
    let bus = Bus::open_shared(&settings, "router").await?.dyn_bus();
    let sites = sites(&settings, &db, store).await;
    sites.spawn_watcher(bus);
    let site_settings = Arc::new(settings.sites.clone());
    let fast = router::wire::SiteConnections::new(
        sites.clone(),
        site_settings.clone(),
        &settings.data_dir,
        Arc::new(settings.connections.clone()),
    );
    let issuance = crate::issuance::Issuance::start(&settings, &db).await?;
    let app = issuance.wrap(axum::Router::new().fallback(serve_site).with_state(SiteFront {
        sites,
        settings: site_settings,
    }));
    let tls_bound = tls_listener.as_ref().map(|(_, at)| *at);
    let endpoints = crate::tls::endpoints(
        &settings,
        listener,
        tls_listener,
        app,
        Some(fast),
        issuance.store.clone(),
        issuance.on_demand.clone(),
    )?;
    println!("cloudrunr router listening on http://{bound}");
    if let Some(at) = tls_bound {
        println!("  HTTPS: {at}");
    }
    println!("  Sites: {}", settings.sites.url_for("<project>"));
    server::serve_endpoints(endpoints, &settings.connections).await
}

/// Cloned for every request (axum's `State`), so everything in it is behind an `Arc`.
#[derive(Clone)]
struct SiteFront {
    sites: router::Sites,
    settings: Arc<SitesSettings>,
}

async fn serve_site(State(front): State<SiteFront>, req: Request) -> Response {
    let host = host_of(&req);
    match host.as_ref().and_then(|h| front.settings.site_label(h.as_str())) {
        Some(label) => front.sites.serve(label, req).await,
        // Any other host: a verified custom domain, or no site.
        None => match &host {
            Some(h) => front.sites.serve_custom(h.as_str(), req).await,
            None => router::not_a_site(&req),
        },
    }
}

/// The Host a request is for: the HTTP/1.1 Host header, or the authority of an absolute URI.
pub fn host_of(req: &Request) -> Option<Host> {
    let header = req.headers().get(header::HOST).filter(|h| h.to_str().is_ok());
    match (header, req.uri().authority()) {
        (Some(h), _) => Some(Host::Header(h.clone())),
        (None, Some(a)) => Some(Host::Authority(a.clone())),
        (None, None) => None,
    }
}

/// A request's host, held apart from the request (so that the request can be handed on while
/// its host is in use) without copying it: both forms share the request's bytes.
pub enum Host {
    /// A Host header known to be visible ASCII.
    Header(HeaderValue),
    Authority(Authority),
}

impl Host {
    pub fn as_str(&self) -> &str {
        match self {
            Host::Header(h) => h.to_str().unwrap_or_default(),
            Host::Authority(a) => a.as_str(),
        }
    }
}

/// `cloudrunr log-consumer`: writes build events from Kafka to the database. Several may run; they
/// share the partitions.
pub async fn log_consumer(config: Config) -> anyhow::Result<()> {
    let settings = config.settings(config_addr())?;
    let db = backends::database(&settings).await?;
    let bus = Bus::open_shared(&settings, "log-consumer").await?.dyn_bus();
    println!("cloudrunr log-consumer running");
    tokio::select! {
        result = log_consumer::run(db, bus) => result.context("the log consumer stopped"),
        () = server::shutdown_signal() => Ok(()),
    }
}

/// `cloudrunr migrate`: brings the database schema up to date, then exits.
pub async fn migrate(config: Config) -> anyhow::Result<()> {
    let settings = config.settings(config_addr())?;
    let db = backends::database(&settings).await?;
    println!("the {:?} database is up to date", db.backend());
    Ok(())
}

/// The address of a component that listens nowhere (its settings still name one).
fn config_addr() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}
