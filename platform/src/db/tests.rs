//! The behavioural suite every database backend must pass.

use super::*;
use crate::model::{DeploymentTarget, DeploymentTrigger};

/// A fresh database per backend available to this test run.
async fn databases() -> Vec<(tempfile::TempDir, Database)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    vec![(dir, Database::connect(&url).await.unwrap())]
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
        let claimed: Vec<_> = db.claim_queued(10).await.unwrap().into_iter().map(|d| d.id).collect();
        assert_eq!(claimed, vec![a1.id.clone(), b1.id.clone()]);
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
async fn interrupted_builds_are_requeued() {
    for (_dir, db) in databases().await {
        let ann = user(&db, "ann@example.com").await;
        let p = project(&db, &ann, "site").await;
        let d = deploy(&db, &p).await;
        db.claim_queued(1).await.unwrap();
        db.apply_state(&d.id, &StateChange::new(DeploymentState::Installing))
            .await
            .unwrap();
        assert_eq!(db.requeue_dispatched().await.unwrap(), vec![d.id.clone()]);
        assert_eq!(
            db.deployment(&d.id).await.unwrap().unwrap().state,
            DeploymentState::Queued
        );
        assert_eq!(db.claim_queued(1).await.unwrap().len(), 1);
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
