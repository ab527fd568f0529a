//! Talking to git remotes without ever letting a URL or a repository run anything.
//!
//! Every git process gets an environment built from scratch: no system or global config, no
//! credential helpers, no prompts, hooks pointed at nothing, and `GIT_ALLOW_PROTOCOL` limited to
//! the one protocol the (already parsed) [`GitUrl`] uses. URLs are passed after `--`.
//!
//! Before git connects, the host is resolved here and every address judged by the egress policy
//! (the builds' own, [`platform::egress`]): git is pinned to an allowed address
//! (`http.curloptResolve`) and follows no redirect, so it cannot be sent to the host's loopback,
//! a private network or the metadata endpoint. Whatever stops a fetch — a refused address, a
//! name that does not resolve, a closed port, a TLS failure, a missing repository — the caller
//! gets the same [`UNREACHABLE`] message, and git's own words go to the server's log only:
//! otherwise a repository URL would be a scanner of the server's network.

use crate::child::{RunError, Stopper, run_logged};
use crate::logs::BuildLog;
use base64::Engine;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use platform::egress::Decision;
use platform::settings::Secret;
use platform::{BranchName, CommitSha, GitHostPolicy, GitUrl};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// How long an `ls-remote` made on behalf of an API request may take.
const LS_REMOTE_TIMEOUT: Duration = Duration::from_secs(20);

/// How long resolving a git host may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most of git's error output kept for the server's log.
const MAX_STDERR: usize = 16 * 1024;

