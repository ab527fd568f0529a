//! How a sandboxed step enters its build's quotas, before any of the build's code runs.
//!
//! - The cgroups: the step is spawned as `/bin/sh`, which writes its own pid into each
//!   `cgroup.procs` and only then execs bubblewrap. Nothing forks before the process is in the
//!   cgroup, so no child (a fork bomb's first) can start outside it.
//! - `/tmp`: bubblewrap mounts a tmpfs of the quota's size (`--size`) and, after setting the
//!   sandbox up, waits at fd 3 (`--block-fd`, a copy of stdin). Meanwhile the platform opens the
//!   sandbox's `/tmp` through `/proc/<pid>/root` and keeps it open, then lets the sandbox go on.
//!   The open directory still answers `fstatvfs` once the sandbox is gone, so whether a failed
//!   step had filled `/tmp` is known for certain, however fast it failed.

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::{ChildStdin, Command};

/// Joins the cgroups named before `--` (their `cgroup.procs`), then execs the command after it.
const ENTER: &str = r#"while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@""#;
/// [`ENTER`], with the command's stdin (the gate) moved to fd 3 and /dev/null as its stdin.
const ENTER_GATED: &str =
    r#"while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@" 3<&0 </dev/null"#;

/// The fd bubblewrap waits at.
const GATE_FD: &str = "3";

/// How long the sandbox may take to reach its gate before the step goes on without a `/tmp`
/// probe.
const GATE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a step enters the build's quotas; [`crate::sandbox::Sandbox::command_in`] applies it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// `cgroup.procs` files the step's first process writes itself into before anything else.
    pub procs: Vec<PathBuf>,
    /// The size of the sandbox's `/tmp` tmpfs, in bytes.
    pub tmp_size: Option<u64>,
    /// Whether bubblewrap waits at its gate until [`open_gate`] lets it go on.
    pub gate: bool,
}

impl Entry {
    /// The command to spawn for `program`: itself, or `/bin/sh` entering the quotas and then
    /// exec'ing it.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        if self.procs.is_empty() && !self.gate {
            return Command::new(program);
        }
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", if self.gate { ENTER_GATED } else { ENTER }, "cloudrunr-enter"]);
        cmd.args(&self.procs).arg("--").arg(program);
        cmd
    }

    /// bubblewrap's options with the quota's: the size of `/tmp`, and the gate.
    pub fn bwrap_options(&self, mut options: Vec<String>) -> Vec<String> {
        if let Some(size) = self.tmp_size {
            let at = options.windows(2).position(|w| w[0] == "--tmpfs" && w[1] == "/tmp");
            if let Some(at) = at {
                options.insert(at, size.to_string());
                options.insert(at, "--size".to_owned());
            }
        }
        if self.gate {
            options.extend(["--block-fd".to_owned(), GATE_FD.to_owned()]);
        }
        options
    }

    /// The spawned process's stdin: the gate's pipe, or nothing.
    pub fn stdin(&self) -> Stdio {
        if self.gate { Stdio::piped() } else { Stdio::null() }
    }
}

/// The sandbox's `/tmp`, held open for as long as the step lasts.
#[derive(Debug)]
pub struct TmpProbe {
    dir: File,
}

impl TmpProbe {
    /// Whether nothing more fits: no block or no inode left.
    pub fn is_full(&self) -> bool {
        match rustix::fs::fstatvfs(&self.dir) {
            Ok(s) => s.f_bfree == 0 || (s.f_files > 0 && s.f_ffree == 0),
            Err(_) => false,
        }
    }
}

