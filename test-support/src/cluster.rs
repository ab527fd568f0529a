//! The platform at scale: `cloudrunr api`, `webhook`, `router` and `log-consumer` as separate
//! processes on PostgreSQL, Kafka and S3 (moto), each test in its own database, topics and bucket.

use crate::harness::{Platform, cloudrunr_bin, spawn_component};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

/// The real servers `scripts/services` started for the test run.
#[derive(Debug, Clone)]
pub struct Services {
    /// `postgres://user@host:port/postgres`.
    pub postgres: String,
    pub kafka: String,
    /// The S3/ECS-compatible server (moto).
    pub aws: String,
}

impl Services {
    /// The servers, or `None` when the run has none (then the caller skips). Under CI, or with
    /// `CLOUDRUNR_REQUIRE_SERVICES` set, missing servers fail the test instead.
    pub fn get() -> Option<Services> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        match (
            var("CLOUDRUNR_TEST_POSTGRES_URL"),
            var("CLOUDRUNR_TEST_KAFKA_BROKERS"),
            var("CLOUDRUNR_TEST_AWS_ENDPOINT"),
        ) {
            (Some(postgres), Some(kafka), Some(aws)) => Some(Services { postgres, kafka, aws }),
            _ if var("CI").is_some() || var("CLOUDRUNR_REQUIRE_SERVICES").is_some() => {
                panic!("PostgreSQL, Kafka and moto are required: run the tests with scripts/test")
            }
            _ => {
                eprintln!("skipped: no PostgreSQL/Kafka/moto (scripts/test starts them)");
                None
            }
        }
    }

    /// The AWS SDK's view of moto (dummy credentials, which moto accepts).
    pub async fn aws_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(store::S3ArtifactStore::http_client())
            .endpoint_url(&self.aws)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .load()
            .await
    }

    /// A new, empty database; returns its URL.
    pub async fn database(&self, name: &str) -> String {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.postgres)
            .await
            .expect("connect to PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create database");
        let base = self.postgres.rsplit_once('/').expect("database URL").0;
        format!("{base}/{name}")
    }

    /// A new, empty bucket.
    pub async fn bucket(&self, name: &str) {
        let conf = aws_sdk_s3::config::Builder::from(&self.aws_config().await)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .expect("create bucket");
    }
}

/// One component process, restartable with the same arguments.
pub struct Part {
    pub name: String,
    /// What the process printed when ready (its address, for those that listen).
    pub addr: String,
    args: Vec<String>,
    ready: String,
    log: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Part {
    fn start(name: &str, args: Vec<String>, ready: &str, log: PathBuf, env: Vec<(String, String)>) -> (Part, String) {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (child, rest) = spawn_component(&refs, &log, &env, ready);
        let part = Part {
            name: name.to_owned(),
            addr: rest.clone(),
            args,
            ready: ready.to_owned(),
            log,
            env,
            child: Some(child),
        };
        (part, rest)
    }

    /// Kills the process without warning, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        let refs: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let (child, _) = spawn_component(&refs, &self.log, &self.env, &self.ready);
        self.child = Some(child);
    }

    pub(crate) fn stop(&mut self) {
        self.kill();
    }
}

/// A port free a moment ago (the components must know each other's before they start).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port")
}

