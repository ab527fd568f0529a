//! A deployment: its state, URLs and build log (live with JavaScript), and cancel / promote.

use super::project_pages::took;
use super::session::Session;
use super::text::{duration, state_label, strip_ansi, when};
use super::{Nav, PostedForm, api_error_page, render, see_other};
use crate::AppState;
use crate::deployments::{cancel_deployment, owned_deployment, promote_deployment};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use platform::model::{Deployment, DeploymentState};

/// Lines rendered into the page (the live log and the download have them all).
const PAGE_LINES: u32 = 5000;

pub(crate) struct LineView {
    seq: u64,
    stream: &'static str,
    text: String,
}

pub(crate) struct DeploymentHead {
    id: String,
    number: String,
    project_name: String,
    project_slug: String,
    state: &'static str,
    state_label: &'static str,
    is_final: bool,
    can_promote: bool,
    error: String,
    commit_sha: String,
    short_sha: String,
    commit_message: String,
    commit_author: String,
    branch: String,
    target: &'static str,
    trigger: &'static str,
    url: String,
    deployment_url: String,
    created_at: String,
    created_at_iso: String,
    duration: String,
    phases: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "deployments/show.html")]
struct ShowPage {
    nav: Option<Nav>,
    flash: Option<super::Flash>,
    csrf: String,
    d: DeploymentHead,
    lines: Vec<LineView>,
}

pub(crate) async fn show(State(state): State<AppState>, session: Session, Path(id): Path<String>) -> Response {
    let nav = Nav::new(&session, "projects");
    let (d, production) = match owned_deployment(&state, &session.user, &id).await {
        Ok(found) => found,
        Err(e) => return api_error_page(nav, e),
    };
    let project = match state.db.project(&d.project_id).await {
        Ok(Some(p)) => p,
        _ => return super::not_found_page(nav),
    };
    let number = state
        .db
        .list_deployments(&d.project_id, 10_000)
        .await
        .map(|all| all.iter().position(|x| x.id == d.id).map(|i| all.len() - i))
        .ok()
        .flatten()
        .map(|n| n.to_string())
        .unwrap_or_default();
    let lines = match state.db.log_lines(&d.id, 0, PAGE_LINES).await {
        Ok(l) => l,
        Err(e) => return api_error_page(nav, e.into()),
    };
    let order = ["cloning", "installing", "building", "uploading"];
    let mut phases: Vec<(String, String)> = d
        .phases
        .iter()
        .map(|(name, ms)| (name.clone(), duration(*ms)))
        .collect();
    phases.sort_by_key(|(name, _)| order.iter().position(|o| o == name).unwrap_or(order.len()));
    let head = DeploymentHead {
        id: d.id.to_string(),
        number,
        project_name: project.name.clone(),
        project_slug: project.slug.to_string(),
        state: d.state.as_str(),
        state_label: state_label(d.state),
        is_final: d.state.is_terminal(),
        can_promote: d.state == DeploymentState::Ready && production.as_ref() != Some(&d.id),
        error: d.error.clone().unwrap_or_default(),
        commit_sha: d.commit_sha.as_ref().map(|c| c.to_string()).unwrap_or_default(),
        short_sha: d
            .commit_sha
            .as_ref()
            .map(|c| c.short().to_owned())
            .unwrap_or_else(|| "—".into()),
        commit_message: d.commit_message.clone().unwrap_or_default(),
        commit_author: d.commit_author.clone().unwrap_or_default(),
        branch: d.branch.to_string(),
        target: d.target.as_str(),
        trigger: d.trigger.as_str(),
        url: state.sites.deployment_url(&d).unwrap_or_default(),
        deployment_url: state.sites.immutable_url(&d).unwrap_or_default(),
        created_at: when(d.created_at),
        created_at_iso: d.created_at.to_rfc3339(),
        duration: took(&d),
        phases,
    };
    let lines = lines
        .into_iter()
        .map(|l| LineView {
            seq: l.seq,
            stream: l.stream.as_str(),
            text: strip_ansi(&l.text),
        })
        .collect();
    render(
        StatusCode::OK,
        ShowPage {
            nav,
            flash: None,
            csrf: session.csrf.clone(),
            d: head,
            lines,
        },
    )
}

/// A form posted on one of the user's deployments: checked against forgery, and the deployment
/// found (or the page to answer with instead).
async fn deployment_form(state: &AppState, session: &Session, id: &str) -> Result<(Option<Nav>, Deployment), Response> {
    let nav = Nav::new(session, "projects");
    match owned_deployment(state, &session.user, id).await {
        Ok((d, _)) => Ok((nav, d)),
        Err(e) => Err(api_error_page(nav, e)),
    }
}

pub(crate) async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    PostedForm { session, .. }: PostedForm,
) -> Response {
    let (nav, d) = match deployment_form(&state, &session, &id).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    match cancel_deployment(&state, d).await {
        Ok((_, d)) => see_other(&format!("/deployments/{}", d.id)),
        Err(e) => api_error_page(nav, e),
    }
}

pub(crate) async fn promote(
    State(state): State<AppState>,
    Path(id): Path<String>,
    PostedForm { session, .. }: PostedForm,
) -> Response {
    let (nav, d) = match deployment_form(&state, &session, &id).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    match promote_deployment(&state, &d).await {
        Ok(()) => see_other(&format!("/projects/{}?done=promoted", d.project_slug)),
        Err(e) => api_error_page(nav, e),
    }
}

/// The whole log as plain text, one line per log line: time, stream, text.
pub(crate) async fn log_text(State(state): State<AppState>, session: Session, Path(id): Path<String>) -> Response {
    let nav = Nav::new(&session, "projects");
    let (d, _) = match owned_deployment(&state, &session.user, &id).await {
        Ok(found) => found,
        Err(e) => return api_error_page(nav, e),
    };
    let mut out = String::new();
    let mut after = 0;
    loop {
        let lines = match state.db.log_lines(&d.id, after, 5000).await {
            Ok(l) => l,
            Err(e) => return api_error_page(nav, e.into()),
        };
        for l in &lines {
            let ts = l.ts.to_rfc3339();
            out.push_str(&format!(
                "{} {:<6} {}\n",
                &ts[11..23],
                l.stream.as_str(),
                strip_ansi(&l.text)
            ));
            after = l.seq;
        }
        if lines.len() < 5000 {
            break;
        }
    }
    let mut resp = (StatusCode::OK, out).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}-{}.log\"", d.project_slug, d.id)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}
