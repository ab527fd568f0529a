//! Failed log-ins per (account, client address) pair, kept here so that a restart or another api
//! process sees the same counts. The policy (how long a pair waits) is the caller's; this module
//! only counts, blocks and forgets.

use super::{Database, Result};
use sqlx::Row;

/// What starting a log-in attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginAttempt {
    /// The pair must wait until this time (Unix milliseconds); the attempt was not counted.
    Blocked { until: i64 },
    /// The attempt was counted: the pair's failures including this attempt, within the memory.
    Counted { failures: u32 },
}

impl Database {
    /// Counts an attempt of `account` from `address` before its password is checked (so that
    /// attempts sent at once cannot all slip past a block that the earlier ones would set), unless
    /// the pair is blocked at `now`. Failures last seen before `forget_before` start over.
    pub async fn begin_login_attempt(
        &self,
        account: &str,
        address: &str,
        now: i64,
        forget_before: i64,
    ) -> Result<LoginAttempt> {
        let row = sqlx::query(
            "INSERT INTO login_failures (account, address, failures, last_at, blocked_until) \
             VALUES ($1, $2, 1, $3, 0) \
             ON CONFLICT (account, address) DO UPDATE SET \
               failures = CASE WHEN login_failures.last_at < $4 THEN 1 ELSE login_failures.failures + 1 END, \
               last_at = excluded.last_at \
             WHERE login_failures.blocked_until <= excluded.last_at \
             RETURNING failures",
        )
        .bind(account)
        .bind(address)
        .bind(now)
        .bind(forget_before)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(r) = row {
            let failures = r.try_get::<i64, _>("failures")?;
            return Ok(LoginAttempt::Counted {
                failures: u32::try_from(failures).unwrap_or(u32::MAX),
            });
        }
        let until = sqlx::query("SELECT blocked_until FROM login_failures WHERE account = $1 AND address = $2")
            .bind(account)
            .bind(address)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.try_get::<i64, _>("blocked_until"))
            .transpose()?
            .unwrap_or(now);
        Ok(LoginAttempt::Blocked { until })
    }

    /// Makes the pair wait until `until` (a later block already set stays).
    pub async fn block_login(&self, account: &str, address: &str, until: i64) -> Result<()> {
        sqlx::query(
            "UPDATE login_failures SET blocked_until = CASE WHEN blocked_until > $3 THEN blocked_until ELSE $3 END \
             WHERE account = $1 AND address = $2",
        )
        .bind(account)
        .bind(address)
        .bind(until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A successful log-in: the pair starts over.
    pub async fn clear_login_failures(&self, account: &str, address: &str) -> Result<()> {
        sqlx::query("DELETE FROM login_failures WHERE account = $1 AND address = $2")
            .bind(account)
            .bind(address)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Failed attempts counted from `address` on pairs that failed since `since`, over every
    /// account.
    pub async fn login_failures_from(&self, address: &str, since: i64) -> Result<u64> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(failures), 0) AS BIGINT) AS n FROM login_failures \
             WHERE address = $1 AND last_at >= $2",
        )
        .bind(address)
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        // SUM of BIGINT is NUMERIC on PostgreSQL, which the `Any` driver cannot read: hence the CAST.
        Ok(u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0))
    }

    /// Forgets pairs whose last failure is older than `before` and that are not blocked at `now`.
    pub async fn prune_login_failures(&self, before: i64, now: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM login_failures WHERE last_at < $1 AND blocked_until <= $2")
            .bind(before)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
