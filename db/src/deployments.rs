//! Deployments: queueing and numbering, claiming for builds, cancel, state changes, requeue.

use super::{
    Backend, Database, DbError, LOCK_CLAIM_QUEUED, Result, is_unique_violation, parse_enum, parse_id, parse_with,
};
use platform::bus::StateChange;
use platform::model::{ArtifactSummary, Deployment, DeploymentState, DeploymentTarget, DeploymentTrigger, Framework};
use platform::{BranchName, CommitSha, DeploymentId, ProjectId, ProjectSlug, Timestamp, UserId};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use std::time::Duration;

/// How often `create_deployment` tries again when a concurrent one took its number.
const NUMBER_ATTEMPTS: u32 = 20;

/// States of a deployment whose build is still going (or waiting to go).
const ACTIVE_STATES: &str = "('queued','cloning','installing','building','uploading')";

/// What to do with a deployment whose account already has as many waiting as it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OverCap {
    /// Create nothing: [`DbError::QueueFull`] (the caller can tell someone).
    Refuse,
    /// Record it as failed with the reason (no one is waiting for an answer, e.g. a webhook).
    RecordFailed,
}

impl Database {
    /// Queues a deployment for a caller that no one waits on (a webhook): past the account's
    /// queue cap it is recorded as failed, with the reason, rather than lost. For a project
    /// linked to GitHub, its check run is queued too, in the same transaction.
    pub async fn create_deployment(&self, new: NewDeployment) -> Result<Deployment> {
        self.create_deployment_or(new, OverCap::RecordFailed).await
    }

    /// Queues a deployment for someone waiting on the answer: past the account's queue cap,
    /// nothing is created and the error is [`DbError::QueueFull`].
    pub async fn queue_deployment(&self, new: NewDeployment) -> Result<Deployment> {
        self.create_deployment_or(new, OverCap::Refuse).await
    }