/// What a caller learns when a repository cannot be fetched, whatever the reason.
pub const UNREACHABLE: &str = "could not fetch the repository: check the URL and the branch, and that the \
                               repository exists and CloudRunr may read it (for a GitHub repository: that \
                               the App is installed on it)";

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error(transparent)]
    Url(#[from] platform::names::GitUrlError),
    /// Refused, unreachable or unreadable; `detail` is for the server's log only.
    #[error("{}", UNREACHABLE)]
    Unreachable { detail: String },
    #[error("the repository has no branch {0:?}")]
    NoSuchBranch(String),
    #[error("the repository has no default branch (is it empty?)")]
    NoDefaultBranch,
    #[error("commit {0} was not found on the remote")]
    NoSuchCommit(String),
    #[error("git {step} failed")]
    Failed { step: &'static str },
    #[error(transparent)]
    Run(#[from] RunError),
}

/// What to fetch, and how.
#[derive(Clone, Copy)]
pub struct Source<'a> {
    pub url: &'a GitUrl,
    pub branch: &'a BranchName,
    /// Exactly this commit; otherwise the branch's head.
    pub commit: Option<&'a CommitSha>,
    /// Credentials for the remote (a GitHub installation token).
    pub token: Option<&'a Secret>,
}

/// Where git's output goes.
#[derive(Clone, Copy)]
pub enum Output<'a> {
    /// Into a build's log.
    Log(&'a BuildLog),
    /// Nowhere (inspecting a repository on behalf of an API request).
    Quiet,
}

/// What was checked out.
#[derive(Debug, Clone)]
pub struct Checkout {
    pub sha: CommitSha,
    pub subject: String,
    pub author: String,
}

#[derive(Debug, Clone)]
pub struct Git {
    policy: GitHostPolicy,
}

impl Git {
    pub fn new(policy: GitHostPolicy) -> Self {
        Self { policy }
    }

    /// A git command for `url`. With `token`, requests carry it as HTTP basic auth through an
    /// environment-only config entry: it is never written to `.git/config`, and git never
    /// prints it. With `pin` (`host:port:address`, from [`Git::pin`]), curl connects to that
    /// address for the URL's host instead of resolving it again.
    fn command(&self, url: &GitUrl, token: Option<&Secret>, pin: Option<&str>) -> Result<Command, GitError> {
        self.policy.check(url)?;
        let mut cmd = Command::new("git");
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", "/nonexistent")
            .env("LANG", "C")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "/bin/false")
            .env("SSH_ASKPASS", "/bin/false")
            .env("GIT_ALLOW_PROTOCOL", self.policy.allowed_protocols(url))
            .env("GIT_PROTOCOL_FROM_USER", "0")
            .env("GIT_LFS_SKIP_SMUDGE", "1")
            .args([
                "-c",
                "credential.helper=",
                "-c",
                "core.hooksPath=/dev/null",
                "-c",
                "core.fsmonitor=false",
                "-c",
                "submodule.recurse=false",
                "-c",
                "protocol.version=2",
                "-c",
                "advice.detachedHead=false",
                "-c",
                "init.defaultBranch=main",
                // A redirect would lead git to a host no one checked.
                "-c",
                "http.followRedirects=false",
            ])
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(pin) = pin {
            cmd.arg("-c").arg(format!("http.curloptResolve={pin}"));
        }
        if let Some(token) = token {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{}", token.expose()));
            cmd.env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                .env("GIT_CONFIG_VALUE_0", format!("Authorization: Basic {basic}"));
        }
        Ok(cmd)
    }

    /// Resolves the URL's host and picks the first address the egress policy allows; returns
    /// the `http.curloptResolve` entry that pins git to it (none for an address literal, which
    /// git does not resolve).
    async fn pin(&self, url: &GitUrl) -> Result<Option<String>, GitError> {
        self.policy.check(url)?;
        let ep = url.endpoint();
        let addrs: Vec<SocketAddr> = match ep.ip {
            Some(ip) => vec![SocketAddr::new(ip, ep.port)],
            None => match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((ep.host.as_str(), ep.port)))
                .await
            {
                Err(_) => return Err(unreachable(url, "resolving the host timed out")),
                Ok(Err(e)) => return Err(unreachable(url, format!("cannot resolve the host: {e}"))),
                Ok(Ok(addrs)) => addrs.collect(),
            },
        };
        let mut refused = Vec::new();
        for addr in addrs {
            match self.policy.egress().decide(&ep.host, addr) {
                Decision::Allow => return Ok(ep.ip.is_none().then(|| curl_resolve(&ep.host, addr))),
                Decision::Deny(why) => refused.push(why.to_string()),
            }
        }
        Err(unreachable(
            url,
            format!("refused by the egress policy: {}", refused.join("; ")),
        ))
    }

    /// `git ls-remote` with a time limit; returns stdout.
    async fn ls_remote(&self, url: &GitUrl, args: &[&str], token: Option<&Secret>) -> Result<String, GitError> {
        let run = async {
            let pin = self.pin(url).await?;
            let mut cmd = self.command(url, token, pin.as_deref())?;
            cmd.arg("ls-remote").args(args).arg("--").arg(url.as_str());
            let out = cmd
                .output()
                .await
                .map_err(|e| unreachable(url, format!("cannot run git: {e}")))?;
            if !out.status.success() {
                return Err(unreachable(url, summarize_stderr(&out.stderr)));
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        };
        match tokio::time::timeout(LS_REMOTE_TIMEOUT, run).await {
            Err(_) => Err(unreachable(url, "ls-remote timed out")),
            Ok(result) => result,
        }
    }

    /// The branch the remote's HEAD points at.
    pub async fn default_branch(&self, url: &GitUrl, token: Option<&Secret>) -> Result<BranchName, GitError> {
        let out = self.ls_remote(url, &["--symref"], token).await?;
        out.lines()
            .find_map(|l| l.strip_prefix("ref: refs/heads/")?.strip_suffix("\tHEAD"))
            .and_then(|b| BranchName::parse(b).ok())
            .ok_or(GitError::NoDefaultBranch)
    }

    /// Fails with [`GitError::NoSuchBranch`] unless the remote has `branch`.
    pub async fn check_branch(
        &self,
        url: &GitUrl,
        branch: &BranchName,
        token: Option<&Secret>,
    ) -> Result<(), GitError> {
        let out = self.ls_remote(url, &["--heads"], token).await?;
        let wanted = format!("refs/heads/{}", branch.as_str());
        if out.lines().any(|l| l.split('\t').nth(1) == Some(wanted.as_str())) {
            Ok(())
        } else {
            Err(GitError::NoSuchBranch(branch.to_string()))
        }
    }

    /// Fetches exactly one commit (the branch head, or the wanted commit) into a new repository
    /// at `dest`, shallowly, and checks it out. The local steps' output goes to `out`; the
    /// fetches' never does (see [`UNREACHABLE`]).
    pub async fn checkout(
        &self,
        source: &Source<'_>,
        dest: &Path,
        out: Output<'_>,
        stopper: &Stopper,
    ) -> Result<Checkout, GitError> {
        let Source {
            url,
            branch,
            commit,
            token,
        } = *source;
        // Resolved once: every fetch of this checkout goes to the same, checked, address.
        let pin = stopper
            .guard(self.pin(url))
            .await
            .map_err(|r| GitError::Run(RunError::Interrupted(r)))??;
        let pin = pin.as_deref();
        let dest_s = dest.display().to_string();
        self.step(
            url,
            &["init", "--quiet", "--template=", "--", &dest_s],
            out,
            stopper,
            "init",
        )
        .await?;
        let in_repo = |args: &[&str]| -> Vec<String> {
            ["-C", dest_s.as_str()]
                .iter()
                .chain(args)
                .map(|s| (*s).to_owned())
                .collect()
        };
        let add = in_repo(&["remote", "add", "--", "origin", url.as_str()]);
        self.step(url, &as_strs(&add), out, stopper, "remote add").await?;
        let branch_ref = format!("refs/heads/{}", branch.as_str());
        let fetch = |what: &str, shallow: bool| {
            let mut args = vec!["fetch", "--quiet", "--no-tags"];
            if shallow {
                args.push("--depth=1");
            }
            args.extend(["--", "origin", what]);
            in_repo(&args)
        };
        let target = match commit {
            None => {
                if let Err(detail) = self
                    .quiet_step(url, token, pin, &as_strs(&fetch(&branch_ref, true)), stopper)
                    .await?
                {
                    return Err(unreachable(url, detail));
                }
                "FETCH_HEAD".to_owned()
            }
            Some(sha) => {
                // Servers that allow it hand out any commit by id; others only branch tips, so
                // fall back to the branch's history and look for the commit there.
                let by_id = fetch(sha.as_str(), true);
                if self
                    .quiet_step(url, token, pin, &as_strs(&by_id), stopper)
                    .await?
                    .is_err()
                {
                    if let Output::Log(log) = out {
                        log.system(format!(
                            "The server does not serve commit {} by id; fetching branch {branch}",
                            sha.short()
                        ))
                        .await;
                    }
                    if let Err(detail) = self
                        .quiet_step(url, token, pin, &as_strs(&fetch(&branch_ref, false)), stopper)
                        .await?
                    {
                        return Err(unreachable(url, detail));
                    }
                    let verify = in_repo(&["cat-file", "-e", &format!("{}^{{commit}}", sha.as_str())]);
                    if self
                        .quiet_step(url, None, None, &as_strs(&verify), stopper)
                        .await?
                        .is_err()
                    {
                        return Err(GitError::NoSuchCommit(sha.to_string()));
                    }
                }
                sha.as_str().to_owned()
            }
        };
        let checkout = in_repo(&["checkout", "--quiet", "--detach", &target, "--"]);
        self.step(url, &as_strs(&checkout), out, stopper, "checkout").await?;
        let show = in_repo(&["log", "-1", "--format=%H%n%an%n%s"]);
        let mut cmd = self.command(url, None, None)?;
        cmd.args(&show);
        let out = stopper
            .guard(cmd.output())
            .await
            .map_err(|r| GitError::Run(RunError::Interrupted(r)))?
            .map_err(|e| {
                GitError::Run(RunError::Spawn {
                    program: "git".into(),
                    source: e,
                })
            })?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let sha = lines
            .next()
            .and_then(|s| CommitSha::parse(s).ok())
            .ok_or(GitError::Failed { step: "log" })?;
        let author: String = lines.next().unwrap_or_default().chars().take(200).collect();
        let subject: String = lines.next().unwrap_or_default().chars().take(1000).collect();
        Ok(Checkout { sha, subject, author })
    }

    /// A local step (no remote involved), its output logged with `out`.
    async fn step(
        &self,
        url: &GitUrl,
        args: &[&str],
        out: Output<'_>,
        stopper: &Stopper,
        step: &'static str,
    ) -> Result<(), GitError> {
        let ok = match out {
            Output::Log(log) => {
                let mut cmd = self.command(url, None, None)?;
                cmd.args(args).process_group(0);
                run_logged(cmd, log, stopper).await?.success()
            }
            Output::Quiet => self.quiet_step(url, None, None, args, stopper).await?.is_ok(),
        };
        if ok { Ok(()) } else { Err(GitError::Failed { step }) }
    }

    /// Runs git without showing its output; `Ok(Err(summary))` when git failed, with the gist of
    /// what it said. The whole process group (git and its remote helper) is killed when the
    /// build is stopped.
    async fn quiet_step(
        &self,
        url: &GitUrl,
        token: Option<&Secret>,
        pin: Option<&str>,
        args: &[&str],
        stopper: &Stopper,
    ) -> Result<Result<(), String>, GitError> {
        let mut cmd = self.command(url, token, pin)?;
        cmd.args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().map_err(|e| {
            GitError::Run(RunError::Spawn {
                program: "git".into(),
                source: e,
            })
        })?;
        let pgid = child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw);
        let stderr = child.stderr.take();
        let run = async {
            let said = read_bounded(stderr).await;
            (child.wait().await, said)
        };
        match stopper.guard(run).await {
            Err(reason) => {
                if let Some(pgid) = pgid {
                    let _ = killpg(pgid, Signal::SIGKILL);
                }
                Err(GitError::Run(RunError::Interrupted(reason)))
            }
            Ok((Ok(status), _)) if status.success() => Ok(Ok(())),
            Ok((Ok(_), said)) => Ok(Err(summarize_stderr(&said))),
            Ok((Err(e), _)) => Ok(Err(format!("cannot wait for git: {e}"))),
        }
    }
}

