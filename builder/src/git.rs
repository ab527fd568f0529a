//! Talking to git remotes without ever letting a URL or a repository run anything.
//!
//! Every git process gets an environment built from scratch: no system or global config, no
//! credential helpers, no prompts, hooks pointed at nothing, and `GIT_ALLOW_PROTOCOL` limited to
//! the one protocol the (already parsed) [`GitUrl`] uses. URLs are passed after `--`.

use crate::child::{RunError, Stopper, run_logged};
use crate::logs::BuildLog;
use base64::Engine;
use platform::settings::Secret;
use platform::{BranchName, CommitSha, GitHostPolicy, GitUrl};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

/// How long an `ls-remote` made on behalf of an API request may take.
const LS_REMOTE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error(transparent)]
    Url(#[from] platform::names::GitUrlError),
    #[error("could not read the repository: {0}")]
    Unreachable(String),
    #[error("the repository has no branch {0:?}")]
    NoSuchBranch(String),
    #[error("could not fetch branch {0:?} (see git's output above)")]
    FetchFailed(String),
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
    /// prints it.
    fn command(&self, url: &GitUrl, token: Option<&Secret>) -> Result<Command, GitError> {
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
            ])
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(token) = token {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{}", token.expose()));
            cmd.env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                .env("GIT_CONFIG_VALUE_0", format!("Authorization: Basic {basic}"));
        }
        Ok(cmd)
    }

    /// `git ls-remote` with a time limit; returns stdout.
    async fn ls_remote(&self, url: &GitUrl, args: &[&str], token: Option<&Secret>) -> Result<String, GitError> {
        let mut cmd = self.command(url, token)?;
        cmd.arg("ls-remote").args(args).arg("--").arg(url.as_str());
        let out = match tokio::time::timeout(LS_REMOTE_TIMEOUT, cmd.output()).await {
            Err(_) => return Err(GitError::Unreachable("timed out".into())),
            Ok(Err(e)) => return Err(GitError::Unreachable(format!("cannot run git: {e}"))),
            Ok(Ok(out)) => out,
        };
        if !out.status.success() {
            return Err(GitError::Unreachable(summarize_stderr(&out.stderr)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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
    /// at `dest`, shallowly, and checks it out. Git's output goes to `out`.
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
        let dest_s = dest.display().to_string();
        self.step(
            url,
            token,
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
        self.step(url, token, &as_strs(&add), out, stopper, "remote add")
            .await?;
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
                match self
                    .step(url, token, &as_strs(&fetch(&branch_ref, true)), out, stopper, "fetch")
                    .await
                {
                    Err(GitError::Failed { .. }) => return Err(GitError::FetchFailed(branch.to_string())),
                    other => other?,
                }
                "FETCH_HEAD".to_owned()
            }
            Some(sha) => {
                // Servers that allow it hand out any commit by id; others only branch tips, so
                // fall back to the branch's history and look for the commit there.
                let by_id = fetch(sha.as_str(), true);
                if self.quiet_step(url, token, &as_strs(&by_id), stopper).await?.is_err() {
                    if let Output::Log(log) = out {
                        log.system(format!(
                            "The server does not serve commit {} by id; fetching branch {branch}",
                            sha.short()
                        ))
                        .await;
                    }
                    self.step(url, token, &as_strs(&fetch(&branch_ref, false)), out, stopper, "fetch")
                        .await?;
                    let verify = in_repo(&["cat-file", "-e", &format!("{}^{{commit}}", sha.as_str())]);
                    if self.quiet_step(url, token, &as_strs(&verify), stopper).await?.is_err() {
                        return Err(GitError::NoSuchCommit(sha.to_string()));
                    }
                }
                sha.as_str().to_owned()
            }
        };
        let checkout = in_repo(&["checkout", "--quiet", "--detach", &target, "--"]);
        self.step(url, token, &as_strs(&checkout), out, stopper, "checkout")
            .await?;
        let show = in_repo(&["log", "-1", "--format=%H%n%an%n%s"]);
        let mut cmd = self.command(url, None)?;
        cmd.args(&show);
        let out = stopper
            .guard(cmd.output())
            .await
            .map_err(|r| GitError::Run(RunError::Interrupted(r)))?
            .map_err(|e| GitError::Unreachable(e.to_string()))?;
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

    #[allow(clippy::too_many_arguments)]
    async fn step(
        &self,
        url: &GitUrl,
        token: Option<&Secret>,
        args: &[&str],
        out: Output<'_>,
        stopper: &Stopper,
        step: &'static str,
    ) -> Result<(), GitError> {
        let ok = match out {
            Output::Log(log) => {
                let mut cmd = self.command(url, token)?;
                cmd.args(args).process_group(0);
                run_logged(cmd, log, stopper).await?.success()
            }
            Output::Quiet => self.quiet_step(url, token, args, stopper).await?.is_ok(),
        };
        if ok { Ok(()) } else { Err(GitError::Failed { step }) }
    }

    /// Runs git without logging its output; `Ok(Err(()))` when git failed.
    async fn quiet_step(
        &self,
        url: &GitUrl,
        token: Option<&Secret>,
        args: &[&str],
        stopper: &Stopper,
    ) -> Result<Result<(), ()>, GitError> {
        let mut cmd = self.command(url, token)?;
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
        let status = stopper
            .guard(cmd.status())
            .await
            .map_err(|r| GitError::Run(RunError::Interrupted(r)))?
            .map_err(|e| GitError::Unreachable(e.to_string()))?;
        Ok(if status.success() { Ok(()) } else { Err(()) })
    }
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

    #[tokio::test]
    async fn refuses_plain_http_outside_the_allow_list() {
        let git = Git::new(GitHostPolicy::default());
        let url = GitUrl::parse("http://127.0.0.1:1/r.git").unwrap();
        assert!(matches!(git.default_branch(&url, None).await, Err(GitError::Url(_))));
    }
}
