//! What the API shows of each record. Secrets (password hashes, token hashes, environment
//! values) have no field here, so they cannot be serialized by accident.

use db::TokenRecord;
use platform::Timestamp;
use platform::model::{ArtifactSummary, Deployment, Project, User};
use platform::settings::SitesSettings;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Serialize)]
pub struct UserView<'a> {
    id: &'a str,
    name: &'a str,
    email: &'a str,
    created_at: Timestamp,
}

impl<'a> From<&'a User> for UserView<'a> {
    fn from(u: &'a User) -> Self {
        Self {
            id: u.id.as_str(),
            name: &u.name,
            email: &u.email,
            created_at: u.created_at,
        }
    }
}

#[derive(Serialize)]
pub struct TokenView<'a> {
    id: &'a str,
    name: &'a str,
    created_at: Timestamp,
    last_used_at: Option<Timestamp>,
}

impl<'a> From<&'a TokenRecord> for TokenView<'a> {
    fn from(t: &'a TokenRecord) -> Self {
        Self {
            id: t.id.as_str(),
            name: &t.name,
            created_at: t.created_at,
            last_used_at: t.last_used_at,
        }
    }
}

#[derive(Serialize)]
pub struct ProjectView<'a> {
    id: &'a str,
    name: &'a str,
    slug: &'a str,
    git_url: &'a str,
    branch: &'a str,
    root_dir: &'a str,
    framework: Option<&'static str>,
    install_command: Option<&'a str>,
    build_command: Option<&'a str>,
    output_dir: Option<&'a str>,
    /// Names only: values are write-only.
    env_keys: &'a [String],
    /// The GitHub repository (`owner/name`) the project deploys, when linked to one.
    github_repository: Option<&'a str>,
    production_url: String,
    production_deployment_id: Option<&'a str>,
    hsts: bool,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl<'a> ProjectView<'a> {
    pub fn new(p: &'a Project, sites: &SitesSettings) -> Self {
        Self {
            id: p.id.as_str(),
            name: &p.name,
            slug: p.slug.as_str(),
            git_url: p.git_url.as_str(),
            branch: p.branch.as_str(),
            root_dir: p.build.root_dir.as_str(),
            framework: p.build.framework.map(|f| f.as_str()),
            install_command: p.build.install_command.as_deref(),
            build_command: p.build.build_command.as_deref(),
            output_dir: p.build.output_dir.as_ref().map(|d| d.as_str()),
            env_keys: &p.env_keys,
            github_repository: p.github.as_ref().map(|g| g.full_name.as_str()),
            production_url: sites.url_for(p.slug.as_str()),
            production_deployment_id: p.production_deployment_id.as_ref().map(|d| d.as_str()),
            hsts: p.hsts,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

#[derive(Serialize)]
pub struct DeploymentView<'a> {
    id: &'a str,
    project: &'a str,
    state: &'static str,
    target: &'static str,
    /// Whether the project's site serves this deployment right now.
    is_production: bool,
    branch: &'a str,
    commit_sha: Option<&'a str>,
    commit_message: Option<&'a str>,
    commit_author: Option<&'a str>,
    /// What started it: `api`, `push`, `pull_request` or `rerequest`.
    trigger: &'static str,
    framework: Option<&'static str>,
    /// Where the deployment is served: the project's site for production deployments, the
    /// branch's preview host (`<branch>--<project>`) for previews.
    url: Option<String>,
    /// This deployment's own URL (`<short id>--<project>`), serving exactly it for as long as it
    /// exists (once ready).
    deployment_url: Option<String>,
    created_at: Timestamp,
    started_at: Option<Timestamp>,
    finished_at: Option<Timestamp>,
    /// Milliseconds spent in each phase.
    phases: &'a BTreeMap<String, u64>,
    error: Option<&'a str>,
    artifact: Option<ArtifactSummary>,
    cancel_requested: bool,
}

impl<'a> DeploymentView<'a> {
    /// `production` is the deployment the project's site serves.
    pub fn new(d: &'a Deployment, production: Option<&platform::DeploymentId>, sites: &SitesSettings) -> Self {
        Self {
            id: d.id.as_str(),
            project: d.project_slug.as_str(),
            state: d.state.as_str(),
            target: d.target.as_str(),
            is_production: production == Some(&d.id),
            branch: d.branch.as_str(),
            commit_sha: d.commit_sha.as_ref().map(|c| c.as_str()),
            commit_message: d.commit_message.as_deref(),
            commit_author: d.commit_author.as_deref(),
            trigger: d.trigger.as_str(),
            framework: d.framework.map(|f| f.as_str()),
            url: sites.deployment_url(d),
            deployment_url: sites.immutable_url(d),
            created_at: d.created_at,
            started_at: d.started_at,
            finished_at: d.finished_at,
            phases: &d.phases,
            error: d.error.as_deref(),
            artifact: d.artifact,
            cancel_requested: d.cancel_requested,
        }
    }
}
