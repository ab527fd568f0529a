//! Projects: the list, creating one (with detection first), its page, settings and deletion.

use super::session::Session;
use super::text::{duration, state_label, when};
use super::{Flash, Form, Nav, PostedForm, api_error_page, render, see_other};
use crate::AppState;
use crate::deployments::{CreateDeployment, create_deployment};
use crate::projects::{
    CreateProject, PatchProject, create_project, delete_project, detect_project, owned, update_project,
};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use platform::model::{Deployment, DeploymentState, Framework, Project};
use serde::Deserialize;
use std::collections::BTreeMap;

pub(crate) struct LatestView {
    id: String,
    state: &'static str,
    state_label: &'static str,
    short_sha: Option<String>,
    created_at: String,
    created_at_iso: String,
}

pub(crate) struct ProjectRow {
    slug: String,
    name: String,
    url: String,
    source: String,
    latest: Option<LatestView>,
}

#[derive(Template)]
#[template(path = "projects/list.html")]
struct ListPage {
    nav: Option<Nav>,
    flash: Option<Flash>,
    projects: Vec<ProjectRow>,
}

fn source_label(p: &Project) -> String {
    match &p.github {
        Some(g) => format!("github.com/{}", g.full_name),
        None => p.git_url.to_string(),
    }
}

#[derive(Deserialize)]
pub(crate) struct DoneQuery {
    done: Option<String>,
}

pub(crate) async fn list(State(state): State<AppState>, session: Session, Query(q): Query<DoneQuery>) -> Response {
    let nav = Nav::new(&session, "projects");
    let projects = match state.db.list_projects(&session.user.id).await {
        Ok(p) => p,
        Err(e) => return api_error_page(nav, e.into()),
    };
    let mut rows = Vec::with_capacity(projects.len());
    for p in &projects {
        let latest = state.db.list_deployments(&p.id, 1).await.ok().and_then(|mut d| d.pop());
        rows.push(ProjectRow {
            slug: p.slug.to_string(),
            name: p.name.clone(),
            url: state.sites.url_for(p.slug.as_str()),
            source: source_label(p),
            latest: latest.map(|d| LatestView {
                id: d.id.to_string(),
                state: d.state.as_str(),
                state_label: state_label(d.state),
                short_sha: d.commit_sha.as_ref().map(|c| c.short().to_owned()),
                created_at: when(d.created_at),
                created_at_iso: d.created_at.to_rfc3339(),
            }),
        });
    }
    render(
        StatusCode::OK,
        ListPage {
            nav,
            flash: Flash::done(q.done.as_deref()),
            projects: rows,
        },
    )
}

// ---------------------------------------------------------------------------------------------
// New project

pub(crate) struct RepoView {
    full_name: String,
    private: bool,
}

pub(crate) struct InstallationView {
    account: String,
    repositories: Vec<RepoView>,
}

pub(crate) struct DetectedView {
    source: String,
    framework_label: String,
    branch: String,
    short_sha: String,
    reasons: Vec<String>,
    name: String,
    slug_placeholder: String,
}

/// The build settings fields: values the user set, placeholders from detection.
#[derive(Default)]
pub(crate) struct BuildView {
    framework: String,
    root_dir: String,
    install_command: String,
    build_command: String,
    output_dir: String,
    install_placeholder: String,
    build_placeholder: String,
    output_placeholder: String,
}

/// The framework choices: the slug as the value, the label as the text.
fn frameworks() -> Vec<(&'static str, &'static str)> {
    Framework::ALL.iter().map(|f| (f.as_str(), f.label())).collect()
}

#[derive(Template)]
#[template(path = "projects/new.html")]
struct NewPage {
    nav: Option<Nav>,
    flash: Option<Flash>,
    csrf: String,
    github_connected: bool,
    installations: Vec<InstallationView>,
    git_url: String,
    github_repository: String,
    branch: String,
    root_dir: String,
    detected: Option<DetectedView>,
    sites_domain: String,
    frameworks: Vec<(&'static str, &'static str)>,
    build: BuildView,
    existing_env: Vec<String>,
}

