//! Custom domains of a project: adding one says exactly which DNS records to set (a TXT proof of
//! ownership at `_cloudrunr.<name>`, and the routing: a CNAME to the project's site, or A/AAAA
//! to the platform's public addresses for an apex); verifying looks them up and, when both are
//! right, routes the name to the project — taking it from any project that held it before,
//! since only whoever controls the zone can publish this project's token.
//!
//! The API handlers and the dashboard share the service functions here.

mod dns;
mod limit;

pub use limit::CheckLimiter;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{CurrentUser, Json};
use crate::projects::owned;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use db::DbError;
use platform::Timestamp;
use platform::bus::Notice;
use platform::domain::{DnsRecord, Domain, DomainName, Routing, judge};
use platform::model::Project;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Domains one project may have (claims included): enough for any site, and a bound on the
/// DNS lookups one tenant can ask for.
pub const MAX_DOMAINS_PER_PROJECT: u64 = 50;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddDomain {
    pub name: String,
    /// The other half of a `www` ↔ apex pair, already a domain of the project: requests for
    /// `name` are redirected there (308).
    pub redirect_to: Option<String>,
}

#[derive(Serialize)]
pub struct DomainView {
    name: String,
    state: &'static str,
    /// Why the last check or issuance failed: the DNS answer seen, or the CA's error.
    reason: Option<String>,
    /// Whether requests for the name reach this project now.
    routed: bool,
    redirect_to: Option<String>,
    /// What to set at the DNS provider: the TXT proof, then the routing records.
    records: Vec<DnsRecord>,
    /// Why no routing record can be given, when none can (an apex without public addresses).
    routing_problem: Option<&'static str>,
    created_at: Timestamp,
    updated_at: Timestamp,
    verified_at: Option<Timestamp>,
    /// When the name's certificate expires, while the name routes here and has one.
    certificate_expires_at: Option<Timestamp>,
}

const NO_PUBLIC_IPS: &str = "an apex domain needs A/AAAA records to the platform's public addresses, and this \
     platform has none configured (CLOUDRUNR_PUBLIC_IPS); use a subdomain such as www instead";

impl DomainView {
    /// The domain's view, with its certificate's expiry read from the database.
    pub async fn load(state: &AppState, project: &Project, d: &Domain) -> ApiResult<Self> {
        // A name that routes elsewhere may have a certificate, but it serves the other project.
        let expires = if d.is_routed() {
            state.db.certificate_not_after(d.name.as_str()).await?
        } else {
            None
        };
        Ok(Self::new(state, project, d, expires.map(Timestamp::from_millis)))
    }

    fn new(state: &AppState, project: &Project, d: &Domain, certificate_expires_at: Option<Timestamp>) -> Self {
        let routing = routing_of(state, project, &d.name);
        let records = match &routing {
            Some(r) => r.records(&d.name, &d.token),
            None => Routing::Addresses(Vec::new()).records(&d.name, &d.token),
        };
        Self {
            name: d.name.to_string(),
            state: d.state.as_str(),
            reason: d.reason.clone(),
            routed: d.is_routed(),
            redirect_to: d.redirect_to.as_ref().map(ToString::to_string),
            records,
            routing_problem: routing.is_none().then_some(NO_PUBLIC_IPS),
            created_at: d.created_at,
            updated_at: d.updated_at,
            verified_at: d.verified_at,
            certificate_expires_at,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn state(&self) -> &'static str {
        self.state
    }
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
    pub fn routed(&self) -> bool {
        self.routed
    }
    pub fn redirect_to(&self) -> Option<&str> {
        self.redirect_to.as_deref()
    }
    pub fn records(&self) -> &[DnsRecord] {
        &self.records
    }
    pub fn routing_problem(&self) -> Option<&'static str> {
        self.routing_problem
    }
    pub fn certificate_expires_at(&self) -> Option<Timestamp> {
        self.certificate_expires_at
    }
}

