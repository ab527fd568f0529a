//! `cloudrunr serve`: every component in one process, on one port.

use crate::config::ServeArgs;
use anyhow::Context;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use builder::{LocalExecutor, LocalExecutorConfig};
use platform::artifacts::{ArtifactStore, LocalArtifactStore};
use platform::bus::{InProcessBus, LogBus, Notice, NoticeListener};
use platform::db::Database;
use platform::executor::Executor;
use platform::settings::SitesSettings;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let bound = listener.local_addr()?;
    let settings = args.settings(bound)?;
    tracing::debug!(?settings, "starting");

    let db = Database::connect(settings.database_url.expose())
        .await
        .context("cannot open the database")?;
    let store: Arc<dyn ArtifactStore> = Arc::new(LocalArtifactStore::open(settings.data_dir.join("artifacts")).await?);
    let bus = Arc::new(InProcessBus::new());
    let sites = router::Sites::new(db.clone(), store.clone());
    if let Err(e) = sites.load().await {
        tracing::error!("some sites could not be loaded: {e}");
    }
    // The router hears of route changes before the change is reported done.
    bus.add_listener(Arc::new(RouteListener(sites.clone())));
    let bus: Arc<dyn LogBus> = bus;

    let executor = LocalExecutor::new(LocalExecutorConfig {
        bus: bus.clone(),
        store: store.clone(),
        git: settings.git.clone(),
        limits: settings.build.clone(),
        data_dir: settings.data_dir.clone(),
    })
    .await;
    let executor: Arc<dyn Executor> = Arc::new(executor);

    let consumer_db = db.clone();
    let consumer_bus = bus.clone();
    tokio::spawn(async move {
        if let Err(e) = log_consumer::run(consumer_db, consumer_bus).await {
            tracing::error!("the log consumer stopped: {e}");
        }
    });

    let sealer = platform::crypto::SecretBox::new(&settings.secret_key)?;
    let github = webhook::Github::load(
        db.clone(),
        sealer.clone(),
        settings.github.clone(),
        &settings.public_url,
        &settings.jwt_secret,
    )
    .await
    .context("cannot load the GitHub App")?;
    tokio::spawn(webhook::checks::run(github.clone(), settings.sites.clone()));
    let hooks = webhook::router(webhook::deliveries::Deliveries {
        github: github.clone(),
        bus: bus.clone(),
    });

    let state = api::AppState::new(api::Services {
        db,
        bus,
        sealer,
        github,
        executor,
        store,
        sessions: api::SessionKeys::new(&settings.jwt_secret),
        sites: settings.sites.clone(),
        git_policy: settings.git.clone(),
        git: builder::git::Git::new(settings.git.clone()),
        build_timeout: settings.build.timeout,
        max_concurrent_builds: settings.build.max_concurrent,
        login_limiter: api::ratelimit::LoginLimiter::default(),
    });
    api::scheduler::recover(&state).await;
    tokio::spawn(api::scheduler::run(state.clone()));

    let front = Front {
        api: api::router(state).merge(hooks),
        sites,
        settings: settings.sites.clone(),
    };
    let app = axum::Router::new().fallback(dispatch).with_state(front);

    println!("cloudrunr listening on http://{bound}");
    println!("  API:   http://{bound}/api   (OpenAPI: http://{bound}/api/openapi.json)");
    println!("  Sites: {}", settings.sites.url_for("<project>"));
    println!("  Data:  {}", settings.data_dir.display());
    let shutdown = CancellationToken::new();
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown_signal().await;
            shutdown.cancel();
        }
    });
    // Live log streams never end by themselves: give requests in flight a moment, then close.
    tokio::select! {
        result = server => result?,
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => tracing::info!("closing connections still open after {SHUTDOWN_GRACE:?}"),
    }
    Ok(())
}

/// How long requests in flight may take to finish once a shutdown is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Keeps the embedded router's table current, before the change is reported done.
struct RouteListener(router::Sites);

#[async_trait::async_trait]
impl NoticeListener for RouteListener {
    async fn on_notice(&self, notice: &Notice) {
        if let Notice::RoutesChanged { project_id } = notice
            && let Err(e) = self.0.reload_project(project_id).await
        {
            tracing::error!(project = %project_id, "cannot reload the project's route: {e}");
        }
    }
}

/// Routes each request by its Host: `<label>.<sites domain>` to the router, anything else to the API.
#[derive(Clone)]
struct Front {
    api: axum::Router,
    sites: router::Sites,
    settings: SitesSettings,
}

async fn dispatch(State(front): State<Front>, req: Request) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .map(str::to_owned);
    if let Some(label) = host.as_deref().and_then(|h| front.settings.site_label(h)) {
        return front.sites.serve(label, req).await;
    }
    match front.api.oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
    .into_response()
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
