//! A project's custom domains on its page: add one (with the records to set), verify, remove.
//! The same service functions as the API's (`crate::domains`).

use super::session::Session;
use super::{Nav, PostedForm, api_error_page, see_other};
use crate::AppState;
use crate::domains::{AddDomain, DomainView, add_domain, project_domain, remove_domain, verify_domain};
use crate::projects::owned;
use axum::extract::{Path, State};
use axum::response::Response;
use platform::domain::DomainState;
use platform::model::Project;

/// A domain as the project page shows it.
pub(crate) struct DomainRow {
    pub(crate) name: String,
    pub(crate) state: &'static str,
    pub(crate) state_label: &'static str,
    /// The state badge's colour: the deployment states' classes.
    pub(crate) state_class: &'static str,
    pub(crate) reason: Option<String>,
    pub(crate) routed: bool,
    pub(crate) redirect_to: Option<String>,
    /// (type, name, value) of each record to set.
    pub(crate) records: Vec<(&'static str, String, String)>,
    pub(crate) routing_problem: Option<&'static str>,
    /// When the domain's certificate expires (RFC 3339), once it has one.
    pub(crate) certificate_expires_at: Option<String>,
}

/// The project's domains for its page (empty, and logged, when they cannot be read: the rest of
/// the page still shows).
pub(crate) async fn rows(state: &AppState, project: &Project) -> Vec<DomainRow> {
    let domains = match state.db.project_domains(&project.id).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(project = %project.id, "cannot list the project's domains: {e}");
            return Vec::new();
        }
    };
    let mut rows = Vec::with_capacity(domains.len());
    for d in &domains {
        let view = match DomainView::load(state, project, d).await {
            Ok(view) => view,
            Err(e) => {
                tracing::error!(project = %project.id, domain = %d.name, "cannot read the domain's certificate: {e:?}");
                return Vec::new();
            }
        };
        let parsed = DomainState::parse(view.state()).unwrap_or(DomainState::PendingVerification);
        rows.push(DomainRow {
            name: view.name().to_owned(),
            state: view.state(),
            state_label: parsed.label(),
            state_class: match parsed {
                DomainState::PendingVerification => "queued",
                DomainState::Verified | DomainState::CertificateIssued => "ready",
                DomainState::Failed => "failed",
            },
            reason: view.reason().map(str::to_owned),
            routed: view.routed(),
            redirect_to: view.redirect_to().map(str::to_owned),
            records: view
                .records()
                .iter()
                .map(|r| (r.kind, r.name.clone(), r.value.clone()))
                .collect(),
            routing_problem: view.routing_problem(),
            certificate_expires_at: view.certificate_expires_at().map(|t| t.to_string()),
        });
    }
    rows
}

async fn project_of(state: &AppState, session: &Session, slug: &str) -> Result<(Option<Nav>, Project), Response> {
    let nav = Nav::new(session, "projects");
    match owned(state, &session.user, slug).await {
        Ok(p) => Ok((nav, p)),
        Err(e) => Err(api_error_page(nav, e)),
    }
}

fn back(project: &Project, done: &str) -> Response {
    see_other(&format!("/projects/{}?done={done}#domains", project.slug))
}

pub(crate) async fn add(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    PostedForm { session, form }: PostedForm,
) -> Response {
    let (nav, project) = match project_of(&state, &session, &slug).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let req = AddDomain {
        name: form.text("name").unwrap_or_default(),
        redirect_to: form.text("redirect_to"),
    };
    match add_domain(&state, &project, req).await {
        Ok(_) => back(&project, "domain-added"),
        Err(e) => api_error_page(nav, e),
    }
}

pub(crate) async fn verify(
    State(state): State<AppState>,
    Path((slug, name)): Path<(String, String)>,
    PostedForm { session, .. }: PostedForm,
) -> Response {
    let (nav, project) = match project_of(&state, &session, &slug).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let domain = match project_domain(&state, &project, &name).await {
        Ok(d) => d,
        Err(e) => return api_error_page(nav, e),
    };
    match verify_domain(&state, &project, domain).await {
        Ok(d) if d.is_routed() && d.state != DomainState::Failed => back(&project, "domain-verified"),
        Ok(_) => back(&project, "domain-failed"),
        Err(e) => api_error_page(nav, e),
    }
}

pub(crate) async fn remove(
    State(state): State<AppState>,
    Path((slug, name)): Path<(String, String)>,
    PostedForm { session, .. }: PostedForm,
) -> Response {
    let (nav, project) = match project_of(&state, &session, &slug).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let domain = match project_domain(&state, &project, &name).await {
        Ok(d) => d,
        Err(e) => return api_error_page(nav, e),
    };
    match remove_domain(&state, &project, &domain).await {
        Ok(()) => back(&project, "domain-removed"),
        Err(e) => api_error_page(nav, e),
    }
}

/// The messages of the redirects above (see `Flash::done`).
pub(crate) fn done_text(code: &str) -> Option<(&'static str, &'static str)> {
    Some(match code {
        "domain-added" => ("success", "Domain added. Set the DNS records below, then verify."),
        "domain-verified" => ("success", "Domain verified: it serves this project."),
        "domain-failed" => (
            "error",
            "The DNS records do not match yet; the domain's reason says what was found.",
        ),
        "domain-removed" => ("success", "Domain removed. It no longer serves this project."),
        _ => return None,
    })
}