async fn installations_of(state: &AppState, session: &Session) -> Vec<InstallationView> {
    let mut out = Vec::new();
    for i in state.db.installations_of(&session.user.id).await.unwrap_or_default() {
        let repos = state.db.repositories_of(i.id).await.unwrap_or_default();
        out.push(InstallationView {
            account: i.account_login,
            repositories: repos
                .into_iter()
                .map(|r| RepoView {
                    full_name: r.full_name,
                    private: r.private,
                })
                .collect(),
        });
    }
    out
}

async fn new_project_page(state: &AppState, session: &Session, form: Option<&Form>, flash: Option<Flash>) -> NewPage {
    let field = |name: &str| form.and_then(|f| f.text(name)).unwrap_or_default();
    NewPage {
        nav: Nav::new(session, "new"),
        flash,
        csrf: session.csrf.clone(),
        github_connected: state.github.app().is_some(),
        installations: installations_of(state, session).await,
        git_url: field("git_url"),
        github_repository: field("github_repository"),
        branch: field("branch"),
        root_dir: field("root_dir"),
        detected: None,
        sites_domain: state.sites.domain.clone(),
        frameworks: frameworks(),
        build: BuildView {
            root_dir: field("root_dir"),
            ..BuildView::default()
        },
        existing_env: Vec::new(),
    }
}

pub(crate) async fn new_page(State(state): State<AppState>, session: Session) -> Response {
    render(StatusCode::OK, new_project_page(&state, &session, None, None).await)
}

/// Step 1 → 2: look at the repository and show what would be built.
pub(crate) async fn detect(State(state): State<AppState>, PostedForm { session, form }: PostedForm) -> Response {
    let git_url = form.text("git_url");
    let github_repository = form.text("github_repository");
    // A repository picked from the list wins over a URL left in the other field.
    let (git_url, github_repository) = if github_repository.is_some() {
        (None, github_repository)
    } else {
        (git_url, None)
    };
    let detected = detect_project(
        &state,
        &session.user,
        git_url.as_deref(),
        github_repository.as_deref(),
        form.text("branch").as_deref(),
        form.text("root_dir").as_deref(),
    )
    .await;
    let mut page = new_project_page(&state, &session, Some(&form), None).await;
    match detected {
        Ok(d) => {
            let source = github_repository.clone().or(git_url.clone()).unwrap_or_default();
            let name = source
                .trim_end_matches(".git")
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            page.git_url = git_url.unwrap_or_default();
            page.github_repository = github_repository.unwrap_or_default();
            page.build = BuildView {
                framework: d.plan.framework.as_str().to_owned(),
                root_dir: form.text("root_dir").unwrap_or_default(),
                install_placeholder: d
                    .plan
                    .install_command
                    .clone()
                    .unwrap_or_else(|| "(nothing to install)".into()),
                build_placeholder: d.plan.build_command.clone().unwrap_or_else(|| "(no build step)".into()),
                output_placeholder: d
                    .plan
                    .output_candidates
                    .first()
                    .map(|o| o.to_string())
                    .unwrap_or_default(),
                ..BuildView::default()
            };
            page.detected = Some(DetectedView {
                source,
                framework_label: d.plan.framework.label().to_owned(),
                branch: d.branch.to_string(),
                short_sha: d.commit.short().to_owned(),
                reasons: d.plan.reasons,
                slug_placeholder: platform::ProjectSlug::from_name(&name)
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
                name,
            });
            render(StatusCode::OK, page)
        }
        Err(e) => {
            page.flash = Flash::error(e.message());
            render(e.status(), page)
        }
    }
}

/// The environment variables a form sets: `env_key`/`env_value` pairs (empty keys skipped) and
/// `env_set.<KEY>` values; `env_remove` names the ones to delete.
fn env_from(form: &Form) -> BTreeMap<String, Option<String>> {
    let mut env = BTreeMap::new();
    for (k, v) in form.all("env_key").zip(form.all("env_value")) {
        if !k.trim().is_empty() {
            env.insert(k.trim().to_owned(), Some(v.to_owned()));
        }
    }
    for (k, v) in form.prefixed("env_set.") {
        if !v.is_empty() {
            env.insert(k.to_owned(), Some(v.to_owned()));
        }
    }
    for k in form.all("env_remove") {
        env.insert(k.to_owned(), None);
    }
    env
}

