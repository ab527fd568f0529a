//! Where dispatched builds run: the handle an executor gave, kept to stop or check on them.

use super::{Database, Result, parse_id};
use platform::DeploymentId;
use platform::executor::Execution;
use sqlx::Row;

impl Database {
    pub async fn set_execution(&self, id: &DeploymentId, execution: &Execution) -> Result<()> {
        sqlx::query("UPDATE deployments SET execution = $2 WHERE id = $1")
            .bind(id.as_str())
            .bind(execution.0.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn execution(&self, id: &DeploymentId) -> Result<Option<Execution>> {
        let row = sqlx::query("SELECT execution FROM deployments WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|r| r.try_get::<Option<String>, _>("execution"))
            .transpose()?
            .flatten()
            .map(Execution))
    }

    /// Builds dispatched, not finished, with a known execution: the ones to check on.
    pub async fn executions_in_flight(&self) -> Result<Vec<(DeploymentId, Execution)>> {
        let rows = sqlx::query(
            "SELECT id, execution FROM deployments WHERE execution IS NOT NULL AND dispatched_at IS NOT NULL \
             AND state IN ('queued','cloning','installing','building','uploading')",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    parse_id(r.try_get("id")?, DeploymentId::parse)?,
                    Execution(r.try_get("execution")?),
                ))
            })
            .collect()
    }
}
