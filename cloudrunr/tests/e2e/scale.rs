//! The same platform scaled out: `cloudrunr api`, `webhook`, `router` and `log-consumer` as
//! separate processes on PostgreSQL, Kafka and S3 (moto), builds as `cloudrunr build` processes or
//! ECS tasks (on moto's ECS). Skipped when the servers are not running (`scripts/test` starts them).

use reqwest::StatusCode;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use test_support::cluster::{self, Services};
use test_support::git_server::GitServer;
use test_support::{Platform, fixture, read_sse};

/// A build that prints numbered lines for a few seconds, then builds the fixture app.
const COUNTING_BUILD: &str = r#"
let i = 0;
const timer = setInterval(() => {
  i += 1;
  console.log(`counting ${i}`);
  if (i === 150) {
    clearInterval(timer);
    require("./real-build.js");
  }
}, 20);
"#;

fn counting_repo(git: &GitServer, name: &str) -> test_support::git_server::Repo {
    let repo = git.create_repo(name, &fixture("spa"));
    let real = std::fs::read_to_string(repo.path().join("build.js")).unwrap();
    repo.write("real-build.js", real);
    repo.write("build.js", COUNTING_BUILD);
    repo.commit("Count while building");
    repo
}

/// Every line of the deployment's stored log: (seq, text).
async fn stored_lines(p: &Platform, token: &str, id: &str) -> Vec<(u64, String)> {
    let (status, page) = p.get(&format!("/api/deployments/{id}/logs?limit=5000"), token).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["seq"].as_u64().unwrap(), l["text"].as_str().unwrap().to_owned()))
        .collect()
}

fn assert_each_line_once(lines: &[(u64, String)]) {
    let seqs: Vec<u64> = lines.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "every line once, in order"
    );
    for i in 1..=150 {
        let want = format!("counting {i}");
        let n = lines.iter().filter(|(_, t)| *t == want).count();
        assert_eq!(n, 1, "{want:?} is stored {n} times");
    }
}

