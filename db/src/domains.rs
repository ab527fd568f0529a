//! Custom domains: claims by projects, the proof of ownership that makes one of them route, and
//! the states ACME issuance moves them through.
//!
//! Several projects may claim one name; it routes to the one whose `verified_at` is set — the
//! project that last proved ownership with its own TXT token (a partial unique index keeps that
//! to one row per name). A pending claim never blocks a proven owner, and proving ownership takes
//! the name away from whichever project held it before.

use super::{Database, DbError, Result, conflict, parse_enum, parse_id, parse_with};
use platform::domain::{Domain, DomainName, DomainState};
use platform::{ProjectId, Timestamp};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::HashMap;

const DOMAIN_SELECT: &str =
    "SELECT project_id, name, token, state, reason, redirect_to, created_at, updated_at, verified_at FROM domains";

/// A domain that routes, as the router needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedDomain {
    pub name: DomainName,
    /// Requests for `name` are redirected (308) to this host.
    pub redirect_to: Option<DomainName>,
}

impl Database {
    /// Adds a pending claim of `name` by `project`. [`DbError::Conflict`]`("domain")` when the
    /// project already has it.
    pub async fn add_domain(
        &self,
        project: &ProjectId,
        name: &DomainName,
        token: &str,
        redirect_to: Option<&DomainName>,
    ) -> Result<Domain> {
        let now = Timestamp::now().millis();
        sqlx::query(
            "INSERT INTO domains (project_id, name, token, state, reason, redirect_to, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, NULL, $5, $6, $6)",
        )
        .bind(project.as_str())
        .bind(name.as_str())
        .bind(token)
        .bind(DomainState::PendingVerification.as_str())
        .bind(redirect_to.map(DomainName::as_str))
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict(e, "domain"))?;
        self.project_domain(project, name)
            .await?
            .ok_or_else(|| DbError::Corrupt("domain vanished".into()))
    }

    /// The project's domains, by name.
    pub async fn project_domains(&self, project: &ProjectId) -> Result<Vec<Domain>> {
        let rows = sqlx::query(&format!("{DOMAIN_SELECT} WHERE project_id = $1 ORDER BY name"))
            .bind(project.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(domain_from_row).collect()
    }

    pub async fn count_project_domains(&self, project: &ProjectId) -> Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM domains WHERE project_id = $1")
            .bind(project.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")?.max(0) as u64)
    }

    pub async fn project_domain(&self, project: &ProjectId, name: &DomainName) -> Result<Option<Domain>> {
        let row = sqlx::query(&format!("{DOMAIN_SELECT} WHERE project_id = $1 AND name = $2"))
            .bind(project.as_str())
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(domain_from_row).transpose()
    }

    /// Removes the project's claim (and any redirect of its other domains to it); whether there
    /// was one.
    pub async fn delete_domain(&self, project: &ProjectId, name: &DomainName) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM domains WHERE project_id = $1 AND name = $2")
            .bind(project.as_str())
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query(
            "UPDATE domains SET redirect_to = NULL, updated_at = $3 WHERE project_id = $1 AND redirect_to = $2",
        )
        .bind(project.as_str())
        .bind(name.as_str())
        .bind(Timestamp::now().millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(deleted > 0)
    }

    /// Records that the project's claim proved ownership: it routes from now on, and any other
    /// project that routed the name stops (its claim fails with a reason saying so). Returns
    /// those other projects, whose routes changed. `None` when the project has no such claim.
    pub async fn prove_domain(&self, project: &ProjectId, name: &DomainName) -> Result<Option<Vec<ProjectId>>> {
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        let displaced = sqlx::query(
            "UPDATE domains SET verified_at = NULL, state = $3, reason = $4, updated_at = $5 \
             WHERE name = $1 AND project_id <> $2 AND verified_at IS NOT NULL RETURNING project_id",
        )
        .bind(name.as_str())
        .bind(project.as_str())
        .bind(DomainState::Failed.as_str())
        .bind(format!(
            "another project proved ownership of {name} with its own TXT record at {}; verify again to take it back",
            now.to_rfc3339()
        ))
        .bind(now.millis())
        .fetch_all(&mut *tx)
        .await?;
        // A certificate already issued stays issued; anything else is now verified.
        let updated = sqlx::query(
            "UPDATE domains SET verified_at = COALESCE(verified_at, $3), \
             state = CASE WHEN state = $4 AND verified_at IS NOT NULL THEN state ELSE $5 END, \
             reason = NULL, updated_at = $3 WHERE project_id = $1 AND name = $2",
        )
        .bind(project.as_str())
        .bind(name.as_str())
        .bind(now.millis())
        .bind(DomainState::CertificateIssued.as_str())
        .bind(DomainState::Verified.as_str())
        .execute(&mut *tx)
        .await
        // Two projects proving the same name at once (PostgreSQL): the index lets one win.
        .map_err(|e| conflict(e, "routed domain"))?
        .rows_affected();
        if updated == 0 {
            return Ok(None);
        }
        let displaced = displaced
            .iter()
            .map(|r| parse_id(r.try_get("project_id")?, ProjectId::parse))
            .collect::<Result<Vec<_>>>()?;
        tx.commit().await?;
        Ok(Some(displaced))
    }

    /// Records a failed check of the project's claim. A claim that routes keeps routing (its
    /// owner proved ownership before, and no one has proven it since).
    pub async fn fail_domain_check(&self, project: &ProjectId, name: &DomainName, reason: &str) -> Result<()> {
        sqlx::query("UPDATE domains SET state = $3, reason = $4, updated_at = $5 WHERE project_id = $1 AND name = $2")
            .bind(project.as_str())
            .bind(name.as_str())
            .bind(DomainState::Failed.as_str())
            .bind(reason)
            .bind(Timestamp::now().millis())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The routed claim of `name`: the one whose project proved ownership.
    pub async fn domain(&self, name: &DomainName) -> Result<Option<Domain>> {
        let row = sqlx::query(&format!("{DOMAIN_SELECT} WHERE name = $1 AND verified_at IS NOT NULL"))
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(domain_from_row).transpose()
    }

    /// Moves the routed claim of `name` to `state` (certificate issuance reports here); whether
    /// there was one. The claim keeps routing whatever the state: a failed issuance does not
    /// take a proven domain offline.
    pub async fn set_domain_state(&self, name: &DomainName, state: DomainState, reason: Option<&str>) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE domains SET state = $2, reason = $3, updated_at = $4 WHERE name = $1 AND verified_at IS NOT NULL",
        )
        .bind(name.as_str())
        .bind(state.as_str())
        .bind(reason)
        .bind(Timestamp::now().millis())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated > 0)
    }

    /// Every routed domain (proven ownership), whatever its certificate state.
    pub async fn verified_domains(&self) -> Result<Vec<Domain>> {
        let rows = sqlx::query(&format!("{DOMAIN_SELECT} WHERE verified_at IS NOT NULL ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(domain_from_row).collect()
    }

    /// Routed domains by project: every project's, or one project's.
    pub async fn routed_domains(&self, project: Option<&ProjectId>) -> Result<HashMap<ProjectId, Vec<RoutedDomain>>> {
        let rows = match project {
            Some(p) => sqlx::query(
                "SELECT project_id, name, redirect_to FROM domains WHERE project_id = $1 AND verified_at IS NOT NULL",
            )
            .bind(p.as_str())
            .fetch_all(&self.pool)
            .await?,
            None => {
                sqlx::query("SELECT project_id, name, redirect_to FROM domains WHERE verified_at IS NOT NULL")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        let mut out: HashMap<ProjectId, Vec<RoutedDomain>> = HashMap::new();
        for r in &rows {
            let project = parse_id(r.try_get("project_id")?, ProjectId::parse)?;
            out.entry(project).or_default().push(RoutedDomain {
                name: parse_with(r.try_get("name")?, DomainName::parse)?,
                redirect_to: r
                    .try_get::<Option<String>, _>("redirect_to")?
                    .map(|n| parse_with(n, DomainName::parse))
                    .transpose()?,
            });
        }
        Ok(out)
    }
}

fn domain_from_row(r: &AnyRow) -> Result<Domain> {
    Ok(Domain {
        project_id: parse_id(r.try_get("project_id")?, ProjectId::parse)?,
        name: parse_with(r.try_get("name")?, DomainName::parse)?,
        token: r.try_get("token")?,
        state: parse_enum(&r.try_get::<String, _>("state")?, DomainState::parse)?,
        reason: r.try_get("reason")?,
        redirect_to: r
            .try_get::<Option<String>, _>("redirect_to")?
            .map(|n| parse_with(n, DomainName::parse))
            .transpose()?,
        created_at: Timestamp::from_millis(r.try_get("created_at")?),
        updated_at: Timestamp::from_millis(r.try_get("updated_at")?),
        verified_at: r.try_get::<Option<i64>, _>("verified_at")?.map(Timestamp::from_millis),
    })
}
