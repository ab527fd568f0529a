//! The behavioural suite every database backend must pass.
//!
//! Every test runs on SQLite and, when `CLOUDRUNR_TEST_POSTGRES_URL` names a PostgreSQL server
//! (`postgres://postgres@127.0.0.1:PORT/postgres`, a role that may create databases), on a fresh
//! PostgreSQL database of its own. In CI (`CI` set) or with `CLOUDRUNR_REQUIRE_SERVICES=1`, a
//! missing URL fails the tests instead of quietly testing SQLite alone.

use super::*;
use platform::bus::StateChange;
use platform::model::{
    ArtifactSummary, BuildSettings, Deployment, DeploymentState, GithubLink, LogLine, LogStream, Project, User,
};
use platform::model::{DeploymentTarget, DeploymentTrigger};
use platform::{BranchName, DeploymentId, EnvKey, GitUrl, ProjectId, ProjectSlug, RelPath, Timestamp};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

const POSTGRES_URL_VAR: &str = "CLOUDRUNR_TEST_POSTGRES_URL";

/// A test's database, and what must go when the test ends.
struct TestDb {
    /// Connects another handle to the same database.
    url: String,
    _dir: Option<tempfile::TempDir>,
    _postgres: Option<DropDatabase>,
}

impl TestDb {
    async fn connect_again(&self) -> Database {
        Database::connect(&self.url).await.unwrap()
    }
}

/// A fresh database per backend available to this test run.
async fn databases() -> Vec<(TestDb, Database)> {
    let server = postgres_server(
        std::env::var(POSTGRES_URL_VAR).ok(),
        std::env::var("CI").ok(),
        std::env::var("CLOUDRUNR_REQUIRE_SERVICES").ok(),
    );
    let mut out = vec![sqlite().await];
    if let Some(server) = server {
        out.push(postgres(&server).await);
    }
    out
}

/// The PostgreSQL server to test against, if any; panics when one is required and missing.
fn postgres_server(url: Option<String>, ci: Option<String>, require: Option<String>) -> Option<String> {
    let set = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.is_empty() && v != "0" && v != "false");
    match url.filter(|u| !u.is_empty()) {
        Some(url) => Some(url),
        None if set(&ci) || set(&require) => panic!(
            "{POSTGRES_URL_VAR} is not set, but CI or CLOUDRUNR_REQUIRE_SERVICES=1 requires the database suite to \
             run on PostgreSQL too: start one (scripts/services start) and export {POSTGRES_URL_VAR}=postgres://…"
        ),
        None => None,
    }
}

async fn sqlite() -> (TestDb, Database) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let db = Database::connect(&url).await.unwrap();
    let t = TestDb {
        url,
        _dir: Some(dir),
        _postgres: None,
    };
    (t, db)
}

/// Creates a uniquely named database on the server (dropped again with the returned [`TestDb`]).
async fn postgres(server: &str) -> (TestDb, Database) {
    use sqlx::Connection;
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    sqlx::any::install_default_drivers();
    let name = format!(
        "cloudrunr_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        platform::TokenId::generate().as_str()
    );
    let mut admin = sqlx::AnyConnection::connect(server)
        .await
        .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR}: cannot connect to {server}: {e}"));
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    let mut url = url::Url::parse(server).unwrap();
    url.set_path(&name);
    let url = url.to_string();
    let drop = DropDatabase {
        server: server.to_owned(),
        name,
    };
    let db = Database::connect_with(
        &url,
        DbOptions {
            // Tests run in parallel, each with its own database: keep each pool small.
            max_connections: Some(6),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let t = TestDb {
        url,
        _dir: None,
        _postgres: Some(drop),
    };
    (t, db)
}

/// Drops a test's PostgreSQL database when the test is done with it (also when it failed).
struct DropDatabase {
    server: String,
    name: String,
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        use sqlx::Connection;
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop cannot await: a thread with a runtime of its own does it. FORCE ends the test's
        // own connections, which may still be open in its pools.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let mut admin = sqlx::AnyConnection::connect(&server).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut admin)
                    .await?;
                admin.close().await
            })
            .map_err(std::io::Error::other)
        })
        .join();
        if !matches!(done, Ok(Ok(()))) {
            eprintln!("could not drop the test database {}: {done:?}", self.name);
        }
    }
}

async fn user(db: &Database, email: &str) -> User {
    db.create_user("Ann", email, "hash").await.unwrap()
}

async fn project(db: &Database, owner: &User, slug: &str) -> Project {
    db.create_project(NewProject {
        owner: owner.id.clone(),
        github: None,
        slug: ProjectSlug::parse(slug).unwrap(),
        name: slug.to_owned(),
        git_url: GitUrl::parse("https://example.com/a/b.git").unwrap(),
        branch: BranchName::parse("main").unwrap(),
        build: BuildSettings::default(),
        env: vec![(EnvKey::parse("API_KEY").unwrap(), "s3cret".into())],
    })
    .await
    .unwrap()
}

async fn deploy(db: &Database, p: &Project) -> Deployment {
    deploy_branch(db, p, p.branch.as_str(), DeploymentTarget::Production).await
}

