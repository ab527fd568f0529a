//! Where builds run, behind [`Executor`](platform::executor::Executor): in this process's tasks
//! ([`LocalExecutor`]), or as `cloudrunr build` away from it — a local child process
//! ([`ProcessExecutor`]) or an AWS ECS task ([`EcsExecutor`]).
//!
//! Both of the latter give the build exactly the same environment ([`RemoteBuilds`]) — where the
//! API is, which deployment, a token for that deployment only, and where artifacts go — and no
//! long-lived platform secret: the build fetches its job (with the project's variables) from the
//! API with its token, and reports its events the same way ([`crate::api_client`]).

mod ecs;
mod in_process;
mod process;

pub use ecs::EcsExecutor;
pub use in_process::{LocalExecutor, LocalExecutorConfig};
pub use process::ProcessExecutor;

use platform::DeploymentId;
use platform::build_token::BuildTokens;
use std::time::Duration;

/// What every remote build is told, besides its deployment and token.
#[derive(Debug, Clone)]
pub struct RemoteBuilds {
    /// Where builds reach the platform's API.
    pub api_url: String,
    /// `file:///dir` or `s3://bucket/prefix`.
    pub artifact_store: String,
    pub s3_path_style: bool,
    pub tokens: BuildTokens,
    /// The builds' time limit; tokens outlive it a little.
    pub timeout: Duration,
    /// Anything else the build needs (sandbox settings, the git allow-list).
    pub extra_env: Vec<(String, String)>,
}

impl RemoteBuilds {
    /// The environment of the build of `deployment`.
    pub fn env_for(&self, deployment: &DeploymentId) -> Vec<(String, String)> {
        let token = self
            .tokens
            .mint(deployment, self.timeout + Duration::from_secs(10 * 60));
        let mut env = vec![
            ("CLOUDRUNR_API_URL".to_owned(), self.api_url.clone()),
            ("CLOUDRUNR_DEPLOYMENT_ID".to_owned(), deployment.to_string()),
            ("CLOUDRUNR_BUILD_TOKEN".to_owned(), token),
            ("CLOUDRUNR_ARTIFACT_STORE".to_owned(), self.artifact_store.clone()),
            (
                "CLOUDRUNR_BUILD_TIMEOUT".to_owned(),
                format!("{}s", self.timeout.as_secs()),
            ),
        ];
        if self.s3_path_style {
            env.push(("CLOUDRUNR_S3_PATH_STYLE".to_owned(), "true".to_owned()));
        }
        env.extend(self.extra_env.iter().cloned());
        env
    }
}
