//! The platform's records, behind [`Database`].
//!
//! One set of queries serves every backend through sqlx's `Any` driver: the SQL sticks to what
//! SQLite and PostgreSQL share (`$n` placeholders, `ON CONFLICT`, `RETURNING`), times are Unix
//! milliseconds in 64-bit integers, ids are text. What differs per backend — connection setup and
//! migrations — is chosen by [`Backend`].

use crate::bus::StateChange;
use crate::executor::EnvVars;
use crate::model::{
    ArtifactSummary, BuildSettings, Deployment, DeploymentState, DeploymentTarget, DeploymentTrigger, Framework,
    GithubLink, LogLine, LogStream, Project, User,
};
use crate::{
    BranchName, CommitSha, DeploymentId, EnvKey, GitUrl, ProjectId, ProjectSlug, RelPath, Timestamp, TokenId, UserId,
};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A unique value is taken; names the value ("email", "slug").
    #[error("{0} is already taken")]
    Conflict(&'static str),
    #[error("the database URL {0:?} names no supported backend (sqlite:// is)")]
    UnsupportedUrl(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
}

type Result<T, E = DbError> = std::result::Result<T, E>;

/// The database engines CloudRunr runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
}

#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
}

mod github;
pub use github::{CheckUpdate, Delivery, InstallationRecord, RepositoryRecord, StoredApp};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// States of a deployment whose build is still going (or waiting to go).
const ACTIVE_STATES: &str = "('queued','cloning','installing','building','uploading')";

