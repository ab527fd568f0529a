//! A site's own rules, read from the root of its output at upload time: `_redirects` and
//! `_headers` (see [`platform::site_rules`]).
//!
//! Both files configure the site and are not part of it: they go into the manifest as parsed
//! rules, never as files to serve. A line that cannot be used is reported in the build log with
//! its line number (`_redirects:12: …`) and skipped; the build goes on.

use crate::logs::BuildLog;
use platform::RelPath;
use platform::site_rules::{
    HEADERS_FILE, MAX_FILE_BYTES, REDIRECTS_FILE, SiteRules, Warning, parse_headers, parse_redirects,
};
use std::io::Read;
use std::path::Path;

/// Whether `rel` is one of the rules files (at the root of the output only).
pub(crate) fn is_rules_file(rel: &RelPath) -> bool {
    matches!(rel.as_str(), REDIRECTS_FILE | HEADERS_FILE)
}

/// Reads and parses the rules files of the output directory `dir`, reporting in `log` what was
/// found and every line skipped. Missing files are no rules; a file that cannot be read (or is a
/// symlink: the walk reports those) is reported and ignored.
pub(crate) async fn read(dir: &Path, log: &BuildLog) -> SiteRules {
    let mut rules = SiteRules::default();
    if let Some(bytes) = read_file(dir, REDIRECTS_FILE, log).await {
        let parsed = parse_redirects(&bytes);
        report(log, REDIRECTS_FILE, &parsed.warnings).await;
        log.system(format!(
            "Redirects: {} from {REDIRECTS_FILE}{}",
            count(parsed.rules.len(), "rule", "rules"),
            skipped(parsed.warnings.len())
        ))
        .await;
        rules.redirects = parsed.rules;
    }
    if let Some(bytes) = read_file(dir, HEADERS_FILE, log).await {
        let parsed = parse_headers(&bytes);
        report(log, HEADERS_FILE, &parsed.warnings).await;
        log.system(format!(
            "Headers: {} from {HEADERS_FILE}{}",
            count(parsed.rules.len(), "path", "paths"),
            skipped(parsed.warnings.len())
        ))
        .await;
        rules.headers = parsed.rules;
    }
    rules
}

