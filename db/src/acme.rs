//! ACME bookkeeping shared by every process: the account per directory (sealed by the caller),
//! HTTP-01 key authorizations by token (any router process answers the CA), the per-name issuance
//! lease, the failure streak, and the orders counted against the CA's rate limits.

use super::{Database, Result};
use sqlx::Row;

/// How an order ended, as counted against the CA's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderOutcome {
    /// Started, not finished (or its process died).
    Pending,
    Valid,
    /// The CA tried to validate and failed: counts against "failed validations per host name".
    FailedValidation,
    /// Anything else (network, the DNS hook, the CA refusing the order).
    Error,
}

impl OrderOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Valid => "valid",
            Self::FailedValidation => "failed_validation",
            Self::Error => "error",
        }
    }
}

/// Where issuing a name stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssuanceState {
    /// Failed attempts in a row (0 after a success).
    pub failures: u32,
    /// No attempt before this time (Unix milliseconds).
    pub next_attempt_at: i64,
    /// Why the latest attempt failed, for the user.
    pub last_error: Option<String>,
    pub last_attempt_at: Option<i64>,
}

/// The orders of one account and one name in the windows of the CA's limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrderCounts {
    /// Orders the account started since the account window's start.
    pub account_orders: u32,
    /// The oldest of those (Unix milliseconds), when there is one.
    pub oldest_account_order: Option<i64>,
    /// Failed validations of the name since the name window's start.
    pub name_failed_validations: u32,
    pub oldest_name_failure: Option<i64>,
}