impl Database {
    /// Connects and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            let scheme = url.split(':').next().unwrap_or_default();
            return Err(DbError::UnsupportedUrl(format!("{scheme}:")));
        };
        let pool = match backend {
            Backend::Sqlite => {
                let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
                let path = path.split('?').next().unwrap_or_default();
                if let Some(parent) = Path::new(path).parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| DbError::Corrupt(format!("{}: {e}", parent.display())))?;
                }
                let url = if url.contains('?') {
                    url.to_owned()
                } else {
                    format!("{url}?mode=rwc")
                };
                let pool = AnyPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await?;
                            sqlx::query("PRAGMA foreign_keys = ON").execute(&mut *conn).await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?;
                sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
                SQLITE_MIGRATIONS.run(&pool).await?;
                pool
            }
        };
        Ok(Self { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    // -----------------------------------------------------------------------------------------
    // Users and tokens

    /// Creates a user; `email` must already be normalized (trimmed, lowercase).
    pub async fn create_user(&self, name: &str, email: &str, password_hash: &str) -> Result<User> {
        let id = UserId::generate();
        // The first account administers the platform.
        sqlx::query(
            "INSERT INTO users (id, name, email, password_hash, created_at, is_admin) \
             SELECT $1, $2, $3, $4, $5, CASE WHEN EXISTS (SELECT 1 FROM users) THEN 0 ELSE 1 END",
        )
        .bind(id.as_str())
        .bind(name)
        .bind(email)
        .bind(password_hash)
        .bind(Timestamp::now().millis())
        .execute(&self.pool)
        .await
        .map_err(|e| conflict(e, "email"))?;
        self.user(&id)
            .await?
            .ok_or_else(|| DbError::Corrupt("user vanished".into()))
    }

    /// The user with this (normalized) email and their password hash.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<(User, String)>> {
        let row = sqlx::query(
            "SELECT id, name, email, is_admin, github_login, created_at, password_hash FROM users WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((user_from_row(&r)?, r.try_get("password_hash")?)))
            .transpose()
    }

    pub async fn user(&self, id: &UserId) -> Result<Option<User>> {
        let row = sqlx::query("SELECT id, name, email, is_admin, github_login, created_at FROM users WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| user_from_row(&r)).transpose()
    }

    /// Links a GitHub account to the user (for "Sign in with GitHub"). Fails with a conflict
    /// when that GitHub account is linked to another user.
    pub async fn link_github_account(&self, user: &UserId, github_id: u64, login: &str) -> Result<()> {
        sqlx::query("UPDATE users SET github_user_id = $2, github_login = $3 WHERE id = $1")
            .bind(user.as_str())
            .bind(i64::try_from(github_id).unwrap_or(i64::MAX))
            .bind(login)
            .execute(&self.pool)
            .await
            .map_err(|e| conflict(e, "github account"))?;
        Ok(())
    }

    pub async fn user_by_github_id(&self, github_id: u64) -> Result<Option<User>> {
        let row = sqlx::query("SELECT id FROM users WHERE github_user_id = $1")
            .bind(i64::try_from(github_id).unwrap_or(i64::MAX))
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => self.user(&parse_id(r.try_get("id")?, UserId::parse)?).await,
            None => Ok(None),
        }
    }

    pub async fn create_token(&self, user: &UserId, name: &str, token_hash: &str) -> Result<TokenRecord> {
        let token = TokenRecord {
            id: TokenId::generate(),
            name: name.to_owned(),
            created_at: Timestamp::now(),
            last_used_at: None,
        };
        sqlx::query("INSERT INTO api_tokens (id, user_id, name, token_hash, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(token.id.as_str())
            .bind(user.as_str())
            .bind(&token.name)
            .bind(token_hash)
            .bind(token.created_at.millis())
            .execute(&self.pool)
            .await?;
        Ok(token)
    }

    pub async fn list_tokens(&self, user: &UserId) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query(
            "SELECT id, name, created_at, last_used_at FROM api_tokens WHERE user_id = $1 ORDER BY created_at DESC",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TokenRecord {
                    id: parse_id(r.try_get("id")?, TokenId::parse)?,
                    name: r.try_get("name")?,
                    created_at: Timestamp::from_millis(r.try_get("created_at")?),
                    last_used_at: r.try_get::<Option<i64>, _>("last_used_at")?.map(Timestamp::from_millis),
                })
            })
            .collect()
    }

    /// Deletes one of the user's tokens; `false` if the user has no such token.
    pub async fn delete_token(&self, user: &UserId, token: &TokenId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND user_id = $2")
            .bind(token.as_str())
            .bind(user.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The owner of the token with this hash, noting the use.
    pub async fn user_by_token_hash(&self, token_hash: &str) -> Result<Option<User>> {
        let row = sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE token_hash = $2 RETURNING user_id")
            .bind(Timestamp::now().millis())
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => self.user(&parse_id(r.try_get("user_id")?, UserId::parse)?).await,
            None => Ok(None),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Projects

    pub async fn create_project(&self, new: NewProject) -> Result<Project> {
        let now = Timestamp::now();
        let id = ProjectId::generate();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO projects (id, owner_id, slug, name, git_url, branch, root_dir, framework, install_command, \
             build_command, output_dir, github_repo_id, github_full_name, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)",
        )
        .bind(id.as_str())
        .bind(new.owner.as_str())
        .bind(new.slug.as_str())
        .bind(&new.name)
        .bind(new.git_url.as_str())
        .bind(new.branch.as_str())
        .bind(new.build.root_dir.as_str())
        .bind(new.build.framework.map(Framework::as_str))
        .bind(new.build.install_command.as_deref())
        .bind(new.build.build_command.as_deref())
        .bind(new.build.output_dir.as_ref().map(RelPath::as_str))
        .bind(new.github.as_ref().map(|g| g.repo_id as i64))
        .bind(new.github.as_ref().map(|g| g.full_name.clone()))
        .bind(now.millis())
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict(e, "slug"))?;
        for (key, value) in &new.env {
            sqlx::query("INSERT INTO project_env (project_id, key, value) VALUES ($1, $2, $3)")
                .bind(id.as_str())
                .bind(key.as_str())
                .bind(value)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.project(&id)
            .await?
            .ok_or_else(|| DbError::Corrupt("project vanished".into()))
    }

    pub async fn slug_taken(&self, slug: &ProjectSlug) -> Result<bool> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM projects WHERE slug = $1")
            .bind(slug.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    pub async fn project(&self, id: &ProjectId) -> Result<Option<Project>> {
        let row = sqlx::query(&format!("{PROJECT_SELECT} WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => Ok(Some(self.project_from_row(&r).await?)),
            None => Ok(None),
        }
    }

    /// The project with this slug, if `owner` owns it.
    pub async fn owned_project(&self, owner: &UserId, slug: &ProjectSlug) -> Result<Option<Project>> {
        let row = sqlx::query(&format!("{PROJECT_SELECT} WHERE slug = $1 AND owner_id = $2"))
            .bind(slug.as_str())
            .bind(owner.as_str())
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => Ok(Some(self.project_from_row(&r).await?)),
            None => Ok(None),
        }
    }

    pub async fn list_projects(&self, owner: &UserId) -> Result<Vec<Project>> {
        let rows = sqlx::query(&format!(
            "{PROJECT_SELECT} WHERE owner_id = $1 ORDER BY created_at DESC"
        ))
        .bind(owner.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.project_from_row(r).await?);
        }
        Ok(out)
    }

    pub async fn update_project(&self, id: &ProjectId, update: ProjectUpdate) -> Result<Project> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE projects SET slug = $2, name = $3, git_url = $4, branch = $5, root_dir = $6, framework = $7, \
             install_command = $8, build_command = $9, output_dir = $10, updated_at = $11 WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(update.slug.as_str())
        .bind(&update.name)
        .bind(update.git_url.as_str())
        .bind(update.branch.as_str())
        .bind(update.build.root_dir.as_str())
        .bind(update.build.framework.map(Framework::as_str))
        .bind(update.build.install_command.as_deref())
        .bind(update.build.build_command.as_deref())
        .bind(update.build.output_dir.as_ref().map(RelPath::as_str))
        .bind(Timestamp::now().millis())
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict(e, "slug"))?;
        for (key, value) in &update.env {
            match value {
                Some(v) => {
                    sqlx::query(
                        "INSERT INTO project_env (project_id, key, value) VALUES ($1, $2, $3) \
                         ON CONFLICT (project_id, key) DO UPDATE SET value = excluded.value",
                    )
                    .bind(id.as_str())
                    .bind(key.as_str())
                    .bind(v)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query("DELETE FROM project_env WHERE project_id = $1 AND key = $2")
                        .bind(id.as_str())
                        .bind(key.as_str())
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        self.project(id)
            .await?
            .ok_or_else(|| DbError::Corrupt("project vanished".into()))
    }

    /// Deletes the project with its deployments and their logs.
    pub async fn delete_project(&self, id: &ProjectId) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM log_lines WHERE deployment_id IN (SELECT id FROM deployments WHERE project_id = $1)")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM projects WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn project_env(&self, id: &ProjectId) -> Result<EnvVars> {
        let rows = sqlx::query("SELECT key, value FROM project_env WHERE project_id = $1")
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await?;
        let mut env = BTreeMap::new();
        for r in rows {
            env.insert(r.try_get("key")?, r.try_get("value")?);
        }
        Ok(EnvVars(env))
    }

    /// Points the project's site at `deployment` (promote, rollback).
    pub async fn set_production(&self, project: &ProjectId, deployment: &DeploymentId) -> Result<()> {
        sqlx::query("UPDATE projects SET production_deployment_id = $2, updated_at = $3 WHERE id = $1")
            .bind(project.as_str())
            .bind(deployment.as_str())
            .bind(Timestamp::now().millis())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Points the project's site at a newly ready `deployment`, unless the site already serves a
    /// deployment created after it. Returns whether the pointer moved.
    pub async fn advance_production(&self, project: &ProjectId, deployment: &DeploymentId) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE projects SET production_deployment_id = $2, updated_at = $3 WHERE id = $1 AND ( \
               production_deployment_id IS NULL \
               OR (SELECT number FROM deployments WHERE id = projects.production_deployment_id) \
                  < (SELECT number FROM deployments WHERE id = $2))",
        )
        .bind(project.as_str())
        .bind(deployment.as_str())
        .bind(Timestamp::now().millis())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every project's site: slug, production deployment, and the newest ready preview of each
    /// other branch.
    pub async fn routes(&self) -> Result<Vec<Route>> {
        let rows = sqlx::query("SELECT id, slug, production_deployment_id FROM projects")
            .fetch_all(&self.pool)
            .await?;
        let mut routes: Vec<Route> = rows.iter().map(route_from_row).collect::<Result<_>>()?;
        let mut previews = self.previews(None).await?;
        let mut ready = self.ready_deployments(None).await?;
        for route in &mut routes {
            route.previews = previews.remove(&route.project_id).unwrap_or_default();
            route.ready = ready.remove(&route.project_id).unwrap_or_default();
        }
        Ok(routes)
    }

    pub async fn route(&self, project: &ProjectId) -> Result<Option<Route>> {
        let row = sqlx::query("SELECT id, slug, production_deployment_id FROM projects WHERE id = $1")
            .bind(project.as_str())
            .fetch_optional(&self.pool)
            .await?;
        let Some(mut route) = row.as_ref().map(route_from_row).transpose()? else {
            return Ok(None);
        };
        route.previews = self.previews(Some(project)).await?.remove(project).unwrap_or_default();
        route.ready = self
            .ready_deployments(Some(project))
            .await?
            .remove(project)
            .unwrap_or_default();
        Ok(Some(route))
    }

    /// Ready deployments, per project.
    async fn ready_deployments(&self, project: Option<&ProjectId>) -> Result<HashMap<ProjectId, Vec<DeploymentId>>> {
        let sql = if project.is_some() {
            "SELECT project_id, id FROM deployments WHERE state = 'ready' AND project_id = $1"
        } else {
            "SELECT project_id, id FROM deployments WHERE state = 'ready'"
        };
        let mut query = sqlx::query(sql);
        if let Some(p) = project {
            query = query.bind(p.as_str());
        }
        let mut out: HashMap<ProjectId, Vec<DeploymentId>> = HashMap::new();
        for r in query.fetch_all(&self.pool).await? {
            out.entry(parse_id(r.try_get("project_id")?, ProjectId::parse)?)
                .or_default()
                .push(parse_id(r.try_get("id")?, DeploymentId::parse)?);
        }
        Ok(out)
    }

    /// The newest ready preview deployment per branch, per project.
    async fn previews(
        &self,
        project: Option<&ProjectId>,
    ) -> Result<HashMap<ProjectId, Vec<(BranchName, DeploymentId)>>> {
        let filter = if project.is_some() { "AND d.project_id = $1" } else { "" };
        let sql = format!(
            "SELECT d.project_id, d.branch, d.id FROM deployments d \
             WHERE d.target = 'preview' AND d.state = 'ready' {filter} \
               AND d.number = (SELECT MAX(x.number) FROM deployments x WHERE x.project_id = d.project_id \
                               AND x.branch = d.branch AND x.target = 'preview' AND x.state = 'ready')"
        );
        let mut query = sqlx::query(&sql);
        if let Some(p) = project {
            query = query.bind(p.as_str());
        }
        let mut out: HashMap<ProjectId, Vec<(BranchName, DeploymentId)>> = HashMap::new();
        for r in query.fetch_all(&self.pool).await? {
            out.entry(parse_id(r.try_get("project_id")?, ProjectId::parse)?)
                .or_default()
                .push((
                    parse_with(r.try_get("branch")?, BranchName::parse)?,
                    parse_id(r.try_get("id")?, DeploymentId::parse)?,
                ));
        }
        Ok(out)
    }

    async fn project_from_row(&self, r: &AnyRow) -> Result<Project> {
        let id = parse_id(r.try_get("id")?, ProjectId::parse)?;
        let keys = sqlx::query("SELECT key FROM project_env WHERE project_id = $1 ORDER BY key")
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|k| k.try_get("key"))
            .collect::<Result<Vec<String>, _>>()?;
        Ok(Project {
            id,
            owner_id: parse_id(r.try_get("owner_id")?, UserId::parse)?,
            slug: parse_with(r.try_get("slug")?, ProjectSlug::parse)?,
            name: r.try_get("name")?,
            git_url: parse_with(r.try_get("git_url")?, GitUrl::parse)?,
            branch: parse_with(r.try_get("branch")?, BranchName::parse)?,
            build: BuildSettings {
                root_dir: parse_with(r.try_get("root_dir")?, RelPath::parse)?,
                framework: r
                    .try_get::<Option<String>, _>("framework")?
                    .map(|f| parse_enum(&f, Framework::parse))
                    .transpose()?,
                install_command: r.try_get("install_command")?,
                build_command: r.try_get("build_command")?,
                output_dir: r
                    .try_get::<Option<String>, _>("output_dir")?
                    .map(|p| parse_with(p, RelPath::parse))
                    .transpose()?,
            },
            env_keys: keys,
            github: match (
                r.try_get::<Option<i64>, _>("github_repo_id")?,
                r.try_get::<Option<String>, _>("github_full_name")?,
            ) {
                (Some(id), Some(full_name)) => Some(GithubLink {
                    repo_id: id as u64,
                    full_name,
                }),
                _ => None,
            },
            production_deployment_id: r
                .try_get::<Option<String>, _>("production_deployment_id")?
                .map(|d| parse_id(d, DeploymentId::parse))
                .transpose()?,
            created_at: Timestamp::from_millis(r.try_get("created_at")?),
            updated_at: Timestamp::from_millis(r.try_get("updated_at")?),
        })
    }

    // -----------------------------------------------------------------------------------------
    // Deployments

    /// Queues a deployment. For a project linked to GitHub, its check run is queued too, in the
    /// same transaction.
    pub async fn create_deployment(&self, new: NewDeployment) -> Result<Deployment> {
        let id = DeploymentId::generate();
        let now = Timestamp::now().millis();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO deployments (id, project_id, number, state, target, branch, commit_sha, commit_message, \
             commit_author, trigger, created_at) \
             SELECT $1, $2, COALESCE(MAX(number), 0) + 1, 'queued', $3, $4, $5, $6, $7, $8, $9 \
             FROM deployments WHERE project_id = $2",
        )
        .bind(id.as_str())
        .bind(new.project.as_str())
        .bind(new.target.as_str())
        .bind(new.branch.as_str())
        .bind(new.commit.as_ref().map(CommitSha::as_str))
        .bind(new.commit_message.as_deref())
        .bind(new.commit_author.as_deref())
        .bind(new.trigger.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO check_run_outbox (deployment_id, status, next_attempt_at, created_at) \
             SELECT $1, 'queued', $2, $2 FROM projects WHERE id = $3 AND github_repo_id IS NOT NULL",
        )
        .bind(id.as_str())
        .bind(now)
        .bind(new.project.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.deployment(&id)
            .await?
            .ok_or_else(|| DbError::Corrupt("deployment vanished".into()))
    }

    pub async fn deployment(&self, id: &DeploymentId) -> Result<Option<Deployment>> {
        let row = sqlx::query(&format!("{DEPLOYMENT_SELECT} WHERE d.id = $1"))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(deployment_from_row).transpose()
    }

    /// The deployment, if it belongs to a project `owner` owns.
    pub async fn owned_deployment(&self, owner: &UserId, id: &DeploymentId) -> Result<Option<Deployment>> {
        let row = sqlx::query(&format!("{DEPLOYMENT_SELECT} WHERE d.id = $1 AND p.owner_id = $2"))
            .bind(id.as_str())
            .bind(owner.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(deployment_from_row).transpose()
    }

    /// The project's deployments, newest first.
    pub async fn list_deployments(&self, project: &ProjectId, limit: u32) -> Result<Vec<Deployment>> {
        let rows = sqlx::query(&format!(
            "{DEPLOYMENT_SELECT} WHERE d.project_id = $1 ORDER BY d.number DESC LIMIT $2"
        ))
        .bind(project.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(deployment_from_row).collect()
    }

    /// Builds dispatched and not finished.
    pub async fn running_count(&self) -> Result<u64> {
        let row = sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM deployments WHERE dispatched_at IS NOT NULL AND state IN {ACTIVE_STATES}"
        ))
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0))
    }

    /// Marks up to `limit` queued deployments dispatched and returns them: per project the oldest
    /// queued one, and only for projects with no build running (one build at a time per project).
    pub async fn claim_queued(&self, limit: u64) -> Result<Vec<Deployment>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!(
            "SELECT d.id FROM deployments d \
             WHERE d.state = 'queued' AND d.dispatched_at IS NULL \
               AND NOT EXISTS (SELECT 1 FROM deployments r WHERE r.project_id = d.project_id \
                               AND r.dispatched_at IS NOT NULL AND r.state IN {ACTIVE_STATES}) \
               AND d.number = (SELECT MIN(q.number) FROM deployments q WHERE q.project_id = d.project_id \
                               AND q.state = 'queued' AND q.dispatched_at IS NULL) \
             ORDER BY d.created_at LIMIT $1"
        ))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = Vec::new();
        for r in rows {
            let id = parse_id(r.try_get("id")?, DeploymentId::parse)?;
            let done = sqlx::query(
                "UPDATE deployments SET dispatched_at = $2 WHERE id = $1 AND dispatched_at IS NULL AND state = 'queued'",
            )
            .bind(id.as_str())
            .bind(Timestamp::now().millis())
            .execute(&self.pool)
            .await?;
            if done.rows_affected() == 1
                && let Some(d) = self.deployment(&id).await?
            {
                claimed.push(d);
            }
        }
        Ok(claimed)
    }

    /// Undoes a claim whose build could not be started, failing the deployment with `error`.
    pub async fn fail_dispatch(&self, id: &DeploymentId, error: &str) -> Result<Option<Deployment>> {
        let mut change = StateChange::new(DeploymentState::Failed);
        change.error = Some(error.to_owned());
        self.apply_state(id, &change).await
    }

    /// Cancels a deployment that no builder has picked up yet. `false` if it was dispatched
    /// (or is already finished) meanwhile.
    pub async fn cancel_queued(&self, id: &DeploymentId) -> Result<bool> {
        let now = Timestamp::now().millis();
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE deployments SET state = 'canceled', finished_at = $2, cancel_requested = 1 \
             WHERE id = $1 AND state = 'queued' AND dispatched_at IS NULL",
        )
        .bind(id.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        enqueue_check_update(&mut tx, id, "completed", now).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn request_cancel(&self, id: &DeploymentId) -> Result<()> {
        sqlx::query("UPDATE deployments SET cancel_requested = 1 WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Applies a state change reported by a builder if it moves the deployment forward; returns
    /// the updated deployment, or `None` when the change was stale (or the deployment is gone).
    /// The check run learns of the change through the outbox, in the same transaction.
    pub async fn apply_state(&self, id: &DeploymentId, change: &StateChange) -> Result<Option<Deployment>> {
        let from: Vec<String> = DeploymentState::ALL
            .iter()
            .filter(|s| s.may_become(change.state))
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        if from.is_empty() {
            return Ok(None);
        }
        let terminal = change.state.is_terminal();
        let phases =
            (!change.phases.is_empty()).then(|| serde_json::to_string(&change.phases).expect("phases serialize"));
        let artifact = change
            .artifact
            .map(|a| serde_json::to_string(&a).expect("summary serializes"));
        let mut tx = self.pool.begin().await?;
        // What the check run must report: the build started, or it ended.
        let check_status = if terminal {
            Some("completed")
        } else if change.state != DeploymentState::Queued {
            let row = sqlx::query("SELECT state FROM deployments WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            let was_queued = row.map(|r| r.try_get::<String, _>("state")).transpose()?.as_deref() == Some("queued");
            was_queued.then_some("in_progress")
        } else {
            None
        };
        let done = sqlx::query(&format!(
            "UPDATE deployments SET state = $2, \
               started_at = CASE WHEN started_at IS NULL AND $2 <> 'queued' THEN $3 ELSE started_at END, \
               finished_at = CASE WHEN $4 = 1 THEN $3 ELSE finished_at END, \
               phases = COALESCE($5, phases), \
               commit_sha = COALESCE($6, commit_sha), \
               commit_message = COALESCE($7, commit_message), \
               commit_author = COALESCE($8, commit_author), \
               framework = COALESCE($9, framework), \
               error = COALESCE($10, error), \
               artifact = COALESCE($11, artifact) \
             WHERE id = $1 AND state IN ({})",
            from.join(",")
        ))
        .bind(id.as_str())
        .bind(change.state.as_str())
        .bind(change.at.millis())
        .bind(i64::from(terminal))
        .bind(phases)
        .bind(change.commit_sha.as_ref().map(CommitSha::as_str))
        .bind(change.commit_message.as_deref())
        .bind(change.commit_author.as_deref())
        .bind(change.framework.map(Framework::as_str))
        .bind(change.error.as_deref())
        .bind(artifact)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        if let Some(status) = check_status {
            enqueue_check_update(&mut tx, id, status, change.at.millis()).await?;
        }
        tx.commit().await?;
        self.deployment(id).await
    }

    /// Puts builds that were running in this process back in the queue (after a restart, when
    /// the executor's builds died with the process). Returns them.
    pub async fn requeue_dispatched(&self) -> Result<Vec<DeploymentId>> {
        let rows = sqlx::query(&format!(
            "UPDATE deployments SET state = 'queued', dispatched_at = NULL \
             WHERE dispatched_at IS NOT NULL AND state IN {ACTIVE_STATES} RETURNING id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| parse_id(r.try_get("id")?, DeploymentId::parse))
            .collect()
    }

    // -----------------------------------------------------------------------------------------
    // Logs

    /// Stores log lines; a line already stored (same deployment and sequence) is left as it is,
    /// and lines of deployments that no longer exist are dropped.
    pub async fn insert_log_lines(&self, lines: &[(DeploymentId, LogLine)]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for (id, line) in lines {
            sqlx::query(
                "INSERT INTO log_lines (deployment_id, seq, ts, stream, text) \
                 SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM deployments WHERE id = $1) \
                 ON CONFLICT (deployment_id, seq) DO NOTHING",
            )
            .bind(id.as_str())
            .bind(i64::try_from(line.seq).unwrap_or(i64::MAX))
            .bind(line.ts.millis())
            .bind(line.stream.as_str())
            .bind(&line.text)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Lines with sequence numbers above `after`, in order, at most `limit`.
    pub async fn log_lines(&self, id: &DeploymentId, after: u64, limit: u32) -> Result<Vec<LogLine>> {
        let rows = sqlx::query(
            "SELECT seq, ts, stream, text FROM log_lines WHERE deployment_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(id.as_str())
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LogLine {
                    seq: u64::try_from(r.try_get::<i64, _>("seq")?).unwrap_or(0),
                    ts: Timestamp::from_millis(r.try_get("ts")?),
                    stream: parse_enum(&r.try_get::<String, _>("stream")?, LogStream::parse)?,
                    text: r.try_get("text")?,
                })
            })
            .collect()
    }

    /// The last `n` lines of the deployment's log, in order.
    pub async fn last_log_lines(&self, id: &DeploymentId, n: u32) -> Result<Vec<LogLine>> {
        let last = self.last_log_seq(id).await?;
        self.log_lines(id, last.saturating_sub(u64::from(n)), n).await
    }

    /// The highest sequence number stored for the deployment (0 when none).
    pub async fn last_log_seq(&self, id: &DeploymentId) -> Result<u64> {
        let row = sqlx::query("SELECT MAX(seq) AS m FROM log_lines WHERE deployment_id = $1")
            .bind(id.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(row
            .try_get::<Option<i64>, _>("m")?
            .and_then(|m| u64::try_from(m).ok())
            .unwrap_or(0))
    }
}

/// A project's site as the router needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub project_id: ProjectId,
    pub slug: ProjectSlug,
    pub production: Option<DeploymentId>,
    /// Per branch, the preview deployment served at `<branch>--<slug>`.
    pub previews: Vec<(BranchName, DeploymentId)>,
    /// Every ready deployment, each served at its own `<short id>--<slug>`.
    pub ready: Vec<DeploymentId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: TokenId,
    pub name: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct NewProject {
    pub owner: UserId,
    pub github: Option<GithubLink>,
    pub slug: ProjectSlug,
    pub name: String,
    pub git_url: GitUrl,
    pub branch: BranchName,
    pub build: BuildSettings,
    pub env: Vec<(EnvKey, String)>,
}

/// A project's new settings in full, plus environment changes (`None` deletes a variable).
#[derive(Debug, Clone)]
pub struct ProjectUpdate {
    pub slug: ProjectSlug,
    pub name: String,
    pub git_url: GitUrl,
    pub branch: BranchName,
    pub build: BuildSettings,
    pub env: Vec<(EnvKey, Option<String>)>,
}

#[derive(Debug, Clone)]
pub struct NewDeployment {
    pub project: ProjectId,
    pub target: DeploymentTarget,
    pub branch: BranchName,
    pub commit: Option<CommitSha>,
    pub commit_message: Option<String>,
    pub commit_author: Option<String>,
    pub trigger: DeploymentTrigger,
}

const PROJECT_SELECT: &str = "SELECT id, owner_id, slug, name, git_url, branch, root_dir, framework, install_command, \
     build_command, output_dir, github_repo_id, github_full_name, production_deployment_id, created_at, updated_at \
     FROM projects";

const DEPLOYMENT_SELECT: &str = "SELECT d.id, d.project_id, p.slug, d.state, d.target, d.branch, d.commit_sha, \
     d.commit_message, d.commit_author, d.trigger, d.check_run_id, d.framework, d.phases, d.error, d.artifact, d.cancel_requested, d.created_at, d.started_at, \
     d.finished_at FROM deployments d JOIN projects p ON p.id = d.project_id";

/// Queues a check-run update for the deployment, if its project is linked to GitHub.
async fn enqueue_check_update(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &DeploymentId,
    status: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO check_run_outbox (deployment_id, status, next_attempt_at, created_at) \
         SELECT d.id, $2, $3, $3 FROM deployments d JOIN projects p ON p.id = d.project_id \
         WHERE d.id = $1 AND p.github_repo_id IS NOT NULL",
    )
    .bind(id.as_str())
    .bind(status)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn user_from_row(r: &AnyRow) -> Result<User> {
    Ok(User {
        id: parse_id(r.try_get("id")?, UserId::parse)?,
        name: r.try_get("name")?,
        email: r.try_get("email")?,
        is_admin: r.try_get::<i64, _>("is_admin")? != 0,
        github_login: r.try_get("github_login")?,
        created_at: Timestamp::from_millis(r.try_get("created_at")?),
    })
}

fn route_from_row(r: &AnyRow) -> Result<Route> {
    Ok(Route {
        project_id: parse_id(r.try_get("id")?, ProjectId::parse)?,
        slug: parse_with(r.try_get("slug")?, ProjectSlug::parse)?,
        production: r
            .try_get::<Option<String>, _>("production_deployment_id")?
            .map(|d| parse_id(d, DeploymentId::parse))
            .transpose()?,
        previews: Vec::new(),
        ready: Vec::new(),
    })
}

fn deployment_from_row(r: &AnyRow) -> Result<Deployment> {
    let phases: String = r.try_get("phases")?;
    Ok(Deployment {
        id: parse_id(r.try_get("id")?, DeploymentId::parse)?,
        project_id: parse_id(r.try_get("project_id")?, ProjectId::parse)?,
        project_slug: parse_with(r.try_get("slug")?, ProjectSlug::parse)?,
        state: parse_enum(&r.try_get::<String, _>("state")?, DeploymentState::parse)?,
        target: parse_enum(&r.try_get::<String, _>("target")?, DeploymentTarget::parse)?,
        branch: parse_with(r.try_get("branch")?, BranchName::parse)?,
        commit_sha: r
            .try_get::<Option<String>, _>("commit_sha")?
            .map(|c| parse_with(c, CommitSha::parse))
            .transpose()?,
        commit_message: r.try_get("commit_message")?,
        commit_author: r.try_get("commit_author")?,
        trigger: parse_enum(&r.try_get::<String, _>("trigger")?, DeploymentTrigger::parse)?,
        check_run_id: r.try_get::<Option<i64>, _>("check_run_id")?.map(|c| c as u64),
        framework: r
            .try_get::<Option<String>, _>("framework")?
            .map(|f| parse_enum(&f, Framework::parse))
            .transpose()?,
        phases: serde_json::from_str(&phases).map_err(|e| DbError::Corrupt(format!("phases: {e}")))?,
        error: r.try_get("error")?,
        artifact: r
            .try_get::<Option<String>, _>("artifact")?
            .map(|a| {
                serde_json::from_str::<ArtifactSummary>(&a).map_err(|e| DbError::Corrupt(format!("artifact: {e}")))
            })
            .transpose()?,
        cancel_requested: r.try_get::<i64, _>("cancel_requested")? != 0,
        created_at: Timestamp::from_millis(r.try_get("created_at")?),
        started_at: r.try_get::<Option<i64>, _>("started_at")?.map(Timestamp::from_millis),
        finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(Timestamp::from_millis),
    })
}

fn parse_id<T, E>(raw: String, parse: impl Fn(&str) -> Result<T, E>) -> Result<T> {
    parse(&raw).map_err(|_| DbError::Corrupt(format!("bad id {raw:?}")))
}

fn parse_with<T, E: std::fmt::Display>(raw: String, parse: impl Fn(&str) -> Result<T, E>) -> Result<T> {
    parse(&raw).map_err(|e| DbError::Corrupt(format!("{raw:?}: {e}")))
}

fn parse_enum<T>(raw: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T> {
    parse(raw).ok_or_else(|| DbError::Corrupt(format!("unknown value {raw:?}")))
}

/// Turns a unique-constraint violation into [`DbError::Conflict`].
fn conflict(e: sqlx::Error, what: &'static str) -> DbError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => DbError::Conflict(what),
        _ => DbError::Sqlx(e),
    }
}

#[cfg(test)]
mod tests;
