//! Where build logs live on PostgreSQL: a TimescaleDB hypertable when the server can install the
//! extension, otherwise the plain `log_lines` table of the migrations.
//!
//! The hypertable is `log_lines` itself, partitioned by `ts` (Unix milliseconds) into one-day
//! chunks, so every query stays the same. Timescale requires unique indexes to include the time
//! column: the primary key (deployment_id, seq) becomes a unique index on (deployment_id, seq, ts),
//! which still makes log writes idempotent because a replayed line carries its original `ts`
//! (`insert_log_lines` uses `ON CONFLICT DO NOTHING` without a target, valid for both keys).
//!
//! Timescale cannot make `connect` fail: if it is there but cannot be set up (not preloaded, no
//! privilege to create the extension…), the logs stay in the plain table (the conversion is one
//! transaction) and a warning says why. Without a retention policy (it needs Timescale's
//! community licence), the hypertable is used and the logs are kept.

use super::{LOCK_LOG_STORAGE, LogStorage, Result, advisory_xact_lock};
use sqlx::{AnyPool, Row};
use std::time::Duration;

/// Chunk width of the hypertable: one day, in the unit of `ts`.
const CHUNK_MS: i64 = 24 * 60 * 60 * 1000;

/// Chooses (and if needed sets up) the storage of build logs, logging the choice.
pub(super) async fn set_up(pool: &AnyPool, retention: Option<Duration>) -> Result<LogStorage> {
    if !extension_available(pool, "timescaledb").await? {
        tracing::info!("build logs are stored in a plain table (the TimescaleDB extension is not available)");
        return Ok(LogStorage::Plain);
    }
    Ok(use_timescale(pool, retention).await)
}

/// Whether the server can install (or has installed) the extension `name`.
pub(super) async fn extension_available(pool: &AnyPool, name: &str) -> Result<bool> {
    // `name` is of type NAME, which the `Any` driver cannot decode: compare as text, count.
    let row =
        sqlx::query("SELECT COUNT(*) AS n FROM pg_available_extensions WHERE CAST(name AS TEXT) = CAST($1 AS TEXT)")
            .bind(name)
            .fetch_one(pool)
            .await?;
    Ok(row.try_get::<i64, _>("n")? > 0)
}

/// Turns `log_lines` into a hypertable and applies the retention policy; `Plain` (with a warning)
/// when that fails.
pub(super) async fn use_timescale(pool: &AnyPool, retention: Option<Duration>) -> LogStorage {
    let version = match convert(pool).await {
        Ok(version) => version,
        Err(e) => {
            tracing::warn!(error = %e, "TimescaleDB is available but log_lines could not become a hypertable");
            tracing::info!("build logs are stored in a plain table (TimescaleDB could not be set up)");
            return LogStorage::Plain;
        }
    };
    // Retention policies need Timescale's community licence; without them the hypertable still
    // serves, logs are just kept.
    if let Err(e) = set_retention(pool, retention).await {
        tracing::warn!(error = %e, "could not set the TimescaleDB retention policy of build logs; they are kept");
    }
    tracing::info!(
        timescaledb = %version,
        retention = ?retention,
        "build logs are stored in a TimescaleDB hypertable"
    );
    LogStorage::Timescale
}