async fn report(log: &BuildLog, file: &str, warnings: &[Warning]) {
    for warning in warnings {
        log.system(warning.for_file(file)).await;
    }
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn skipped(warnings: usize) -> String {
    match warnings {
        0 => String::new(),
        1 => " (1 problem reported above)".to_owned(),
        n => format!(" ({n} problems reported above)"),
    }
}

/// The first bytes of `dir/name` (one more than a rules file may have, so that the parser sees
/// an over-long file for what it is), if it is a regular file. The build has finished: nothing
/// changes the directory underneath.
async fn read_file(dir: &Path, name: &str, log: &BuildLog) -> Option<Vec<u8>> {
    let path = dir.join(name);
    let read = tokio::task::spawn_blocking(move || -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_file() => {}
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
        let mut bytes = Vec::new();
        std::fs::File::open(&path)?
            .take(MAX_FILE_BYTES as u64 + 1)
            .read_to_end(&mut bytes)?;
        Ok(Some(bytes))
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r);
    match read {
        Ok(bytes) => bytes,
        Err(e) => {
            log.system(format!("{name}: cannot be read ({e}); it is ignored")).await;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bus::InProcessBus;
    use platform::DeploymentId;
    use platform::bus::{EventBody, LogBus};
    use std::sync::Arc;

    async fn read_logged(dir: &Path) -> (SiteRules, Vec<String>) {
        let bus = Arc::new(InProcessBus::new());
        let mut sub = bus.subscribe_durable().await.unwrap();
        let log = BuildLog::new(DeploymentId::generate(), bus.clone() as Arc<dyn LogBus>, 1, &[]);
        let rules = read(dir, &log).await;
        log.system("end").await;
        let mut lines = Vec::new();
        loop {
            for event in sub.next_batch(100).await.unwrap() {
                if let EventBody::Log(line) = event.body {
                    lines.push(line.text);
                }
            }
            if lines.last().is_some_and(|l| l == "end") {
                lines.pop();
                return (rules, lines);
            }
        }
    }

    #[tokio::test]
    async fn reads_both_files_and_reports_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("_redirects"),
            "# comment\n/old /new\n/broken\n/spa/* /index.html 200\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("_headers"), "/*\n  X-Frame-Options: DENY\n").unwrap();
        let (rules, lines) = read_logged(dir.path()).await;
        assert_eq!(rules.redirects.len(), 2);
        assert_eq!(rules.headers.len(), 1);
        assert_eq!(
            lines,
            [
                "_redirects:3: the rule has no target: write `from to [status]`",
                "Redirects: 2 rules from _redirects (1 problem reported above)",
                "Headers: 1 path from _headers",
            ]
        );
    }

    #[tokio::test]
    async fn missing_odd_and_oversized_files() {
        let dir = tempfile::tempdir().unwrap();
        let (rules, lines) = read_logged(dir.path()).await;
        assert!(rules.is_empty() && lines.is_empty(), "{lines:?}");

        std::fs::create_dir(dir.path().join("_redirects")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("_headers")).unwrap();
        let (rules, lines) = read_logged(dir.path()).await;
        assert!(rules.is_empty() && lines.is_empty(), "{lines:?}");

        let big = tempfile::tempdir().unwrap();
        std::fs::write(big.path().join("_headers"), "#".repeat(MAX_FILE_BYTES * 2)).unwrap();
        let (rules, lines) = read_logged(big.path()).await;
        assert!(rules.is_empty());
        assert_eq!(
            lines,
            [
                "_headers: the file is larger than 64 KiB: it is ignored",
                "Headers: 0 paths from _headers (1 problem reported above)",
            ]
        );
    }

    #[tokio::test]
    async fn uploads_put_the_rules_in_the_manifest_not_the_files() {
        use crate::output::{Limits, store_output};
        use platform::artifacts::ArtifactStore;
        use store::LocalArtifactStore;
        let out = tempfile::tempdir().unwrap();
        std::fs::write(out.path().join("index.html"), "<h1>hi</h1>").unwrap();
        std::fs::write(out.path().join("_redirects"), "/a /b 302\n").unwrap();
        std::fs::write(out.path().join("_headers"), "/*\n  X-A: 1\n").unwrap();
        std::fs::create_dir(out.path().join("docs")).unwrap();
        std::fs::write(out.path().join("docs/_redirects"), "served as a file").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = LocalArtifactStore::open(dir.path().to_path_buf()).await.unwrap();
        let bus = Arc::new(InProcessBus::new());
        let deployment = DeploymentId::generate();
        let log = BuildLog::new(deployment.clone(), bus as Arc<dyn LogBus>, 1, &[]);
        let limits = Limits {
            max_files: 100,
            max_bytes: 1 << 20,
        };
        let summary = store_output(
            out.path(),
            &deployment,
            false,
            limits,
            &store,
            &crate::compress::Compression::InProcess,
            &log,
        )
        .await
        .unwrap();
        assert_eq!(summary.files, 2);
        let manifest = store.get_manifest(&deployment).await.unwrap().unwrap();
        let files: Vec<&str> = manifest.files.keys().map(RelPath::as_str).collect();
        assert_eq!(files, ["docs/_redirects", "index.html"]);
        assert_eq!(manifest.rules.redirects.len(), 1);
        assert_eq!(manifest.rules.headers.len(), 1);
    }

    #[test]
    fn only_the_root_files_are_rules() {
        let rel = |p: &str| RelPath::parse(p).unwrap();
        assert!(is_rules_file(&rel("_redirects")));
        assert!(is_rules_file(&rel("_headers")));
        assert!(!is_rules_file(&rel("docs/_redirects")));
        assert!(!is_rules_file(&rel("_redirects.txt")));
    }
}