    /// Deployments of the project's owner waiting in the queue (not yet dispatched).
    pub async fn queued_of_owner(&self, project: &ProjectId) -> Result<u64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM deployments d JOIN projects p ON p.id = d.project_id \
             WHERE p.owner_id = (SELECT owner_id FROM projects WHERE id = $1) \
               AND d.state = 'queued' AND d.dispatched_at IS NULL",
        )
        .bind(project.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0))
    }

    async fn create_deployment_or(&self, new: NewDeployment, over_cap: OverCap) -> Result<Deployment> {
        // Counted apart from the insert: deployments created at the same moment may each see
        // room for one more, so the cap can be passed by as many as are created at once.
        let full = match self.build_caps.queued {
            Some(limit) => {
                let queued = self.queued_of_owner(&new.project).await?;
                (queued >= u64::from(limit)).then_some(DbError::QueueFull { queued, limit })
            }
            None => None,
        };
        let refusal = match (full, over_cap) {
            (Some(full), OverCap::Refuse) => return Err(full),
            (Some(full), OverCap::RecordFailed) => Some(format!(
                "not built: {full}; deploy again once some of them have started"
            )),
            (None, _) => None,
        };
        let id = DeploymentId::generate();
        // The number is one more than the project's highest. Two deployments created at once on
        // PostgreSQL can both read the same highest number: the second insert then violates
        // UNIQUE (project_id, number) and the whole transaction is tried again. (On SQLite the
        // insert holds the write lock, so the first attempt succeeds.)
        let mut attempt = 1;
        loop {
            match self.insert_deployment(&id, &new, refusal.as_deref()).await {
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

    /// Inserts the deployment: queued, or failed with `refusal` as its error.
    async fn insert_deployment(&self, id: &DeploymentId, new: &NewDeployment, refusal: Option<&str>) -> Result<()> {
        let now = Timestamp::now().millis();
        let state = match refusal {
            Some(_) => DeploymentState::Failed,
            None => DeploymentState::Queued,
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO deployments (id, project_id, number, state, target, branch, commit_sha, commit_message, \
             commit_author, trigger, created_at, error, finished_at) \
             SELECT CAST($1 AS TEXT), CAST($2 AS TEXT), COALESCE(MAX(number), 0) + 1, CAST($10 AS TEXT), \
             CAST($3 AS TEXT), CAST($4 AS TEXT), CAST($5 AS TEXT), CAST($6 AS TEXT), CAST($7 AS TEXT), \
             CAST($8 AS TEXT), CAST($9 AS BIGINT), CAST($11 AS TEXT), CAST($12 AS BIGINT) \
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
        .bind(state.as_str())
        .bind(refusal)
        .bind(refusal.map(|_| now))
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
        if refusal.is_some() {
            // The check run reports the refusal too, as a completed (failed) run.
            enqueue_check_update(&mut tx, id, "completed", now).await?;
        }
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
    /// even when several schedulers (API processes) claim at once. Accounts take turns: each claim
    /// serves the account whose latest build was dispatched longest ago, skipping accounts that
    /// have as many builds running as [`crate::BuildCaps::running`] allows.
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
                let ids = claim_on(&mut tx, limit, self.build_caps.running).await?;
                tx.commit().await?;
                ids
            }
            // One writer at a time, and every UPDATE below re-checks the project in the same
            // statement. (No transaction: a deferred one that reads first cannot always upgrade
            // to writing under WAL when another connection wrote meanwhile.)
            Backend::Sqlite => claim_on(&mut *self.pool.acquire().await?, limit, self.build_caps.running).await?,
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

/// Builds of the owner of the project `{project}` (an SQL expression) that are dispatched and not
/// finished.
fn owner_running(project: &str) -> String {
    format!(
        "(SELECT COUNT(*) FROM deployments r JOIN projects rp ON rp.id = r.project_id \
          WHERE rp.owner_id = (SELECT owner_id FROM projects WHERE id = {project}) \
            AND r.dispatched_at IS NOT NULL AND r.state IN {ACTIVE_STATES})"
    )
}

/// Claims queued deployments on `conn` (see [`Database::claim_queued`]); returns their ids. One
/// at a time, so that each choice sees the account that the previous one served as served.
async fn claim_on(conn: &mut AnyConnection, limit: u64, running_cap: Option<u32>) -> Result<Vec<DeploymentId>> {
    let cap = i64::from(running_cap.unwrap_or(u32::MAX));
    let pick = format!(
        "SELECT d.id, p.owner_id FROM deployments d JOIN projects p ON p.id = d.project_id \
         JOIN users u ON u.id = p.owner_id \
         WHERE d.state = 'queued' AND d.dispatched_at IS NULL \
           AND NOT EXISTS (SELECT 1 FROM deployments r WHERE r.project_id = d.project_id \
                           AND r.dispatched_at IS NOT NULL AND r.state IN {ACTIVE_STATES}) \
           AND d.number = (SELECT MIN(q.number) FROM deployments q WHERE q.project_id = d.project_id \
                           AND q.state = 'queued' AND q.dispatched_at IS NULL) \
           AND {} < $1 \
         ORDER BY COALESCE(u.last_dispatch_at, 0), d.created_at, d.id LIMIT 1",
        owner_running("d.project_id")
    );
    // Still queued, still nothing running for its project, and its account still has room.
    let take = format!(
        "UPDATE deployments SET dispatched_at = $2 \
         WHERE id = $1 AND dispatched_at IS NULL AND state = 'queued' \
           AND NOT EXISTS (SELECT 1 FROM deployments r WHERE r.project_id = deployments.project_id \
                           AND r.dispatched_at IS NOT NULL AND r.state IN {ACTIVE_STATES}) \
           AND {} < $3",
        owner_running("deployments.project_id")
    );
    let mut claimed = Vec::new();
    // A pick another scheduler takes first is picked again from what is left; bounded, so that a
    // busy neighbour cannot keep this loop going.
    let mut tries = limit.saturating_add(16);
    while (claimed.len() as u64) < limit && tries > 0 {
        tries -= 1;
        let Some(row) = sqlx::query(&pick).bind(cap).fetch_optional(&mut *conn).await? else {
            break;
        };
        let id = parse_id(row.try_get("id")?, DeploymentId::parse)?;
        let owner: String = row.try_get("owner_id")?;
        let now = Timestamp::now().millis();
        let done = sqlx::query(&take)
            .bind(id.as_str())
            .bind(now)
            .bind(cap)
            .execute(&mut *conn)
            .await?;
        if done.rows_affected() == 1 {
            sqlx::query("UPDATE users SET last_dispatch_at = $2 WHERE id = $1")
                .bind(&owner)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            claimed.push(id);
        }
    }
    Ok(claimed)
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