/// Step 2: create the project (and its first deployment).
pub(crate) async fn create(State(state): State<AppState>, PostedForm { session, form }: PostedForm) -> Response {
    let req = CreateProject {
        name: form.get("name").unwrap_or_default().to_owned(),
        slug: form.text("slug"),
        git_url: form
            .text("git_url")
            .filter(|_| form.text("github_repository").is_none()),
        github_repository: form.text("github_repository"),
        branch: form.text("branch"),
        root_dir: form.text("root_dir"),
        framework: form.text("framework"),
        install_command: form.text("install_command"),
        build_command: form.text("build_command"),
        output_dir: form.text("output_dir"),
        env: Some(
            env_from(&form)
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect(),
        ),
    };
    let project = match create_project(&state, &session.user, req).await {
        Ok(p) => p,
        Err(e) => {
            let page = new_project_page(&state, &session, Some(&form), Flash::error(e.message())).await;
            return render(e.status(), page);
        }
    };
    if form.get("deploy").is_some() {
        match create_deployment(&state, &project, CreateDeployment::default()).await {
            Ok(d) => return see_other(&format!("/deployments/{}", d.id)),
            Err(e) => return api_error_page(Nav::new(&session, "projects"), e),
        }
    }
    see_other(&format!("/projects/{}", project.slug))
}

// ---------------------------------------------------------------------------------------------
// A project's page

pub(crate) struct ProjectHead {
    name: String,
    slug: String,
    url: String,
    source: String,
    branch: String,
    deployed: bool,
    hsts: bool,
}

pub(crate) struct DeploymentRow {
    id: String,
    state: &'static str,
    state_label: &'static str,
    is_production: bool,
    branch: String,
    short_sha: Option<String>,
    commit: String,
    commit_message: String,
    trigger: &'static str,
    duration: String,
    created_at: String,
    created_at_iso: String,
    can_cancel: bool,
    can_promote: bool,
    is_older: bool,
    is_final: bool,
}

#[derive(Template)]
#[template(path = "projects/show.html")]
struct ShowPage {
    nav: Option<Nav>,
    flash: Option<Flash>,
    csrf: String,
    project: ProjectHead,
    deployments: Vec<DeploymentRow>,
    frameworks: Vec<(&'static str, &'static str)>,
    build: BuildView,
    existing_env: Vec<String>,
    domains: Vec<super::domain_pages::DomainRow>,
}

/// How long a deployment took (or has taken so far).
pub(crate) fn took(d: &Deployment) -> String {
    match (d.started_at.or(Some(d.created_at)), d.finished_at) {
        (Some(start), Some(end)) => duration(end.millis_since(start)),
        _ => "—".into(),
    }
}

fn deployment_row(
    d: &Deployment,
    production: Option<&platform::DeploymentId>,
    production_number: Option<u64>,
    number: u64,
) -> DeploymentRow {
    DeploymentRow {
        id: d.id.to_string(),
        state: d.state.as_str(),
        state_label: state_label(d.state),
        is_production: production == Some(&d.id),
        branch: d.branch.to_string(),
        short_sha: d.commit_sha.as_ref().map(|c| c.short().to_owned()),
        commit: d.commit_sha.as_ref().map(|c| c.to_string()).unwrap_or_default(),
        commit_message: d.commit_message.clone().unwrap_or_default(),
        trigger: d.trigger.as_str(),
        duration: took(d),
        created_at: when(d.created_at),
        created_at_iso: d.created_at.to_rfc3339(),
        can_cancel: !d.state.is_terminal(),
        can_promote: d.state == DeploymentState::Ready && production != Some(&d.id),
        is_older: production_number.is_some_and(|p| number < p),
        is_final: d.state.is_terminal(),
    }
}