/// The `http.curloptResolve` entry that sends `host:port` to `addr`.
fn curl_resolve(host: &str, addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("{host}:{}:{}", a.port(), a.ip()),
        SocketAddr::V6(a) => format!("{host}:{}:[{}]", a.port(), a.ip()),
    }
}

/// The one error for a repository that cannot be fetched; `detail` goes to the server's log.
fn unreachable(url: &GitUrl, detail: impl Into<String>) -> GitError {
    let detail = detail.into();
    tracing::warn!(host = %url.endpoint().host, "cannot fetch {url}: {detail}");
    GitError::Unreachable { detail }
}

/// Reads a pipe to its end, keeping the first [`MAX_STDERR`] bytes (the rest is read and dropped,
/// so that the writer never blocks).
async fn read_bounded(pipe: Option<tokio::process::ChildStderr>) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else {
        return kept;
    };
    let mut chunk = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        let room = MAX_STDERR.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..n.min(room)]);
    }
    kept
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The first `fatal:` line of git's stderr, or its first line.
fn summarize_stderr(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .find(|l| l.starts_with("fatal:"))
        .or_else(|| text.lines().find(|l| !l.trim().is_empty()))
        .unwrap_or("git failed");
    line.trim_start_matches("fatal:").trim().chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_summary() {
        let e = b"warning: x\nfatal: repository 'https://x/y/' not found\n";
        assert_eq!(summarize_stderr(e), "repository 'https://x/y/' not found");
        assert_eq!(summarize_stderr(b""), "git failed");
    }

    fn policy(http: &str, egress: &str) -> GitHostPolicy {
        GitHostPolicy::from_list(http).with_egress(platform::egress::EgressPolicy::parse(egress).unwrap())
    }

    #[test]
    fn pins_name_resolution_entries() {
        let v4 = "127.0.0.2:8443".parse().unwrap();
        assert_eq!(curl_resolve("git.example", v4), "git.example:8443:127.0.0.2");
        let v6 = "[2001:db8::1]:443".parse().unwrap();
        assert_eq!(curl_resolve("git.example", v6), "git.example:443:[2001:db8::1]");
    }

    #[tokio::test]
    async fn a_name_resolving_to_a_denied_address_is_refused_with_the_one_message() {
        // `localhost` comes from /etc/hosts: no query leaves the machine.
        let git = Git::new(policy("localhost", ""));
        let url = GitUrl::parse("http://localhost:9/r.git").unwrap();
        let err = git.pin(&url).await.unwrap_err();
        assert_eq!(err.to_string(), UNREACHABLE);
        let GitError::Unreachable { detail } = err else {
            panic!("{err:?}")
        };
        assert!(
            detail.contains("refused by the egress policy") && detail.contains("loopback"),
            "{detail}"
        );
        let allowed = Git::new(policy("localhost", "127.0.0.1:9"));
        assert_eq!(
            allowed.pin(&url).await.unwrap().as_deref(),
            Some("localhost:9:127.0.0.1")
        );
        // An address needs no pin.
        let literal = GitUrl::parse("http://127.0.0.1:9/r.git").unwrap();
        assert_eq!(
            Git::new(policy("127.0.0.1", "127.0.0.1")).pin(&literal).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn git_connects_to_the_pinned_address() {
        // `localhost` resolves to 127.0.0.1; only the pin sends git to 127.0.0.2.
        let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let reached = tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(20), listener.accept())
                .await
                .is_ok_and(|r| r.is_ok())
        });
        let git = Git::new(policy("localhost", "127.0.0.0/8"));
        let url = GitUrl::parse(&format!("http://localhost:{port}/r.git")).unwrap();
        let pin = format!("localhost:{port}:127.0.0.2");
        let mut cmd = git.command(&url, None, Some(&pin)).unwrap();
        cmd.args(["ls-remote", "--", url.as_str()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let status = tokio::time::timeout(Duration::from_secs(20), cmd.status()).await;
        assert!(matches!(status, Ok(Ok(s)) if !s.success()), "{status:?}");
        assert!(reached.await.unwrap(), "git connected to the pinned address");
    }

    #[tokio::test]
    async fn refuses_plain_http_outside_the_allow_list() {
        let git = Git::new(GitHostPolicy::default());
        let url = GitUrl::parse("http://127.0.0.1:1/r.git").unwrap();
        assert!(matches!(git.default_branch(&url, None).await, Err(GitError::Url(_))));
    }
}