async fn deploy_branch(db: &Database, p: &Project, branch: &str, target: DeploymentTarget) -> Deployment {
    db.create_deployment(NewDeployment {
        project: p.id.clone(),
        target,
        branch: BranchName::parse(branch).unwrap(),
        commit: None,
        commit_message: None,
        commit_author: None,
        trigger: DeploymentTrigger::Api,
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn users_are_unique_by_email() {
    for (_dir, db) in databases().await {
        let u = user(&db, "ann@example.com").await;
        assert!(matches!(
            db.create_user("B", "ann@example.com", "h").await,
            Err(DbError::Conflict("email"))
        ));
        let (found, hash) = db.user_by_email("ann@example.com").await.unwrap().unwrap();
        assert_eq!((found, hash.as_str()), (u.clone(), "hash"));
        assert_eq!(db.user(&u.id).await.unwrap(), Some(u));
        assert!(db.user_by_email("bob@example.com").await.unwrap().is_none());
    }
}

#[tokio::test]
async fn tokens_belong_to_their_user() {
    for (_dir, db) in databases().await {
        let ann = user(&db, "ann@example.com").await;
        let bob = user(&db, "bob@example.com").await;
        let t = db.create_token(&ann.id, "ci", "h1").await.unwrap();
        assert_eq!(db.user_by_token_hash("h1").await.unwrap(), Some(ann.clone()));
        assert!(db.list_tokens(&ann.id).await.unwrap()[0].last_used_at.is_some());
        assert!(db.list_tokens(&bob.id).await.unwrap().is_empty());
        assert!(!db.delete_token(&bob.id, &t.id).await.unwrap());
        assert!(db.delete_token(&ann.id, &t.id).await.unwrap());
        assert_eq!(db.user_by_token_hash("h1").await.unwrap(), None);
    }
}

#[tokio::test]
async fn projects_are_scoped_to_owner_and_slugs_unique() {
    for (_dir, db) in databases().await {
        let ann = user(&db, "ann@example.com").await;
        let bob = user(&db, "bob@example.com").await;
        let p = project(&db, &ann, "site").await;
        assert_eq!(p.env_keys, vec!["API_KEY".to_string()]);
        let dup = db
            .create_project(NewProject {
                owner: bob.id.clone(),
                github: None,
                slug: p.slug.clone(),
                name: "x".into(),
                git_url: p.git_url.clone(),
                branch: p.branch.clone(),
                build: BuildSettings::default(),
                env: vec![],
            })
            .await;
        assert!(matches!(dup, Err(DbError::Conflict("slug"))));
        assert!(db.slug_taken(&p.slug).await.unwrap());
        assert_eq!(db.owned_project(&ann.id, &p.slug).await.unwrap(), Some(p.clone()));
        assert_eq!(db.owned_project(&bob.id, &p.slug).await.unwrap(), None);
        assert_eq!(db.list_projects(&bob.id).await.unwrap(), vec![]);
        assert_eq!(db.project_env(&p.id).await.unwrap().0["API_KEY"], "s3cret");
    }
}

#[tokio::test]
async fn project_updates_merge_env() {
    for (_dir, db) in databases().await {
        let ann = user(&db, "ann@example.com").await;
        let p = project(&db, &ann, "site").await;
        let updated = db
            .update_project(
                &p.id,
                ProjectUpdate {
                    slug: ProjectSlug::parse("site2").unwrap(),
                    name: "Site 2".into(),
                    git_url: p.git_url.clone(),
                    branch: p.branch.clone(),
                    build: BuildSettings {
                        output_dir: Some(RelPath::parse("out").unwrap()),
                        ..Default::default()
                    },
                    env: vec![
                        (EnvKey::parse("API_KEY").unwrap(), None),
                        (EnvKey::parse("NEW").unwrap(), Some("v".into())),
                    ],
                },
            )
            .await
            .unwrap();
        assert_eq!(updated.slug.as_str(), "site2");
        assert_eq!(updated.build.output_dir.unwrap().as_str(), "out");
        assert_eq!(updated.env_keys, vec!["NEW".to_string()]);
    }
}

#[tokio::test]
async fn one_build_per_project_at_a_time() {
    for (_dir, db) in databases().await {
        let ann = user(&db, "ann@example.com").await;
        let a = project(&db, &ann, "a").await;
        let b = project(&db, &ann, "b").await;
        let a1 = deploy(&db, &a).await;
        let a2 = deploy(&db, &a).await;
        let b1 = deploy(&db, &b).await;
        let mut claimed: Vec<_> = db.claim_queued(10).await.unwrap().into_iter().map(|d| d.id).collect();
        // Created within the same millisecond, a1 and b1 may come in either order.
        claimed.sort_by(|x, y| x.as_str().cmp(y.as_str()));
        let mut expected = vec![a1.id.clone(), b1.id.clone()];
        expected.sort_by(|x, y| x.as_str().cmp(y.as_str()));
        assert_eq!(claimed, expected);
        assert_eq!(db.running_count().await.unwrap(), 2);
        assert!(db.claim_queued(10).await.unwrap().is_empty());
        db.apply_state(&a1.id, &StateChange::new(DeploymentState::Failed))
            .await
            .unwrap()
            .unwrap();
        let next: Vec<_> = db.claim_queued(10).await.unwrap().into_iter().map(|d| d.id).collect();
        assert_eq!(next, vec![a2.id.clone()]);
        let list: Vec<_> = db
            .list_deployments(&a.id, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(list, vec![a2.id, a1.id]);
    }
}

#[tokio::test]
async fn state_only_moves_forward() {
    for (_dir, db) in databases().await {
        let ann = user(&db, "ann@example.com").await;
        let p = project(&db, &ann, "site").await;
        let d = deploy(&db, &p).await;
        let mut building = StateChange::new(DeploymentState::Building);
        building.phases.insert("cloning".into(), 12);
        let after = db.apply_state(&d.id, &building).await.unwrap().unwrap();
        assert_eq!(after.state, DeploymentState::Building);
        assert!(after.started_at.is_some());
        assert_eq!(after.phases["cloning"], 12);
        assert!(
            db.apply_state(&d.id, &StateChange::new(DeploymentState::Cloning))
                .await
                .unwrap()
                .is_none()
        );
        let mut ready = StateChange::new(DeploymentState::Ready);
        ready.artifact = Some(ArtifactSummary {
            files: 2,
            bytes: 10,
            new_files: 1,
            new_bytes: 4,
        });
        let done = db.apply_state(&d.id, &ready).await.unwrap().unwrap();
        assert_eq!(done.artifact.unwrap().new_files, 1);
        assert!(done.finished_at.is_some());
        assert!(
            db.apply_state(&d.id, &StateChange::new(DeploymentState::Failed))
                .await
                .unwrap()
                .is_none()
        );
        assert!(!db.cancel_queued(&d.id).await.unwrap());
    }
}

#[tokio::test]
async fn production_only_advances_to_newer_deployments() {
    for (_dir, db) in databases().await {
        let ann = user(&db, "ann@example.com").await;
        let p = project(&db, &ann, "site").await;
        let old = deploy(&db, &p).await;
        let new = deploy(&db, &p).await;
        assert!(db.advance_production(&p.id, &new.id).await.unwrap());
        assert!(!db.advance_production(&p.id, &old.id).await.unwrap());
        db.set_production(&p.id, &old.id).await.unwrap();
        let route = db.route(&p.id).await.unwrap().unwrap();
        assert_eq!(route.production, Some(old.id));
        assert_eq!(db.routes().await.unwrap(), vec![route]);
    }
}

#[tokio::test]
async fn log_lines_are_idempotent_and_ordered() {
    for (_dir, db) in databases().await {
        let ann = user(&db, "ann@example.com").await;
        let p = project(&db, &ann, "site").await;
        let d = deploy(&db, &p).await;
        let line = |seq: u64, text: &str| {
            (
                d.id.clone(),
                LogLine {
                    seq,
                    ts: Timestamp::now(),
                    stream: LogStream::Stdout,
                    text: text.into(),
                },
            )
        };
        db.insert_log_lines(&[line(2, "two"), line(1, "one")]).await.unwrap();
        db.insert_log_lines(&[line(2, "duplicate"), line(3, "three")])
            .await
            .unwrap();
        let ghost = DeploymentId::generate();
        db.insert_log_lines(&[(ghost.clone(), line(1, "x").1)]).await.unwrap();
        let texts: Vec<_> = db
            .log_lines(&d.id, 0, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.text)
            .collect();
        assert_eq!(texts, ["one", "two", "three"]);
        assert_eq!(db.log_lines(&d.id, 2, 10).await.unwrap().len(), 1);
        assert_eq!(db.last_log_seq(&d.id).await.unwrap(), 3);
        assert_eq!(db.last_log_seq(&ghost).await.unwrap(), 0);
        db.delete_project(&p.id).await.unwrap();
        assert!(db.log_lines(&d.id, 0, 10).await.unwrap().is_empty());
        assert!(db.deployment(&d.id).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn log_lines_of_several_deployments_go_in_bulk() {
    for (_dir, db) in databases().await {
        let ann = user(&db, "ann@example.com").await;
        let p = project(&db, &ann, "site").await;
        let (a, b) = (deploy(&db, &p).await, deploy(&db, &p).await);
        let ghost = DeploymentId::generate();
        let line = |id: &DeploymentId, seq: u64| {
            (
                id.clone(),
                LogLine {
                    seq,
                    ts: Timestamp::from_millis(1_700_000_000_000 + seq as i64),
                    stream: LogStream::Stderr,
                    text: format!("{seq} it's \"quoted\" — ünïcode"),
                },
            )
        };
        // Runs longer than one statement, interleaved, with a ghost and a duplicate in between.
        let mut batch: Vec<_> = (1..=450).map(|s| line(&a.id, s)).collect();
        batch.extend((1..=3).map(|s| line(&ghost, s)));
        batch.extend((1..=250).map(|s| line(&b.id, s)));
        batch.push(line(&a.id, 451));
        batch.push(line(&a.id, 451));
        db.insert_log_lines(&batch).await.unwrap();
        let stored = db.log_lines(&a.id, 0, 1000).await.unwrap();
        assert_eq!(stored.len(), 451);
        assert_eq!(stored[449], line(&a.id, 450).1);
        assert_eq!(db.log_lines(&b.id, 0, 1000).await.unwrap().len(), 250);
        assert_eq!(db.last_log_seq(&ghost).await.unwrap(), 0);
        // Keyset pages see every line once.
        let (mut after, mut seen) = (0, 0);
        loop {
            let page = db.log_lines(&a.id, after, 100).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.seq;
            seen += page.len();
        }
        assert_eq!(seen, 451);
    }
}

#[tokio::test]
async fn interrupted_builds_are_requeued() {
    for (_dir, db) in databases().await {
        let ann = user(&db, "ann@example.com").await;
        let p = project(&db, &ann, "site").await;
        let d = deploy(&db, &p).await;
        db.claim_queued(1).await.unwrap();
        db.apply_state(&d.id, &StateChange::new(DeploymentState::Installing))
            .await
            .unwrap();
        assert_eq!(db.requeue_dispatched(None).await.unwrap(), vec![d.id.clone()]);
        assert_eq!(
            db.deployment(&d.id).await.unwrap().unwrap().state,
            DeploymentState::Queued
        );
        assert_eq!(db.claim_queued(1).await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn a_process_requeues_only_its_own_interrupted_builds() {
    use platform::executor::Execution;
    for (_dir, db) in databases().await {
        let ann = user(&db, "ann@example.com").await;
        let mine = deploy(&db, &project(&db, &ann, "mine").await).await;
        let theirs = deploy(&db, &project(&db, &ann, "theirs").await).await;
        deploy(&db, &project(&db, &ann, "starting").await).await;
        assert_eq!(db.claim_queued(3).await.unwrap().len(), 3);
        db.set_execution(&mine.id, &Execution("process:a1:100".into()))
            .await
            .unwrap();
        db.set_execution(&theirs.id, &Execution("process:b2:100".into()))
            .await
            .unwrap();
        // `starting` has no execution yet: another process may be starting it right now.
        assert_eq!(
            db.requeue_dispatched(Some("process:a1:")).await.unwrap(),
            vec![mine.id.clone()]
        );
        assert_eq!(
            db.deployment(&mine.id).await.unwrap().unwrap().state,
            DeploymentState::Queued
        );
        assert_eq!(db.execution(&mine.id).await.unwrap(), None);
        assert_eq!(
            db.execution(&theirs.id).await.unwrap(),
            Some(Execution("process:b2:100".into()))
        );
        let (_, flight): (Vec<_>, Vec<_>) = db.executions_in_flight().await.unwrap().into_iter().unzip();
        assert_eq!(flight, [Execution("process:b2:100".into())]);
    }
}

#[tokio::test]
async fn the_first_user_is_the_admin() {
    for (_dir, db) in databases().await {
        assert!(user(&db, "ann@example.com").await.is_admin);
        assert!(!user(&db, "bob@example.com").await.is_admin);
    }
}

#[tokio::test]
async fn hsts_is_off_until_a_project_turns_it_on_and_routes_carry_it() {
    for (_dir, db) in databases().await {
        let ann = user(&db, "ann@example.com").await;
        let p = project(&db, &ann, "site").await;
        let other = project(&db, &ann, "other").await;
        assert!(!p.hsts);
        assert!(!db.route(&p.id).await.unwrap().unwrap().hsts);
        db.set_project_hsts(&p.id, true).await.unwrap();
        assert!(db.project(&p.id).await.unwrap().unwrap().hsts);
        assert!(db.route(&p.id).await.unwrap().unwrap().hsts);
        let routes = db.routes().await.unwrap();
        assert!(routes.iter().any(|r| r.project_id == p.id && r.hsts));
        assert!(routes.iter().any(|r| r.project_id == other.id && !r.hsts));
        db.set_project_hsts(&p.id, false).await.unwrap();
        assert!(!db.route(&p.id).await.unwrap().unwrap().hsts);
    }
}

#[tokio::test]
async fn routes_carry_the_newest_ready_preview_per_branch() {
    for (_dir, db) in databases().await {
        let ann = user(&db, "ann@example.com").await;
        let p = project(&db, &ann, "site").await;
        let ready = |d: Deployment| {
            let db = db.clone();
            async move {
                db.apply_state(&d.id, &StateChange::new(DeploymentState::Ready))
                    .await
                    .unwrap();
                d.id
            }
        };
        let _old = ready(deploy_branch(&db, &p, "feature", DeploymentTarget::Preview).await).await;
        let new = ready(deploy_branch(&db, &p, "feature", DeploymentTarget::Preview).await).await;
        let _building = deploy_branch(&db, &p, "feature", DeploymentTarget::Preview).await;
        let other = ready(deploy_branch(&db, &p, "other", DeploymentTarget::Preview).await).await;
        ready(deploy(&db, &p).await).await;
        let mut previews = db.route(&p.id).await.unwrap().unwrap().previews;
        previews.sort();
        let want = vec![
            (BranchName::parse("feature").unwrap(), new),
            (BranchName::parse("other").unwrap(), other),
        ];
        assert_eq!(previews, want);
        assert_eq!(db.routes().await.unwrap()[0].previews.len(), 2);
    }
}

#[tokio::test]
async fn deliveries_are_recorded_once() {
    for (_dir, db) in databases().await {
        let d = Delivery {
            id: "72d3162e-cc78-11e3-81ab-4c9367dc0958".into(),
            event: "push".into(),
            action: None,
            repository: Some("octo/site".into()),
            installation_id: Some(7),
            outcome: "received".into(),
            detail: String::new(),
            received_at: Timestamp::now(),
        };
        assert!(db.record_delivery(&d).await.unwrap());
        assert!(!db.record_delivery(&d).await.unwrap(), "a redelivery");
        db.set_delivery_outcome(&d.id, "deployed", "site#1").await.unwrap();
        let listed = db.deliveries(10).await.unwrap();
        assert_eq!((listed.len(), listed[0].outcome.as_str()), (1, "deployed"));
    }
}

#[tokio::test]
async fn a_body_delivered_again_under_another_id_is_a_replay() {
    for (_dir, db) in databases().await {
        let day = 86_400_000;
        let (t0, t1) = (
            Timestamp::from_millis(10 * day),
            Timestamp::from_millis(10 * day + 1000),
        );
        let since = |t: Timestamp| Timestamp::from_millis(t.millis() - day);
        assert_eq!(
            db.remember_webhook_body("aa", "d-1", t0, since(t0)).await.unwrap(),
            None
        );
        // GitHub's redelivery keeps its id: not a replay (the delivery record decides).
        assert_eq!(
            db.remember_webhook_body("aa", "d-1", t1, since(t1)).await.unwrap(),
            None
        );
        assert_eq!(
            db.remember_webhook_body("aa", "d-2", t1, since(t1))
                .await
                .unwrap()
                .as_deref(),
            Some("d-1")
        );
        assert_eq!(
            db.remember_webhook_body("bb", "d-3", t1, since(t1)).await.unwrap(),
            None
        );
        // A day later the first body is forgotten (pruned), and may come again.
        let later = Timestamp::from_millis(t0.millis() + day + 1);
        assert_eq!(
            db.remember_webhook_body("aa", "d-4", later, since(later))
                .await
                .unwrap(),
            None
        );
        let left: i64 = sqlx::query("SELECT COUNT(*) AS n FROM webhook_replays")
            .fetch_one(&db.pool)
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
        assert_eq!(left, 2, "bb (seen within the day) and the new aa");
    }
}

#[tokio::test]
async fn installations_are_claimed_and_scoped() {
    for (_dir, db) in databases().await {
        let ann = user(&db, "ann@example.com").await;
        let bob = user(&db, "bob@example.com").await;
        db.upsert_installation(7, "octo", "Organization", false).await.unwrap();
        let repo = |id: u64, name: &str| RepositoryRecord {
            id,
            installation_id: 7,
            full_name: name.into(),
            clone_url: format!("https://github.com/{name}.git"),
            default_branch: Some("main".into()),
            private: true,
        };
        db.replace_repositories(7, &[repo(1, "octo/a"), repo(2, "octo/b")])
            .await
            .unwrap();
        assert_eq!(
            db.repository_for_user(&ann, "octo/a").await.unwrap(),
            None,
            "not claimed yet"
        );
        assert!(db.claim_installation(7, &ann.id).await.unwrap());
        assert!(
            !db.claim_installation(7, &bob.id).await.unwrap(),
            "the first to link it keeps it"
        );
        assert_eq!(
            db.repository_for_user(&ann, "OCTO/A").await.unwrap(),
            Some(repo(1, "octo/a"))
        );
        assert_eq!(db.repository_for_user(&bob, "octo/a").await.unwrap(), None);
        assert_eq!(db.installations_of(&ann.id).await.unwrap().len(), 1);
        db.remove_repositories(7, &[2]).await.unwrap();
        assert_eq!(db.repositories_of(7).await.unwrap(), vec![repo(1, "octo/a")]);
        db.delete_installation(7).await.unwrap();
        assert!(db.installation(7).await.unwrap().unwrap().deleted);
        assert!(db.installations_of(&ann.id).await.unwrap().is_empty());
        assert_eq!(db.repository_for_user(&ann, "octo/a").await.unwrap(), None);
        db.upsert_installation(7, "octo", "Organization", false).await.unwrap();
        assert!(db.installation(7).await.unwrap().unwrap().active(), "reinstalled");
    }
}

#[tokio::test]
async fn check_run_updates_follow_the_deployment_in_order() {
    for (_dir, db) in databases().await {
        let ann = user(&db, "ann@example.com").await;
        let plain = project(&db, &ann, "plain").await;
        let linked = db
            .create_project(NewProject {
                owner: ann.id.clone(),
                github: Some(GithubLink {
                    repo_id: 1,
                    full_name: "octo/a".into(),
                }),
                slug: ProjectSlug::parse("linked").unwrap(),
                name: "linked".into(),
                git_url: GitUrl::parse("https://github.com/octo/a.git").unwrap(),
                branch: BranchName::parse("main").unwrap(),
                build: BuildSettings::default(),
                env: vec![],
            })
            .await
            .unwrap();
        assert_eq!(db.projects_for_repository(1).await.unwrap(), vec![linked.id.clone()]);
        deploy(&db, &plain).await;
        let d = deploy(&db, &linked).await;
        for s in [
            DeploymentState::Cloning,
            DeploymentState::Building,
            DeploymentState::Ready,
        ] {
            db.apply_state(&d.id, &StateChange::new(s)).await.unwrap().unwrap();
        }
        let mut sent = Vec::new();
        while let Some(u) = db.due_check_updates(10).await.unwrap().first().cloned() {
            assert_eq!(
                db.due_check_updates(10).await.unwrap().len(),
                1,
                "one at a time per deployment"
            );
            sent.push(u.status.clone());
            db.check_update_sent(&u, (u.status == "queued").then_some(99))
                .await
                .unwrap();
        }
        assert_eq!(
            sent,
            ["queued", "in_progress", "completed"],
            "nothing for the unlinked project"
        );
        assert_eq!(db.deployment(&d.id).await.unwrap().unwrap().check_run_id, Some(99));

        // A failing send waits for its retry time; a canceled queued deployment completes its check.
        let d2 = deploy(&db, &linked).await;
        let u = db.due_check_updates(10).await.unwrap().remove(0);
        db.check_update_failed(&u, "503", Timestamp::from_millis(Timestamp::now().millis() + 60_000))
            .await
            .unwrap();
        assert!(db.due_check_updates(10).await.unwrap().is_empty());
        assert!(db.cancel_queued(&d2.id).await.unwrap());
        assert_eq!(db.pending_check_updates().await.unwrap(), 2);
        assert_eq!(
            db.deployment_with_repository(&d2.id).await.unwrap(),
            None,
            "the App reaches no such repository"
        );
        db.upsert_installation(7, "octo", "Organization", false).await.unwrap();
        let repo = RepositoryRecord {
            id: 1,
            installation_id: 7,
            full_name: "octo/a".into(),
            clone_url: "https://github.com/octo/a.git".into(),
            default_branch: None,
            private: false,
        };
        db.upsert_repositories(7, &[repo]).await.unwrap();
        let (dep, repo) = db
            .deployment_with_repository(&d2.id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("linked"));
        assert_eq!((dep.id, repo.id), (d2.id.clone(), 1));
        db.drop_check_updates(&d2.id).await.unwrap();
        assert_eq!(db.pending_check_updates().await.unwrap(), 0);
    }
}

#[tokio::test]
async fn github_accounts_link_to_one_user() {
    for (_dir, db) in databases().await {
        let ann = user(&db, "ann@example.com").await;
        let bob = user(&db, "bob@example.com").await;
        db.link_github_account(&ann.id, 42, "ann-gh").await.unwrap();
        assert!(matches!(
            db.link_github_account(&bob.id, 42, "ann-gh").await,
            Err(DbError::Conflict(_))
        ));
        let found = db.user_by_github_id(42).await.unwrap().unwrap();
        assert_eq!((found.id, found.github_login.as_deref()), (ann.id, Some("ann-gh")));
        assert_eq!(db.user_by_github_id(43).await.unwrap(), None);
    }
}

// ---------------------------------------------------------------------------------------------
// What SQLite's single writer gave for free and PostgreSQL must earn: several API processes
// (here: several handles on one database) working at once.

/// Schedulers on two handles claim while builders finish what was claimed: a project never has
/// two builds running, nothing is claimed twice, everything is built.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_schedulers_never_run_two_builds_of_a_project() {
    use std::collections::HashSet;
    use std::sync::Mutex;
    const PROJECTS: usize = 5;
    const PER_PROJECT: usize = 4;
    for (t, db) in databases().await {
        let other = t.connect_again().await;
        let ann = user(&db, "ann@example.com").await;
        for i in 0..PROJECTS {
            let p = project(&db, &ann, &format!("site{i}")).await;
            for _ in 0..PER_PROJECT {
                deploy(&db, &p).await;
            }
        }
        // What runs per project, as the schedulers see it: an entry is added right after a claim
        // and removed right before the build is marked done, so it never outlives the claim.
        let running: Arc<Mutex<HashMap<ProjectId, DeploymentId>>> = Arc::default();
        let claimed: Arc<Mutex<HashSet<DeploymentId>>> = Arc::default();
        let (to_builder, mut builds) = tokio::sync::mpsc::unbounded_channel::<Deployment>();
        let mut schedulers = Vec::new();
        for i in 0..4 {
            let handle = if i % 2 == 0 { db.clone() } else { other.clone() };
            let (running, claimed, to_builder) = (running.clone(), claimed.clone(), to_builder.clone());
            schedulers.push(tokio::spawn(async move {
                while claimed.lock().unwrap().len() < PROJECTS * PER_PROJECT {
                    let got = handle.claim_queued(3).await.unwrap();
                    if got.is_empty() {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    for d in got {
                        if let Some(other) = running.lock().unwrap().insert(d.project_id.clone(), d.id.clone()) {
                            panic!("{} was claimed while {other} of the same project runs", d.id);
                        }
                        assert!(claimed.lock().unwrap().insert(d.id.clone()), "{} claimed twice", d.id);
                        to_builder.send(d).unwrap();
                    }
                }
            }));
        }
        drop(to_builder);
        let builder = {
            let (db, running) = (db.clone(), running.clone());
            tokio::spawn(async move {
                let mut done = Vec::new();
                while let Some(d) = builds.recv().await {
                    let (db, running) = (db.clone(), running.clone());
                    done.push(tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(u64::from(getrandom::u32().unwrap() % 4))).await;
                        running.lock().unwrap().remove(&d.project_id);
                        db.apply_state(&d.id, &StateChange::new(DeploymentState::Ready))
                            .await
                            .unwrap()
                            .unwrap();
                    }));
                }
                for d in done {
                    d.await.unwrap();
                }
            })
        };
        let all = async {
            for s in schedulers {
                s.await.unwrap();
            }
            builder.await.unwrap();
        };
        tokio::time::timeout(Duration::from_secs(120), all)
            .await
            .unwrap_or_else(|_| panic!("{:?}: the builds did not all run", db.backend()));
        assert_eq!(claimed.lock().unwrap().len(), PROJECTS * PER_PROJECT);
        assert_eq!(db.running_count().await.unwrap(), 0);
        assert!(db.claim_queued(10).await.unwrap().is_empty());
    }
}

/// A burst of schedulers over a full queue: each project's oldest deployment is claimed once,
/// by exactly one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_claims_split_the_queue() {
    for (t, db) in databases().await {
        let other = t.connect_again().await;
        let ann = user(&db, "ann@example.com").await;
        let mut first = Vec::new();
        for i in 0..6 {
            let p = project(&db, &ann, &format!("site{i}")).await;
            first.push(deploy(&db, &p).await.id);
            deploy(&db, &p).await;
        }
        let claims: Vec<_> = (0..8)
            .map(|i| {
                let handle = if i % 2 == 0 { db.clone() } else { other.clone() };
                tokio::spawn(async move { handle.claim_queued(100).await.unwrap() })
            })
            .collect();
        let mut claimed = Vec::new();
        for c in claims {
            claimed.extend(c.await.unwrap().into_iter().map(|d| d.id));
        }
        claimed.sort();
        first.sort();
        assert_eq!(claimed, first, "{:?}", db.backend());
        assert_eq!(db.running_count().await.unwrap(), 6);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deployments_get_consecutive_numbers() {
    const N: usize = 16;
    for (t, db) in databases().await {
        let other = t.connect_again().await;
        let ann = user(&db, "ann@example.com").await;
        let p = project(&db, &ann, "site").await;
        let tasks: Vec<_> = (0..N)
            .map(|i| {
                let handle = if i % 2 == 0 { db.clone() } else { other.clone() };
                let p = p.clone();
                tokio::spawn(async move { deploy(&handle, &p).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let numbers: Vec<i64> = sqlx::query("SELECT number FROM deployments WHERE project_id = $1 ORDER BY number")
            .bind(p.id.as_str())
            .fetch_all(&db.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get("number").unwrap())
            .collect();
        assert_eq!(numbers, (1..=N as i64).collect::<Vec<_>>(), "{:?}", db.backend());
        assert_eq!(db.list_deployments(&p.id, 100).await.unwrap().len(), N);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_sign_ups_make_one_admin() {
    for (t, db) in databases().await {
        let other = t.connect_again().await;
        // Rounds on a users table emptied each time (the race is short: give it chances).
        for round in 0..10 {
            sqlx::query("DELETE FROM users").execute(&db.pool).await.unwrap();
            let start = Arc::new(tokio::sync::Barrier::new(8));
            let tasks: Vec<_> = (0..8)
                .map(|i| {
                    let handle = if i % 2 == 0 { db.clone() } else { other.clone() };
                    let start = start.clone();
                    tokio::spawn(async move {
                        start.wait().await;
                        user(&handle, &format!("u{i}@example.com")).await
                    })
                })
                .collect();
            let mut admins = 0;
            for task in tasks {
                admins += usize::from(task.await.unwrap().is_admin);
            }
            assert_eq!(admins, 1, "{:?}, round {round}", db.backend());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Backends, schema and log storage

#[tokio::test]
async fn urls_choose_the_backend() {
    assert_eq!(Backend::of_url("sqlite:///tmp/x.db").unwrap(), Backend::Sqlite);
    assert_eq!(Backend::of_url("sqlite:x.db").unwrap(), Backend::Sqlite);
    assert_eq!(Backend::of_url("postgres://u@h/db").unwrap(), Backend::Postgres);
    assert_eq!(Backend::of_url("postgresql://u@h:5432/db").unwrap(), Backend::Postgres);
    assert!(matches!(Backend::of_url("mysql://u@h/db"), Err(DbError::UnsupportedUrl(s)) if s == "mysql:"));
    assert!(matches!(
        Database::connect("mysql://u@h/db").await,
        Err(DbError::UnsupportedUrl(_))
    ));
    for (t, db) in databases().await {
        // The same migrations again (a restart) change nothing.
        let again = t.connect_again().await;
        assert_eq!((again.backend(), again.log_storage()), (db.backend(), db.log_storage()));
    }
}

#[test]
fn postgres_is_required_in_ci_only() {
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(postgres_server(None, None, None), None);
    assert_eq!(postgres_server(s(""), s(""), s("0")), None);
    assert_eq!(postgres_server(None, s("false"), None), None);
    assert_eq!(postgres_server(s("postgres://x"), s("true"), None), s("postgres://x"));
    for (ci, require) in [(s("true"), None), (None, s("1")), (s("1"), s("1"))] {
        let missing = std::panic::catch_unwind(|| postgres_server(None, ci.clone(), require.clone()));
        let message = *missing.expect_err("must panic").downcast::<String>().unwrap();
        assert!(message.contains(POSTGRES_URL_VAR), "{message}");
    }
}

/// Build logs: a hypertable only where TimescaleDB can be installed; the detection query works,
/// and a failed set-up falls back to the plain table untouched.
#[tokio::test]
async fn build_logs_fall_back_to_a_plain_table() {
    for (_t, db) in databases().await {
        if db.backend() == Backend::Sqlite {
            assert_eq!(db.log_storage(), LogStorage::Plain);
            continue;
        }
        assert!(timescale::extension_available(&db.pool, "plpgsql").await.unwrap());
        assert!(
            !timescale::extension_available(&db.pool, "no_such_extension")
                .await
                .unwrap()
        );
        if timescale::extension_available(&db.pool, "timescaledb").await.unwrap() {
            assert_eq!(db.log_storage(), LogStorage::Timescale);
            continue;
        }
        assert_eq!(db.log_storage(), LogStorage::Plain);
        // As if the server listed the extension but could not create it.
        assert_eq!(
            timescale::use_timescale(&db.pool, Some(Duration::from_secs(86_400))).await,
            LogStorage::Plain
        );
        let pkey = sqlx::query("SELECT COUNT(*) AS n FROM pg_constraint WHERE conname = 'log_lines_pkey'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(pkey.try_get::<i64, _>("n").unwrap(), 1, "the plain table keeps its key");
        let ann = user(&db, "ann@example.com").await;
        let d = deploy(&db, &project(&db, &ann, "site").await).await;
        let line = LogLine {
            seq: 1,
            ts: Timestamp::now(),
            stream: LogStream::Stderr,
            text: "x".into(),
        };
        for _ in 0..2 {
            db.insert_log_lines(&[(d.id.clone(), line.clone())]).await.unwrap();
        }
        assert_eq!(db.log_lines(&d.id, 0, 10).await.unwrap(), vec![line]);
    }
}

/// PostgreSQL's schema is SQLite's: the same tables, columns and named indexes, every integer a
/// BIGINT (the `Any` driver reads i64 from INT8), plus a time index on log lines.
#[tokio::test]
async fn postgres_schema_mirrors_sqlite() {
    use std::collections::BTreeSet;
    let dbs = databases().await;
    let Some((_, pg)) = dbs.iter().find(|(_, db)| db.backend() == Backend::Postgres) else {
        return;
    };
    let (_, lite) = &dbs[0];
    let strings =
        |rows: Vec<AnyRow>| -> BTreeSet<String> { rows.iter().map(|r| r.try_get::<String, _>("x").unwrap()).collect() };
    let lite_columns = strings(
        sqlx::query(
            "SELECT m.name || '.' || c.name || ' ' || CASE WHEN c.type = 'INTEGER' THEN 'int' ELSE lower(c.type) END \
             AS x FROM sqlite_master m JOIN pragma_table_info(m.name) c \
             WHERE m.type = 'table' AND m.name NOT IN ('_sqlx_migrations', 'sqlite_sequence')",
        )
        .fetch_all(&lite.pool)
        .await
        .unwrap(),
    );
    let pg_columns = strings(
        sqlx::query(
            "SELECT CAST(table_name AS TEXT) || '.' || CAST(column_name AS TEXT) || ' ' || \
             CASE WHEN data_type = 'bigint' THEN 'int' ELSE CAST(data_type AS TEXT) END AS x \
             FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'",
        )
        .fetch_all(&pg.pool)
        .await
        .unwrap(),
    );
    assert_eq!(pg_columns, lite_columns);
    assert!(pg_columns.iter().all(|c| c.ends_with(" int") || c.ends_with(" text")));
    let lite_indexes = strings(
        sqlx::query("SELECT name AS x FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex%'")
            .fetch_all(&lite.pool)
            .await
            .unwrap(),
    );
    let mut pg_indexes = strings(
        sqlx::query(
            "SELECT CAST(indexname AS TEXT) AS x FROM pg_indexes WHERE schemaname = 'public' \
             AND indexname NOT LIKE '%\\_pkey' AND indexname NOT LIKE '%\\_key'",
        )
        .fetch_all(&pg.pool)
        .await
        .unwrap(),
    );
    assert!(pg_indexes.remove("log_lines_ts"));
    assert_eq!(pg_indexes, lite_indexes);
    // Timescale's "now" for the integer time column, in Unix milliseconds.
    let now: i64 = sqlx::query("SELECT cloudrunr_unix_ms_now() AS now")
        .fetch_one(&pg.pool)
        .await
        .unwrap()
        .try_get("now")
        .unwrap();
    assert!((now - Timestamp::now().millis()).abs() < 60_000, "{now}");
}

#[path = "domains_tests.rs"]
mod domains_tests;
