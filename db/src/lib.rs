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

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool};
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
    /// The account already has as many deployments waiting as it may (see [`BuildCaps`]).
    #[error("the account already has as many deployments waiting to build as it may ({queued} of at most {limit})")]
    QueueFull { queued: u64, limit: u32 },
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
    /// How many builds one account may have running and waiting.
    pub build_caps: BuildCaps,
}

/// Per-account build caps: the scheduler starts at most `running` builds of one account at once,
/// and at most `queued` deployments of one account wait. `None` is no cap (the default, which
/// the library's own tests rely on; the binary passes its settings).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildCaps {
    pub running: Option<u32>,
    pub queued: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    log_storage: LogStorage,
    build_caps: BuildCaps,
}

mod acme;
mod certificates;
mod deployments;
mod domains;
mod executions;
mod github;
mod logins;
mod logs;
mod projects;
mod timescale;
mod users;
pub use acme::{IssuanceState, OrderCounts, OrderOutcome};
pub use certificates::StoredCertificate;
pub use deployments::NewDeployment;
pub use domains::RoutedDomain;
pub use github::{CheckUpdate, Delivery, InstallationRecord, RepositoryRecord, StoredApp};
pub use logins::LoginAttempt;
pub use projects::{NewProject, ProjectUpdate, Route};
pub use users::TokenRecord;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Keys of the PostgreSQL advisory locks that stand in for SQLite's single writer (transaction
/// scoped: `pg_advisory_xact_lock`). Any constants work as long as they are distinct.
const LOCK_CLAIM_QUEUED: i64 = 0x436c_6f75_6452_0001;
const LOCK_FIRST_USER: i64 = 0x436c_6f75_6452_0002;
const LOCK_LOG_STORAGE: i64 = 0x436c_6f75_6452_0003;

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
            build_caps: options.build_caps,
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
mod accounts_tests;
#[cfg(test)]
mod tests;
