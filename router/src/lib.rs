//! Serves every deployed site by its Host label, entirely from memory.
//!
//! The routing table (label → project → production manifest) is loaded once, then kept current by
//! [`Sites::spawn_watcher`] from the bus's `RoutesChanged` notices. A request never touches the
//! database: it reads the current table, resolves its path against the manifest, and streams the
//! object from the artifact store. Tables are swapped whole, so a request sees either the old or
//! the new deployment, never a mix.

pub mod acme_challenge;
mod assets;
pub mod cache;
mod encoding;
mod error;
mod lru;
mod range;
mod resolve;
mod respond;
mod rules;
mod table;
pub mod tls;
mod watcher;
pub mod wire;

pub use assets::is_hashed_asset;
pub use cache::{CacheStats, CachedStore};
pub use error::RouterError;

use arc_swap::ArcSwap;
use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use db::{Database, Route};
use futures::StreamExt;
use platform::artifacts::{ArtifactStore, Manifest};
use platform::bus::LogBus;
use platform::site_rules::path::RequestPath;
use platform::{DeploymentId, ProjectId, preview_label};
use respond::Page;
use std::collections::HashMap;
use std::sync::Arc;
use table::{Content, Site, Table};

/// Deployment manifests kept for `<short id>--<slug>` hostnames.
const IMMUTABLE_CACHE: usize = 1024;

/// How many manifests a full load reads from the store at once.
const LOAD_CONCURRENCY: usize = 16;

/// The routing table and the request handler for deployed sites. Cheap to clone (Arc inside).
#[derive(Clone)]
pub struct Sites {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    store: Arc<dyn ArtifactStore>,
    table: ArcSwap<Table>,
    /// Bumped after every table swap (see [`Sites::generation`]).
    generation: std::sync::atomic::AtomicU64,
    /// Manifests of deployments served at their own hostname, loaded on first request.
    immutable: std::sync::Mutex<HashMap<DeploymentId, Arc<Manifest>>>,
    /// Serializes table updates. Each update reads the database and then publishes a table derived
    /// from the current one; without this, two concurrent updates could each start from the same
    /// table and the later swap would silently undo the earlier one.
    updates: tokio::sync::Mutex<()>,
}

/// The answer for a host that names no site (a router reached by IP, or under another domain).
pub fn not_a_site(req: &Request) -> Response {
    respond::page(StatusCode::NOT_FOUND, Page::NoSite, req.method() == Method::HEAD)
}

impl Sites {
    /// An empty table: every label is unknown until [`Sites::load`].
    pub fn new(db: Database, store: Arc<dyn ArtifactStore>) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                store,
                table: ArcSwap::from_pointee(Table::default()),
                generation: std::sync::atomic::AtomicU64::new(0),
                immutable: std::sync::Mutex::default(),
                updates: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Loads every project's route and its production manifest into memory.
    ///
    /// A database error leaves the current table untouched. A project whose new production
    /// manifest cannot be read keeps serving what it served before (or answers 502 if it served
    /// nothing); the rest of the table is still installed, and the error
    /// [`RouterError::Incomplete`] names those projects — one broken deployment must not take
    /// every other site down at startup.
    pub async fn load(&self) -> Result<(), RouterError> {
        let _update = self.inner.updates.lock().await;
        let routes = self.inner.db.routes().await?;
        let mut domains = self.inner.db.routed_domains(None).await?;
        let current = self.inner.table.load_full();
        let loaded: Vec<(Route, Result<Content, RouterError>)> = futures::stream::iter(routes)
            .map(|route| {
                let current = &current;
                async move {
                    let content = self.content_for(&route, current).await;
                    (route, content)
                }
            })
            .buffer_unordered(LOAD_CONCURRENCY)
            .collect()
            .await;

        let mut failed = Vec::new();
        let mut sites = Vec::with_capacity(loaded.len());
        for (route, content) in loaded {
            let content = content.unwrap_or_else(|e| {
                tracing::error!(project = %route.project_id, slug = %route.slug, error = %e, "cannot load a site");
                failed.push(route.project_id.clone());
                previous_content(&current, &route.project_id)
            });
            let previews = self.previews_for(&route, &current).await;
            let ready = ready_ids(&route);
            let domains = domains.remove(&route.project_id).unwrap_or_default();
            sites.push(Site {
                hsts: route.hsts,
                project_id: route.project_id,
                slug: route.slug,
                content,
                previews,
                ready,
                domains,
            });
        }
        let table = Table::from_sites(sites);
        tracing::info!(sites = table.len(), "routing table loaded");
        self.publish(table);
        if failed.is_empty() {
            Ok(())
        } else {
            Err(RouterError::Incomplete(failed))
        }
    }

