//! Runs untrusted build commands inside bubblewrap.
//!
//! Inside the sandbox a build sees a read-only `/usr`, a handful of `/etc` files it needs for
//! DNS and TLS, a private `/tmp`, its checkout at `/workspace` and its project's dependency
//! cache at `/cache` — and nothing else of the host: no data directory, no `/root`, no
//! `/etc/shadow`. It runs as uid 1000 with no capabilities, in fresh namespaces — its network
//! namespace too, where only its own loopback exists: it reaches the outside only through the
//! build's egress proxy ([`crate::egress`]), which refuses the host's loopback, private networks
//! and the cloud metadata endpoint — with an environment made from scratch.

use crate::egress::{self, Egress, EgressProxy};
use crate::quota::Entry;
use platform::settings::SandboxMode;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::process::Command;

/// Where the checkout appears inside the sandbox.
pub const WORKSPACE: &str = "/workspace";
/// Where the project's dependency cache appears inside the sandbox.
pub const CACHE: &str = "/cache";

const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Host files a build may read: name resolution and CA certificates.
const ETC_FILES: &[&str] = &[
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/ssl/certs",
    "/etc/alternatives",
    "/etc/localtime",
];

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "builds need bubblewrap, which is not usable here ({0}). Install it (`apt install bubblewrap`), \
         or set CLOUDRUNR_UNSAFE_NO_SANDBOX=1 to run builds without a sandbox (never with untrusted code)"
    )]
    Unavailable(String),
}

#[derive(Debug, Clone)]
pub struct Sandbox {
    mode: SandboxMode,
    /// How builds reach the network; without it they have none at all.
    egress: Option<Egress>,
}

/// One command to run in the sandbox.
pub struct SandboxCommand<'a> {
    /// The checkout, bound read-write at [`WORKSPACE`].
    pub workspace: &'a Path,
    /// The project's dependency cache, bound read-write at [`CACHE`].
    pub cache: &'a Path,
    /// Working directory relative to the workspace.
    pub workdir: &'a str,
    /// `/etc/passwd` for the sandbox (so tools can look up the build user).
    pub passwd: &'a Path,
    /// A shell command line.
    pub script: &'a str,
    /// The complete environment, besides the base variables the sandbox sets itself.
    pub env: &'a BTreeMap<String, String>,
    /// The build's proxy: the command's only way to the network.
    pub egress: Option<&'a EgressProxy>,
}

impl Sandbox {
    /// Builds in this sandbox have no network at all until [`Sandbox::with_egress`] gives them
    /// a proxy.
    pub fn new(mode: SandboxMode) -> Self {
        Self { mode, egress: None }
    }

    /// Builds reach the network through a proxy that applies `egress`'s policy.
    pub fn with_egress(mut self, egress: Egress) -> Self {
        if let Some(warning) = self.network_warning() {
            tracing::warn!("{warning}; the egress policy applies to git only");
        }
        self.egress = Some(egress);
        self
    }

    /// Starts the proxy of one build; `None` when its commands get no network, or (without a
    /// sandbox) the host's own, unfiltered.
    pub fn start_egress(&self) -> std::io::Result<Option<EgressProxy>> {
        match (&self.mode, &self.egress) {
            (SandboxMode::Bubblewrap(_), Some(egress)) => egress.start().map(Some),
            _ => Ok(None),
        }
    }

    /// Why this sandbox's builds can reach more than the egress policy allows, if they can.
    pub fn network_warning(&self) -> Option<&'static str> {
        match self.mode {
            SandboxMode::UnsafeNone => Some(
                "Warning: builds run without a sandbox (CLOUDRUNR_UNSAFE_NO_SANDBOX): they share this \
                 machine's network, unfiltered",
            ),
            SandboxMode::Bubblewrap(_) => None,
        }
    }

    pub fn mode(&self) -> &SandboxMode {
        &self.mode
    }

    fn program(&self) -> String {
        match &self.mode {
            SandboxMode::Bubblewrap(p) => p.display().to_string(),
            SandboxMode::UnsafeNone => "sh".into(),
        }
    }

    /// Checks that sandboxed commands can run here by running one.
    pub async fn probe(&self) -> Result<(), SandboxError> {
        if self.mode == SandboxMode::UnsafeNone {
            return Ok(());
        }
        let dir = std::env::temp_dir().join(format!("cloudrunr-probe-{}", std::process::id()));
        let (ws, cache) = (dir.join("ws"), dir.join("cache"));
        let passwd = dir.join("passwd");
        let prepared = std::fs::create_dir_all(&ws)
            .and_then(|()| std::fs::create_dir_all(&cache))
            .and_then(|()| write_passwd(&passwd));
        if let Err(e) = prepared {
            return Err(SandboxError::Unavailable(format!(
                "cannot prepare a probe directory: {e}"
            )));
        }
        let env = BTreeMap::new();
        // With a proxy, the probe runs the bridge too: a bridge that cannot run in the sandbox
        // is found at start, not in the first build.
        let proxy = match self.start_egress() {
            Ok(proxy) => proxy,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(SandboxError::Unavailable(format!("cannot start the egress proxy: {e}")));
            }
        };
        let cmd = SandboxCommand {
            workspace: &ws,
            cache: &cache,
            workdir: "",
            passwd: &passwd,
            script: "true",
            env: &env,
            egress: proxy.as_ref(),
        };
        // A sized `/tmp` too, as builds have: a bubblewrap too old for `--size` is found here.
        let entry = Entry {
            tmp_size: Some(1 << 20),
            ..Entry::default()
        };
        let result = self
            .command_in(&cmd, &entry)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await;
        let _ = std::fs::remove_dir_all(&dir);
        match result {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(SandboxError::Unavailable(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            )),
            Err(e) => Err(SandboxError::Unavailable(format!("cannot run {}: {e}", self.program()))),
        }
    }

    /// The command, not yet spawned. It is its own process group, so that the whole tree can be
    /// killed at once (see [`crate::child`]).
    pub fn command(&self, c: &SandboxCommand<'_>) -> Command {
        self.command_in(c, &Entry::default())
    }

    /// [`Sandbox::command`], entering the build's quotas first (see [`crate::quota::entry`]).
    pub fn command_in(&self, c: &SandboxCommand<'_>, entry: &Entry) -> Command {
        let mut env = base_env();
        let bridged = match (&self.mode, &self.egress, c.egress) {
            (SandboxMode::Bubblewrap(_), Some(egress), Some(proxy)) => Some((egress, proxy)),
            _ => None,
        };
        if bridged.is_some() {
            env.extend(egress::proxy_env().into_iter().map(|(k, v)| (k.to_owned(), v)));
        }
        env.extend(c.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut cmd = match &self.mode {
            SandboxMode::Bubblewrap(program) => {
                let mut cmd = entry.command(program);
                cmd.args(entry.bwrap_options(bwrap_args(c)));
                match bridged {
                    Some((egress, proxy)) => {
                        cmd.args(egress_binds(&egress.bridge, proxy));
                        cmd.arg("--");
                        cmd.args(egress::bridged(c.script));
                    }
                    None => {
                        cmd.arg("--");
                        cmd.args(["sh", "-c", c.script]);
                    }
                }
                cmd
            }
            SandboxMode::UnsafeNone => {
                // Same paths as inside the sandbox are impossible without it: point the cache
                // variables at the real directory instead.
                for v in env.values_mut() {
                    if let Some(rest) = v.strip_prefix(CACHE) {
                        *v = format!("{}{rest}", c.cache.display());
                    }
                }
                let mut cmd = entry.command("sh");
                cmd.args(["-c", c.script]);
                cmd.current_dir(join_workdir(c.workspace, c.workdir));
                cmd
            }
        };
        cmd.env_clear()
            .envs(env)
            .stdin(entry.stdin())
            .process_group(0)
            .kill_on_drop(true);
        cmd
    }
}

