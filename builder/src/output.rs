//! Turning a build's output directory into a stored deployment.
//!
//! The directory is walked without following symlinks (a symlink is reported and skipped, so a
//! build cannot publish `/etc/passwd`), within limits on file count and size. Every file is
//! stored under its SHA-256, so unchanged files cost nothing on the next deployment, and the
//! manifest is written last: once it exists, the deployment is complete.

use crate::logs::BuildLog;
use platform::artifacts::{ArtifactStore, ContentHash, FileEntry, Manifest, StoreError};
use platform::model::ArtifactSummary;
use platform::{DeploymentId, RelPath};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("the output has more than {0} files")]
    TooManyFiles(u64),
    #[error("the output is larger than {0} bytes")]
    TooLarge(u64),
    #[error("cannot read the output: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_files: u64,
    pub max_bytes: u64,
}

/// A file found in the output.
#[derive(Debug)]
struct Found {
    rel: RelPath,
    path: PathBuf,
    size: u64,
}

/// Whether `rel` (relative to `root`) is a real directory reached without passing through a
/// symlink. The build has finished and its processes are gone, so nothing changes underneath.
pub fn is_real_dir(root: &Path, rel: &RelPath) -> bool {
    let mut path = root.to_path_buf();
    for part in rel.components() {
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_dir() => {}
            _ => return false,
        }
    }
    std::fs::symlink_metadata(&path)
        .map(|m| m.file_type().is_dir())
        .unwrap_or(false)
}

/// Walks `dir`, returning regular files and the notes on what was skipped.
fn walk(dir: &Path, limits: Limits) -> Result<(Vec<Found>, Vec<String>), OutputError> {
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    let mut total = 0u64;
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, prefix)) = stack.pop() {
        for entry in std::fs::read_dir(&path)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                skipped.push(format!("{prefix}{} (file name is not UTF-8)", name.to_string_lossy()));
                continue;
            };
            let shown = format!("{prefix}{name}");
            if name == ".git" {
                continue;
            }
            let Ok(rel) = RelPath::parse(&shown) else {
                skipped.push(format!("{shown} (name cannot be served)"));
                continue;
            };
            // DirEntry::file_type does not follow symlinks.
            let kind = entry.file_type()?;
            if kind.is_symlink() {
                let target = std::fs::read_link(entry.path())
                    .map(|t| t.display().to_string())
                    .unwrap_or_default();
                skipped.push(format!("{shown} -> {target} (symlinks are not deployed)"));
            } else if kind.is_dir() {
                stack.push((entry.path(), format!("{shown}/")));
            } else if kind.is_file() {
                let size = entry.metadata()?.len();
                total += size;
                if found.len() as u64 >= limits.max_files {
                    return Err(OutputError::TooManyFiles(limits.max_files));
                }
                if total > limits.max_bytes {
                    return Err(OutputError::TooLarge(limits.max_bytes));
                }
                found.push(Found {
                    rel,
                    path: entry.path(),
                    size,
                });
            } else {
                skipped.push(format!("{shown} (not a regular file)"));
            }
        }
    }
    found.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok((found, skipped))
}

fn hash_file(path: &Path) -> std::io::Result<ContentHash> {
    let mut file = std::fs::File::open(path)?;
    let mut digest = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        digest.update(&buf[..n]);
    }
    Ok(ContentHash::from_digest(digest))
}

/// The `Content-Type` a file is served with.
pub fn content_type(rel: &RelPath) -> String {
    let ext = rel.extension().unwrap_or_default();
    let mime = match ext.as_str() {
        "js" | "mjs" | "cjs" => "text/javascript".to_owned(),
        "map" => "application/json".to_owned(),
        "webmanifest" => "application/manifest+json".to_owned(),
        "wasm" => "application/wasm".to_owned(),
        _ => mime_guess::from_ext(&ext)
            .first_or_octet_stream()
            .essence_str()
            .to_owned(),
    };
    let textual = mime.starts_with("text/")
        || matches!(
            mime.as_str(),
            "application/json" | "application/manifest+json" | "image/svg+xml" | "application/xml"
        );
    if textual {
        format!("{mime}; charset=utf-8")
    } else {
        mime
    }
}

