//! A build's way out: its own network namespace, and a proxy that decides.
//!
//! Builds run with `--unshare-net`: their namespace holds only its own loopback, so nothing of
//! the host's (its loopback services, its private networks, the cloud metadata endpoint) is
//! reachable from there. The one way out is an HTTP CONNECT proxy run by CloudRunr for that build
//! ([`proxy`]), which resolves names itself and connects only where the
//! [`EgressPolicy`](platform::egress::EgressPolicy) allows. Inside the sandbox, the [`bridge`] (this
//! binary again, `cloudrunr egress-bridge`) listens on the namespace's loopback at [`PROXY_ADDR`]
//! and carries each connection to the proxy's Unix socket; builds find it through the usual proxy
//! variables ([`proxy_env`]), which npm, yarn, pnpm, bun, git and curl honour.

pub mod bridge;
pub mod proxy;

pub use proxy::{EgressProxy, ProxyLimits};

use crate::logs::BuildLog;
use platform::egress::EgressPolicy;
use std::path::PathBuf;

/// Where the bridge listens inside the sandbox (the build's own loopback; nothing else is there).
pub const PROXY_ADDR: &str = "127.0.0.1:3128";
/// Where the bridge program is bound inside the sandbox, read-only.
pub const BRIDGE_IN_SANDBOX: &str = "/run/cloudrunr/bridge";
/// Where the proxy's socket directory is bound inside the sandbox.
pub const SOCKET_DIR_IN_SANDBOX: &str = "/run/cloudrunr/egress";
/// The bridge's subcommand.
pub const BRIDGE_SUBCOMMAND: &str = "egress-bridge";

/// How a sandboxed build reaches the network.
#[derive(Debug, Clone)]
pub struct Egress {
    pub policy: EgressPolicy,
    /// The `cloudrunr` program that runs the bridge inside the sandbox.
    pub bridge: PathBuf,
    pub limits: ProxyLimits,
}

impl Egress {
    /// With this very program as the bridge.
    pub fn this_program(policy: EgressPolicy) -> std::io::Result<Self> {
        Ok(Self {
            policy,
            bridge: std::env::current_exe()?,
            limits: ProxyLimits::default(),
        })
    }

    /// Starts a proxy for one build.
    pub fn start(&self) -> std::io::Result<EgressProxy> {
        EgressProxy::start(self.policy.clone(), self.limits)
    }
}

/// The variables that send a build's traffic through the bridge. Loopback stays direct: a build
/// may talk to servers it started itself.
pub fn proxy_env() -> Vec<(&'static str, String)> {
    let url = format!("http://{PROXY_ADDR}");
    let direct = "localhost,127.0.0.1,::1".to_owned();
    vec![
        ("HTTPS_PROXY", url.clone()),
        ("HTTP_PROXY", url.clone()),
        ("https_proxy", url.clone()),
        ("http_proxy", url.clone()),
        ("NO_PROXY", direct.clone()),
        ("no_proxy", direct.clone()),
        // npm and yarn 1 read these over the variables above; yarn 2+ reads its own.
        ("npm_config_proxy", url.clone()),
        ("npm_config_https_proxy", url.clone()),
        ("npm_config_noproxy", direct),
        ("YARN_HTTP_PROXY", url.clone()),
        ("YARN_HTTPS_PROXY", url),
        // Node 24 and later send fetch() and http(s) through the variables above when asked.
        ("NODE_USE_ENV_PROXY", "1".to_owned()),
    ]
}

/// The program and arguments that run `script` under the bridge inside the sandbox.
pub fn bridged(script: &str) -> Vec<String> {
    [
        BRIDGE_IN_SANDBOX,
        BRIDGE_SUBCOMMAND,
        "--listen",
        PROXY_ADDR,
        "--socket",
        &format!("{SOCKET_DIR_IN_SANDBOX}/{}", proxy::SOCKET_NAME),
        "--",
        "sh",
        "-c",
        script,
    ]
    .map(String::from)
    .to_vec()
}

/// Runs `step`, writing the proxy's refusals into the build's log as they happen (and those
/// still pending when it ends), so that a failed download is followed by why it was refused.
pub(crate) async fn with_notices<T>(step: impl Future<Output = T>, proxy: Option<&EgressProxy>, log: &BuildLog) -> T {
    let Some(proxy) = proxy else {
        return step.await;
    };
    let mut step = std::pin::pin!(step);
    let out = loop {
        tokio::select! {
            biased;
            out = &mut step => break out,
            Some(notice) = proxy.next_notice() => log.system(notice).await,
        }
    };
    for notice in proxy.pending_notices() {
        log.system(notice).await;
    }
    out
}

#[cfg(test)]
mod tests;
