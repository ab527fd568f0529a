//! What the platform knows of GitHub: the App's (sealed) credentials, installations and their
//! repositories, webhook deliveries, and the check-run outbox.

use super::{Database, Result, parse_id};
use platform::model::{Deployment, User};
use platform::{DeploymentId, ProjectId, Timestamp, UserId};
use sqlx::Row;
use sqlx::any::AnyRow;

/// The App's credentials as stored: secrets sealed (see [`platform::crypto::SecretBox`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApp {
    pub app_id: u64,
    pub slug: String,
    pub html_url: String,
    pub client_id: String,
    pub sealed_client_secret: String,
    pub sealed_webhook_secret: String,
    pub sealed_private_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationRecord {
    pub id: u64,
    pub account_login: String,
    pub account_type: String,
    pub owner_id: Option<UserId>,
    pub suspended: bool,
    pub deleted: bool,
}

impl InstallationRecord {
    /// Whether the App can act for this installation.
    pub fn active(&self) -> bool {
        !self.suspended && !self.deleted
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryRecord {
    pub id: u64,
    pub installation_id: u64,
    pub full_name: String,
    pub clone_url: String,
    pub default_branch: Option<String>,
    pub private: bool,
}

/// One webhook delivery and what came of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub event: String,
    pub action: Option<String>,
    pub repository: Option<String>,
    pub installation_id: Option<u64>,
    pub outcome: String,
    pub detail: String,
    pub received_at: Timestamp,
}

/// A check-run update waiting to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckUpdate {
    pub id: i64,
    pub deployment_id: DeploymentId,
    /// `queued`, `in_progress` or `completed`.
    pub status: String,
    pub attempts: u32,
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn installation_from_row(r: &AnyRow) -> Result<InstallationRecord> {
    Ok(InstallationRecord {
        id: to_u64(r.try_get("id")?),
        account_login: r.try_get("account_login")?,
        account_type: r.try_get("account_type")?,
        owner_id: r
            .try_get::<Option<String>, _>("owner_id")?
            .map(|o| parse_id(o, UserId::parse))
            .transpose()?,
        suspended: r.try_get::<i64, _>("suspended")? != 0,
        deleted: r.try_get::<i64, _>("deleted")? != 0,
    })
}

fn repository_from_row(r: &AnyRow) -> Result<RepositoryRecord> {
    Ok(RepositoryRecord {
        id: to_u64(r.try_get("id")?),
        installation_id: to_u64(r.try_get("installation_id")?),
        full_name: r.try_get("full_name")?,
        clone_url: r.try_get("clone_url")?,
        default_branch: r.try_get("default_branch")?,
        private: r.try_get::<i64, _>("private")? != 0,
    })
}

const INSTALLATION_SELECT: &str =
    "SELECT id, account_login, account_type, owner_id, suspended, deleted FROM github_installations";
const REPOSITORY_SELECT: &str =
    "SELECT id, installation_id, full_name, clone_url, default_branch, private FROM github_repositories";

impl Database {
    // -----------------------------------------------------------------------------------------
    // The App