/// Waits for the sandbox started as `pid` to reach its gate, opens its `/tmp`, then lets it go
/// on (a byte on `stdin`, which is then closed). Without a sandbox in sight within
/// [`GATE_TIMEOUT`] (bubblewrap failed, say), lets it go on all the same and returns `None`.
pub async fn open_gate(pid: Option<u32>, stdin: Option<ChildStdin>, tmp_size: u64) -> Option<TmpProbe> {
    let deadline = tokio::time::Instant::now() + GATE_TIMEOUT;
    let mut probe = None;
    if let Some(pid) = pid {
        loop {
            match find_sandbox_tmp(pid, tmp_size) {
                Found::Tmp(dir) => {
                    probe = Some(TmpProbe { dir });
                    break;
                }
                Found::Gone => break,
                Found::Unsized => {
                    tracing::warn!("the sandbox has no /tmp of {tmp_size} bytes; /tmp is not watched");
                    break;
                }
                Found::NotYet if tokio::time::Instant::now() >= deadline => {
                    tracing::warn!("the sandbox did not reach its gate in {GATE_TIMEOUT:?}; /tmp is not watched");
                    break;
                }
                Found::NotYet => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }
    if let Some(mut stdin) = stdin {
        // A sandbox that died already cannot read it.
        let _ = stdin.write_all(b"go").await;
    }
    probe
}

enum Found {
    Tmp(File),
    NotYet,
    /// bubblewrap has exited.
    Gone,
    /// The sandbox is set up, without a /tmp of the quota's size.
    Unsized,
}

/// bubblewrap (`pid`, after the shell exec'd it) forks the sandbox's first process, which sets
/// the sandbox up and then waits at the gate. Setting up, its root is first a scratch tmpfs
/// holding the future root at `newroot`; once every mount is made, it changes root into that.
/// The sandbox is the child whose root is no longer ours and whose `/tmp` has exactly the
/// quota's size.
fn find_sandbox_tmp(pid: u32, tmp_size: u64) -> Found {
    let Ok(children) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) else {
        return Found::Gone;
    };
    let Ok(our_root) = std::fs::metadata("/") else {
        return Found::Gone;
    };
    for child in children.split_whitespace() {
        let root = PathBuf::from(format!("/proc/{child}/root"));
        let Ok(meta) = std::fs::metadata(&root) else { continue };
        if (meta.dev(), meta.ino()) == (our_root.dev(), our_root.ino()) {
            continue;
        }
        if let Some(dir) = open_tmpfs(&root.join("tmp"), tmp_size) {
            return Found::Tmp(dir);
        }
        // Set up (and so waiting at the gate, where it stays) without a /tmp of that size; it
        // may have become so since the first look.
        if !root.join("newroot").exists() && root.join("usr").exists() {
            return match open_tmpfs(&root.join("tmp"), tmp_size) {
                Some(dir) => Found::Tmp(dir),
                None => Found::Unsized,
            };
        }
    }
    Found::NotYet
}

/// `path`, opened, if it is a file system of exactly `size` bytes (rounded up to its blocks).
fn open_tmpfs(path: &Path, size: u64) -> Option<File> {
    let dir = File::open(path).ok()?;
    let s = rustix::fs::fstatvfs(&dir).ok()?;
    let block = s.f_frsize.max(1);
    (s.f_blocks.checked_mul(block)? == size.div_ceil(block) * block).then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cmd: &Command) -> Vec<String> {
        cmd.as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn no_quota_spawns_the_program_itself() {
        let cmd = Entry::default().command("bwrap");
        assert_eq!(cmd.as_std().get_program(), "bwrap");
        assert!(args(&cmd).is_empty());
    }

    #[test]
    fn the_wrapper_joins_every_cgroup_before_the_program() {
        let entry = Entry {
            procs: vec!["/cg/pids/b/cgroup.procs".into(), "/cg/memory/b/cgroup.procs".into()],
            tmp_size: None,
            gate: false,
        };
        let cmd = entry.command("bwrap");
        assert_eq!(cmd.as_std().get_program(), "/bin/sh");
        assert_eq!(
            args(&cmd),
            [
                "-c",
                ENTER,
                "cloudrunr-enter",
                "/cg/pids/b/cgroup.procs",
                "/cg/memory/b/cgroup.procs",
                "--",
                "bwrap"
            ]
        );
    }

    #[test]
    fn bwrap_gets_the_tmp_size_and_the_gate() {
        let entry = Entry {
            procs: vec![],
            tmp_size: Some(16 << 20),
            gate: true,
        };
        let options = ["--dev", "/dev", "--tmpfs", "/tmp", "--bind", "/a", "/workspace"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            entry.bwrap_options(options),
            [
                "--dev",
                "/dev",
                "--size",
                "16777216",
                "--tmpfs",
                "/tmp",
                "--bind",
                "/a",
                "/workspace",
                "--block-fd",
                "3"
            ]
        );
        assert_eq!(args(&entry.command("bwrap"))[1], ENTER_GATED);
    }

    #[tokio::test]
    async fn the_wrapper_really_joins_before_it_execs() {
        // A stand-in for cgroup.procs: the pid the wrapper writes must be the one that runs the
        // program (exec, no fork).
        let dir = tempfile::tempdir().unwrap();
        let procs = dir.path().join("cgroup.procs");
        let entry = Entry {
            procs: vec![procs.clone()],
            tmp_size: None,
            gate: false,
        };
        let mut cmd = entry.command("sh");
        cmd.args(["-c", "echo $$"]).stdin(entry.stdin());
        let out = cmd.output().await.unwrap();
        assert!(out.status.success());
        let written = std::fs::read_to_string(&procs).unwrap();
        assert_eq!(written.trim(), String::from_utf8_lossy(&out.stdout).trim());
        // A cgroup that cannot be joined stops the step before the program runs.
        let entry = Entry {
            procs: vec![dir.path().join("missing/cgroup.procs")],
            ..entry
        };
        let mut cmd = entry.command("sh");
        cmd.args(["-c", "echo ran"]);
        let out = cmd.output().await.unwrap();
        assert_eq!(out.status.code(), Some(125));
        assert!(out.stdout.is_empty());
    }

    #[tokio::test]
    async fn a_gate_without_a_sandbox_lets_the_process_go_on() {
        let entry = Entry {
            procs: vec![],
            tmp_size: None,
            gate: true,
        };
        // `sh` stands in for bubblewrap: it reads its gate (fd 3) and reports stdin's EOF.
        let mut cmd = entry.command("sh");
        cmd.args(["-c", "head -c 2 <&3; cat; echo done"])
            .stdin(entry.stdin())
            .stdout(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let probe = open_gate(None, child.stdin.take(), 1 << 20).await;
        assert!(probe.is_none());
        let out = child.wait_with_output().await.unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "godone\n");
    }
}