#[tokio::test]
async fn components_apart_on_postgres_kafka_and_s3() {
    let Some(services) = Services::get() else { return };
    let git = GitServer::start().await;
    let repo = counting_repo(&git, "spa");
    let p = cluster::start(&services, &[]).await;
    let token = p.signup("Ann").await;
    let project = p
        .create_project(&token, json!({ "name": "Apart", "git_url": git.url("spa") }))
        .await;
    assert_eq!(
        project["production_url"],
        format!("http://apart.localhost:{}/", p.sites_port)
    );
    let id = p.deploy(&token, "apart").await;

    // The live log, from the API process, fed by the build (a separate process) through Kafka.
    let events = read_sse(&p, &token, &id, None, |e| e.event == "end").await;
    let live = test_support::lines_in_order(&events);
    assert_eq!(events.last().unwrap().json()["state"], "ready", "{}", p.server_log());

    let d = p.deployment(&token, &id).await;
    assert_eq!(d["state"], "ready");
    assert_eq!(d["commit_sha"], repo.head());
    assert_eq!(d["url"], format!("http://apart.localhost:{}/", p.sites_port));
    // Written to PostgreSQL by the log consumer: the same lines the stream showed.
    let stored = stored_lines(&p, &token, &id).await;
    assert_each_line_once(&stored);
    assert_eq!(stored.len(), live.len());

    // Served by the router process, from the bucket.
    let html = p.site_eventually("apart", "/", "Hello from the fixture").await;
    let script = html
        .split("src=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let js = p.site("apart", &script, &[]).await;
    assert_eq!(js.status(), StatusCode::OK);
    assert!(js.headers()["cache-control"].to_str().unwrap().contains("immutable"));
    assert_eq!(p.site("elsewhere", "/", &[]).await.status(), StatusCode::NOT_FOUND);

    // A second deployment goes live on the router without it being told by anyone but the bus;
    // promoting the first one back is live there too.
    repo.write("src/message.txt", "Second version");
    repo.commit("Second");
    let second = p.deploy(&token, "apart").await;
    assert_eq!(p.wait_final(&token, &second).await["state"], "ready");
    p.site_eventually("apart", "/", "Second version").await;
    let (status, body) = p
        .post(&format!("/api/deployments/{id}/promote"), &token, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    p.site_eventually("apart", "/", "Hello from the fixture").await;
}

#[tokio::test]
async fn a_log_consumer_crash_loses_and_repeats_nothing() {
    let Some(services) = Services::get() else { return };
    let git = GitServer::start().await;
    counting_repo(&git, "spa");
    let mut p = cluster::start(&services, &[]).await;
    let token = p.signup("Ann").await;
    p.create_project(&token, json!({ "name": "Crashy", "git_url": git.url("spa") }))
        .await;
    let id = p.deploy(&token, "crashy").await;

    // Kill the consumer while lines are coming, keep it down for a while, bring it back.
    wait_for_lines(&p, &token, &id, 20).await;
    p.part("log-consumer").kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    p.part("log-consumer").restart();
    // And once more, hard, right after a restart.
    wait_for_lines(&p, &token, &id, 100).await;
    p.part("log-consumer").kill();
    p.part("log-consumer").restart();

    let d = p.wait_final(&token, &id).await;
    assert_eq!(d["state"], "ready", "{}", p.server_log());
    let stored = stored_lines(&p, &token, &id).await;
    assert_each_line_once(&stored);
    // The full log, as a late follower sees it: the same lines.
    let events = read_sse(&p, &token, &id, None, |e| e.event == "end").await;
    assert_eq!(events.iter().filter(|e| e.event == "message").count(), stored.len());
}

async fn wait_for_lines(p: &Platform, token: &str, id: &str, n: usize) {
    for _ in 0..3000 {
        if stored_lines(p, token, id)
            .await
            .iter()
            .filter(|(_, t)| t.starts_with("counting"))
            .count()
            >= n
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no {n} lines stored\n{}", p.server_log());
}

/// One call to moto's EC2 query API; the XML it answers.
async fn ec2_query(services: &Services, params: &[(&str, &str)]) -> String {
    let mut form = vec![("Version", "2016-11-15")];
    form.extend_from_slice(params);
    let resp = reqwest::Client::new()
        .post(format!("{}/", services.aws))
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0",
        )
        .form(&form)
        .send()
        .await
        .expect("an EC2 call");
    resp.text().await.unwrap()
}

/// moto's default VPC subnets (EC2 DescribeSubnets; moto's Fargate tasks need a real one).
async fn default_subnet(services: &Services) -> String {
    let xml = ec2_query(services, &[("Action", "DescribeSubnets")]).await;
    let start = xml.find("<subnetId>").expect("a subnet") + "<subnetId>".len();
    xml[start..].split('<').next().unwrap().to_owned()
}

#[tokio::test]
async fn builds_on_ecs_run_the_task_with_only_their_own_credentials() {
    let Some(services) = Services::get() else { return };
    let aws = services.aws_config().await;
    let ecs = aws_sdk_ecs::Client::new(&aws);
    let cluster_name = cluster::unique("builds");
    ecs.create_cluster().cluster_name(&cluster_name).send().await.unwrap();
    let container = aws_sdk_ecs::types::ContainerDefinition::builder()
        .name("build")
        .image("registry.example.com/cloudrunr:latest")
        .memory(4096)
        .command("build")
        .build();
    let family = cluster::unique("cloudrunr-build");
    ecs.register_task_definition()
        .family(&family)
        .network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc)
        .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
        .cpu("2048")
        .memory("4096")
        .container_definitions(container)
        .send()
        .await
        .unwrap();
    let subnet = default_subnet(&services).await;

    let git = GitServer::start().await;
    git.create_repo("spa", &fixture("spa"));
    let p = cluster::start(
        &services,
        &[
            ("CLOUDRUNR_EXECUTOR", "ecs"),
            ("CLOUDRUNR_ECS_CLUSTER", &cluster_name),
            ("CLOUDRUNR_ECS_TASK_DEFINITION", &family),
            ("CLOUDRUNR_ECS_SUBNETS", &subnet),
            ("CLOUDRUNR_ECS_SECURITY_GROUPS", "sg-0123456789abcdef0"),
            ("AWS_ENDPOINT_URL_ECS", &services.aws),
        ],
    )
    .await;
    let token = p.signup("Ann").await;
    p.create_project(
        &token,
        json!({ "name": "On ECS", "git_url": git.url("spa"), "env": { "API_KEY": "build-time-only" } }),
    )
    .await;
    let id = p.deploy(&token, "on-ecs").await;

    // The API ran a task with the deployment's parameters as overrides.
    let task = wait_for_task(&ecs, &cluster_name, &family).await;
    assert_eq!(task.launch_type().map(|l| l.as_str()), Some("FARGATE"));
    assert!(task.cluster_arn().unwrap().ends_with(&format!("/{cluster_name}")));
    assert!(task.task_definition_arn().unwrap().contains(&format!("/{family}:")));
    // The network configuration reached ECS: the task's interface sits in the configured
    // subnet, behind the configured security group.
    let eni = &task.attachments()[0];
    let detail = |name: &str| {
        eni.details()
            .iter()
            .find(|d| d.name() == Some(name))
            .and_then(|d| d.value())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(detail("subnetId"), subnet);
    let groups = ec2_query(
        &services,
        &[
            ("Action", "DescribeNetworkInterfaces"),
            ("NetworkInterfaceId.1", &detail("networkInterfaceId")),
        ],
    )
    .await;
    assert!(groups.contains("<groupId>sg-0123456789abcdef0</groupId>"), "{groups}");
    let overrides = &task.overrides().unwrap().container_overrides()[0];
    assert_eq!(overrides.name(), Some("build"));
    assert_eq!(overrides.command(), ["build"]);
    let env: BTreeMap<String, String> = overrides
        .environment()
        .iter()
        .map(|kv| (kv.name().unwrap().to_owned(), kv.value().unwrap().to_owned()))
        .collect();
    assert_eq!(env["CLOUDRUNR_DEPLOYMENT_ID"], id);
    assert_eq!(env["CLOUDRUNR_API_URL"], p.base);
    assert!(env["CLOUDRUNR_ARTIFACT_STORE"].starts_with("s3://"));
    // Only a token for this deployment: no server secret, no project variable.
    for (k, v) in &env {
        assert!(
            ![
                "CLOUDRUNR_SECRET_KEY",
                "CLOUDRUNR_JWT_SECRET",
                "CLOUDRUNR_DATABASE_URL",
                "AWS_SECRET_ACCESS_KEY"
            ]
            .contains(&k.as_str()),
            "{k} handed to the task"
        );
        assert!(!v.contains("build-time-only"), "{k} carries a project variable");
        for (name, secret) in p.component_env() {
            if name.contains("SECRET") || name.contains("DATABASE") {
                assert!(!v.contains(secret.as_str()), "{k} carries {name}");
            }
        }
    }
    // The token opens this deployment's job, and nothing else.
    let other = p
        .http
        .get(format!(
            "{}/internal/builds/{}/job",
            p.base, "d_00000000000000000000000000"
        ))
        .bearer_auth(&env["CLOUDRUNR_BUILD_TOKEN"])
        .send()
        .await
        .unwrap();
    assert!(other.status().is_client_error(), "{}", other.status());
    let (status, _) = p.get("/api/projects", &env["CLOUDRUNR_BUILD_TOKEN"]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Run the task's container as the ECS agent would: `cloudrunr build` with those variables.
    let build = run_task_locally(&p, &env).await;
    assert!(build.status.success(), "{}", String::from_utf8_lossy(&build.stderr));
    let d = p.wait_final(&token, &id).await;
    assert_eq!(d["state"], "ready", "{}", p.server_log());
    assert!(p.log_text(&token, &id).await.contains("Framework:"));
    p.site_eventually("on-ecs", "/", "Hello from the fixture").await;

    // A task that stops without reporting fails its deployment, with ECS's reason.
    let lost = p.deploy(&token, "on-ecs").await;
    let task = wait_for_task_of(&ecs, &cluster_name, &lost).await;
    ecs.stop_task()
        .cluster(&cluster_name)
        .task(task.task_arn().unwrap())
        .reason("Essential container in task exited")
        .send()
        .await
        .unwrap();
    let d = p.wait_final(&token, &lost).await;
    assert_eq!(d["state"], "failed");
    assert!(
        d["error"]
            .as_str()
            .unwrap()
            .contains("Essential container in task exited"),
        "{d}"
    );

    // Canceling stops the task.
    let canceled = p.deploy(&token, "on-ecs").await;
    let task = wait_for_task_of(&ecs, &cluster_name, &canceled).await;
    let (status, body) = p
        .post(&format!("/api/deployments/{canceled}/cancel"), &token, json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "the task is asked to stop: {body}");
    let arn = task.task_arn().unwrap().to_owned();
    let mut stopped = None;
    for _ in 0..50 {
        let out = ecs
            .describe_tasks()
            .cluster(&cluster_name)
            .tasks(&arn)
            .send()
            .await
            .unwrap();
        if let Some(reason) = out.tasks()[0].stopped_reason() {
            stopped = Some(reason.to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stopped.as_deref(), Some("canceled in CloudRunr"));
    assert_eq!(p.wait_final(&token, &canceled).await["state"], "canceled");
}

async fn wait_for_task(ecs: &aws_sdk_ecs::Client, cluster: &str, family: &str) -> aws_sdk_ecs::types::Task {
    for _ in 0..100 {
        let arns = ecs.list_tasks().cluster(cluster).family(family).send().await.unwrap();
        if let Some(arn) = arns.task_arns().first() {
            let out = ecs.describe_tasks().cluster(cluster).tasks(arn).send().await.unwrap();
            return out.tasks()[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no ECS task was started");
}

/// The task whose overrides name `deployment`.
async fn wait_for_task_of(ecs: &aws_sdk_ecs::Client, cluster: &str, deployment: &str) -> aws_sdk_ecs::types::Task {
    for _ in 0..100 {
        let arns = ecs.list_tasks().cluster(cluster).send().await.unwrap();
        if !arns.task_arns().is_empty() {
            let out = ecs
                .describe_tasks()
                .cluster(cluster)
                .set_tasks(Some(arns.task_arns().to_vec()))
                .send()
                .await
                .unwrap();
            let found = out.tasks().iter().find(|t| {
                t.overrides().is_some_and(|o| {
                    o.container_overrides().iter().any(|c| {
                        c.environment()
                            .iter()
                            .any(|kv| kv.name() == Some("CLOUDRUNR_DEPLOYMENT_ID") && kv.value() == Some(deployment))
                    })
                })
            });
            if let Some(t) = found {
                return t.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no ECS task was started for {deployment}");
}

/// `cloudrunr build` with exactly the task's environment (plus what the container image would
/// provide: PATH, the sandbox's settings, AWS credentials from the task role).
async fn run_task_locally(p: &Platform, env: &BTreeMap<String, String>) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(test_support::cloudrunr_bin());
    cmd.arg("build")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CLOUDRUNR_GIT_ALLOW_HTTP_HOSTS", "127.0.0.1")
        .env("CLOUDRUNR_WORK_DIR", p.data.path().join("task"))
        .envs(
            p.component_env()
                .iter()
                .filter(|(k, _)| k.starts_with("AWS_"))
                .map(|(k, v)| (k, v)),
        )
        .envs(env);
    tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("the build finished")
        .expect("cloudrunr build")
}
