//! `cloudrunr`: every CloudRunr component in one binary.

mod backends;
mod build;
mod components;
mod config;
mod connections;
mod issuance;
mod serve;
mod server;
mod tls;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "cloudrunr",
    version,
    about = "Self-hostable git-push-to-deploy for frontend apps"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every component in one process (by default on the embedded backends: SQLite, local
    /// disk, in-process log bus, sandboxed local builds).
    Serve(config::Config),
    /// The JSON API, dashboard and build scheduler.
    Api(config::Config),
    /// The GitHub webhook receiver and App pages; sends check runs.
    Webhook(config::Config),
    /// Serves the deployed sites.
    Router(config::Config),
    /// Writes build events from Kafka into the database.
    LogConsumer(config::Config),
    /// Runs one build (started by the platform's executor, which sets its environment).
    Build(config::BuildArgs),
    /// Brings the database schema up to date and exits.
    Migrate(config::Config),
    /// Makes the precompressed variants of an upload's files: the jobs come as JSON on stdin, the
    /// variants go to SCRATCH and their list to stdout (run by the builder, not by hand).
    #[command(name = "compress-variants", hide = true)]
    CompressVariants { scratch: std::path::PathBuf },
    /// Inside a build's sandbox: forwards connections to LISTEN to the build's egress proxy at
    /// SOCKET while COMMAND runs, and exits with its status (run by the builder, not by hand).
    #[command(name = "egress-bridge", hide = true)]
    EgressBridge {
        #[arg(long)]
        listen: std::net::SocketAddr,
        #[arg(long)]
        socket: std::path::PathBuf,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

fn main() -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let done = runtime.block_on(async {
        match cli.command {
            Command::Serve(c) => serve::serve(c).await,
            Command::Api(c) => components::api(c).await,
            Command::Webhook(c) => components::webhook(c).await,
            Command::Router(c) => components::router(c).await,
            Command::LogConsumer(c) => components::log_consumer(c).await,
            Command::Migrate(c) => components::migrate(c).await,
            Command::Build(args) => return build::build(args).await,
            // Plain threads that compress, then exit (and give all their memory back).
            Command::CompressVariants { scratch } => {
                builder::compress::helper(&scratch, std::io::stdin().lock(), std::io::stdout().lock())
                    .context("cannot make the variants")
            }
            Command::EgressBridge {
                listen,
                socket,
                command,
            } => {
                return Ok(builder::egress::bridge::run(listen, socket, &command).await);
            }
        }
        .map(|()| ExitCode::SUCCESS)
    });
    // Background tasks (a Kafka consumer, an SDK client) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    done
}
