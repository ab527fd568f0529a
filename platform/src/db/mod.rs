//! The platform's records, behind [`Database`].
//!
//! One set of queries serves every backend through sqlx's `Any` driver: the SQL sticks to what
//! SQLite and PostgreSQL share (`$n` placeholders, `ON CONFLICT`, `RETURNING`, `CAST`), times are
//! Unix milliseconds in 64-bit integers (BIGINT on PostgreSQL: the `Any` driver reads `i64`), flags
//! are 0/1 integers, ids are text. What differs per backend is chosen by [`Backend`]: connection
//! setup, migrations (`migrations/sqlite`, `migrations/postgres`, the same schema), where build logs
//! live (a TimescaleDB hypertable when PostgreSQL has it, see [`LogStorage`]), and the few places
//! where SQLite's single writer gave an invariant for free that PostgreSQL needs a lock or a retry
//! for (claiming queued builds, numbering deployments, the first user being the admin).

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
use sqlx::{AnyConnection, AnyPool, Row};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A unique value is taken; names the value ("email", "slug").
    #[error("{0} is already taken")]
    Conflict(&'static str),
    #[error("the database URL {0:?} names no supported backend (sqlite:// and postgres:// are)")]
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
    /// `sqlite://PATH` (or `sqlite:PATH`).
    Sqlite,
    /// `postgres://…` or `postgresql://…`.
    Postgres,
}

impl Backend {
    /// The backend a database URL names.
    pub fn of_url(url: &str) -> Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            let scheme = url.split(':').next().unwrap_or_default();
            Err(DbError::UnsupportedUrl(format!("{scheme}:")))
        }
    }
}

/// Where build log lines are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStorage {
    /// An ordinary table (SQLite, or PostgreSQL without TimescaleDB).
    Plain,
    /// A TimescaleDB hypertable partitioned by time, with the retention policy of
    /// [`DbOptions::log_retention`].
    Timescale,
}

/// How to connect; `Default` suits most installations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbOptions {
    /// How long build logs are kept where the backend can drop them cheaply (TimescaleDB drops
    /// whole day-chunks older than this). `None` keeps them until their project is deleted, which
    /// is also what a plain table does whatever this says.
    pub log_retention: Option<Duration>,
    /// The connection pool's size; `None` for the backend's default (8 for SQLite, 16 for
    /// PostgreSQL).
    pub max_connections: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    log_storage: LogStorage,
}

mod executions;
mod github;
mod timescale;
pub use github::{CheckUpdate, Delivery, InstallationRecord, RepositoryRecord, StoredApp};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Keys of the PostgreSQL advisory locks that stand in for SQLite's single writer (transaction
/// scoped: `pg_advisory_xact_lock`). Any constants work as long as they are distinct.
const LOCK_CLAIM_QUEUED: i64 = 0x436c_6f75_6452_0001;
const LOCK_FIRST_USER: i64 = 0x436c_6f75_6452_0002;
const LOCK_LOG_STORAGE: i64 = 0x436c_6f75_6452_0003;

/// How often `create_deployment` tries again when a concurrent one took its number.
const NUMBER_ATTEMPTS: u32 = 20;

/// States of a deployment whose build is still going (or waiting to go).
const ACTIVE_STATES: &str = "('queued','cloning','installing','building','uploading')";