fn count(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

impl Database {
    /// The sealed credentials of the account at `directory`.
    pub async fn acme_account(&self, directory: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT credentials_sealed FROM acme_accounts WHERE directory = $1")
            .bind(directory)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("credentials_sealed")).transpose()?)
    }

    /// Stores the account unless another process stored one first; returns the stored one
    /// (ours or the other's), so that every process ends up using the same account.
    pub async fn insert_acme_account(&self, directory: &str, sealed: &str, now: i64) -> Result<String> {
        sqlx::query(
            "INSERT INTO acme_accounts (directory, credentials_sealed, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (directory) DO NOTHING",
        )
        .bind(directory)
        .bind(sealed)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(self.acme_account(directory).await?.unwrap_or_else(|| sealed.to_owned()))
    }

    /// Publishes an HTTP-01 key authorization until `expires_at`.
    pub async fn put_acme_http_challenge(
        &self,
        token: &str,
        key_authorization: &str,
        name: &str,
        expires_at: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO acme_http_challenges (token, key_authorization, name, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (token) DO UPDATE SET key_authorization = excluded.key_authorization, name = excluded.name, \
               expires_at = excluded.expires_at",
        )
        .bind(token)
        .bind(key_authorization)
        .bind(name)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The key authorization for `token`, unless it expired before `now`.
    pub async fn acme_http_challenge(&self, token: &str, now: i64) -> Result<Option<String>> {
        let row =
            sqlx::query("SELECT key_authorization FROM acme_http_challenges WHERE token = $1 AND expires_at > $2")
                .bind(token)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.try_get("key_authorization")).transpose()?)
    }

    /// Removes the token's key authorization, and every one that expired before `now`.
    pub async fn delete_acme_http_challenge(&self, token: &str, now: i64) -> Result<()> {
        sqlx::query("DELETE FROM acme_http_challenges WHERE token = $1 OR expires_at <= $2")
            .bind(token)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Takes the issuance lease of `name` for `holder` until `until`, if no other holder's lease
    /// runs at `now`. True when `holder` has it.
    pub async fn take_issuance_lease(&self, name: &str, holder: &str, now: i64, until: i64) -> Result<bool> {
        let row = sqlx::query(
            "INSERT INTO acme_issuance (name, lease_holder, lease_until) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET lease_holder = excluded.lease_holder, lease_until = excluded.lease_until \
             WHERE acme_issuance.lease_until <= $4 OR acme_issuance.lease_holder = excluded.lease_holder \
             RETURNING name",
        )
        .bind(name)
        .bind(holder)
        .bind(until)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Gives the lease up (only `holder`'s own).
    pub async fn release_issuance_lease(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query(
            "UPDATE acme_issuance SET lease_holder = NULL, lease_until = 0 WHERE name = $1 AND lease_holder = $2",
        )
        .bind(name)
        .bind(holder)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn issuance_state(&self, name: &str) -> Result<IssuanceState> {
        let row = sqlx::query(
            "SELECT failures, next_attempt_at, last_error, last_attempt_at FROM acme_issuance WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(IssuanceState::default());
        };
        Ok(IssuanceState {
            failures: count(r.try_get("failures")?),
            next_attempt_at: r.try_get("next_attempt_at")?,
            last_error: r.try_get("last_error")?,
            last_attempt_at: r.try_get("last_attempt_at")?,
        })
    }

    /// Records a failed attempt: one more in the streak, no attempt before `next_attempt_at`.
    pub async fn record_issuance_failure(&self, name: &str, error: &str, now: i64, next_attempt_at: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO acme_issuance (name, failures, next_attempt_at, last_error, last_attempt_at) \
             VALUES ($1, 1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET failures = acme_issuance.failures + 1, \
               next_attempt_at = excluded.next_attempt_at, last_error = excluded.last_error, \
               last_attempt_at = excluded.last_attempt_at",
        )
        .bind(name)
        .bind(next_attempt_at)
        .bind(error)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a success: the streak and the error are cleared.
    pub async fn record_issuance_success(&self, name: &str, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO acme_issuance (name, failures, next_attempt_at, last_error, last_attempt_at) \
             VALUES ($1, 0, 0, NULL, $2) \
             ON CONFLICT (name) DO UPDATE SET failures = 0, next_attempt_at = 0, last_error = NULL, \
               last_attempt_at = excluded.last_attempt_at",
        )
        .bind(name)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Counts an order started at `now` (outcome pending until [`Database::finish_acme_order`]).
    pub async fn start_acme_order(&self, id: &str, directory: &str, name: &str, now: i64) -> Result<()> {
        sqlx::query("INSERT INTO acme_orders (id, directory, name, created_at, outcome) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(directory)
            .bind(name)
            .bind(now)
            .bind(OrderOutcome::Pending.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn finish_acme_order(&self, id: &str, outcome: OrderOutcome) -> Result<()> {
        sqlx::query("UPDATE acme_orders SET outcome = $2 WHERE id = $1")
            .bind(id)
            .bind(outcome.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The account's orders at `directory` since `account_since`, and the failed validations of
    /// `name` since `name_since`; orders older than both windows are forgotten.
    pub async fn acme_order_counts(
        &self,
        directory: &str,
        account_since: i64,
        name: &str,
        name_since: i64,
    ) -> Result<OrderCounts> {
        sqlx::query("DELETE FROM acme_orders WHERE created_at < $1 AND created_at < $2")
            .bind(account_since)
            .bind(name_since)
            .execute(&self.pool)
            .await?;
        let a = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM acme_orders WHERE directory = $1 AND created_at >= $2",
        )
        .bind(directory)
        .bind(account_since)
        .fetch_one(&self.pool)
        .await?;
        let n = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM acme_orders \
             WHERE directory = $1 AND name = $2 AND created_at >= $3 AND outcome = $4",
        )
        .bind(directory)
        .bind(name)
        .bind(name_since)
        .bind(OrderOutcome::FailedValidation.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(OrderCounts {
            account_orders: count(a.try_get("n")?),
            oldest_account_order: a.try_get("oldest")?,
            name_failed_validations: count(n.try_get("n")?),
            oldest_name_failure: n.try_get("oldest")?,
        })
    }
}
