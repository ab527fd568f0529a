//! Projects: one repository, one site.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{CurrentUser, Json};
use crate::views::ProjectView;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use builder::git::GitError;
use db::{NewProject, ProjectUpdate};
use platform::bus::Notice;
use platform::model::{BuildSettings, Framework, GithubLink, Project, User};
use platform::settings::Secret;
use platform::{BranchName, EnvKey, GitUrl, ProjectSlug, RelPath};
use serde::{Deserialize, Deserializer};
use serde_json::json;
use std::collections::BTreeMap;

const MAX_ENV_VARS: usize = 100;
const MAX_ENV_VALUE: usize = 64 * 1024;
const MAX_COMMAND: usize = 4096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    pub name: String,
    pub slug: Option<String>,
    /// Either a git URL, or a GitHub repository (`owner/name`) an installation linked to the
    /// user can reach.
    pub git_url: Option<String>,
    pub github_repository: Option<String>,
    pub branch: Option<String>,
    pub root_dir: Option<String>,
    pub framework: Option<String>,
    pub install_command: Option<String>,
    pub build_command: Option<String>,
    pub output_dir: Option<String>,
    pub env: Option<BTreeMap<String, String>>,
}

/// Every field optional; for the build settings, `null` means "detect again".
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PatchProject {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub git_url: Option<String>,
    pub branch: Option<String>,
    pub root_dir: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub framework: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub install_command: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub build_command: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub output_dir: Option<Option<String>>,
    /// Merged into the current variables; `null` deletes one.
    pub env: Option<BTreeMap<String, Option<String>>>,
    /// `Strict-Transport-Security` on the HTTPS answers of the project's hosts.
    pub hsts: Option<bool>,
}

/// Tells a field set to `null` (`Some(None)`) from an absent one (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn parse_slug(raw: &str) -> ApiResult<ProjectSlug> {
    ProjectSlug::parse(raw).map_err(|e| ApiError::invalid("invalid_slug", e.to_string()))
}

fn parse_git_url(state: &AppState, raw: &str) -> ApiResult<GitUrl> {
    let url = GitUrl::parse(raw).map_err(|e| ApiError::invalid("invalid_git_url", e.to_string()))?;
    state
        .git_policy
        .check(&url)
        .map_err(|e| ApiError::invalid("invalid_git_url", e.to_string()))?;
    Ok(url)
}

fn parse_branch(raw: &str) -> ApiResult<BranchName> {
    BranchName::parse(raw).map_err(|e| ApiError::invalid("invalid_branch", e.to_string()))
}

fn parse_path(field: &str, raw: &str) -> ApiResult<RelPath> {
    RelPath::parse(raw).map_err(|e| ApiError::invalid("invalid_path", format!("{field}: {e}")))
}

fn parse_framework(raw: &str) -> ApiResult<Framework> {
    Framework::parse(raw).ok_or_else(|| {
        let all: Vec<&str> = Framework::ALL.iter().map(|f| f.as_str()).collect();
        ApiError::invalid(
            "invalid_framework",
            format!("unknown framework {raw:?}; expected one of {}", all.join(", ")),
        )
    })
}

fn parse_command(field: &str, raw: String) -> ApiResult<String> {
    if raw.len() > MAX_COMMAND || raw.contains('\0') {
        return Err(ApiError::invalid(
            "invalid_command",
            format!("{field} must be at most {MAX_COMMAND} bytes"),
        ));
    }
    Ok(raw)
}

fn parse_env_key(raw: &str) -> ApiResult<EnvKey> {
    EnvKey::parse(raw).map_err(|e| ApiError::invalid("invalid_env", e.to_string()))
}

fn parse_env_value(key: &str, value: String) -> ApiResult<String> {
    if value.len() > MAX_ENV_VALUE || value.contains('\0') {
        return Err(ApiError::invalid(
            "invalid_env",
            format!("the value of {key} must be at most 64 KiB, without NUL"),
        ));
    }
    Ok(value)
}

/// A git failure while checking a repository, as the API reports it.
fn git_error(e: GitError) -> ApiError {
    match e {
        GitError::Url(e) => ApiError::invalid("invalid_git_url", e.to_string()),
        GitError::NoSuchBranch(_) => ApiError::invalid("branch_not_found", e.to_string()),
        other => ApiError::invalid("git_unreachable", other.to_string()),
    }
}

/// The branch to build: the given one if the remote has it, else the remote's default.
async fn resolve_branch(
    state: &AppState,
    url: &GitUrl,
    branch: Option<BranchName>,
    token: Option<&Secret>,
) -> ApiResult<BranchName> {
    match branch {
        Some(b) => {
            state.git.check_branch(url, &b, token).await.map_err(git_error)?;
            Ok(b)
        }
        None => state.git.default_branch(url, token).await.map_err(git_error),
    }
}