    pub async fn save_github_app(&self, app: &StoredApp) -> Result<()> {
        sqlx::query(
            "INSERT INTO github_app (singleton, app_id, slug, html_url, client_id, client_secret, webhook_secret, \
             private_key, created_at) VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (singleton) DO UPDATE SET app_id = excluded.app_id, slug = excluded.slug, \
             html_url = excluded.html_url, client_id = excluded.client_id, client_secret = excluded.client_secret, \
             webhook_secret = excluded.webhook_secret, private_key = excluded.private_key, created_at = excluded.created_at",
        )
        .bind(to_i64(app.app_id))
        .bind(&app.slug)
        .bind(&app.html_url)
        .bind(&app.client_id)
        .bind(&app.sealed_client_secret)
        .bind(&app.sealed_webhook_secret)
        .bind(&app.sealed_private_key)
        .bind(Timestamp::now().millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn github_app(&self) -> Result<Option<StoredApp>> {
        let row = sqlx::query(
            "SELECT app_id, slug, html_url, client_id, client_secret, webhook_secret, private_key FROM github_app",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(StoredApp {
                app_id: to_u64(r.try_get("app_id")?),
                slug: r.try_get("slug")?,
                html_url: r.try_get("html_url")?,
                client_id: r.try_get("client_id")?,
                sealed_client_secret: r.try_get("client_secret")?,
                sealed_webhook_secret: r.try_get("webhook_secret")?,
                sealed_private_key: r.try_get("private_key")?,
            })
        })
        .transpose()
    }

    // -----------------------------------------------------------------------------------------
    // Installations and repositories

    /// Records (or refreshes) an installation; a re-created installation is no longer deleted.
    pub async fn upsert_installation(
        &self,
        id: u64,
        account_login: &str,
        account_type: &str,
        suspended: bool,
    ) -> Result<()> {
        let now = Timestamp::now().millis();
        sqlx::query(
            "INSERT INTO github_installations (id, account_login, account_type, suspended, deleted, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 0, $5, $5) \
             ON CONFLICT (id) DO UPDATE SET account_login = excluded.account_login, \
             account_type = excluded.account_type, suspended = excluded.suspended, deleted = 0, updated_at = $5",
        )
        .bind(to_i64(id))
        .bind(account_login)
        .bind(account_type)
        .bind(i64::from(suspended))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The installation was uninstalled: forget its repositories, keep the record (deliveries and
    /// projects refer to it).
    pub async fn delete_installation(&self, id: u64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE github_installations SET deleted = 1, updated_at = $2 WHERE id = $1")
            .bind(to_i64(id))
            .bind(Timestamp::now().millis())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM github_repositories WHERE installation_id = $1")
            .bind(to_i64(id))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_installation_suspended(&self, id: u64, suspended: bool) -> Result<()> {
        sqlx::query("UPDATE github_installations SET suspended = $2, updated_at = $3 WHERE id = $1")
            .bind(to_i64(id))
            .bind(i64::from(suspended))
            .bind(Timestamp::now().millis())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Makes `owner` the CloudRunr user of the installation (after GitHub confirmed they can
    /// reach it), unless another user linked it first. Returns whether `owner` has it now.
    pub async fn claim_installation(&self, id: u64, owner: &UserId) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE github_installations SET owner_id = $2, updated_at = $3 \
             WHERE id = $1 AND (owner_id IS NULL OR owner_id = $2)",
        )
        .bind(to_i64(id))
        .bind(owner.as_str())
        .bind(Timestamp::now().millis())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Forgets every installation (a different App was connected: they were the old App's).
    pub async fn forget_installations(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM github_repositories").execute(&mut *tx).await?;
        sqlx::query("UPDATE github_installations SET deleted = 1, owner_id = NULL")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn installation(&self, id: u64) -> Result<Option<InstallationRecord>> {
        let row = sqlx::query(&format!("{INSTALLATION_SELECT} WHERE id = $1"))
            .bind(to_i64(id))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(installation_from_row).transpose()
    }

    /// The installations a user claimed and can still use.
    pub async fn installations_of(&self, owner: &UserId) -> Result<Vec<InstallationRecord>> {
        let rows = sqlx::query(&format!(
            "{INSTALLATION_SELECT} WHERE owner_id = $1 AND deleted = 0 ORDER BY account_login"
        ))
        .bind(owner.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(installation_from_row).collect()
    }

    /// Adds (or refreshes) repositories the installation can reach.
    pub async fn upsert_repositories(&self, installation: u64, repos: &[RepositoryRecord]) -> Result<()> {
        let now = Timestamp::now().millis();
        let mut tx = self.pool.begin().await?;
        for r in repos {
            sqlx::query(
                "INSERT INTO github_repositories (id, installation_id, full_name, clone_url, default_branch, private, \
                 updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (id) DO UPDATE SET installation_id = excluded.installation_id, \
                 full_name = excluded.full_name, clone_url = excluded.clone_url, \
                 default_branch = COALESCE(excluded.default_branch, github_repositories.default_branch), \
                 private = excluded.private, updated_at = excluded.updated_at",
            )
            .bind(to_i64(r.id))
            .bind(to_i64(installation))
            .bind(&r.full_name)
            .bind(&r.clone_url)
            .bind(r.default_branch.as_deref())
            .bind(i64::from(r.private))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The installation can no longer reach these repositories.
    pub async fn remove_repositories(&self, installation: u64, repo_ids: &[u64]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for id in repo_ids {
            sqlx::query("DELETE FROM github_repositories WHERE id = $1 AND installation_id = $2")
                .bind(to_i64(*id))
                .bind(to_i64(installation))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Replaces what is known of the installation's repositories with `repos`.
    pub async fn replace_repositories(&self, installation: u64, repos: &[RepositoryRecord]) -> Result<()> {
        sqlx::query("DELETE FROM github_repositories WHERE installation_id = $1")
            .bind(to_i64(installation))
            .execute(&self.pool)
            .await?;
        self.upsert_repositories(installation, repos).await
    }

    pub async fn repositories_of(&self, installation: u64) -> Result<Vec<RepositoryRecord>> {
        let rows = sqlx::query(&format!(
            "{REPOSITORY_SELECT} WHERE installation_id = $1 ORDER BY full_name"
        ))
        .bind(to_i64(installation))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(repository_from_row).collect()
    }

    /// A repository reachable through an installation `user` claimed.
    pub async fn repository_for_user(&self, user: &User, full_name: &str) -> Result<Option<RepositoryRecord>> {
        let row = sqlx::query(
            "SELECT r.id, r.installation_id, r.full_name, r.clone_url, r.default_branch, r.private \
             FROM github_repositories r JOIN github_installations i ON i.id = r.installation_id \
             WHERE lower(r.full_name) = lower(CAST($1 AS TEXT)) AND i.owner_id = $2 AND i.deleted = 0 AND i.suspended = 0",
        )
        .bind(full_name)
        .bind(user.id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(repository_from_row).transpose()
    }

    pub async fn repository(&self, id: u64) -> Result<Option<RepositoryRecord>> {
        let row = sqlx::query(&format!("{REPOSITORY_SELECT} WHERE id = $1"))
            .bind(to_i64(id))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(repository_from_row).transpose()
    }

    /// Projects that deploy from the repository.
    pub async fn projects_for_repository(&self, repo_id: u64) -> Result<Vec<ProjectId>> {
        let rows = sqlx::query("SELECT id FROM projects WHERE github_repo_id = $1 ORDER BY created_at")
            .bind(to_i64(repo_id))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| parse_id(r.try_get("id")?, ProjectId::parse))
            .collect()
    }

    /// An earlier deployment of exactly this commit of this branch that is queued, building or
    /// ready (a push and a pull-request event for the same commit deploy it once).
    pub async fn live_deployment_of_commit(
        &self,
        project: &ProjectId,
        branch: &str,
        commit: &str,
    ) -> Result<Option<DeploymentId>> {
        let row = sqlx::query(
            "SELECT id FROM deployments WHERE project_id = $1 AND branch = $2 AND commit_sha = $3 \
             AND state IN ('queued','cloning','installing','building','uploading','ready') ORDER BY number DESC LIMIT 1",
        )
        .bind(project.as_str())
        .bind(branch)
        .bind(commit)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| parse_id(r.try_get("id")?, DeploymentId::parse)).transpose()
    }

    // -----------------------------------------------------------------------------------------
    // Webhook deliveries

    /// Records a delivery as received. `false` when this delivery id was recorded before (a
    /// redelivery), in which case nothing is changed — unless acting on it failed then, so that
    /// redelivering it from GitHub tries again.
    pub async fn record_delivery(&self, d: &Delivery) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO webhook_deliveries (id, event, action, repository, installation_id, outcome, detail, \
             received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (id) DO UPDATE SET outcome = excluded.outcome, detail = excluded.detail, \
             received_at = excluded.received_at WHERE webhook_deliveries.outcome = 'failed'",
        )
        .bind(&d.id)
        .bind(&d.event)
        .bind(d.action.as_deref())
        .bind(d.repository.as_deref())
        .bind(d.installation_id.map(to_i64))
        .bind(&d.outcome)
        .bind(&d.detail)
        .bind(d.received_at.millis())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Remembers that delivery `delivery_id` carried the body whose signature is `signature`, and
    /// says which delivery carried that body first since `since`: this one (`None`), or another
    /// (`Some(its id)`: this is a replay of it). Bodies seen before `since` are forgotten first.
    /// A redelivery under the same id is not a replay (see [`Database::record_delivery`]).
    pub async fn remember_webhook_body(
        &self,
        signature: &str,
        delivery_id: &str,
        now: Timestamp,
        since: Timestamp,
    ) -> Result<Option<String>> {
        sqlx::query("DELETE FROM webhook_replays WHERE seen_at < $1")
            .bind(since.millis())
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO webhook_replays (signature, delivery_id, seen_at) VALUES ($1, $2, $3) \
             ON CONFLICT (signature) DO NOTHING",
        )
        .bind(signature)
        .bind(delivery_id)
        .bind(now.millis())
        .execute(&self.pool)
        .await?;
        let first: String = sqlx::query("SELECT delivery_id FROM webhook_replays WHERE signature = $1")
            .bind(signature)
            .fetch_one(&self.pool)
            .await?
            .try_get("delivery_id")?;
        Ok((first != delivery_id).then_some(first))
    }

    pub async fn set_delivery_outcome(&self, id: &str, outcome: &str, detail: &str) -> Result<()> {
        sqlx::query("UPDATE webhook_deliveries SET outcome = $2, detail = $3 WHERE id = $1")
            .bind(id)
            .bind(outcome)
            .bind(detail)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The newest deliveries first.
    pub async fn deliveries(&self, limit: u32) -> Result<Vec<Delivery>> {
        let rows = sqlx::query(
            "SELECT id, event, action, repository, installation_id, outcome, detail, received_at \
             FROM webhook_deliveries ORDER BY received_at DESC, id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Delivery {
                    id: r.try_get("id")?,
                    event: r.try_get("event")?,
                    action: r.try_get("action")?,
                    repository: r.try_get("repository")?,
                    installation_id: r.try_get::<Option<i64>, _>("installation_id")?.map(to_u64),
                    outcome: r.try_get("outcome")?,
                    detail: r.try_get("detail")?,
                    received_at: Timestamp::from_millis(r.try_get("received_at")?),
                })
            })
            .collect()
    }

    // -----------------------------------------------------------------------------------------
    // Check-run outbox

    /// Updates due now: for each deployment only its oldest (they must reach GitHub in order).
    pub async fn due_check_updates(&self, limit: u32) -> Result<Vec<CheckUpdate>> {
        let rows = sqlx::query(
            "SELECT o.id, o.deployment_id, o.status, o.attempts FROM check_run_outbox o \
             WHERE o.next_attempt_at <= $1 \
               AND o.id = (SELECT MIN(x.id) FROM check_run_outbox x WHERE x.deployment_id = o.deployment_id) \
             ORDER BY o.id LIMIT $2",
        )
        .bind(Timestamp::now().millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CheckUpdate {
                    id: r.try_get("id")?,
                    deployment_id: parse_id(r.try_get("deployment_id")?, DeploymentId::parse)?,
                    status: r.try_get("status")?,
                    attempts: u32::try_from(r.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
                })
            })
            .collect()
    }

    /// GitHub has the update; `check_run_id` when it was just created.
    pub async fn check_update_sent(&self, update: &CheckUpdate, check_run_id: Option<u64>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if let Some(run) = check_run_id {
            sqlx::query("UPDATE deployments SET check_run_id = $2 WHERE id = $1")
                .bind(update.deployment_id.as_str())
                .bind(to_i64(run))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM check_run_outbox WHERE id = $1")
            .bind(update.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sending failed: try again at `next_attempt_at`.
    pub async fn check_update_failed(
        &self,
        update: &CheckUpdate,
        error: &str,
        next_attempt_at: Timestamp,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE check_run_outbox SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3 WHERE id = $1",
        )
        .bind(update.id)
        .bind(error)
        .bind(next_attempt_at.millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Not yet: look again at `next_attempt_at` (not counted as a failed attempt).
    pub async fn check_update_postponed(&self, update: &CheckUpdate, next_attempt_at: Timestamp) -> Result<()> {
        sqlx::query("UPDATE check_run_outbox SET next_attempt_at = $2 WHERE id = $1")
            .bind(update.id)
            .bind(next_attempt_at.millis())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Gives up on an update (and the ones after it would make no sense without it).
    pub async fn drop_check_updates(&self, deployment: &DeploymentId) -> Result<()> {
        sqlx::query("DELETE FROM check_run_outbox WHERE deployment_id = $1")
            .bind(deployment.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// How many check-run updates wait (for operators and tests).
    pub async fn pending_check_updates(&self) -> Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM check_run_outbox")
            .fetch_one(&self.pool)
            .await?;
        Ok(to_u64(row.try_get("n")?))
    }

    /// The deployment and the repository of its project, for reporting on GitHub. `None` when
    /// the deployment is gone, or its project is not linked to a repository the App still reaches.
    pub async fn deployment_with_repository(
        &self,
        id: &DeploymentId,
    ) -> Result<Option<(Deployment, RepositoryRecord)>> {
        let Some(d) = self.deployment(id).await? else {
            return Ok(None);
        };
        let row = sqlx::query("SELECT github_repo_id FROM projects WHERE id = $1")
            .bind(d.project_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        let Some(repo_id) = row
            .map(|r| r.try_get::<Option<i64>, _>("github_repo_id"))
            .transpose()?
            .flatten()
        else {
            return Ok(None);
        };
        Ok(self.repository(to_u64(repo_id)).await?.map(|repo| (d, repo)))
    }
}