    /// Re-reads one project's route (slug may have changed, production may have moved, project may
    /// be gone). On any error the current table stays as it is.
    pub async fn reload_project(&self, project: &ProjectId) -> Result<(), RouterError> {
        let _update = self.inner.updates.lock().await;
        let current = self.inner.table.load_full();
        let site = match self.inner.db.route(project).await? {
            Some(route) => {
                let content = self.content_for(&route, &current).await?;
                let previews = self.previews_for(&route, &current).await;
                let ready = ready_ids(&route);
                let domains = self.inner.db.routed_domains(Some(project)).await?;
                Some(Site {
                    hsts: route.hsts,
                    domains: domains.into_values().flatten().collect(),
                    project_id: route.project_id,
                    slug: route.slug,
                    content,
                    previews,
                    ready,
                })
            }
            None => None,
        };
        let mut table = Table::clone(&current);
        match site {
            Some(site) => {
                tracing::debug!(project = %project, slug = %site.slug, "site reloaded");
                table.insert(site);
            }
            None => {
                tracing::debug!(project = %project, "site removed");
                table.remove(project);
            }
        }
        self.publish(table);
        Ok(())
    }

    /// Installs `table`, then moves the generation on — in that order: whoever reads the new
    /// generation is sure to see this table (or a newer one), never the one before it.
    fn publish(&self, table: Table) {
        self.inner.table.store(Arc::new(table));
        self.inner.generation.fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// A number that changes whenever what any site answers may have changed (a new routing
    /// table). An answer computed after reading generation `g` is still the answer for as long
    /// as the generation is `g`: so caches of whole answers key on it.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Spawns a task that keeps the table current: RoutesChanged → reload_project; Lagged → load()
    /// everything. Failed reloads are logged and retried with backoff. The task subscribes before
    /// this returns, so no notice sent afterwards is missed; it runs until the bus closes or the
    /// handle is aborted.
    pub fn spawn_watcher(&self, bus: Arc<dyn LogBus>) -> tokio::task::JoinHandle<()> {
        let notices = bus.watch();
        tokio::spawn(watcher::run(self.clone(), bus, notices))
    }

    /// Answers a request for the site whose host label is `label` (the caller extracted it from
    /// the Host header with `SitesSettings::site_label`; compared case-insensitively).
    pub async fn serve(&self, label: &str, req: Request) -> Response {
        // The head only: a body is not `Sync`, and the answer does not depend on it.
        let (req, _) = req.into_parts();
        self.answer(label, &req).await
    }

    /// [`Sites::serve`] from a request's head: what every way in (the general server, or
    /// [`wire::SiteConnections`]) calls, so a site answers the same whichever way it is reached.
    pub async fn answer(&self, label: &str, req: &Parts) -> Response {
        let mut response = self.serve_site(label, req).await;
        // HSTS only over HTTPS (RFC 6797 §7.2), and only for a project that asked for it.
        if req.extensions.get::<tls::Https>().is_some() && self.hsts_for_label(label) {
            response.headers_mut().insert(
                axum::http::header::STRICT_TRANSPORT_SECURITY,
                axum::http::HeaderValue::from_static(tls::HSTS),
            );
        }
        // Previews and deployments' own hostnames are not for search engines: every answer under
        // them says so, error pages and redirects included.
        if label.contains("--") {
            response
                .headers_mut()
                .insert("x-robots-tag", axum::http::HeaderValue::from_static("noindex"));
        }
        response
    }

    /// Whether the project of the site label `label` (production, preview or a deployment's own)
    /// opted in to HSTS.
    fn hsts_for_label(&self, label: &str) -> bool {
        let slug = label.split_once("--").map_or(label, |(_, slug)| slug);
        self.inner.table.load().lookup(slug).is_some_and(|site| site.hsts)
    }

    /// Whether `host` (a Host header, port allowed) is a verified custom domain of some project.
    pub fn is_custom_host(&self, host: &str) -> bool {
        let name = custom_name(host);
        self.inner.table.load().custom(&name).is_some()
    }

    /// Answers a request for a verified custom domain: its project's production site, or a
    /// `308` to the other half of a `www` ↔ apex pair when the domain redirects. An unknown host
    /// gets the "no site" page.
    pub async fn serve_custom(&self, host: &str, req: Request) -> Response {
        let (req, _) = req.into_parts();
        let head = req.method == Method::HEAD;
        let name = custom_name(host);
        let site = match self.inner.table.load().custom(&name) {
            None => return respond::page(StatusCode::NOT_FOUND, Page::NoSite, head),
            Some(table::Custom::Redirect(target)) => return redirect_to_host(target.as_str(), host, &req, head),
            Some(table::Custom::Site(site)) => Arc::clone(site),
        };
        if req.method != Method::GET && !head {
            return respond::page(StatusCode::METHOD_NOT_ALLOWED, Page::MethodNotAllowed, false);
        }
        let mut response = self.serve_production(&site, &req, head, &name).await;
        if site.hsts && req.extensions.get::<tls::Https>().is_some() {
            response.headers_mut().insert(
                axum::http::header::STRICT_TRANSPORT_SECURITY,
                axum::http::HeaderValue::from_static(tls::HSTS),
            );
        }
        response
    }

    async fn serve_site(&self, label: &str, req: &Parts) -> Response {
        let head = match req.method {
            Method::GET => false,
            Method::HEAD => true,
            _ => return respond::page(StatusCode::METHOD_NOT_ALLOWED, Page::MethodNotAllowed, false),
        };
        // `<branch>--<slug>` is a preview; slugs and branch parts never contain `--`.
        let (site_label, preview) = match label.split_once("--") {
            Some((part, slug)) => (slug, Some(part.to_ascii_lowercase())),
            None => (label, None),
        };
        // Holding the site (not the table guard) pins this request to one deployment.
        let Some(site) = self.inner.table.load().lookup(site_label).cloned() else {
            return respond::page(StatusCode::NOT_FOUND, Page::NoSite, head);
        };
        if let Some(part) = preview {
            // A deployment's own hostname first (stable forever), then a branch's preview.
            let manifest = match site.ready.get(&part) {
                Some(id) => match self.immutable_manifest(id).await {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::error!(deployment = %id, "cannot load a deployment: {e}");
                        return respond::page(StatusCode::BAD_GATEWAY, Page::Unavailable, head);
                    }
                },
                None => match site.previews.get(&part).cloned() {
                    Some(m) => m,
                    None => return respond::page(StatusCode::NOT_FOUND, Page::NoSite, head),
                },
            };
            return self.respond(&manifest, req, head, label).await;
        }
        self.serve_production(&site, req, head, label).await
    }

