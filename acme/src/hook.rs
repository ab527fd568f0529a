//! DNS-01 through the operator's hook command, lego's `exec` convention:
//! `HOOK set <fqdn> <value>` publishes the TXT record, `HOOK clear <fqdn> <value>` removes it.
//! `fqdn` is `_acme-challenge.<name>.` (with the final dot).

use crate::AcmeError;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

/// How long one hook call may take.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(120);

/// The record name DNS-01 proves `base` with.
pub fn challenge_fqdn(base: &str) -> String {
    format!("_acme-challenge.{base}.")
}

/// Runs `hook <action> <fqdn> <value>`; fails, with the end of its output, unless it exits 0.
pub async fn run(hook: &Path, action: &str, fqdn: &str, value: &str) -> Result<(), AcmeError> {
    let mut cmd = Command::new(hook);
    cmd.arg(action)
        .arg(fqdn)
        .arg(value)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .map_err(|e| AcmeError::Hook(format!("cannot run {}: {e}", hook.display())))?;
    let out = tokio::time::timeout(HOOK_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| {
            AcmeError::Hook(format!(
                "`{} {action}` took longer than {HOOK_TIMEOUT:?}",
                hook.display()
            ))
        })?
        .map_err(|e| AcmeError::Hook(format!("{}: {e}", hook.display())))?;
    if out.status.success() {
        return Ok(());
    }
    let mut said = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if said.is_empty() {
        said = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    }
    let tail: String = said
        .chars()
        .rev()
        .take(500)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(AcmeError::Hook(format!(
        "`{} {action} {fqdn}` failed ({}): {tail}",
        hook.display(),
        out.status
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, body: &str) -> std::path::PathBuf {
        let path = dir.join("hook");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[tokio::test]
    async fn the_hook_gets_action_name_and_value() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let hook = script(dir.path(), &format!("echo \"$1 $2 $3\" >> {}", log.display()));
        run(&hook, "set", &challenge_fqdn("example.com"), "v4lue")
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "set _acme-challenge.example.com. v4lue\n"
        );
    }

    #[tokio::test]
    async fn a_failing_hook_is_reported_with_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let hook = script(dir.path(), "echo 'zone not found' >&2; exit 3");
        let e = run(&hook, "set", "_acme-challenge.example.com.", "v")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("zone not found"), "{e}");
        let e = run(&dir.path().join("missing"), "set", "x.", "v").await.unwrap_err();
        assert!(e.to_string().contains("cannot run"), "{e}");
    }
}