pub(crate) async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(slug): Path<String>,
    Query(q): Query<DoneQuery>,
) -> Response {
    let nav = Nav::new(&session, "projects");
    let project = match owned(&state, &session.user, &slug).await {
        Ok(p) => p,
        Err(e) => return api_error_page(nav, e),
    };
    let deployments = match state.db.list_deployments(&project.id, 100).await {
        Ok(d) => d,
        Err(e) => return api_error_page(nav, e.into()),
    };
    let production = project.production_deployment_id.as_ref();
    // Deployments are listed newest first: the index tells older from newer.
    let count = deployments.len() as u64;
    let production_number = deployments
        .iter()
        .position(|d| Some(&d.id) == production)
        .map(|i| count - i as u64);
    let rows = deployments
        .iter()
        .enumerate()
        .map(|(i, d)| deployment_row(d, production, production_number, count - i as u64))
        .collect();
    let b = &project.build;
    let domains = super::domain_pages::rows(&state, &project).await;
    render(
        StatusCode::OK,
        ShowPage {
            domains,
            nav,
            flash: Flash::done(q.done.as_deref()),
            csrf: session.csrf.clone(),
            project: ProjectHead {
                name: project.name.clone(),
                slug: project.slug.to_string(),
                url: state.sites.url_for(project.slug.as_str()),
                source: source_label(&project),
                branch: project.branch.to_string(),
                deployed: production.is_some(),
                hsts: project.hsts,
            },
            deployments: rows,
            frameworks: frameworks(),
            build: BuildView {
                framework: b.framework.map(|f| f.as_str().to_owned()).unwrap_or_default(),
                root_dir: b.root_dir.to_string(),
                install_command: b.install_command.clone().unwrap_or_default(),
                build_command: b.build_command.clone().unwrap_or_default(),
                output_dir: b.output_dir.as_ref().map(|o| o.to_string()).unwrap_or_default(),
                install_placeholder: "Detected from the lockfile".into(),
                build_placeholder: "Detected from package.json".into(),
                output_placeholder: "Detected from the framework".into(),
            },
            existing_env: project.env_keys.clone(),
        },
    )
}

/// A form posted on one of the user's projects: checked against forgery, and the project found
/// (or the page to answer with instead).
async fn project_form(state: &AppState, session: &Session, slug: &str) -> Result<(Option<Nav>, Project), Response> {
    let nav = Nav::new(session, "projects");
    match owned(state, &session.user, slug).await {
        Ok(p) => Ok((nav, p)),
        Err(e) => Err(api_error_page(nav, e)),
    }
}

pub(crate) async fn deploy(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    PostedForm { session, form }: PostedForm,
) -> Response {
    let (nav, project) = match project_form(&state, &session, &slug).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let req = CreateDeployment {
        branch: form.text("branch"),
        commit: form.text("commit"),
    };
    match create_deployment(&state, &project, req).await {
        Ok(d) => see_other(&format!("/deployments/{}", d.id)),
        Err(e) => api_error_page(nav, e),
    }
}

pub(crate) async fn settings(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    PostedForm { session, form }: PostedForm,
) -> Response {
    let (nav, project) = match project_form(&state, &session, &slug).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    // An empty build field means "detect it" (null).
    let optional = |name: &str| Some(form.text(name));
    let req = PatchProject {
        name: form.text("name"),
        branch: form.text("branch"),
        root_dir: Some(form.text("root_dir").unwrap_or_default()),
        framework: optional("framework"),
        install_command: optional("install_command"),
        build_command: optional("build_command"),
        output_dir: optional("output_dir"),
        env: Some(env_from(&form)),
        hsts: Some(form.get("hsts") == Some("1")),
        ..PatchProject::default()
    };
    match update_project(&state, project, req).await {
        Ok(p) => see_other(&format!("/projects/{}?done=saved", p.slug)),
        Err(e) => api_error_page(nav, e),
    }
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    PostedForm { session, form }: PostedForm,
) -> Response {
    let (nav, project) = match project_form(&state, &session, &slug).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    if form.get("confirm") != Some(project.slug.as_str()) {
        return super::error_page(
            nav,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Not deleted",
            "Type the project's slug exactly to confirm the deletion.",
        );
    }
    match delete_project(&state, project).await {
        Ok(()) => see_other("/?done=deleted"),
        Err(e) => api_error_page(nav, e),
    }
}