/// Stores every file of `dir` and then the manifest of `deployment`.
pub async fn store_output(
    dir: &Path,
    deployment: &DeploymentId,
    spa: bool,
    limits: Limits,
    store: &dyn ArtifactStore,
    log: &BuildLog,
) -> Result<ArtifactSummary, OutputError> {
    let walk_dir = dir.to_path_buf();
    let (found, skipped) = tokio::task::spawn_blocking(move || walk(&walk_dir, limits))
        .await
        .map_err(|e| OutputError::Io(std::io::Error::other(e)))??;
    for note in &skipped {
        log.system(format!("Skipped {note}")).await;
    }
    let mut summary = ArtifactSummary {
        files: 0,
        bytes: 0,
        new_files: 0,
        new_bytes: 0,
    };
    let mut files = BTreeMap::new();
    for f in found {
        let path = f.path.clone();
        let hash = tokio::task::spawn_blocking(move || hash_file(&path))
            .await
            .map_err(|e| OutputError::Io(std::io::Error::other(e)))??;
        if store.put_object(&hash, &f.path).await? {
            summary.new_files += 1;
            summary.new_bytes += f.size;
        }
        summary.files += 1;
        summary.bytes += f.size;
        let content_type = content_type(&f.rel);
        files.insert(
            f.rel,
            FileEntry {
                hash,
                size: f.size,
                content_type,
            },
        );
    }
    store
        .put_manifest(&Manifest {
            deployment_id: deployment.clone(),
            spa,
            files,
        })
        .await?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const LIMITS: Limits = Limits {
        max_files: 100,
        max_bytes: 1 << 20,
    };

    #[test]
    fn walks_files_and_skips_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("assets/img")).unwrap();
        std::fs::create_dir_all(d.join(".git")).unwrap();
        std::fs::write(d.join(".git/config"), "x").unwrap();
        std::fs::write(d.join("index.html"), "<h1>hi</h1>").unwrap();
        std::fs::write(d.join("assets/app.js"), "1").unwrap();
        std::fs::write(d.join("assets/img/a.png"), "png").unwrap();
        symlink("/etc/passwd", d.join("passwd")).unwrap();
        symlink("/etc", d.join("assets/etc")).unwrap();
        let (found, skipped) = walk(d, LIMITS).unwrap();
        let names: Vec<&str> = found.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(names, ["assets/app.js", "assets/img/a.png", "index.html"]);
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(skipped.iter().any(|s| s.starts_with("passwd -> /etc/passwd")));
    }

    #[test]
    fn limits_hold() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..5 {
            std::fs::write(dir.path().join(format!("f{i}")), "0123456789").unwrap();
        }
        assert!(matches!(
            walk(
                dir.path(),
                Limits {
                    max_files: 4,
                    max_bytes: 1000
                }
            ),
            Err(OutputError::TooManyFiles(4))
        ));
        assert!(matches!(
            walk(
                dir.path(),
                Limits {
                    max_files: 10,
                    max_bytes: 45
                }
            ),
            Err(OutputError::TooLarge(45))
        ));
    }

    #[test]
    fn real_dirs_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/dist")).unwrap();
        symlink("/", dir.path().join("root")).unwrap();
        symlink(dir.path().join("a"), dir.path().join("b")).unwrap();
        let ok = |p: &str| is_real_dir(dir.path(), &RelPath::parse(p).unwrap());
        assert!(ok("a/dist"));
        assert!(ok(""));
        assert!(!ok("root"));
        assert!(!ok("root/etc"));
        assert!(!ok("b/dist"));
        assert!(!ok("missing"));
    }

    #[test]
    fn content_types() {
        let ct = |p: &str| content_type(&RelPath::parse(p).unwrap());
        assert_eq!(ct("index.html"), "text/html; charset=utf-8");
        assert_eq!(ct("assets/index-BXq3x8Zl.js"), "text/javascript; charset=utf-8");
        assert_eq!(ct("a.css"), "text/css; charset=utf-8");
        assert_eq!(ct("logo.svg"), "image/svg+xml; charset=utf-8");
        assert_eq!(ct("logo.png"), "image/png");
        assert_eq!(ct("app.wasm"), "application/wasm");
        assert_eq!(ct("LICENSE"), "application/octet-stream");
    }
}