/// A name unique to this test run, usable as a database, bucket and topic name.
pub fn unique(prefix: &str) -> String {
    let mut bytes = [0u8; 6];
    platform::ids::random_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// Starts the components apart, on the services, with `extra` variables for all of them.
pub async fn start(services: &Services, extra: &[(&str, &str)]) -> Platform {
    let id = unique("cr");
    let data = tempfile::tempdir().expect("temp dir");
    let database = services.database(&id).await;
    services.bucket(&id).await;
    let mut key = [0u8; 32];
    platform::ids::random_bytes(&mut key);
    let mut env: Vec<(String, String)> = [
        ("CLOUDRUNR_DATABASE_URL", database.as_str()),
        ("CLOUDRUNR_ARTIFACT_STORE", &format!("s3://{id}/sites")),
        ("CLOUDRUNR_S3_PATH_STYLE", "true"),
        ("CLOUDRUNR_S3_ENDPOINT", &services.aws),
        ("CLOUDRUNR_KAFKA_BROKERS", &services.kafka),
        ("CLOUDRUNR_KAFKA_EVENTS_TOPIC", &format!("{id}.events")),
        ("CLOUDRUNR_KAFKA_NOTICES_TOPIC", &format!("{id}.notices")),
        ("CLOUDRUNR_KAFKA_CONSUMER_GROUP", &format!("{id}.consumers")),
        ("CLOUDRUNR_SECRET_KEY", &hex::encode(key)),
        ("CLOUDRUNR_JWT_SECRET", &unique("jwt-secret-")),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));

    let migrate = Command::new(cloudrunr_bin())
        .args(["migrate", "--data-dir"])
        .arg(data.path().join("migrate"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("cloudrunr migrate");
    assert!(
        migrate.status.success(),
        "cloudrunr migrate failed:\n{}",
        String::from_utf8_lossy(&migrate.stderr)
    );

    // Every component names the same public addresses: the api's and the router's.
    let api_port = free_port();
    let sites_port = free_port();
    env.push((
        "CLOUDRUNR_PUBLIC_URL".to_owned(),
        format!("http://127.0.0.1:{api_port}"),
    ));
    env.push(("CLOUDRUNR_SITES_PORT".to_owned(), sites_port.to_string()));
    let component = |name: &str, port: u16, ready: &str| {
        let dir = data.path().join(name);
        let args = vec![
            name.to_owned(),
            "--listen".to_owned(),
            format!("127.0.0.1:{port}"),
            "--data-dir".to_owned(),
            dir.to_str().expect("UTF-8").to_owned(),
        ];
        Part::start(name, args, ready, data.path().join(format!("{name}.log")), env.clone())
    };
    let (router, _) = component("router", sites_port, "cloudrunr router listening on http://");
    let (consumer, _) = component("log-consumer", 0, "cloudrunr log-consumer running");
    let (webhook, _) = component("webhook", 0, "cloudrunr webhook listening on http://");
    let (mut api, api_addr) = component("api", api_port, "cloudrunr api listening on http://");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    Platform {
        child: api.child.take().expect("api process"),
        env,
        base: format!("http://{api_addr}"),
        port: port_of(&api_addr),
        sites_port,
        data,
        http,
        parts: vec![router, consumer, webhook],
    }
}

impl Platform {
    /// The component named `name` (`router`, `log-consumer`, `webhook`).
    pub fn part(&mut self, name: &str) -> &mut Part {
        self.parts
            .iter_mut()
            .find(|p| p.name == name)
            .expect("no such component")
    }

    /// Where GitHub's deliveries go: the webhook component, or the one process of `serve`.
    pub fn webhook_base(&self) -> String {
        match self.parts.iter().find(|p| p.name == "webhook") {
            Some(part) => format!("http://{}", part.addr),
            None => self.base.clone(),
        }
    }

    /// Starts one more `cloudrunr router` on the same services, named `name` (its log and data
    /// directory), with `extra` over the components' variables; stopped with the platform.
    /// Returns the address of its plain listener.
    pub fn start_router(&mut self, name: &str, extra: &[(&str, &str)]) -> String {
        let mut env = self.env.clone();
        env.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let dir = self.data.path().join(name);
        let args = vec![
            "router".to_owned(),
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--data-dir".to_owned(),
            dir.to_str().expect("UTF-8").to_owned(),
        ];
        let log = self.data.path().join(format!("{name}.log"));
        let (part, addr) = Part::start(name, args, "cloudrunr router listening on http://", log, env);
        self.parts.push(part);
        addr
    }

    /// The log of the component named `name`.
    pub fn part_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.data.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// The variables the components were started with.
    pub fn component_env(&self) -> &[(String, String)] {
        &self.env
    }
}
