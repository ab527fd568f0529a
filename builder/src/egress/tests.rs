//! How the sandbox runs a command with and without the build's proxy (the command lines only;
//! the end-to-end tests run them).

use super::*;
use crate::sandbox::{Sandbox, SandboxCommand};
use platform::settings::SandboxMode;
use std::collections::BTreeMap;
use std::path::Path;
use tokio::process::Command;

fn args(cmd: &Command) -> Vec<String> {
    cmd.as_std()
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

fn envs(cmd: &Command) -> BTreeMap<String, String> {
    cmd.as_std()
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_string_lossy().into_owned(), v?.to_string_lossy().into_owned())))
        .collect()
}

fn bwrap() -> Sandbox {
    Sandbox::new(SandboxMode::Bubblewrap("bwrap".into()))
}

fn egress() -> Egress {
    Egress {
        policy: EgressPolicy::default(),
        bridge: "/opt/cloudrunr/bin/cloudrunr".into(),
        limits: ProxyLimits::default(),
    }
}

fn command<'a>(env: &'a BTreeMap<String, String>, proxy: Option<&'a EgressProxy>) -> SandboxCommand<'a> {
    SandboxCommand {
        workspace: Path::new("/data/builds/x/src"),
        cache: Path::new("/data/cache/p"),
        workdir: "",
        passwd: Path::new("/data/builds/x/passwd"),
        script: "npm ci",
        env,
        egress: proxy,
    }
}

/// Whether `args` holds `window` in a row.
fn has(args: &[String], window: &[&str]) -> bool {
    args.windows(window.len())
        .any(|w| w.iter().zip(window).all(|(a, b)| a == b))
}

#[tokio::test]
async fn a_proxied_command_runs_under_the_bridge_in_its_own_network() {
    let sandbox = bwrap().with_egress(egress());
    let proxy = sandbox.start_egress().unwrap().expect("a proxy");
    // A project's own variable wins over the sandbox's.
    let env = BTreeMap::from([("https_proxy".to_owned(), "http://mine:1".to_owned())]);
    let cmd = sandbox.command(&command(&env, Some(&proxy)));
    let a = args(&cmd);
    assert!(a.contains(&"--unshare-all".to_owned()), "{a:?}");
    assert!(!a.iter().any(|x| x == "--share-net"), "{a:?}");
    assert!(
        has(&a, &["--ro-bind", "/opt/cloudrunr/bin/cloudrunr", BRIDGE_IN_SANDBOX]),
        "{a:?}"
    );
    let dir = proxy.dir().display().to_string();
    assert!(has(&a, &["--ro-bind", &dir, SOCKET_DIR_IN_SANDBOX]), "{a:?}");
    assert!(
        has(
            &a,
            &[
                "--",
                "/run/cloudrunr/bridge",
                "egress-bridge",
                "--listen",
                "127.0.0.1:3128",
                "--socket",
                "/run/cloudrunr/egress/proxy.sock",
                "--",
                "sh",
                "-c",
                "npm ci"
            ]
        ),
        "{a:?}"
    );
    assert!(a.ends_with(&["sh".to_owned(), "-c".to_owned(), "npm ci".to_owned()]));
    let e = envs(&cmd);
    for var in [
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "http_proxy",
        "npm_config_https_proxy",
        "YARN_HTTPS_PROXY",
    ] {
        assert_eq!(e.get(var).map(String::as_str), Some("http://127.0.0.1:3128"), "{var}");
    }
    assert_eq!(e["NO_PROXY"], "localhost,127.0.0.1,::1");
    assert_eq!(e["https_proxy"], "http://mine:1");
    assert!(proxy.socket().exists());
}

#[tokio::test]
async fn without_a_proxy_a_command_has_no_network_at_all() {
    let sandbox = bwrap();
    assert!(sandbox.start_egress().unwrap().is_none());
    assert!(sandbox.network_warning().is_none());
    let env = BTreeMap::new();
    let cmd = sandbox.command(&command(&env, None));
    let a = args(&cmd);
    assert!(a.contains(&"--unshare-all".to_owned()) && !a.iter().any(|x| x == "--share-net"));
    assert!(
        !a.iter().any(|x| x.contains("egress") || x.contains(BRIDGE_IN_SANDBOX)),
        "{a:?}"
    );
    assert!(has(&a, &["--", "sh", "-c", "npm ci"]), "{a:?}");
    assert!(!envs(&cmd).contains_key("HTTPS_PROXY"));
}

#[tokio::test]
async fn without_a_sandbox_there_is_no_proxy_and_a_warning() {
    let sandbox = Sandbox::new(SandboxMode::UnsafeNone).with_egress(egress());
    assert!(sandbox.start_egress().unwrap().is_none());
    assert!(sandbox.network_warning().unwrap().contains("unfiltered"));
}
