//! A deployment: its state, URLs and build log (live with JavaScript), and cancel / promote.

use super::project_pages::took;
use super::session::Session;
use super::text::{duration, state_label, strip_ansi, when};
use super::{Nav, PostedForm, api_error_page, render, see_other};
use crate::AppState;
use crate::deployments::{cancel_deployment, owned_deployment, promote_deployment};
use crate::logs::READ_CHUNK;
use askama::Template;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use db::{Database, DbError};
use futures::TryStreamExt;
use platform::DeploymentId;
use platform::model::{Deployment, DeploymentState, LogLine};
use std::fmt::Write;

/// Lines rendered into the page, and about how much of their text (the live log and the
/// download have them all).
const PAGE_LINES: u32 = 5000;
const PAGE_BYTES: usize = 1 << 20;

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
    let lines = match crate::logs::read_page(&state.db, &d.id, 0, PAGE_LINES, PAGE_BYTES).await {
        Ok((l, _)) => l,
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
///
/// The body is streamed: it is read from the database a page at a time (by sequence number) as
/// the client takes it, so a download holds one page in memory whatever the log's size, and a
/// slow client slows only its own reads.
pub(crate) async fn log_text(State(state): State<AppState>, session: Session, Path(id): Path<String>) -> Response {
    let nav = Nav::new(&session, "projects");
    let (d, _) = match owned_deployment(&state, &session.user, &id).await {
        Ok(found) => found,
        Err(e) => return api_error_page(nav, e),
    };
    // The first page is read before answering, so that a database that cannot be read gets an
    // error page rather than an empty download.
    let first = match state.db.log_lines(&d.id, 0, READ_CHUNK).await {
        Ok(l) => l,
        Err(e) => return api_error_page(nav, e.into()),
    };
    let pages = Pages {
        db: state.db.clone(),
        id: d.id.clone(),
        next: Some(first),
        after: 0,
    };
    let body = futures::stream::try_unfold(pages, Pages::next).map_err(|e| {
        tracing::error!("cannot read the log for a download: {e}");
        e
    });
    let mut resp = (StatusCode::OK, Body::from_stream(body)).into_response();
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

/// Where a log download is: the page read ahead (the first), or the last line sent.
struct Pages {
    db: Database,
    id: DeploymentId,
    next: Option<Vec<LogLine>>,
    after: u64,
}

impl Pages {
    /// The next chunk of the body, or `None` at the end of the log.
    async fn next(mut self) -> Result<Option<(Bytes, Self)>, DbError> {
        let lines = match self.next.take() {
            Some(lines) => lines,
            None => self.db.log_lines(&self.id, self.after, READ_CHUNK).await?,
        };
        let Some(last) = lines.last() else {
            return Ok(None);
        };
        self.after = last.seq;
        let mut out = String::with_capacity(lines.iter().map(|l| l.text.len() + 32).sum());
        for l in &lines {
            let ts = l.ts.to_rfc3339();
            let _ = writeln!(
                out,
                "{} {:<6} {}",
                ts.get(11..23).unwrap_or(&ts),
                l.stream.as_str(),
                strip_ansi(&l.text)
            );
        }
        Ok(Some((Bytes::from(out), self)))
    }
}