/// Where a new project's code comes from.
enum Source {
    Url(GitUrl),
    Github(db::RepositoryRecord),
}

/// Where the code of a new project comes from, from what the user gave.
async fn source_of(
    state: &AppState,
    user: &User,
    git_url: Option<&str>,
    github_repository: Option<&str>,
) -> ApiResult<Source> {
    match (git_url, github_repository) {
        (Some(url), None) => Ok(Source::Url(parse_git_url(state, url)?)),
        (None, Some(full_name)) => {
            let repo = state.db.repository_for_user(user, full_name).await?.ok_or_else(|| {
                ApiError::invalid(
                    "repository_not_found",
                    format!("no GitHub installation linked to your account reaches {full_name:?}"),
                )
            })?;
            Ok(Source::Github(repo))
        }
        (Some(_), Some(_)) => Err(ApiError::invalid(
            "invalid_request",
            "give either git_url or github_repository, not both",
        )),
        (None, None) => Err(ApiError::invalid(
            "invalid_request",
            "give git_url or github_repository",
        )),
    }
}

/// A repository ready to be fetched: its URL, its GitHub link, the branch to build, and the
/// credentials to read it with.
struct Repository {
    url: GitUrl,
    github: Option<GithubLink>,
    branch: BranchName,
    token: Option<Secret>,
}

/// Checks the repository is reachable and settles the branch (the given one, which must exist,
/// or the repository's default).
async fn resolve(state: &AppState, source: Source, branch: Option<BranchName>) -> ApiResult<Repository> {
    match source {
        Source::Url(url) => {
            let branch = resolve_branch(state, &url, branch, None).await?;
            Ok(Repository {
                url,
                github: None,
                branch,
                token: None,
            })
        }
        Source::Github(repo) => {
            let url = parse_git_url(state, &repo.clone_url)?;
            let token = installation_token(state, repo.installation_id).await?;
            let branch = match (branch, repo.default_branch.as_deref().map(BranchName::parse)) {
                (None, Some(Ok(default))) => default,
                (wanted, _) => resolve_branch(state, &url, wanted, Some(&token)).await?,
            };
            let github = Some(GithubLink {
                repo_id: repo.id,
                full_name: repo.full_name,
            });
            Ok(Repository {
                url,
                github,
                branch,
                token: Some(token),
            })
        }
    }
}

/// What a repository would deploy as: the commit at the head of its branch, and the build plan
/// detected from it.
pub struct Detected {
    pub branch: BranchName,
    pub commit: platform::CommitSha,
    pub plan: builder::detect::BuildPlan,
}

/// Clones the head of the repository's branch into a temporary directory and detects how it
/// builds (the dashboard shows this before a project is created).
pub async fn detect_project(
    state: &AppState,
    user: &User,
    git_url: Option<&str>,
    github_repository: Option<&str>,
    branch: Option<&str>,
    root_dir: Option<&str>,
) -> ApiResult<Detected> {
    let source = source_of(state, user, git_url, github_repository).await?;
    let branch = branch.map(parse_branch).transpose()?;
    let settings = BuildSettings {
        root_dir: root_dir
            .map(|r| parse_path("root_dir", r))
            .transpose()?
            .unwrap_or_default(),
        ..BuildSettings::default()
    };
    let repo = resolve(state, source, branch).await?;
    let dir = tempfile::Builder::new()
        .prefix("cloudrunr-inspect-")
        .tempdir()
        .map_err(ApiError::internal)?;
    let fetch = builder::git::Source {
        url: &repo.url,
        branch: &repo.branch,
        commit: None,
        token: repo.token.as_ref(),
    };
    let found = builder::inspect::inspect(&state.git, &fetch, &settings, &dir.path().join("src"), INSPECT_TIMEOUT)
        .await
        .map_err(|e| ApiError::invalid("repository_unusable", e.to_string()))?;
    Ok(Detected {
        branch: repo.branch,
        commit: found.checkout.sha,
        plan: found.plan,
    })
}

/// How long looking at a repository for the dashboard may take.
const INSPECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A token to read the installation's repositories with.
async fn installation_token(state: &AppState, installation: u64) -> ApiResult<Secret> {
    let app = state.github.require_app().map_err(|_| {
        ApiError::conflict(
            "github_not_connected",
            "no GitHub App is connected yet; an administrator connects one first",
        )
    })?;
    app.installation_token(installation).await.map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "github_unavailable",
            format!("GitHub: {e}"),
        )
    })
}

pub async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Json(req): Json<CreateProject>,
) -> ApiResult<impl IntoResponse> {
    let project = create_project(&state, &user, req).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "project": ProjectView::new(&project, &state.sites) })),
    ))
}

