//! Projects, their settings and variables, the production pointer, and the routes the router
//! serves.

use super::{Database, DbError, Result, conflict, parse_enum, parse_id, parse_with};
use platform::executor::EnvVars;
use platform::model::{BuildSettings, Framework, GithubLink, Project};
use platform::{BranchName, DeploymentId, EnvKey, GitUrl, ProjectId, ProjectSlug, RelPath, Timestamp, UserId};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::{BTreeMap, HashMap};

impl Database {
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

    /// Turns HSTS on or off for the project's hosts.
    pub async fn set_project_hsts(&self, id: &ProjectId, hsts: bool) -> Result<()> {
        sqlx::query("UPDATE projects SET hsts = $2, updated_at = $3 WHERE id = $1")
            .bind(id.as_str())
            .bind(i64::from(hsts))
            .bind(Timestamp::now().millis())
            .execute(&self.pool)
            .await?;
        Ok(())
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
        let rows = sqlx::query("SELECT id, slug, production_deployment_id, hsts FROM projects")
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
        let row = sqlx::query("SELECT id, slug, production_deployment_id, hsts FROM projects WHERE id = $1")
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
            hsts: r.try_get::<i64, _>("hsts")? != 0,
            created_at: Timestamp::from_millis(r.try_get("created_at")?),
            updated_at: Timestamp::from_millis(r.try_get("updated_at")?),
        })
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
    /// HTTPS answers carry `Strict-Transport-Security`.
    pub hsts: bool,
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

const PROJECT_SELECT: &str = "SELECT id, owner_id, slug, name, git_url, branch, root_dir, framework, install_command, \
     build_command, output_dir, github_repo_id, github_full_name, production_deployment_id, hsts, created_at, \
     updated_at FROM projects";

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
        hsts: r.try_get::<i64, _>("hsts")? != 0,
    })
}