impl Database {
    /// Connects with the default [`DbOptions`] and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, DbOptions::default()).await
    }

    /// Connects and brings the schema up to date; on PostgreSQL, also sets up where build logs
    /// live (see [`LogStorage`]). The choice is logged.
    pub async fn connect_with(url: &str, options: DbOptions) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url)?;
        let (pool, log_storage) = match backend {
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
                    .max_connections(options.max_connections.unwrap_or(8))
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
                tracing::info!("build logs are stored in a plain table (SQLite)");
                (pool, LogStorage::Plain)
            }
            Backend::Postgres => {
                // A server shared by several CloudRunr processes: a bounded pool each, connections
                // opened on demand and recycled, and no request waiting forever for one.
                let pool = AnyPoolOptions::new()
                    .max_connections(options.max_connections.unwrap_or(16))
                    .min_connections(0)
                    .acquire_timeout(Duration::from_secs(30))
                    .idle_timeout(Duration::from_secs(10 * 60))
                    .max_lifetime(Duration::from_secs(30 * 60))
                    .connect(url)
                    .await?;
                // sqlx holds an advisory lock while migrating: processes starting together are fine.
                POSTGRES_MIGRATIONS.run(&pool).await?;
                let log_storage = timescale::set_up(&pool, options.log_retention).await?;
                (pool, log_storage)
            }
        };
        Ok(Self {
            pool,
            backend,
            log_storage,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Where build log lines are stored (for operators and tests).
    pub fn log_storage(&self) -> LogStorage {
        self.log_storage
    }

    /// On PostgreSQL, begins a transaction holding the advisory lock `key` until it ends; on
    /// SQLite (one writer at a time already), a plain transaction.
    async fn begin_locked(&self, key: i64) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            advisory_xact_lock(&mut tx, key).await?;
        }
        Ok(tx)
    }

    // -----------------------------------------------------------------------------------------
    // Users and tokens

    /// Creates a user; `email` must already be normalized (trimmed, lowercase).
    pub async fn create_user(&self, name: &str, email: &str, password_hash: &str) -> Result<User> {
        let id = UserId::generate();
        // The first account administers the platform. On PostgreSQL two sign-ups could both see
        // no user yet (each statement sees what was committed when it started): they take turns.
        let mut tx = self.begin_locked(LOCK_FIRST_USER).await?;
        sqlx::query(
            "INSERT INTO users (id, name, email, password_hash, created_at, is_admin) \
             SELECT CAST($1 AS TEXT), CAST($2 AS TEXT), CAST($3 AS TEXT), CAST($4 AS TEXT), CAST($5 AS BIGINT), \
             CASE WHEN EXISTS (SELECT 1 FROM users) THEN 0 ELSE 1 END",
        )
        .bind(id.as_str())
        .bind(name)
        .bind(email)
        .bind(password_hash)
        .bind(Timestamp::now().millis())
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict(e, "email"))?;
        tx.commit().await?;
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
        // The number is one more than the project's highest. Two deployments created at once on
        // PostgreSQL can both read the same highest number: the second insert then violates
        // UNIQUE (project_id, number) and the whole transaction is tried again. (On SQLite the
        // insert holds the write lock, so the first attempt succeeds.)
        let mut attempt = 1;
        loop {
            match self.insert_deployment(&id, &new).await {
                Err(e) if is_unique_violation(&e) && attempt < NUMBER_ATTEMPTS => {
                    attempt += 1;
                    let jitter = getrandom::u32().unwrap_or(0) % 10;
                    tokio::time::sleep(Duration::from_millis(u64::from(attempt + jitter))).await;
                }
                done => break done?,
            }
        }
        self.deployment(&id)
            .await?
            .ok_or_else(|| DbError::Corrupt("deployment vanished".into()))
    }

    async fn insert_deployment(&self, id: &DeploymentId, new: &NewDeployment) -> Result<()> {
        let now = Timestamp::now().millis();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO deployments (id, project_id, number, state, target, branch, commit_sha, commit_message, \
             commit_author, trigger, created_at) \
             SELECT CAST($1 AS TEXT), CAST($2 AS TEXT), COALESCE(MAX(number), 0) + 1, 'queued', CAST($3 AS TEXT), \
             CAST($4 AS TEXT), CAST($5 AS TEXT), CAST($6 AS TEXT), CAST($7 AS TEXT), CAST($8 AS TEXT), \
             CAST($9 AS BIGINT) \
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
             SELECT CAST($1 AS TEXT), 'queued', CAST($2 AS BIGINT), CAST($2 AS BIGINT) FROM projects \
             WHERE id = $3 AND github_repo_id IS NOT NULL",
        )
        .bind(id.as_str())
        .bind(now)
        .bind(new.project.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
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
    /// queued one, and only for projects with no build running (one build at a time per project),
    /// even when several schedulers (API processes) claim at once.
    pub async fn claim_queued(&self, limit: u64) -> Result<Vec<Deployment>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let ids = match self.backend {
            // Each UPDATE re-checks its own row, but the choice it acts on (the project's oldest
            // queued deployment, nothing of the project running) was read earlier, and under
            // READ COMMITTED nothing ties the two together. Schedulers take turns instead: each
            // holds a lock from its read until its claims are committed.
            Backend::Postgres => {
                let mut tx = self.begin_locked(LOCK_CLAIM_QUEUED).await?;
                let ids = claim_on(&mut tx, limit).await?;
                tx.commit().await?;
                ids
            }
            // One writer at a time, and every UPDATE below re-checks the project in the same
            // statement. (No transaction: a deferred one that reads first cannot always upgrade
            // to writing under WAL when another connection wrote meanwhile.)
            Backend::Sqlite => claim_on(&mut *self.pool.acquire().await?, limit).await?,
        };
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(d) = self.deployment(&id).await? {
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
            "UPDATE deployments SET state = CAST($2 AS TEXT), \
               started_at = CASE WHEN started_at IS NULL AND CAST($2 AS TEXT) <> 'queued' THEN CAST($3 AS BIGINT) \
                            ELSE started_at END, \
               finished_at = CASE WHEN CAST($4 AS BIGINT) = 1 THEN CAST($3 AS BIGINT) ELSE finished_at END, \
               phases = COALESCE(CAST($5 AS TEXT), phases), \
               commit_sha = COALESCE(CAST($6 AS TEXT), commit_sha), \
               commit_message = COALESCE(CAST($7 AS TEXT), commit_message), \
               commit_author = COALESCE(CAST($8 AS TEXT), commit_author), \
               framework = COALESCE(CAST($9 AS TEXT), framework), \
               error = COALESCE(CAST($10 AS TEXT), error), \
               artifact = COALESCE(CAST($11 AS TEXT), artifact) \
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
    ///
    /// With an `owner`, only the builds whose execution starts with it are this process's; a
    /// dispatch that never recorded its execution (its process died starting it) is requeued once
    /// it is a minute old, so that a process starting a build right now keeps it.
    pub async fn requeue_dispatched(&self, owner: Option<&str>) -> Result<Vec<DeploymentId>> {
        let set = "UPDATE deployments SET state = 'queued', dispatched_at = NULL, execution = NULL";
        let rows = match owner {
            None => {
                sqlx::query(&format!(
                    "{set} WHERE dispatched_at IS NOT NULL AND state IN {ACTIVE_STATES} RETURNING id"
                ))
                .fetch_all(&self.pool)
                .await?
            }
            Some(owner) => {
                let pattern = format!(
                    "{}%",
                    owner.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
                );
                sqlx::query(&format!(
                    "{set} WHERE dispatched_at IS NOT NULL AND state IN {ACTIVE_STATES} \
                     AND (execution LIKE $1 ESCAPE '\\' OR (execution IS NULL AND dispatched_at < $2)) RETURNING id"
                ))
                .bind(pattern)
                .bind(Timestamp::now().millis() - 60_000)
                .fetch_all(&self.pool)
                .await?
            }
        };
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
                // No conflict target: the unique key is (deployment_id, seq) on a plain table and
                // (deployment_id, seq, ts) on a hypertable; a replayed line carries the same ts.
                "INSERT INTO log_lines (deployment_id, seq, ts, stream, text) \
                 SELECT CAST($1 AS TEXT), CAST($2 AS BIGINT), CAST($3 AS BIGINT), CAST($4 AS TEXT), CAST($5 AS TEXT) \
                 WHERE EXISTS (SELECT 1 FROM deployments WHERE id = $1) \
                 ON CONFLICT DO NOTHING",
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
         SELECT d.id, CAST($2 AS TEXT), CAST($3 AS BIGINT), CAST($3 AS BIGINT) \
         FROM deployments d JOIN projects p ON p.id = d.project_id \
         WHERE d.id = $1 AND p.github_repo_id IS NOT NULL",
    )
    .bind(id.as_str())
    .bind(status)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Claims queued deployments on `conn` (see [`Database::claim_queued`]); returns their ids.
async fn claim_on(conn: &mut AnyConnection, limit: u64) -> Result<Vec<DeploymentId>> {
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
    .fetch_all(&mut *conn)
    .await?;
    let mut claimed = Vec::new();
    for r in rows {
        let id = parse_id(r.try_get("id")?, DeploymentId::parse)?;
        // Still queued, and still nothing running for its project.
        let done = sqlx::query(&format!(
            "UPDATE deployments SET dispatched_at = $2 \
             WHERE id = $1 AND dispatched_at IS NULL AND state = 'queued' \
               AND NOT EXISTS (SELECT 1 FROM deployments r WHERE r.project_id = deployments.project_id \
                               AND r.dispatched_at IS NOT NULL AND r.state IN {ACTIVE_STATES})"
        ))
        .bind(id.as_str())
        .bind(Timestamp::now().millis())
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() == 1 {
            claimed.push(id);
        }
    }
    Ok(claimed)
}

/// Takes the PostgreSQL advisory lock `key` until the end of the transaction.
async fn advisory_xact_lock(conn: &mut AnyConnection, key: i64) -> Result<()> {
    // The function returns `void`; selecting a constant keeps the row decodable by `Any`.
    sqlx::query("SELECT 1 AS locked FROM pg_advisory_xact_lock(CAST($1 AS BIGINT))")
        .bind(key)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn is_unique_violation(e: &DbError) -> bool {
    matches!(e, DbError::Sqlx(sqlx::Error::Database(db)) if db.is_unique_violation())
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