/// The sandbox's options, up to (not including) the `--` before the command. `--unshare-all`
/// includes the network: bubblewrap gives the new namespace a loopback interface, up, and nothing
/// else.
fn bwrap_args(c: &SandboxCommand<'_>) -> Vec<String> {
    let mut a: Vec<String> = [
        "--unshare-all",
        "--unshare-user",
        "--uid",
        "1000",
        "--gid",
        "1000",
        "--disable-userns",
        "--cap-drop",
        "ALL",
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "build",
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--symlink",
        "usr/sbin",
        "/sbin",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
    ]
    .map(String::from)
    .to_vec();
    for f in ETC_FILES {
        a.extend(["--ro-bind-try".into(), (*f).into(), (*f).into()]);
    }
    let passwd = c.passwd.display().to_string();
    a.extend(["--ro-bind".into(), passwd, "/etc/passwd".into()]);
    a.extend(["--bind".into(), c.workspace.display().to_string(), WORKSPACE.into()]);
    a.extend(["--bind".into(), c.cache.display().to_string(), CACHE.into()]);
    let workdir = if c.workdir.is_empty() {
        WORKSPACE.to_owned()
    } else {
        format!("{WORKSPACE}/{}", c.workdir)
    };
    a.extend(["--chdir".into(), workdir]);
    a
}

/// The bridge program and the proxy's socket directory, bound read-only into the sandbox.
fn egress_binds(bridge: &Path, proxy: &EgressProxy) -> Vec<String> {
    vec![
        "--ro-bind".into(),
        bridge.display().to_string(),
        egress::BRIDGE_IN_SANDBOX.into(),
        "--ro-bind".into(),
        proxy.dir().display().to_string(),
        egress::SOCKET_DIR_IN_SANDBOX.into(),
    ]
}

fn join_workdir(workspace: &Path, workdir: &str) -> PathBuf {
    if workdir.is_empty() {
        workspace.to_path_buf()
    } else {
        workspace.join(workdir)
    }
}

/// Variables every build gets, before the job's own.
fn base_env() -> BTreeMap<String, String> {
    [
        ("PATH", PATH),
        ("HOME", "/tmp"),
        ("TMPDIR", "/tmp"),
        ("LANG", "C.UTF-8"),
        ("CI", "1"),
        ("npm_config_cache", "/cache/npm"),
        ("npm_config_update_notifier", "false"),
        ("npm_config_fund", "false"),
        ("npm_config_audit", "false"),
        // pnpm keeps its store under $XDG_DATA_HOME; other tools cache under $XDG_CACHE_HOME.
        ("XDG_DATA_HOME", "/cache/data"),
        ("XDG_CACHE_HOME", "/cache/xdg"),
        ("YARN_CACHE_FOLDER", "/cache/yarn"),
        ("COREPACK_HOME", "/cache/corepack"),
        ("COREPACK_ENABLE_DOWNLOAD_PROMPT", "0"),
        ("BUN_INSTALL_CACHE_DIR", "/cache/bun"),
        ("NG_CLI_ANALYTICS", "false"),
        ("NEXT_TELEMETRY_DISABLED", "1"),
        ("NUXT_TELEMETRY_DISABLED", "1"),
        ("ASTRO_TELEMETRY_DISABLED", "1"),
        ("GATSBY_TELEMETRY_DISABLED", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// A passwd file naming the sandbox's build user.
pub fn write_passwd(path: &Path) -> std::io::Result<()> {
    std::fs::write(
        path,
        "build:x:1000:1000:build:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    )
}