    /// Answers from the site's production deployment.
    async fn serve_production(&self, site: &Site, req: &Parts, head: bool, label: &str) -> Response {
        let manifest = match &site.content {
            Content::Live(manifest) => Arc::clone(manifest),
            Content::NotDeployed => {
                let slug = site.slug.as_str();
                return respond::page(StatusCode::NOT_FOUND, Page::NotDeployed { slug }, head);
            }
            Content::Unavailable => return respond::page(StatusCode::BAD_GATEWAY, Page::Unavailable, head),
        };
        self.respond(&manifest, req, head, label).await
    }

    /// The manifest of a deployment served at its own hostname: from memory, or read from the
    /// store once (never from the database).
    async fn immutable_manifest(&self, id: &DeploymentId) -> Result<Arc<Manifest>, RouterError> {
        if let Some(m) = self.inner.immutable.lock().expect("manifest cache lock").get(id) {
            return Ok(m.clone());
        }
        let manifest = Arc::new(self.read_manifest(id).await?);
        let mut cache = self.inner.immutable.lock().expect("manifest cache lock");
        if cache.len() >= IMMUTABLE_CACHE {
            // Rarely visited old deployments: start over rather than track recency.
            cache.clear();
        }
        cache.insert(id.clone(), manifest.clone());
        Ok(manifest)
    }

    /// Answers `req` from one deployment's manifest.
    ///
    /// The path is resolved with the deployment's clean-URL scheme and its `_redirects` rules
    /// ([`rules::answer`]: compiled when the manifest was read, so nothing is parsed here), then
    /// its `_headers` are added to whatever answers. A site without rules pays for neither.
    async fn respond(&self, manifest: &Manifest, req: &Parts, head: bool, label: &str) -> Response {
        let raw_path = req.uri.path();
        let headers: &HeaderMap = &req.headers;
        let path = match RequestPath::parse(raw_path) {
            Ok(path) => path,
            Err(e) => {
                tracing::debug!(label, path = raw_path, reason = %e, "bad request path");
                return respond::page(StatusCode::BAD_REQUEST, Page::BadPath, head);
            }
        };
        let answer = rules::answer(manifest, &path, req.uri.query());
        let mut response = match &answer {
            rules::Answer::File(found) => respond::file(self.inner.store.as_ref(), *found, headers, head).await,
            rules::Answer::Fallback(found) => respond::fallback(self.inner.store.as_ref(), *found, headers, head).await,
            rules::Answer::Redirect { status, location } => match rules::redirect(*status, location) {
                Some(response) => response,
                None => {
                    tracing::warn!(label, location, "a redirect's target is not a valid Location");
                    respond::page(StatusCode::BAD_GATEWAY, Page::Unavailable, head)
                }
            },
            rules::Answer::NotFound(status) => respond::page(*status, Page::NotFound, head),
        };
        if !manifest.rules.headers.is_empty() {
            rules::add_headers(response.headers_mut(), &manifest.rules, &path.path, answer.file_path());
        }
        response
    }