/// The routing a domain of `project` needs (`None`: an apex, and no public addresses).
fn routing_of(state: &AppState, project: &Project, name: &DomainName) -> Option<Routing> {
    let site = format!("{}.{}", project.slug, state.sites.domain);
    Routing::for_domain(name, &site, &state.domains.public_ips)
}

fn parse_name(state: &AppState, raw: &str) -> ApiResult<DomainName> {
    let name = DomainName::parse_custom(raw, &state.sites.domain)
        .map_err(|e| ApiError::invalid("invalid_domain", e.to_string()))?;
    // The dashboard's and API's own host: a tenant's site there would take them over.
    if url_host(state.github.public_url()).is_some_and(|host| name.as_str().eq_ignore_ascii_case(host)) {
        return Err(ApiError::invalid(
            "invalid_domain",
            format!("{name} is the platform's own address (its dashboard and API); add a domain of your own"),
        ));
    }
    Ok(name)
}

/// The host of a URL such as `https://deploy.example.com:8443/`, without port or trailing dot.
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    Some(host.trim_end_matches('.')).filter(|h| !h.is_empty())
}

/// A name in a URL path: anything that does not parse names no domain of the project.
fn path_name(raw: &str) -> ApiResult<DomainName> {
    DomainName::parse(raw).map_err(|_| ApiError::not_found("domain"))
}

/// Adds a domain to the project, pending verification.
pub async fn add_domain(state: &AppState, project: &Project, req: AddDomain) -> ApiResult<Domain> {
    let name = parse_name(state, &req.name)?;
    if routing_of(state, project, &name).is_none() {
        return Err(ApiError::invalid("apex_needs_public_ips", NO_PUBLIC_IPS));
    }
    let redirect_to = match req.redirect_to.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
        None => None,
        Some(raw) => {
            let target = parse_name(state, raw)?;
            if name.www_counterpart().as_ref() != Some(&target) {
                let message = match name.www_counterpart() {
                    Some(other) => format!("{name} can redirect only to {other} (the other half of its www/apex pair)"),
                    None => format!("{name} is neither an apex nor its www subdomain: it cannot redirect"),
                };
                return Err(ApiError::invalid("invalid_redirect", message));
            }
            if state.db.project_domain(&project.id, &target).await?.is_none() {
                return Err(ApiError::invalid(
                    "invalid_redirect",
                    format!("add {target} to this project first: redirects go to a domain of the same project"),
                ));
            }
            Some(target)
        }
    };
    if state.db.count_project_domains(&project.id).await? >= MAX_DOMAINS_PER_PROJECT {
        return Err(ApiError::invalid(
            "too_many_domains",
            format!("a project may have at most {MAX_DOMAINS_PER_PROJECT} domains; remove one first"),
        ));
    }
    state
        .db
        .add_domain(&project.id, &name, &Domain::new_token(), redirect_to.as_ref())
        .await
        .map_err(|e| match e {
            DbError::Conflict(_) => {
                ApiError::conflict("domain_exists", format!("{name} is already a domain of this project"))
            }
            other => other.into(),
        })
}

/// The project's domain named `raw`, or 404.
pub async fn project_domain(state: &AppState, project: &Project, raw: &str) -> ApiResult<Domain> {
    let name = path_name(raw)?;
    state
        .db
        .project_domain(&project.id, &name)
        .await?
        .ok_or_else(|| ApiError::not_found("domain"))
}

