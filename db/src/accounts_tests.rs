//! The account-protection queries (log-in failures, sessions, per-account build caps and the
//! fair claim) on SQLite and, given `CLOUDRUNR_TEST_POSTGRES_URL`, on PostgreSQL.

use super::*;
use crate::{LoginAttempt, NewDeployment, NewProject};
use platform::model::{BuildSettings, DeploymentState, DeploymentTarget, DeploymentTrigger, Project, User};
use platform::{BranchName, GitUrl, ProjectSlug, UserId};
use std::sync::atomic::{AtomicU32, Ordering};

struct TestDb {
    _dir: Option<tempfile::TempDir>,
    drop_pg: Option<(String, String)>,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        use sqlx::Connection;
        let Some((server, name)) = self.drop_pg.take() else {
            return;
        };
        let _ = std::thread::spawn(move || {
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
    }
}

/// A fresh database per available backend, with `caps`.
async fn databases(caps: BuildCaps) -> Vec<(TestDb, Database)> {
    let options = DbOptions {
        build_caps: caps,
        max_connections: Some(4),
        ..DbOptions::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let mut out = vec![(
        TestDb {
            _dir: Some(dir),
            drop_pg: None,
        },
        Database::connect_with(&url, options.clone()).await.unwrap(),
    )];
    if let Some(server) = std::env::var("CLOUDRUNR_TEST_POSTGRES_URL")
        .ok()
        .filter(|s| !s.is_empty())
    {
        use sqlx::Connection;
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        sqlx::any::install_default_drivers();
        let name = format!(
            "cloudrunr_acct_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = sqlx::AnyConnection::connect(&server).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let mut pg = url::Url::parse(&server).unwrap();
        pg.set_path(&name);
        let db = Database::connect_with(pg.as_str(), options).await.unwrap();
        out.push((
            TestDb {
                _dir: None,
                drop_pg: Some((server, name)),
            },
            db,
        ));
    }
    out
}

async fn user(db: &Database, email: &str) -> User {
    db.create_user("T", email, "hash").await.unwrap()
}

async fn project(db: &Database, owner: &User, slug: &str) -> Project {
    db.create_project(NewProject {
        owner: owner.id.clone(),
        slug: ProjectSlug::parse(slug).unwrap(),
        name: slug.into(),
        git_url: GitUrl::parse("https://example.com/r.git").unwrap(),
        branch: BranchName::parse("main").unwrap(),
        build: BuildSettings::default(),
        env: Vec::new(),
        github: None,
    })
    .await
    .unwrap()
}

fn new_deployment(p: &Project) -> NewDeployment {
    NewDeployment {
        project: p.id.clone(),
        target: DeploymentTarget::Production,
        branch: BranchName::parse("main").unwrap(),
        commit: None,
        commit_message: None,
        commit_author: None,
        trigger: DeploymentTrigger::Api,
    }
}

#[tokio::test]
async fn login_failures_count_block_clear_and_forget() {
    for (_t, db) in databases(BuildCaps::default()).await {
        let counted = |n| LoginAttempt::Counted { failures: n };
        assert_eq!(
            db.begin_login_attempt("a", "1.2.3.4", 1000, 0).await.unwrap(),
            counted(1)
        );
        assert_eq!(
            db.begin_login_attempt("a", "1.2.3.4", 1001, 0).await.unwrap(),
            counted(2)
        );
        assert_eq!(
            db.begin_login_attempt("a", "5.6.7.8", 1002, 0).await.unwrap(),
            counted(1)
        );
        assert_eq!(db.login_failures_from("1.2.3.4", 0).await.unwrap(), 2);
        assert_eq!(
            db.login_failures_from("1.2.3.4", 2000).await.unwrap(),
            0,
            "outside the window"
        );

        db.block_login("a", "1.2.3.4", 5000).await.unwrap();
        db.block_login("a", "1.2.3.4", 3000).await.unwrap(); // a shorter block does not shorten it
        assert_eq!(
            db.begin_login_attempt("a", "1.2.3.4", 4000, 0).await.unwrap(),
            LoginAttempt::Blocked { until: 5000 }
        );
        // Refused attempts are not counted; the next one after the block is the third.
        assert_eq!(
            db.begin_login_attempt("a", "1.2.3.4", 5000, 0).await.unwrap(),
            counted(3)
        );
        // Failures last seen before the memory's start begin again at one.
        assert_eq!(
            db.begin_login_attempt("a", "1.2.3.4", 9000, 8000).await.unwrap(),
            counted(1)
        );

        db.clear_login_failures("a", "1.2.3.4").await.unwrap();
        assert_eq!(
            db.begin_login_attempt("a", "1.2.3.4", 9500, 0).await.unwrap(),
            counted(1)
        );
        // Pruning keeps pairs that are blocked or recent.
        db.block_login("a", "5.6.7.8", 20_000).await.unwrap();
        assert_eq!(db.prune_login_failures(10_000, 10_000).await.unwrap(), 1);
        assert_eq!(db.login_failures_from("5.6.7.8", 0).await.unwrap(), 1);
    }
}

#[tokio::test]
async fn sessions_end_on_log_out_and_password_change() {
    for (_t, db) in databases(BuildCaps::default()).await {
        let ann = user(&db, "ann@example.com").await;
        let far = platform::Timestamp::now().millis() + 60_000;
        db.create_session("s1", &ann.id, far).await.unwrap();
        db.create_session("s2", &ann.id, far).await.unwrap();
        db.create_session("old", &ann.id, 1).await.unwrap();
        assert_eq!(db.session_user("s1", &ann.id).await.unwrap().unwrap().id, ann.id);
        assert!(db.session_user("old", &ann.id).await.unwrap().is_none(), "expired");
        assert!(
            db.session_user("s1", &UserId::generate()).await.unwrap().is_none(),
            "another user's"
        );
        assert!(db.delete_session("s1").await.unwrap());
        assert!(!db.delete_session("s1").await.unwrap());
        assert!(db.session_user("s1", &ann.id).await.unwrap().is_none());
        assert!(db.session_user("s2", &ann.id).await.unwrap().is_some());
        db.change_password(&ann.id, "new hash").await.unwrap();
        assert!(db.session_user("s2", &ann.id).await.unwrap().is_none());
        assert_eq!(db.password_hash(&ann.id).await.unwrap().as_deref(), Some("new hash"));
    }
}

#[tokio::test]
async fn past_the_queue_cap_deployments_are_refused_or_recorded_failed() {
    let caps = BuildCaps {
        running: None,
        queued: Some(2),
    };
    for (_t, db) in databases(caps).await {
        let ann = user(&db, "ann@example.com").await;
        let a = project(&db, &ann, "a").await;
        let b = project(&db, &ann, "b").await;
        db.queue_deployment(new_deployment(&a)).await.unwrap();
        db.queue_deployment(new_deployment(&b)).await.unwrap();
        // The cap is the account's, over all of its projects.
        match db.queue_deployment(new_deployment(&a)).await {
            Err(DbError::QueueFull { queued: 2, limit: 2 }) => {}
            other => panic!("expected QueueFull, got {other:?}"),
        }
        assert_eq!(
            db.list_deployments(&a.id, 10).await.unwrap().len(),
            1,
            "nothing created"
        );
        // A webhook's deployment is kept, failed with the reason.
        let d = db.create_deployment(new_deployment(&a)).await.unwrap();
        assert_eq!(d.state, DeploymentState::Failed);
        assert!(d.error.as_deref().unwrap().contains("at most 2"), "{:?}", d.error);
        assert!(d.finished_at.is_some());
        // Another account has its own queue.
        let bob = user(&db, "bob@example.com").await;
        let c = project(&db, &bob, "c").await;
        assert_eq!(
            db.queue_deployment(new_deployment(&c)).await.unwrap().state,
            DeploymentState::Queued
        );
    }
}

#[tokio::test]
async fn claims_take_turns_between_accounts_within_their_running_caps() {
    let caps = BuildCaps {
        running: Some(1),
        queued: None,
    };
    for (_t, db) in databases(caps).await {
        let ann = user(&db, "ann@example.com").await;
        let bob = user(&db, "bob@example.com").await;
        let a1 = project(&db, &ann, "a1").await;
        let a2 = project(&db, &ann, "a2").await;
        let b1 = project(&db, &bob, "b1").await;
        let mut anns = Vec::new();
        for p in [&a1, &a2, &a1, &a2] {
            anns.push(db.queue_deployment(new_deployment(p)).await.unwrap().id);
            // Creation times are milliseconds: keep the order of the queue unambiguous.
            tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        }
        let bobs = db.queue_deployment(new_deployment(&b1)).await.unwrap().id;

        // Ann's oldest first; her second project waits for her cap, Bob's goes beside it.
        let claimed: Vec<_> = db.claim_queued(10).await.unwrap().into_iter().map(|d| d.id).collect();
        assert_eq!(claimed, vec![anns[0].clone(), bobs.clone()]);
        assert!(
            db.claim_queued(10).await.unwrap().is_empty(),
            "both accounts are at their cap"
        );

        // Dispatch times are milliseconds: keep the turns apart.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        // Ann's build ends: hers is next (Bob's queue is empty), from her other project.
        let mut done = platform::bus::StateChange::new(DeploymentState::Ready);
        done.at = platform::Timestamp::now();
        db.apply_state(&anns[0], &done).await.unwrap();
        let claimed: Vec<_> = db.claim_queued(10).await.unwrap().into_iter().map(|d| d.id).collect();
        assert_eq!(claimed, vec![anns[1].clone()]);

        // With Bob queued again, a free slot goes to whoever was served longest ago.
        db.apply_state(&bobs, &done).await.unwrap();
        let bobs2 = db.queue_deployment(new_deployment(&b1)).await.unwrap().id;
        db.apply_state(&anns[1], &done).await.unwrap();
        let claimed: Vec<_> = db.claim_queued(1).await.unwrap().into_iter().map(|d| d.id).collect();
        assert_eq!(claimed, vec![bobs2], "Bob's last build started before Ann's last");
    }
}