    /// The route's previews by label part, reusing manifests already loaded. A preview whose
    /// manifest cannot be read is left out (and logged); it does not hold up the site.
    async fn previews_for(&self, route: &Route, current: &Table) -> HashMap<String, Arc<Manifest>> {
        let mut out = HashMap::new();
        let loaded = current.site_of(&route.project_id);
        for (branch, deployment) in &route.previews {
            let Some(label) = preview_label(branch, &route.slug) else {
                continue;
            };
            let Some((part, _)) = label.split_once("--") else {
                continue;
            };
            let manifest = match loaded.and_then(|s| s.preview_manifest(deployment)) {
                Some(m) => m,
                None => match self.read_manifest(deployment).await {
                    Ok(m) => Arc::new(m),
                    Err(e) => {
                        tracing::error!(project = %route.project_id, %branch, "cannot load a preview: {e}");
                        continue;
                    }
                },
            };
            out.insert(part.to_owned(), manifest);
        }
        out
    }

    /// The content a route should serve: its production manifest, reused from the current table
    /// when production has not moved (manifests are immutable), otherwise read from the store.
    async fn content_for(&self, route: &Route, current: &Table) -> Result<Content, RouterError> {
        let Some(deployment) = &route.production else {
            return Ok(Content::NotDeployed);
        };
        if let Some(manifest) = current
            .site_of(&route.project_id)
            .and_then(|s| s.manifest_for(deployment))
        {
            return Ok(Content::Live(manifest));
        }
        Ok(Content::Live(Arc::new(self.read_manifest(deployment).await?)))
    }

    async fn read_manifest(&self, deployment: &DeploymentId) -> Result<Manifest, RouterError> {
        let manifest = self
            .inner
            .store
            .get_manifest(deployment)
            .await?
            .ok_or_else(|| RouterError::MissingManifest(deployment.clone()))?;
        if manifest.deployment_id != *deployment {
            return Err(RouterError::WrongManifest {
                asked: deployment.clone(),
                found: manifest.deployment_id,
            });
        }
        Ok(manifest)
    }
}

/// A Host header's name as custom domains are stored: lowercase, without port or trailing dot.
fn custom_name(host: &str) -> String {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A `308` to the same path on `target`, keeping the port the request came to. The location
/// has no scheme (`//host/path`): the client stays on the scheme it used.
fn redirect_to_host(target: &str, host: &str, req: &Parts, head: bool) -> Response {
    let port = host
        .rsplit_once(':')
        .filter(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .map(|(_, p)| p);
    let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let location = match port {
        Some(port) => format!("//{target}:{port}{path}"),
        None => format!("//{target}{path}"),
    };
    match axum::http::HeaderValue::from_str(&location) {
        Ok(value) => {
            let mut response = StatusCode::PERMANENT_REDIRECT.into_response();
            response.headers_mut().insert(axum::http::header::LOCATION, value);
            response
        }
        Err(_) => respond::page(StatusCode::BAD_REQUEST, Page::BadPath, head),
    }
}

/// The ready deployments of a route, by short id.
fn ready_ids(route: &Route) -> HashMap<String, DeploymentId> {
    route
        .ready
        .iter()
        .map(|id| (id.short().to_owned(), id.clone()))
        .collect()
}

/// What a project that failed to load keeps serving: its last good manifest, if it had one.
fn previous_content(current: &Table, project: &ProjectId) -> Content {
    current
        .site_of(project)
        .and_then(|s| s.live_manifest())
        .map_or(Content::Unavailable, Content::Live)
}

/// Axum handlers must be `Send`: so must the answer to a request, whatever it awaits.
#[allow(dead_code)]
fn serving_is_send(sites: &Sites, req: Request) {
    fn send<T: Send>(_: &T) {}
    send(&sites.serve("label", req));
}
