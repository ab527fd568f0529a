//! `cloudrunr`: every CloudRunr component in one binary.

mod config;
mod serve;

use clap::{Parser, Subcommand};

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
    /// Run every component in one process on the embedded backends (SQLite, local disk,
    /// in-process log bus, sandboxed local builds).
    Serve(config::ServeArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve::serve(args)),
    }
}