/// Creates a project for `user` (the API and the dashboard both come here).
pub async fn create_project(state: &AppState, user: &User, req: CreateProject) -> ApiResult<Project> {
    let state = state.clone();
    let name = crate::auth::clean_name(&req.name, "the project name")?;
    let explicit_slug = req.slug.as_deref().map(parse_slug).transpose()?;
    let source = source_of(&state, user, req.git_url.as_deref(), req.github_repository.as_deref()).await?;
    let branch = req.branch.as_deref().map(parse_branch).transpose()?;
    let build = BuildSettings {
        root_dir: req
            .root_dir
            .as_deref()
            .map(|r| parse_path("root_dir", r))
            .transpose()?
            .unwrap_or_default(),
        framework: req.framework.as_deref().map(parse_framework).transpose()?,
        install_command: req
            .install_command
            .map(|c| parse_command("install_command", c))
            .transpose()?,
        build_command: req
            .build_command
            .map(|c| parse_command("build_command", c))
            .transpose()?,
        output_dir: req
            .output_dir
            .as_deref()
            .map(|o| parse_path("output_dir", o))
            .transpose()?,
    };
    let env_in = req.env.unwrap_or_default();
    if env_in.len() > MAX_ENV_VARS {
        return Err(ApiError::invalid(
            "invalid_env",
            format!("at most {MAX_ENV_VARS} environment variables"),
        ));
    }
    let mut env = Vec::with_capacity(env_in.len());
    for (k, v) in env_in {
        let key = parse_env_key(&k)?;
        env.push((key, state.sealer.seal(&parse_env_value(&k, v)?)));
    }
    let slug = match explicit_slug {
        Some(s) => {
            if state.db.slug_taken(&s).await? {
                return Err(ApiError::conflict(
                    "slug_taken",
                    format!("the slug \"{s}\" is taken; choose another"),
                ));
            }
            s
        }
        None => derive_free_slug(&state, &name).await?,
    };
    let Repository {
        url: git_url,
        github,
        branch,
        ..
    } = resolve(&state, source, branch).await?;
    Ok(state
        .db
        .create_project(NewProject {
            owner: user.id.clone(),
            github,
            slug,
            name,
            git_url,
            branch,
            build,
            env,
        })
        .await?)
}

/// A free slug from the project name: the name's own slug, or that with a random suffix.
async fn derive_free_slug(state: &AppState, name: &str) -> ApiResult<ProjectSlug> {
    let base = ProjectSlug::from_name(name).ok_or_else(|| {
        ApiError::invalid(
            "invalid_slug",
            "no slug can be made from this name; give one with \"slug\"",
        )
    })?;
    if !state.db.slug_taken(&base).await? {
        return Ok(base);
    }
    for _ in 0..8 {
        let mut bytes = [0u8; 3];
        platform::ids::random_bytes(&mut bytes);
        if let Some(candidate) = base.with_suffix(&hex::encode(bytes))
            && !state.db.slug_taken(&candidate).await?
        {
            return Ok(candidate);
        }
    }
    Err(ApiError::conflict(
        "slug_taken",
        "no free slug could be made from this name; give one with \"slug\"",
    ))
}

