//! `cloudrunr build`: one build, away from the platform (a child of `cloudrunr api`, an ECS task).
//! It reads its job from the API with its deployment's token, builds in the sandbox, uploads to
//! the artifact store and reports every event back through the API.

use crate::config::BuildArgs;
use anyhow::Context;
use builder::api_client::{ApiClient, ApiEventSink};
use builder::sandbox::Sandbox;
use builder::{BuildContext, run_build};
use platform::DeploymentId;
use platform::GitHostPolicy;
use platform::artifacts::ArtifactLocation;
use platform::bus::LogBus;
use std::process::ExitCode;
use std::sync::Arc;
use store::S3Options;
use tokio_util::sync::CancellationToken;

pub async fn build(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let deployment =
        DeploymentId::parse(&args.deployment_id).map_err(|e| anyhow::anyhow!("CLOUDRUNR_DEPLOYMENT_ID: {e}"))?;
    let client = ApiClient::new(&args.api_url, deployment.clone(), args.build_token.clone());
    let job = client.job().await.context("cannot fetch the build's job")?;
    let location = ArtifactLocation::parse(&args.artifact_store)?;
    let store = store::open(
        &location,
        S3Options {
            path_style: args.s3_path_style,
            endpoint: args.s3_endpoint.clone(),
        },
    )
    .await
    .with_context(|| format!("cannot open the artifact store {location}"))?;
    // Stopped by SIGTERM (ECS stopping the task, the local executor canceling), or by the API
    // answering that a cancel was asked for; either way the build then reports `canceled`.
    let cancel = CancellationToken::new();
    let sink = Arc::new(ApiEventSink::new(client, cancel.clone()));
    let bus: Arc<dyn LogBus> = sink.clone();

    let limits = args.limits();
    let git_policy = GitHostPolicy::from_list(&args.git_allow_http_hosts).with_egress(args.build_egress_allow.clone());
    let egress = builder::egress::Egress::this_program(git_policy.egress().clone())
        .context("cannot find this program to run the builds' network bridge with")?;
    let sandbox = Sandbox::new(limits.sandbox.clone()).with_egress(egress);
    let sandbox_unavailable = sandbox.probe().await.err().map(|e| e.to_string());
    let work_root = args
        .work_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join("cloudrunr-builds");
    let cache_root = args.cache_dir.clone().unwrap_or_else(|| work_root.join("cache"));
    let ctx = BuildContext {
        bus,
        store,
        sandbox,
        sandbox_unavailable,
        git: builder::git::Git::new(git_policy),
        work_root,
        cache_root,
        limits,
        // This process ends with the build: nothing to keep small.
        compression: builder::compress::Compression::InProcess,
    };

    tokio::spawn({
        let cancel = cancel.clone();
        async move {
            crate::server::shutdown_signal().await;
            cancel.cancel();
        }
    });
    tracing::info!(%deployment, "building");
    run_build(&ctx, job, cancel).await;
    match sink.flush().await {
        0 => Ok(ExitCode::SUCCESS),
        // The executor reports the deployment failed when the build exits unsuccessfully.
        lost => {
            tracing::error!("{lost} events of the build could not be reported");
            Ok(ExitCode::FAILURE)
        }
    }
}
