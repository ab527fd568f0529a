//! Opens the backend configuration chose for each interface: `Database`, `ArtifactStore`,
//! `LogBus`, `Executor`.

use anyhow::Context;
use builder::executor::{EcsExecutor, LocalExecutor, LocalExecutorConfig, ProcessExecutor, RemoteBuilds};
use bus::{InProcessBus, KafkaBus};
use db::{Database, DbOptions};
use platform::artifacts::ArtifactStore;
use platform::build_token::BuildTokens;
use platform::bus::{LogBus, NoticeListener};
use platform::executor::Executor;
use platform::settings::{ExecutorSettings, SandboxMode, Settings};
use std::sync::Arc;

pub async fn database(settings: &Settings) -> anyhow::Result<Database> {
    let options = DbOptions {
        log_retention: settings.log_retention,
        build_caps: db::BuildCaps {
            running: Some(settings.accounts.max_running_builds),
            queued: Some(settings.accounts.max_queued_builds),
        },
        ..DbOptions::default()
    };
    Database::connect_with(settings.database_url.expose(), options)
        .await
        .context("cannot open the database")
}

pub async fn artifact_store(settings: &Settings) -> anyhow::Result<Arc<dyn ArtifactStore>> {
    store::open(&settings.artifacts, settings.s3.clone())
        .await
        .with_context(|| format!("cannot open the artifact store {}", settings.artifacts))
}

/// The log bus, with what only the concrete bus offers.
#[derive(Clone)]
pub enum Bus {
    InProcess(Arc<InProcessBus>),
    Kafka(Arc<KafkaBus>),
}

impl Bus {
    pub async fn open(settings: &Settings) -> anyhow::Result<Self> {
        Ok(match &settings.kafka {
            None => Self::InProcess(Arc::new(InProcessBus::new())),
            Some(config) => {
                Self::Kafka(Arc::new(KafkaBus::connect(config.clone()).await.with_context(
                    || format!("cannot open the Kafka log bus at {}", config.brokers),
                )?))
            }
        })
    }

    /// Like [`Bus::open`], for a component that shares the bus with other processes.
    pub async fn open_shared(settings: &Settings, component: &str) -> anyhow::Result<Self> {
        if settings.kafka.is_none() {
            anyhow::bail!(
                "`cloudrunr {component}` runs apart from the other components, which it reaches through Kafka: \
                 set CLOUDRUNR_KAFKA_BROKERS (or run everything in one process with `cloudrunr serve`)"
            );
        }
        Self::open(settings).await
    }

    pub fn dyn_bus(&self) -> Arc<dyn LogBus> {
        match self {
            Self::InProcess(b) => b.clone(),
            Self::Kafka(b) => b.clone(),
        }
    }

    /// Registers a listener every `notify` of this process awaits.
    pub fn add_listener(&self, listener: Arc<dyn NoticeListener>) {
        match self {
            Self::InProcess(b) => b.add_listener(listener),
            Self::Kafka(b) => b.add_listener(listener),
        }
    }
}

/// Where the builds run. `embedded`: in this process when they run locally (`serve`); otherwise
/// each local build is a `cloudrunr build` child process.
pub async fn executor(
    settings: &Settings,
    bus: Arc<dyn LogBus>,
    store: Arc<dyn ArtifactStore>,
    embedded: bool,
) -> anyhow::Result<Arc<dyn Executor>> {
    let remote = || -> anyhow::Result<RemoteBuilds> {
        Ok(RemoteBuilds {
            api_url: settings.api_url.clone(),
            artifact_store: settings.artifacts.to_string(),
            s3_path_style: settings.s3.path_style,
            tokens: BuildTokens::new(&settings.secret_key),
            timeout: settings.build.timeout,
            extra_env: crate::config::build_env(settings),
        })
    };
    Ok(match &settings.executor {
        ExecutorSettings::Local if embedded => Arc::new(
            LocalExecutor::new(LocalExecutorConfig {
                bus,
                store,
                git: settings.git.clone(),
                limits: settings.build.clone(),
                data_dir: settings.data_dir.clone(),
                compression: builder::compress::Compression::this_program(),
            })
            .await,
        ),
        ExecutorSettings::Local => {
            let mut builds = remote()?;
            builds.extra_env.extend([
                (
                    "CLOUDRUNR_WORK_DIR".to_owned(),
                    path_str(&settings.data_dir.join("builds"))?,
                ),
                (
                    "CLOUDRUNR_CACHE_DIR".to_owned(),
                    path_str(&settings.data_dir.join("cache"))?,
                ),
            ]);
            builds.extra_env.push(match &settings.build.sandbox {
                SandboxMode::Bubblewrap(bwrap) => ("CLOUDRUNR_BWRAP".to_owned(), path_str(bwrap)?),
                SandboxMode::UnsafeNone => ("CLOUDRUNR_UNSAFE_NO_SANDBOX".to_owned(), "true".to_owned()),
            });
            let program = std::env::current_exe().context("cannot find this program to run builds with")?;
            let node = crate::config::node_id(&settings.data_dir)?;
            Arc::new(ProcessExecutor::new(node, program, builds, bus))
        }
        ExecutorSettings::Ecs(ecs) => {
            let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .http_client(store::S3ArtifactStore::http_client())
                .load()
                .await;
            if sdk.region().is_none() {
                anyhow::bail!("the ECS executor needs an AWS region: set AWS_REGION");
            }
            let client = aws_sdk_ecs::Client::new(&sdk);
            Arc::new(EcsExecutor::new(client, ecs.clone(), remote()?))
        }
    })
}

fn path_str(path: &std::path::Path) -> anyhow::Result<String> {
    path.to_str()
        .map(str::to_owned)
        .with_context(|| format!("{} is not UTF-8", path.display()))
}
