//! The GitHub App end to end: signed webhooks (real payloads from `@octokit/webhooks-examples`)
//! deploy commits served by a local git server, and check runs go to a stand-in for GitHub's API
//! that holds every request to GitHub's own OpenAPI description.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use test_support::cluster::Services;
use test_support::git_server::{GitServer, Repo};
use test_support::github::{MockGitHub, TestRepo};
use test_support::{Platform, fixture};

const INSTALLATION: u64 = 4_242_001;
const REPO_ID: u64 = 7_700_001;

/// A real payload from the committed fixtures.
fn payload(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../webhook/tests/fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .expect("fixture is JSON")
}

/// Points a payload's repository and installation at ours.
fn aim(mut p: Value, repo: &TestRepo, installation: u64) -> Value {
    let (owner, name) = repo.full_name.split_once('/').unwrap();
    let r = &mut p["repository"];
    r["id"] = repo.id.into();
    r["name"] = name.into();
    r["full_name"] = repo.full_name.clone().into();
    r["clone_url"] = repo.clone_url.clone().into();
    r["default_branch"] = "main".into();
    r["private"] = repo.private.into();
    r["owner"]["login"] = owner.into();
    p["installation"] = json!({ "id": installation, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ==" });
    p
}

/// A push of `sha` to `branch`, from the real "push that created a branch" payload.
fn push(repo: &TestRepo, branch: &str, sha: &str, message: &str) -> Value {
    let mut p = aim(payload("push.new-branch.json"), repo, INSTALLATION);
    p["ref"] = format!("refs/heads/{branch}").into();
    p["after"] = sha.into();
    p["created"] = false.into();
    p["head_commit"]["id"] = sha.into();
    p["head_commit"]["message"] = message.into();
    p["head_commit"]["author"]["name"] = "Octo Cat".into();
    p
}

struct World {
    git: GitServer,
    gh: MockGitHub,
    p: Platform,
    token: String,
    repo: Repo,
    test_repo: TestRepo,
    deliveries: std::sync::atomic::AtomicU64,
}

impl World {
    /// A platform configured (by environment) as the mock's App, a user who linked the App's
    /// installation through GitHub's OAuth, and a project deploying the repository.
    async fn new(private: bool) -> World {
        Self::on(private, None, &[]).await
    }

    /// Like [`World::new`]; with `services`, the platform's components run apart on them, and
    /// `extra` adds to the platform's environment.
    async fn on(private: bool, services: Option<&Services>, extra: &[(&str, &str)]) -> World {
        let git = GitServer::start().await;
        let repo = git.create_repo("site", &fixture("spa"));
        let gh = MockGitHub::start().await;
        let app = gh.app();
        let id = app.id.to_string();
        let url = gh.url();
        let env = [
            ("CLOUDRUNR_GITHUB_API_URL", url.as_str()),
            ("CLOUDRUNR_GITHUB_URL", &url),
            ("CLOUDRUNR_GITHUB_APP_ID", &id),
            ("CLOUDRUNR_GITHUB_PRIVATE_KEY", &app.private_key_pem),
            ("CLOUDRUNR_GITHUB_WEBHOOK_SECRET", &app.webhook_secret),
            ("CLOUDRUNR_GITHUB_CLIENT_ID", &app.client_id),
            ("CLOUDRUNR_GITHUB_CLIENT_SECRET", &app.client_secret),
        ];
        let env: Vec<(&str, &str)> = env.iter().chain(extra).copied().collect();
        let p = match services {
            Some(services) => test_support::cluster::start(services, &env).await,
            None => Platform::start_with(&env).await,
        };
        let mut test_repo = TestRepo::new(REPO_ID, "octo/site", &git.url("site"));
        test_repo.private = private;
        if private {
            // Like GitHub: the repository only opens to an installation token.
            git.require_password("site", |p| p.starts_with("ghs_") && p.len() == 40);
        }
        gh.add_installation(INSTALLATION, "octo");
        gh.add_repo(INSTALLATION, test_repo.clone());
        let token = p.signup("Ann").await;
        link_installation(&p, &gh, &token, "octo-ann").await;
        let world = World {
            git,
            gh,
            p,
            token,
            repo,
            test_repo,
            deliveries: 0.into(),
        };
        let project = world
            .p
            .create_project(
                &world.token,
                json!({ "name": "site", "github_repository": "octo/site", "framework": "vite" }),
            )
            .await;
        assert_eq!(project["github_repository"], "octo/site");
        assert_eq!(project["branch"], "main");
        world
    }

    /// Delivers a signed webhook; returns the status and the answer.
    async fn deliver(&self, event: &str, body: &Value) -> (StatusCode, Value) {
        let n = self.deliveries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.deliver_as(event, &format!("delivery-{n}"), body).await
    }

    async fn deliver_as(&self, event: &str, delivery: &str, body: &Value) -> (StatusCode, Value) {
        let bytes = serde_json::to_vec(body).unwrap();
        let signature = webhook::signature::sign(self.gh.app().webhook_secret.as_bytes(), &bytes);
        send_raw(&self.p, event, delivery, Some(&signature), bytes).await
    }

    async fn deployments(&self) -> Vec<Value> {
        let (status, body) = self.p.get("/api/projects/site/deployments", &self.token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["deployments"].as_array().unwrap().clone()
    }

    /// Waits until the check run for `deployment` is completed; returns its bodies.
    async fn completed_check_run(&self, deployment: &str) -> Vec<Value> {
        for _ in 0..300 {
            let runs = self.gh.check_runs();
            if let Some(run) = runs.iter().find(|r| r.bodies[0]["external_id"] == deployment)
                && run.bodies.last().is_some_and(|b| b["status"] == "completed")
            {
                return run.bodies.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no completed check run for {deployment}: {:#?}", self.gh.check_runs());
    }
}

impl Drop for World {
    /// Every test holds every request the platform made to GitHub against GitHub's description.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.gh.assert_no_violations();
        }
    }
}

async fn send_raw(
    p: &Platform,
    event: &str,
    delivery: &str,
    signature: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut req = p
        .http
        .post(format!("{}/webhooks/github", p.webhook_base()))
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header("user-agent", "GitHub-Hookshot/test");
    if let Some(s) = signature {
        req = req.header("x-hub-signature-256", s);
    }
    let resp = req.body(body).send().await.expect("deliver");
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The user authorizes the App on GitHub (OAuth) and comes back: the installations their GitHub
/// account administers become theirs.
async fn link_installation(p: &Platform, gh: &MockGitHub, token: &str, code: &str) {
    let (status, body) = p.get("/api/github/authorize-url", token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let url = body["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/login/oauth/authorize?client_id=", gh.url())),
        "{url}"
    );
    let state = url.split("state=").nth(1).unwrap().split('&').next().unwrap();
    gh.authorize_user(code, "octo", &[INSTALLATION]);
    let page = p
        .http
        .get(format!("{}/github/callback?code={code}&state={state}", p.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("octo (1 repositories)"));
}

async fn wait_final(w: &World, id: &str) -> Value {
    w.p.wait_final(&w.token, id).await
}

#[tokio::test]
async fn a_push_deploys_its_commit_and_reports_a_check_run() {
    let w = World::new(true).await;
    w.repo.write("src/message.txt", "Hello from a push\n");
    // The build shows everything it can see of git's credentials: its environment and the checkout's config.
    let build = std::fs::read_to_string(w.repo.path().join("build.js")).unwrap();
    w.repo.write(
        "build.js",
        format!("{build}\nconsole.log(JSON.stringify(process.env));\nconsole.log(require('fs').readFileSync('.git/config', 'utf8'));\n"),
    );
    let sha = w.repo.commit("Say hello from a push");

    let (status, answer) = w
        .deliver("push", &push(&w.test_repo, "main", &sha, "Say hello from a push"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["outcome"], "deployed", "{answer}");
    let deployments = w.deployments().await;
    assert_eq!(deployments.len(), 1);
    let id = deployments[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(deployments[0]["trigger"], "push");
    assert_eq!(deployments[0]["commit_sha"], sha);
    assert_eq!(deployments[0]["commit_message"], "Say hello from a push");
    assert_eq!(deployments[0]["commit_author"], "Octo Cat");

    let d = wait_final(&w, &id).await;
    assert_eq!(d["state"], "ready", "{}", w.p.log_text(&w.token, &id).await);
    assert_eq!(d["commit_sha"], sha, "exactly the pushed commit");
    let html = w.p.site("site", "/", &[]).await.text().await.unwrap();
    assert!(html.contains("Hello from a push"), "{html}");

    // The private repository opened only to the installation token, which appears nowhere.
    let log = w.p.log_text(&w.token, &id).await;
    assert!(
        log.contains("[remote \"origin\"]"),
        "the build printed its .git/config: {log}"
    );
    assert!(
        log.contains("CLOUDRUNR_DEPLOYMENT_ID"),
        "the build printed its environment: {log}"
    );
    for secret in ["ghs_", "extraheader", "extraHeader", "Authorization", "x-access-token"] {
        assert!(!log.contains(secret), "{secret} leaked: {log}");
    }
    assert!(
        w.gh.requests()
            .iter()
            .any(|r| r.path == format!("/app/installations/{INSTALLATION}/access_tokens"))
    );

    let bodies = w.completed_check_run(&id).await;
    let statuses: Vec<&str> = bodies.iter().map(|b| b["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["queued", "in_progress", "completed"]);
    assert_eq!(bodies[0]["head_sha"], sha);
    assert_eq!(bodies[0]["details_url"], format!("{}/deployments/{id}", w.p.base));
    let done = bodies.last().unwrap();
    assert_eq!(done["conclusion"], "success");
    let summary = done["output"]["summary"].as_str().unwrap();
    assert!(
        summary.contains(&format!("http://site.localhost:{}/", w.p.port)),
        "{summary}"
    );
    w.gh.assert_no_violations();

    // A redelivery (same delivery id) does nothing new. (Another body than the first push's: the
    // same bytes under a new delivery id would be a replay, see `security_webhook`.)
    let body = push(&w.test_repo, "main", &sha, "Say hello once more");
    let (first, _) = w.deliver_as("push", "same-delivery", &body).await;
    let (again, answer) = w.deliver_as("push", "same-delivery", &body).await;
    assert_eq!((first, again), (StatusCode::ACCEPTED, StatusCode::OK));
    assert_eq!(answer["outcome"], "duplicate");
    assert_eq!(
        w.deployments().await.len(),
        1,
        "the same commit is not deployed twice either"
    );

    // Every delivery is visible to the admin, with what came of it.
    let (status, list) = w.p.get("/api/admin/webhook-deliveries", &w.token).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let deliveries = list["deliveries"].as_array().unwrap();
    assert!(
        deliveries
            .iter()
            .any(|d| d["id"] == "same-delivery" && d["event"] == "push" && d["repository"] == "octo/site")
    );
    assert!(deliveries.iter().any(|d| d["outcome"] == "deployed"));
}

/// The same flow with every component apart, on PostgreSQL, Kafka and S3: the webhook component
/// queues, the api's scheduler starts a `cloudrunr build` process, the log consumer records the
/// outcome, and the webhook component reports the check run.
#[tokio::test]
async fn a_push_deploys_and_reports_with_the_components_apart() {
    let Some(services) = Services::get() else { return };
    let w = World::on(true, Some(&services), &[]).await;
    w.repo.write("src/message.txt", "Hello from a push, at scale\n");
    let sha = w.repo.commit("Push at scale");
    let (status, answer) = w
        .deliver("push", &push(&w.test_repo, "main", &sha, "Push at scale"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["outcome"], "deployed", "{answer}");
    let id = w.deployments().await[0]["id"].as_str().unwrap().to_owned();
    let d = wait_final(&w, &id).await;
    assert_eq!(d["state"], "ready", "{}", w.p.server_log());
    assert_eq!(d["commit_sha"], sha);
    w.p.site_eventually("site", "/", "Hello from a push, at scale").await;

    let bodies = w.completed_check_run(&id).await;
    let statuses: Vec<&str> = bodies.iter().map(|b| b["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["queued", "in_progress", "completed"]);
    assert_eq!(bodies[0]["details_url"], format!("{}/deployments/{id}", w.p.base));
    let done = bodies.last().unwrap();
    assert_eq!(done["conclusion"], "success");
    let summary = done["output"]["summary"].as_str().unwrap();
    assert!(
        summary.contains(&format!("http://site.localhost:{}/", w.p.sites_port)),
        "{summary}"
    );

    // Unsigned deliveries are refused by the webhook component too.
    let (status, _) = send_raw(&w.p, "push", "unsigned", None, b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_failing_build_fails_its_check_run() {
    let w = World::new(false).await;
    w.repo.write(
        "build.js",
        "console.error('Error: the build broke on purpose');\nprocess.exit(3);\n",
    );
    let sha = w.repo.commit("Break the build");
    let (status, _) = w
        .deliver("push", &push(&w.test_repo, "main", &sha, "Break the build"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = w.deployments().await[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(wait_final(&w, &id).await["state"], "failed");
    let bodies = w.completed_check_run(&id).await;
    let done = bodies.last().unwrap();
    assert_eq!(done["conclusion"], "failure");
    assert!(
        done["output"]["summary"]
            .as_str()
            .unwrap()
            .contains("exited with code 3")
    );
    assert!(
        done["output"]["text"]
            .as_str()
            .unwrap()
            .contains("the build broke on purpose"),
        "{done}"
    );
    w.gh.assert_no_violations();
}

#[tokio::test]
async fn a_branch_push_deploys_a_preview_and_leaves_production_alone() {
    let w = World::new(false).await;
    let main_sha = w.repo.head();
    let (_, answer) = w
        .deliver("push", &push(&w.test_repo, "main", &main_sha, "Initial"))
        .await;
    assert_eq!(answer["outcome"], "deployed", "{answer}");
    let production = w.deployments().await[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(wait_final(&w, &production).await["state"], "ready");

    w.repo.checkout_new_branch("feature/new-look");
    w.repo.write("src/message.txt", "The new look\n");
    let sha = w.repo.commit("Try a new look");
    let (_, answer) = w
        .deliver("push", &push(&w.test_repo, "feature/new-look", &sha, "Try a new look"))
        .await;
    assert_eq!(answer["outcome"], "deployed", "{answer}");
    let preview = w.deployments().await[0].clone();
    assert_eq!(preview["target"], "preview");
    let id = preview["id"].as_str().unwrap();
    assert_eq!(
        preview["url"],
        format!("http://feature-new-look--site.localhost:{}/", w.p.port)
    );
    assert_eq!(wait_final(&w, id).await["state"], "ready");

    let served = w.p.site("feature-new-look--site", "/", &[]).await;
    assert_eq!(served.headers()["x-robots-tag"], "noindex");
    assert!(served.text().await.unwrap().contains("The new look"));
    let site = w.p.site("site", "/", &[]).await.text().await.unwrap();
    assert!(
        site.contains("Hello from the fixture"),
        "production is unchanged: {site}"
    );
    let (_, project) = w.p.get("/api/projects/site", &w.token).await;
    assert_eq!(project["project"]["production_deployment_id"], production);

    let done = w.completed_check_run(id).await.pop().unwrap();
    assert_eq!(done["conclusion"], "success");
    assert!(
        done["output"]["summary"]
            .as_str()
            .unwrap()
            .contains("feature-new-look--site.localhost")
    );
    w.gh.assert_no_violations();
}

#[tokio::test]
async fn pull_requests_and_rerequested_checks_deploy() {
    let w = World::new(false).await;
    w.repo.checkout_new_branch("pr-branch");
    w.repo.write("src/message.txt", "From a pull request\n");
    let sha = w.repo.commit("PR work");

    let mut pr = aim(payload("pull_request.opened.json"), &w.test_repo, INSTALLATION);
    pr["pull_request"]["head"]["ref"] = "pr-branch".into();
    pr["pull_request"]["head"]["sha"] = sha.clone().into();
    pr["pull_request"]["head"]["repo"] = pr["repository"].clone();
    let (status, answer) = w.deliver("pull_request", &pr).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (StatusCode::ACCEPTED, Some("deployed")),
        "{answer}"
    );
    let d = w.deployments().await[0].clone();
    assert_eq!(
        (d["trigger"].as_str(), d["target"].as_str()),
        (Some("pull_request"), Some("preview"))
    );
    let id = d["id"].as_str().unwrap().to_owned();
    assert_eq!(wait_final(&w, &id).await["state"], "ready");
    assert!(
        w.p.site("pr-branch--site", "/", &[])
            .await
            .text()
            .await
            .unwrap()
            .contains("From a pull request")
    );

    // The same commit again (synchronize without new commits) is not deployed twice.
    let mut sync = aim(payload("pull_request.synchronize.json"), &w.test_repo, INSTALLATION);
    sync["pull_request"]["head"] = pr["pull_request"]["head"].clone();
    let (_, answer) = w.deliver("pull_request", &sync).await;
    assert!(
        answer["detail"].as_str().unwrap().contains("already deploys"),
        "{answer}"
    );
    assert_eq!(w.deployments().await.len(), 1);

    // A fork's pull request is not built with the project's secrets.
    let mut fork = pr.clone();
    fork["pull_request"]["head"]["repo"]["id"] = 999.into();
    let (_, answer) = w.deliver("pull_request", &fork).await;
    assert_eq!(answer["outcome"], "ignored");
    assert!(answer["detail"].as_str().unwrap().contains("fork"));

    // "Re-run" on the check run redeploys that commit.
    let run_id = w.completed_check_run(&id).await;
    assert_eq!(run_id.last().unwrap()["conclusion"], "success");
    let mut rerun = aim(payload("check_run.rerequested.json"), &w.test_repo, INSTALLATION);
    rerun["check_run"]["external_id"] = id.clone().into();
    rerun["check_run"]["head_sha"] = sha.clone().into();
    let (_, answer) = w.deliver("check_run", &rerun).await;
    assert_eq!(answer["outcome"], "deployed", "{answer}");
    let again = w.deployments().await[0].clone();
    assert_eq!(
        (again["trigger"].as_str(), again["commit_sha"].as_str()),
        (Some("rerequest"), Some(sha.as_str()))
    );
    assert_ne!(again["id"], id);
    w.gh.assert_no_violations();
}

#[tokio::test]
async fn deliveries_that_deploy_nothing_say_why() {
    let w = World::new(false).await;
    let sha = w.repo.head();
    let outcome = |answer: &Value| {
        (
            answer["outcome"].as_str().unwrap().to_owned(),
            answer["detail"].as_str().unwrap().to_owned(),
        )
    };

    let (status, answer) = w.deliver("ping", &payload("ping.json")).await;
    assert_eq!((status, outcome(&answer).0.as_str()), (StatusCode::ACCEPTED, "pong"));

    let tag = aim(payload("push.tag.json"), &w.test_repo, INSTALLATION);
    let (_, answer) = w.deliver("push", &tag).await;
    assert_eq!(outcome(&answer).0, "ignored");
    assert!(outcome(&answer).1.contains("tag"), "{answer}");

    let mut deletion = push(
        &w.test_repo,
        "old-branch",
        "0000000000000000000000000000000000000000",
        "",
    );
    deletion["deleted"] = true.into();
    deletion["head_commit"] = Value::Null;
    let (_, answer) = w.deliver("push", &deletion).await;
    assert!(outcome(&answer).1.contains("was deleted"), "{answer}");

    let stranger = TestRepo::new(REPO_ID + 1, "octo/elsewhere", &w.git.url("elsewhere"));
    let (_, answer) = w.deliver("push", &push(&stranger, "main", &sha, "x")).await;
    assert_eq!(outcome(&answer).0, "ignored");
    assert!(
        outcome(&answer).1.contains("no project deploys octo/elsewhere"),
        "{answer}"
    );

    let (_, answer) = w.deliver("watch", &json!({ "action": "started" })).await;
    assert_eq!(outcome(&answer).0, "ignored");

    // The installation is removed on GitHub: its pushes deploy nothing from then on.
    let mut gone = payload("installation.deleted.json");
    gone["installation"]["id"] = INSTALLATION.into();
    let (_, answer) = w.deliver("installation", &gone).await;
    assert_eq!(outcome(&answer).0, "updated", "{answer}");
    let (_, answer) = w
        .deliver("push", &push(&w.test_repo, "main", &sha, "after uninstall"))
        .await;
    assert_eq!(outcome(&answer).0, "ignored");
    assert!(outcome(&answer).1.contains("was deleted"), "{answer}");
    assert!(w.deployments().await.is_empty(), "nothing was deployed");

    let (_, list) = w.p.get("/api/admin/webhook-deliveries", &w.token).await;
    let outcomes: Vec<&str> = list["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["outcome"].as_str().unwrap())
        .collect();
    assert!(
        outcomes.iter().all(|o| ["pong", "ignored", "updated"].contains(o)),
        "{outcomes:?}"
    );
    assert_eq!(outcomes.len(), 7);
}

/// Commits what is written so far and delivers its push; returns the answer's detail.
async fn pushed(w: &World, message: &str) -> String {
    let sha = w.repo.commit(message);
    let (status, answer) = w.deliver("push", &push(&w.test_repo, "main", &sha, message)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    answer["detail"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_push_past_the_accounts_queue_is_recorded_failed_and_says_so() {
    let w = World::on(false, None, &[("CLOUDRUNR_MAX_QUEUED_BUILDS_PER_ACCOUNT", "1")]).await;
    // A build that holds the project's one build slot long enough for the next pushes to queue.
    w.repo.write(
        "package.json",
        r#"{ "name": "slow", "private": true, "scripts": { "build": "node -e \"setTimeout(() => {}, 5000)\" && node build.js" } }"#,
    );
    let first = w.repo.commit("Slow build");
    let (status, _) = w
        .deliver("push", &push(&w.test_repo, "main", &first, "Slow build"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let running = w.deployments().await[0]["id"].as_str().unwrap().to_owned();
    for _ in 0..100 {
        if w.p.deployment(&w.token, &running).await["state"] != "queued" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    w.repo.write("src/message.txt", "second\n");
    let waiting = pushed(&w, "Second").await;
    assert!(waiting.contains("production deployment"), "{waiting}");
    w.repo.write("src/message.txt", "third\n");
    let refused = pushed(&w, "Third").await;
    assert!(
        refused.contains("was recorded failed") && refused.contains("waiting to build"),
        "{refused}"
    );

    let newest = &w.deployments().await[0];
    assert_eq!(newest["state"], "failed", "{newest}");
    assert!(newest["error"].as_str().unwrap().contains("not built"), "{newest}");
    let check = w.completed_check_run(newest["id"].as_str().unwrap()).await;
    assert_eq!(check.last().unwrap()["conclusion"], "failure", "{check:#?}");
    // The two accepted pushes still build.
    assert_eq!(wait_final(&w, &running).await["state"], "ready");
    let second = w.deployments().await[1]["id"].as_str().unwrap().to_owned();
    assert_eq!(wait_final(&w, &second).await["state"], "ready");
}

#[tokio::test]
async fn webhooks_must_be_signed_with_the_apps_secret() {
    let w = World::new(false).await;
    let body = serde_json::to_vec(&push(&w.test_repo, "main", &w.repo.head(), "x")).unwrap();
    let secret = w.gh.app().webhook_secret;
    let good = webhook::signature::sign(secret.as_bytes(), &body);

    let mut tampered = body.clone();
    tampered[10] ^= 1;
    let cases: Vec<(&str, Option<String>, Vec<u8>)> = vec![
        ("tampered body", Some(good.clone()), tampered),
        (
            "wrong secret",
            Some(webhook::signature::sign(b"not the secret", &body)),
            body.clone(),
        ),
        ("missing header", None, body.clone()),
        ("empty body", Some(good.clone()), Vec::new()),
        ("malformed header", Some("sha256=zz".into()), body.clone()),
    ];
    for (what, signature, bytes) in cases {
        let delivery = format!("bad-{}", what.replace(' ', "-"));
        let (status, answer) = send_raw(&w.p, "push", &delivery, signature.as_deref(), bytes).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_signature", "{what}");
    }
    // Signed with SHA-1 only (the legacy header).
    let resp =
        w.p.http
            .post(format!("{}/webhooks/github", w.p.base))
            .header("x-github-event", "push")
            .header("x-github-delivery", "sha1-only")
            .header("x-hub-signature", "sha1=0000000000000000000000000000000000000000")
            .body(body.clone())
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.text().await.unwrap().contains("SHA-1"), "the answer says why");

    // Over GitHub's 25 MB cap.
    let huge = vec![b' '; 25 * 1024 * 1024 + 1];
    let (status, _) = send_raw(
        &w.p,
        "push",
        "huge",
        Some(&webhook::signature::sign(secret.as_bytes(), &huge)),
        huge,
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    let (status, answer) = send_raw(&w.p, "push", "good", Some(&good), body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert!(w.deployments().await.len() == 1, "only the signed delivery deployed");
}

#[tokio::test]
async fn a_github_outage_does_not_hold_up_deployments() {
    let w = World::new(false).await;
    w.gh.set_outage(true);
    let sha = w.repo.head();
    let (_, answer) = w
        .deliver("push", &push(&w.test_repo, "main", &sha, "During an outage"))
        .await;
    assert_eq!(answer["outcome"], "deployed");
    let id = w.deployments().await[0]["id"].as_str().unwrap().to_owned();
    let d = wait_final(&w, &id).await;
    assert_eq!(d["state"], "ready", "{}", w.p.log_text(&w.token, &id).await);
    assert!(w.gh.check_runs().is_empty(), "GitHub was down");

    // GitHub comes back: the check run catches up, in order.
    w.gh.set_outage(false);
    let bodies = w.completed_check_run(&id).await;
    let statuses: Vec<&str> = bodies.iter().map(|b| b["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["queued", "in_progress", "completed"]);
    assert_eq!(bodies.last().unwrap()["conclusion"], "success");
    w.gh.assert_no_violations();
}

#[tokio::test]
async fn an_admin_connects_the_app_through_the_manifest_flow() {
    let gh = MockGitHub::start().await;
    let p = Platform::start_with(&[
        ("CLOUDRUNR_GITHUB_API_URL", &gh.url()),
        ("CLOUDRUNR_GITHUB_URL", &gh.url()),
    ])
    .await;
    let admin = p.signup("Admin").await;
    let other = p.signup("Bob").await;
    let (_, status) = p.get("/api/github", &admin).await;
    assert_eq!(status["connected"], false);
    let (code, body) = p.post("/api/admin/github/connect", &other, json!({})).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (code, body) = p
        .post(
            "/api/projects",
            &admin,
            json!({ "name": "x", "github_repository": "octo/site" }),
        )
        .await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("repository_not_found"))
    );

    let (code, body) = p.post("/api/admin/github/connect", &admin, json!({})).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(
        body["manifest"]["hook_attributes"]["url"],
        format!("{}/webhooks/github", p.base)
    );
    let connect = body["url"].as_str().unwrap().to_owned();
    let page = p.http.get(&connect).send().await.unwrap().text().await.unwrap();
    assert!(
        page.contains(&format!("action=\"{}/settings/apps/new?state=", gh.url())),
        "{page}"
    );
    assert!(page.contains("name=\"manifest\""));
    let state = connect.split("state=").nth(1).unwrap();

    // GitHub created the App and sends the admin back with a code.
    gh.expect_manifest_code("manifest-code-1");
    let done = p
        .http
        .get(format!(
            "{}/github/app-created?code=manifest-code-1&state={state}",
            p.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::OK);
    let text = done.text().await.unwrap();
    assert!(text.contains(&gh.app().slug), "{text}");
    let (_, status) = p.get("/api/github", &admin).await;
    assert_eq!(
        (status["connected"].as_bool(), status["app"]["slug"].as_str()),
        (Some(true), Some(gh.app().slug.as_str()))
    );

    // A forged or reused state does nothing.
    let (code, _) = p
        .call(
            Method::GET,
            "/github/app-created?code=manifest-code-1&state=forged",
            None,
            None,
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);

    // The stored App verifies webhooks with the secret GitHub issued.
    let ping = serde_json::to_vec(&payload("ping.json")).unwrap();
    let sig = webhook::signature::sign(gh.app().webhook_secret.as_bytes(), &ping);
    let (status, answer) = send_raw(&p, "ping", "ping-1", Some(&sig), ping).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (StatusCode::ACCEPTED, Some("pong")),
        "{answer}"
    );

    // And survives a restart, sealed in the database.
    let db = std::fs::read(p.data_dir().join("cloudrunr.db")).unwrap();
    let needle = gh.app().webhook_secret;
    assert!(
        !db.windows(needle.len()).any(|w| w == needle.as_bytes()),
        "the webhook secret is stored sealed"
    );
    gh.assert_no_violations();
}

#[tokio::test]
async fn sign_in_with_github_once_the_account_is_linked() {
    // World::new linked Ann's GitHub account ("octo") while linking the installation.
    let w = World::new(false).await;
    let mut c = test_support::Client::new(&w.p);
    let (status, _) = c.get("/login/github").await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER);
    let resp = c.http.get(format!("{}/login/github", w.p.base)).send().await.unwrap();
    c.keep(resp.headers());
    let to = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        to.starts_with(&format!("{}/login/oauth/authorize?client_id=", w.gh.url())),
        "{to}"
    );
    let state = to.split("state=").nth(1).unwrap().split('&').next().unwrap().to_owned();

    // GitHub sends the browser back; a browser without the nonce cookie gets nothing.
    w.gh.authorize_user("login-code-1", "octo", &[INSTALLATION]);
    let (status, page) = test_support::Client::new(&w.p)
        .get(&format!("/github/callback?code=login-code-1&state={state}"))
        .await;
    assert_eq!(status, reqwest::StatusCode::FORBIDDEN, "{page}");
    w.gh.authorize_user("login-code-2", "octo", &[INSTALLATION]);
    let resp = c
        .http
        .get(format!("{}/github/callback?code=login-code-2&state={state}", w.p.base))
        .header("cookie", c.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::SEE_OTHER);
    c.keep(resp.headers());
    let (status, home) = c.get("/").await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert!(home.contains("Log out Ann"), "signed in as Ann");
    assert!(home.contains("github.com/octo/site"));
    let (_, new) = c.get("/projects/new").await;
    assert!(
        new.contains("value=\"octo/site\""),
        "the App's repositories are offered, by installation: {new}"
    );

    // A GitHub account nobody linked signs in to nothing.
    let mut stranger = test_support::Client::new(&w.p);
    let resp = stranger
        .http
        .get(format!("{}/login/github", w.p.base))
        .send()
        .await
        .unwrap();
    stranger.keep(resp.headers());
    let to = resp.headers()["location"].to_str().unwrap().to_owned();
    let state = to.split("state=").nth(1).unwrap().split('&').next().unwrap().to_owned();
    w.gh.authorize_user("login-code-3", "someone-else", &[]);
    let (status, page) = stranger
        .get(&format!("/github/callback?code=login-code-3&state={state}"))
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert!(
        page.contains("No CloudRunr account is linked to GitHub user someone-else"),
        "{page}"
    );
    assert!(!stranger.cookies.keys().any(|k| k.contains("session")), "not signed in");
}
