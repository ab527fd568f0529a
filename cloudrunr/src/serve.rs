//! `cloudrunr serve`: every component in one process, on one port. On the embedded defaults
//! (SQLite, a local artifact directory, the in-process bus, sandboxed builds in this process)
//! nothing else needs to run; any backend can still be swapped by configuration.

use crate::backends::{self, Bus};
use crate::components::{self, host_of};
use crate::config::Config;
use crate::server;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use platform::bus::{Notice, NoticeListener};
use platform::settings::SitesSettings;
use std::sync::Arc;
use tower::ServiceExt;

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let (listener, bound) = server::bind(config.listen).await?;
    let tls_listener = crate::tls::bind(config.tls.tls_listen).await?;
    let settings = config.settings_with_tls(bound, tls_listener.as_ref().map(|(_, at)| *at))?;
    tracing::debug!(?settings, "starting");

    let db = backends::database(&settings).await?;
    let store = backends::artifact_store(&settings).await?;
    let bus = Bus::open(&settings).await?;
    let sites = components::sites(&settings, &db, store.clone()).await;
    // The router hears of route changes made here before the change is reported done...
    bus.add_listener(Arc::new(RouteListener(sites.clone())));
    let bus_handle = bus;
    let bus = bus_handle.dyn_bus();
    // ...and of those made by other processes sharing a Kafka bus, as they come.
    if matches!(bus_handle, Bus::Kafka(_)) {
        sites.spawn_watcher(bus.clone());
    }
    let executor = backends::executor(&settings, bus.clone(), store.clone(), true).await?;

    tokio::spawn({
        let (db, bus) = (db.clone(), bus.clone());
        async move {
            if let Err(e) = log_consumer::run(db, bus).await {
                tracing::error!("the log consumer stopped: {e}");
            }
        }
    });

    let issuance = crate::issuance::Issuance::start(&settings, &db).await?;
    let github = components::github(&settings, &db).await?;
    let hooks = components::webhook_routes(&settings, &github, bus.clone());
    let state = components::api_state(&settings, db, bus, store, executor, github).await?;
    let site_settings = Arc::new(settings.sites.clone());
    let fast = router::wire::SiteConnections::new(
        sites.clone(),
        site_settings.clone(),
        &settings.data_dir,
        Arc::new(settings.connections.clone()),
    );
    let front = Front {
        api: api::router(state).merge(hooks),
        sites,
        settings: site_settings,
    };
    let app = issuance.wrap(axum::Router::new().fallback(dispatch).with_state(front));
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

    println!("cloudrunr listening on http://{bound}");
    if let Some(at) = tls_bound {
        println!("  HTTPS: {at}");
    }
    println!("  API:   http://{bound}/api   (OpenAPI: http://{bound}/api/openapi.json)");
    println!("  Sites: {}", settings.sites.url_for("<project>"));
    println!("  Data:  {}", settings.data_dir.display());
    server::serve_endpoints(endpoints, &settings.connections).await
}

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
/// Cloned for every request (axum's `State`), so everything in it is behind an `Arc`.
#[derive(Clone)]
struct Front {
    api: axum::Router,
    sites: router::Sites,
    settings: Arc<SitesSettings>,
}

async fn dispatch(State(front): State<Front>, req: Request) -> Response {
    let host = host_of(&req);
    if let Some(label) = host.as_ref().and_then(|h| front.settings.site_label(h.as_str())) {
        return front.sites.serve(label, req).await;
    }
    // A verified custom domain (never under the platform's domain, so never the API's host).
    if let Some(h) = host.as_ref().filter(|h| front.sites.is_custom_host(h.as_str())) {
        return front.sites.serve_custom(h.as_str(), req).await;
    }
    match front.api.oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
    .into_response()
}