pub async fn list(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> ApiResult<impl IntoResponse> {
    let projects = state.db.list_projects(&user.id).await?;
    let views: Vec<ProjectView> = projects.iter().map(|p| ProjectView::new(p, &state.sites)).collect();
    Ok(axum::Json(json!({ "projects": views })))
}

/// The user's project with this slug; 404 for anyone else's.
pub async fn owned(state: &AppState, user: &User, slug: &str) -> ApiResult<Project> {
    let slug = ProjectSlug::parse(slug).map_err(|_| ApiError::not_found("project"))?;
    state
        .db
        .owned_project(&user.id, &slug)
        .await?
        .ok_or_else(|| ApiError::not_found("project"))
}

pub async fn get(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(slug): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let project = owned(&state, &user, &slug).await?;
    Ok(axum::Json(
        json!({ "project": ProjectView::new(&project, &state.sites) }),
    ))
}

pub async fn patch(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(slug): Path<String>,
    Json(req): Json<PatchProject>,
) -> ApiResult<impl IntoResponse> {
    let project = owned(&state, &user, &slug).await?;
    let updated = update_project(&state, project, req).await?;
    Ok(axum::Json(
        json!({ "project": ProjectView::new(&updated, &state.sites) }),
    ))
}

/// Changes a project's settings (the API and the dashboard both come here).
pub async fn update_project(state: &AppState, project: Project, req: PatchProject) -> ApiResult<Project> {
    let state = state.clone();
    let hsts = req.hsts.filter(|&h| h != project.hsts);
    let mut build = project.build.clone();
    if let Some(r) = &req.root_dir {
        build.root_dir = parse_path("root_dir", r)?;
    }
    if let Some(f) = req.framework {
        build.framework = f.as_deref().map(parse_framework).transpose()?;
    }
    if let Some(c) = req.install_command {
        build.install_command = c.map(|c| parse_command("install_command", c)).transpose()?;
    }
    if let Some(c) = req.build_command {
        build.build_command = c.map(|c| parse_command("build_command", c)).transpose()?;
    }
    if let Some(o) = req.output_dir {
        build.output_dir = o.as_deref().map(|o| parse_path("output_dir", o)).transpose()?;
    }
    let name = req
        .name
        .as_deref()
        .map(|n| crate::auth::clean_name(n, "the project name"))
        .transpose()?;
    let new_slug = req.slug.as_deref().map(parse_slug).transpose()?;
    let new_url = req.git_url.as_deref().map(|u| parse_git_url(&state, u)).transpose()?;
    if new_url.is_some() && project.github.is_some() {
        return Err(ApiError::invalid(
            "invalid_git_url",
            "this project deploys a GitHub repository; its git URL follows the repository",
        ));
    }
    let new_branch = req.branch.as_deref().map(parse_branch).transpose()?;
    let mut env = Vec::new();
    if let Some(changes) = req.env {
        for (k, v) in changes {
            let key = parse_env_key(&k)?;
            let value = v.map(|v| parse_env_value(&k, v)).transpose()?;
            env.push((key, value.map(|v| state.sealer.seal(&v))));
        }
        let remaining: std::collections::BTreeSet<&str> = project
            .env_keys
            .iter()
            .map(String::as_str)
            .chain(env.iter().filter(|(_, v)| v.is_some()).map(|(k, _)| k.as_str()))
            .filter(|k| !env.iter().any(|(key, v)| v.is_none() && key.as_str() == *k))
            .collect();
        if remaining.len() > MAX_ENV_VARS {
            return Err(ApiError::invalid(
                "invalid_env",
                format!("at most {MAX_ENV_VARS} environment variables"),
            ));
        }
    }
    let slug = match new_slug {
        Some(s) if s != project.slug => {
            if state.db.slug_taken(&s).await? {
                return Err(ApiError::conflict(
                    "slug_taken",
                    format!("the slug \"{s}\" is taken; choose another"),
                ));
            }
            s
        }
        _ => project.slug.clone(),
    };
    let git_url = new_url.unwrap_or_else(|| project.git_url.clone());
    let branch = if new_branch.as_ref().is_some_and(|b| *b != project.branch) || git_url != project.git_url {
        let wanted = new_branch.unwrap_or_else(|| project.branch.clone());
        let token = match &project.github {
            Some(link) => match state.db.repository(link.repo_id).await? {
                Some(repo) => Some(installation_token(&state, repo.installation_id).await?),
                None => None,
            },
            None => None,
        };
        resolve_branch(&state, &git_url, Some(wanted), token.as_ref()).await?
    } else {
        project.branch.clone()
    };
    let slug_changed = slug != project.slug;
    let mut updated = state
        .db
        .update_project(
            &project.id,
            ProjectUpdate {
                slug,
                name: name.unwrap_or(project.name.clone()),
                git_url,
                branch,
                build,
                env,
            },
        )
        .await?;
    if let Some(hsts) = hsts {
        state.db.set_project_hsts(&project.id, hsts).await?;
        updated.hsts = hsts;
    }
    // The router's table holds the slug and the HSTS choice.
    if slug_changed || hsts.is_some() {
        state
            .notify(Notice::RoutesChanged {
                project_id: project.id.clone(),
            })
            .await;
    }
    Ok(updated)
}

pub async fn delete(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(slug): Path<String>,
) -> ApiResult<StatusCode> {
    let project = owned(&state, &user, &slug).await?;
    delete_project(&state, project).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a project with its deployments, logs and manifests.
pub async fn delete_project(state: &AppState, project: Project) -> ApiResult<()> {
    // Stop what is building, then forget everything: rows, logs, manifests. Objects may be
    // shared with other deployments and are kept.
    let deployments = state.db.list_deployments(&project.id, u32::MAX).await?;
    for d in deployments.iter().filter(|d| !d.state.is_terminal()) {
        let execution = state.db.execution(&d.id).await.ok().flatten();
        if let Err(e) = state.executor.cancel(&d.id, execution.as_ref()).await {
            tracing::warn!(deployment = %d.id, "cannot cancel the build of a deleted project: {e}");
        }
    }
    state.db.delete_project(&project.id).await?;
    for d in &deployments {
        state.store.delete_manifest(&d.id).await?;
    }
    state.notify(Notice::RoutesChanged { project_id: project.id }).await;
    Ok(())
}