/// Checks the domain's DNS records now. Both right: it routes to the project (and stops routing
/// to any other); otherwise it fails with what DNS answered as the reason.
pub async fn verify_domain(state: &AppState, project: &Project, domain: Domain) -> ApiResult<Domain> {
    if let Err(wait) = state.domain_checks.take(&project.owner_id, std::time::Instant::now()) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_checks",
            format!(
                "at most {} DNS checks per account every {} minutes; try again in {} s",
                limit::MAX_CHECKS,
                limit::WINDOW.as_secs() / 60,
                wait.as_secs().max(1)
            ),
        ));
    }
    let outcome = match routing_of(state, project, &domain.name) {
        None => Err(NO_PUBLIC_IPS.to_owned()),
        Some(routing) => {
            let answers = dns::look_up(&state.domains, &domain.name).await;
            judge(&answers, &domain.name, &domain.token, &routing)
        }
    };
    match outcome {
        Ok(()) => {
            let displaced = match state.db.prove_domain(&project.id, &domain.name).await {
                Ok(Some(displaced)) => displaced,
                Ok(None) => return Err(ApiError::not_found("domain")),
                Err(DbError::Conflict(_)) => {
                    return Err(ApiError::conflict(
                        "verification_race",
                        "another project proved ownership of this name at the same moment; try again",
                    ));
                }
                Err(e) => return Err(e.into()),
            };
            tracing::info!(domain = %domain.name, project = %project.id, displaced = displaced.len(), "custom domain verified");
            for other in displaced {
                state.notify(Notice::RoutesChanged { project_id: other }).await;
            }
            state
                .notify(Notice::RoutesChanged {
                    project_id: project.id.clone(),
                })
                .await;
        }
        Err(reason) => {
            tracing::info!(domain = %domain.name, project = %project.id, %reason, "custom domain verification failed");
            state.db.fail_domain_check(&project.id, &domain.name, &reason).await?;
        }
    }
    state
        .db
        .project_domain(&project.id, &domain.name)
        .await?
        .ok_or_else(|| ApiError::not_found("domain"))
}

/// Removes the domain; a routed one stops answering before this returns (in `serve`).
pub async fn remove_domain(state: &AppState, project: &Project, domain: &Domain) -> ApiResult<()> {
    state.db.delete_domain(&project.id, &domain.name).await?;
    state
        .notify(Notice::RoutesChanged {
            project_id: project.id.clone(),
        })
        .await;
    Ok(())
}

pub async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(slug): Path<String>,
    Json(req): Json<AddDomain>,
) -> ApiResult<impl IntoResponse> {
    let project = owned(&state, &user, &slug).await?;
    let domain = add_domain(&state, &project, req).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "domain": DomainView::load(&state, &project, &domain).await? })),
    ))
}

pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(slug): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let project = owned(&state, &user, &slug).await?;
    let domains = state.db.project_domains(&project.id).await?;
    let mut views = Vec::with_capacity(domains.len());
    for d in &domains {
        views.push(DomainView::load(&state, &project, d).await?);
    }
    Ok(axum::Json(json!({ "domains": views })))
}

pub async fn get(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((slug, name)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let project = owned(&state, &user, &slug).await?;
    let domain = project_domain(&state, &project, &name).await?;
    Ok(axum::Json(
        json!({ "domain": DomainView::load(&state, &project, &domain).await? }),
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((slug, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let project = owned(&state, &user, &slug).await?;
    let domain = project_domain(&state, &project, &name).await?;
    remove_domain(&state, &project, &domain).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn verify(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((slug, name)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let project = owned(&state, &user, &slug).await?;
    let domain = project_domain(&state, &project, &name).await?;
    let domain = verify_domain(&state, &project, domain).await?;
    Ok(axum::Json(
        json!({ "domain": DomainView::load(&state, &project, &domain).await? }),
    ))
}

#[cfg(test)]
mod tests {
    use super::url_host;

    #[test]
    fn hosts_of_public_urls() {
        assert_eq!(url_host("https://deploy.example.com"), Some("deploy.example.com"));
        assert_eq!(
            url_host("http://Deploy.Example.com.:8080/x?y"),
            Some("Deploy.Example.com")
        );
        assert_eq!(url_host("http://127.0.0.1:8080"), Some("127.0.0.1"));
        assert_eq!(url_host("http://[::1]:80/"), Some("[::1]"));
        assert_eq!(url_host("http://"), None);
    }
}