/// Installs the extension and converts the table, in one transaction (idempotent: a table that is
/// already a hypertable is left as it is). Returns the extension's version.
async fn convert(pool: &AnyPool) -> Result<String> {
    let mut tx = pool.begin().await?;
    // Processes starting together take turns.
    advisory_xact_lock(&mut tx, LOCK_LOG_STORAGE).await?;
    sqlx::query("CREATE EXTENSION IF NOT EXISTS timescaledb")
        .execute(&mut *tx)
        .await?;
    let version: String = sqlx::query("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
        .fetch_one(&mut *tx)
        .await?
        .try_get("extversion")?;
    for statement in hypertable_statements(&version) {
        sqlx::query(&statement).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(version)
}

/// Replaces the retention policy of `log_lines` with `retention` (none: logs are kept).
async fn set_retention(pool: &AnyPool, retention: Option<Duration>) -> Result<()> {
    let mut tx = pool.begin().await?;
    advisory_xact_lock(&mut tx, LOCK_LOG_STORAGE).await?;
    for statement in retention_statements(retention) {
        sqlx::query(&statement).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The statements that make `log_lines` a hypertable under Timescale `version`. Functions are
/// called in `FROM` and a constant selected, as the `Any` driver cannot decode what they return.
pub(super) fn hypertable_statements(version: &str) -> Vec<String> {
    // `by_range` (2.13+) replaces the older signature, which later versions deprecate.
    let create = if version_at_least(version, (2, 13)) {
        format!(
            "SELECT 1 AS done FROM create_hypertable('log_lines', by_range('ts', CAST({CHUNK_MS} AS BIGINT)), \
             if_not_exists => TRUE, migrate_data => TRUE, create_default_indexes => FALSE)"
        )
    } else {
        format!(
            "SELECT 1 AS done FROM create_hypertable('log_lines', 'ts', chunk_time_interval => CAST({CHUNK_MS} AS BIGINT), \
             if_not_exists => TRUE, migrate_data => TRUE, create_default_indexes => FALSE)"
        )
    };
    vec![
        // Unique indexes must include the time column (the migrations' log_lines_ts index on
        // `ts` serves time-range scans and chunk exclusion).
        "ALTER TABLE log_lines DROP CONSTRAINT IF EXISTS log_lines_pkey".to_owned(),
        "CREATE UNIQUE INDEX IF NOT EXISTS log_lines_seq_ts ON log_lines (deployment_id, seq, ts)".to_owned(),
        create,
        // What "now" is for an integer time column (the function comes with the migrations).
        "SELECT 1 AS done FROM set_integer_now_func('log_lines', 'cloudrunr_unix_ms_now', replace_if_exists => TRUE)"
            .to_owned(),
    ]
}

/// The statements that replace the retention policy of `log_lines`.
pub(super) fn retention_statements(retention: Option<Duration>) -> Vec<String> {
    let mut statements =
        vec!["SELECT 1 AS done FROM remove_retention_policy('log_lines', if_exists => TRUE)".to_owned()];
    if let Some(keep) = retention {
        let ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX).max(1);
        statements.push(format!(
            "SELECT 1 AS done FROM add_retention_policy('log_lines', drop_after => CAST({ms} AS BIGINT))"
        ));
    }
    statements
}

/// Whether the dotted `version` ("2.14.2", "2.13.0-dev") is at least `(major, minor)`.
fn version_at_least(version: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = version.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    let have = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    have >= (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_choose_the_create_hypertable_signature() {
        assert!(version_at_least("2.13.0", (2, 13)));
        assert!(version_at_least("2.17.2", (2, 13)));
        assert!(version_at_least("3.0.0-dev", (2, 13)));
        assert!(!version_at_least("2.12.9", (2, 13)));
        assert!(!version_at_least("1.7.5", (2, 13)));
        assert!(!version_at_least("garbage", (2, 13)));
        let new = hypertable_statements("2.14.2").join(";");
        assert!(new.contains("by_range('ts', CAST(86400000 AS BIGINT))"), "{new}");
        let old = hypertable_statements("2.11.1").join(";");
        assert!(
            old.contains("'ts', chunk_time_interval => CAST(86400000 AS BIGINT)"),
            "{old}"
        );
        for sql in [new, old] {
            assert!(sql.contains("DROP CONSTRAINT IF EXISTS log_lines_pkey"));
            assert!(sql.contains("(deployment_id, seq, ts)"));
            assert!(sql.contains("set_integer_now_func('log_lines', 'cloudrunr_unix_ms_now'"));
        }
    }

    #[test]
    fn retention_is_replaced_in_milliseconds() {
        assert_eq!(retention_statements(None).len(), 1, "only the removal");
        let week = retention_statements(Some(Duration::from_secs(7 * 24 * 3600)));
        assert_eq!(week.len(), 2);
        assert!(week[0].contains("remove_retention_policy('log_lines', if_exists => TRUE)"));
        assert!(
            week[1].contains("drop_after => CAST(604800000 AS BIGINT)"),
            "{}",
            week[1]
        );
    }
}
